"""Shared fixtures: real components only (Tansu broker, PostgreSQL, the embedded model)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SHARED = REPO.parent / "shared"
PG_ADMIN_URL = os.environ.get("RADGPT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Library code must not depend on the caller's RADGPT_* environment."""
    for key in list(os.environ):
        if key.startswith("RADGPT_") and key != "RADGPT_TEST_PG":
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def fhir_schema_path() -> Path:
    return SHARED / "fhir" / "fhir.schema.json"


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """A real Kafka-protocol broker (Tansu) on a free port; yields bootstrap servers."""
    from integration.pipeline.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def model_cache_dir() -> Path:
    """Where the converted base model is cached between test runs (git-ignored)."""
    path = Path(os.environ.get("RADGPT_TEST_CACHE", REPO / ".radgpt" / "cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def base_model_dir(model_cache_dir: Path) -> Path:
    """The embedded SmolLM2-135M base model, converted once to a Hugging Face directory."""
    from inference.model_store import prepare_base_model

    return prepare_base_model(model_cache_dir)


def _pg_admin(sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the real server; yields its asyncpg URL."""
    name = f"radgpt_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
