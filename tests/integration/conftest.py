"""Fixtures of the integration tests: one database fixture that runs on both back ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration.db import Database, open_database, upgrade_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: a tmp SQLite file, then a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'radgpt.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    """The migrated database (Alembic head) for ``db_url``."""
    db = open_database(db_url)
    await upgrade_database(db)
    try:
        yield db
    finally:
        await db.dispose()
