"""The hash-chained audit log: appends, verification, tampering and concurrency."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from integration.audit.log import (
    GENESIS_HASH,
    AuditFilters,
    PageRequest,
    append_event,
    query_events,
    verify_chain,
)
from integration.storage.db import Database, utcnow


async def _append(db: Database, n: int, *, actor: str = "pipeline") -> None:
    for i in range(n):
        async with db.sessions() as session:
            await append_event(
                session,
                actor=actor,
                actor_role="system",
                action="drafted" if i % 2 else "received",
                entity_type="draft",
                entity_id=f"d-{i}",
                accession=f"ACC{i % 3}",
                patient_id="MRN9",
                details={"findings_sha256": "ab" * 32, "count": i},
            )
            await session.commit()


async def test_empty_chain_verifies(database: Database) -> None:
    async with database.sessions() as session:
        report = await verify_chain(session)
    assert report.ok and report.checked == 0 and report.head_hash == GENESIS_HASH


async def test_appended_rows_link_to_each_other(database: Database) -> None:
    await _append(database, 5)
    async with database.sessions() as session:
        report = await verify_chain(session, batch_size=2)
        page = await query_events(session, page=PageRequest(limit=10, newest_first=False))
    assert report.ok and report.checked == 5
    assert page.items[0].prev_hash == GENESIS_HASH
    for before, after in zip(page.items, page.items[1:], strict=False):
        assert after.prev_hash == before.row_hash
    assert report.head_hash == page.items[-1].row_hash


async def test_rolled_back_events_leave_no_trace(database: Database) -> None:
    await _append(database, 2)
    async with database.sessions() as session:
        await append_event(
            session, actor="x", actor_role="system", action="received",
            entity_type="message", entity_id="m",
        )  # fmt: skip
        await session.rollback()
    async with database.sessions() as session:
        assert (await verify_chain(session)).checked == 2


async def test_concurrent_appends_keep_one_linear_chain(database: Database) -> None:
    await asyncio.gather(*(_append(database, 6, actor=f"worker-{w}") for w in range(4)))
    async with database.sessions() as session:
        report = await verify_chain(session)
    assert report.ok, report.reason
    assert report.checked == 24


async def test_report_text_is_refused_in_details(database: Database) -> None:
    async with database.sessions() as session:
        with pytest.raises(ValueError, match="report text"):
            await append_event(
                session, actor="x", actor_role="system", action="drafted",
                entity_type="draft", entity_id="d", details={"findings": "Heart normal."},
            )  # fmt: skip
        with pytest.raises(ValueError, match="unknown audit action"):
            await append_event(
                session, actor="x", actor_role="system", action="deleted",
                entity_type="draft", entity_id="d",
            )  # fmt: skip


async def test_query_filters_and_pages(database: Database) -> None:
    await _append(database, 7)
    async with database.sessions() as session:
        page = await query_events(
            session, AuditFilters(accession="ACC0"), PageRequest(limit=2, offset=0)
        )
        assert page.total == 3 and len(page.items) == 2 and page.next_offset == 2
        assert all(e.accession == "ACC0" for e in page.items)
        assert page.items[0].id > page.items[1].id  # newest first
        last = await query_events(
            session, AuditFilters(accession="ACC0"), PageRequest(limit=2, offset=2)
        )
        assert len(last.items) == 1 and last.next_offset is None
        drafted = await query_events(session, AuditFilters(action="drafted", outcome="success"))
        assert drafted.total == 3
        future = await query_events(session, AuditFilters(since=utcnow() + timedelta(hours=1)))
        assert future.total == 0


async def _tamper(db: Database, sql: str) -> None:
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":  # a rogue DBA (superuser) disables the guard first
            await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        await conn.execute(text(sql))


async def test_modified_row_is_detected(database: Database) -> None:
    await _append(database, 5)
    await _tamper(database, "UPDATE audit_log SET entity_id = 'forged' WHERE id = 3")
    async with database.sessions() as session:
        report = await verify_chain(session)
    assert not report.ok and report.first_broken_id == 3 and report.checked == 2
    assert "modified" in (report.reason or "")


async def test_deleted_row_is_detected(database: Database) -> None:
    await _append(database, 5)
    await _tamper(database, "DELETE FROM audit_log WHERE id = 2")
    async with database.sessions() as session:
        report = await verify_chain(session)
    assert not report.ok and report.first_broken_id == 3
    assert "deleted" in (report.reason or "")


async def test_postgres_trigger_rejects_update_and_delete(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL only")
    await _append(database, 1)
    for sql in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with database.engine.begin() as conn:
                await conn.execute(text(sql))
