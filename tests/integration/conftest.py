"""Fixtures of the integration tests: one database fixture that runs on both back ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from review_helpers import (
    ARGS,
    CHROMIUM,
    ReviewServer,
    Tokens,
    create_pg_database,
    drop_pg_database,
    migrate,
)

from integration.app.settings import KafkaSettings, TopicSettings
from integration.review.auth import TokenVerifier
from integration.storage.db import Database, open_database, upgrade_database


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


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database shared by one test module (review API and pages)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('review') / 'radgpt.db'}"
        migrate(url)
        yield url
        return
    name, url = create_pg_database()
    try:
        migrate(url)
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Tokens:
    """Dev-key token minting for one test module."""
    return Tokens(tmp_path_factory.mktemp("keys") / "dev-key.pem")


@pytest.fixture(scope="module")
def kafka(kafka_broker: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=kafka_broker)


@pytest.fixture(scope="module")
def server(
    backend_url: str, tokens: Tokens, kafka: KafkaSettings, topics: TopicSettings
) -> Iterator[ReviewServer]:
    """The review API and pages on a real uvicorn server (per module; ``topics`` per module)."""
    verifier = TokenVerifier(issuer="radgpt-dev", audience="radgpt", dev_key_path=tokens.key_path)
    srv = ReviewServer(backend_url, verifier, kafka=kafka, topics=topics).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def db(backend_url: str) -> AsyncIterator[Database]:
    database = open_database(backend_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    if not CHROMIUM.exists():
        pytest.fail("chromium missing: run scripts/setup-browser.sh (apt-get install chromium)")
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield instance
        finally:
            await instance.close()
