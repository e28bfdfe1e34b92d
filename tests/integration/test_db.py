"""The schema, migrations and idempotency constraints on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from integration.errors import StorageError
from integration.storage.db import (
    Database,
    DraftRecord,
    InboundMessage,
    open_database,
    upgrade_database,
)


def _inbound(source_key: str) -> InboundMessage:
    return InboundMessage(
        source_key=source_key,
        topic="radiology.hl7.oru",
        partition=0,
        offset=7,
        source_format="hl7v2",
        raw_sha256="a" * 64,
        outcome="drafted",
    )


def _draft(inbound_id: str, report_key: str, accession: str, findings_hash: str) -> DraftRecord:
    return DraftRecord(
        inbound_id=inbound_id,
        report_key=report_key,
        accession=accession,
        patient_id="MRN1",
        findings="Heart size normal.",
        findings_hash=findings_hash,
        report_json={"accession": accession},
        draft_text="No acute disease.",
        model_id="smollm2-135m",
        adapter_id="radiology",
    )


async def test_migration_creates_the_contract_tables(database: Database) -> None:
    def tables(conn: object) -> dict[str, set[str]]:
        insp = inspect(conn)
        return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}

    async with database.engine.connect() as conn:
        found = await conn.run_sync(tables)
    assert {"inbound_messages", "drafts", "audit_log", "alembic_version"} <= set(found)
    assert {"source_key", "raw_sha256", "outcome", "error"} <= found["inbound_messages"]
    assert {"report_key", "findings_hash", "status", "version", "published_at"} <= found["drafts"]
    assert {"prev_hash", "row_hash", "details"} <= found["audit_log"]


async def test_upgrade_is_idempotent(database: Database) -> None:
    await upgrade_database(database)  # second run: already at head, no error
    await database.ping()


async def test_source_key_is_unique(database: Database) -> None:
    async with database.sessions() as session:
        session.add(_inbound("RIS|MSG1"))
        await session.commit()
    async with database.sessions() as session:
        session.add(_inbound("RIS|MSG1"))
        with pytest.raises(IntegrityError):
            await session.commit()


async def test_accession_and_findings_hash_are_a_second_idempotency_key(
    database: Database,
) -> None:
    async with database.sessions() as session:
        first, second = _inbound("RIS|A"), _inbound("RIS|B")
        session.add_all([first, second])
        await session.flush()
        first_id, second_id = first.id, second.id
        session.add(_draft(first_id, "RIS|A#0", "ACC1", "f" * 64))
        await session.commit()
        session.add(_draft(second_id, "RIS|B#0", "ACC1", "f" * 64))
        with pytest.raises(IntegrityError):
            await session.commit()
        await session.rollback()
        session.add(_draft(second_id, "RIS|B#0", "ACC1", "e" * 64))  # new findings: allowed
        await session.commit()
        count = len((await session.execute(select(DraftRecord))).scalars().all())
    assert count == 2


async def test_timestamps_come_back_timezone_aware_utc(database: Database) -> None:
    moment = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    async with database.sessions() as session:
        row = _inbound("RIS|T")
        row.received_at = moment
        session.add(row)
        await session.commit()
    async with database.sessions() as session:
        stored = (await session.execute(select(InboundMessage))).scalar_one()
    assert stored.received_at == moment
    assert stored.received_at.tzinfo is not None
    assert stored.received_at.utcoffset() == UTC.utcoffset(None)


async def test_naive_timestamps_are_refused(database: Database) -> None:
    async with database.sessions() as session:
        row = _inbound("RIS|N")
        row.received_at = datetime(2024, 1, 1)  # naive on purpose
        session.add(row)
        with pytest.raises(Exception, match="timezone-aware"):
            await session.commit()


async def test_unreachable_database_is_a_retriable_storage_error() -> None:
    db = open_database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    with pytest.raises(StorageError) as info:
        await db.ping()
    assert info.value.retriable
    await db.dispose()


@pytest.mark.parametrize(
    "url", ["sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite://", "sqlite+aiosqlite:///"]
)
def test_in_memory_sqlite_is_refused_with_a_clear_error(url: str) -> None:
    # Each pooled connection would see its own empty database (no migrations, no rows).
    with pytest.raises(StorageError, match="in-memory SQLite is not supported"):
        open_database(url)
