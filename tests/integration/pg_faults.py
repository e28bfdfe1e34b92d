"""Database faults on the real PostgreSQL server, for one test database only.

What a failover or restart looks like to a client: the database refusing new connections
(``ALLOW_CONNECTIONS false``) with its backends terminated, or connections dropped again and
again.  Only ever applied to the throw-away ``radgpt_test_*`` databases of
:func:`tests.conftest.pg_database`, through an admin connection to the ``test`` database.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

PG_ADMIN_URL = os.environ.get("RADGPT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def database_name(url: str) -> str:
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    assert name.startswith("radgpt_test_"), f"refusing to inject faults into {name!r}"
    return name


class PgFaults:
    """Fault injection for the test database behind ``url``."""

    def __init__(self, url: str) -> None:
        self.name = database_name(url)

    async def _admin(self, *statements: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    async def terminate(self) -> None:
        """Drop every connection to the database (what a server restart does)."""
        await self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
        )

    async def refuse(self) -> None:
        """Refuse new connections and drop the open ones."""
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        await self.terminate()

    async def allow(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    @asynccontextmanager
    async def refusing(self) -> AsyncIterator[None]:
        await self.refuse()
        try:
            yield
        finally:
            await self.allow()

    async def kill_repeatedly(
        self, duration_s: float, *, every_s: tuple[float, float] = (0.2, 0.5)
    ) -> int:
        """Terminate all connections every 0.2-0.5 s for ``duration_s``; returns the count."""
        kills = 0
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            await asyncio.sleep(random.uniform(*every_s))
            await self.terminate()
            kills += 1
        return kills
