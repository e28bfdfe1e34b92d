"""The one write path (store.Writes: queue, then flush) on SQLite and PostgreSQL.

What a group-commit batch queues must end up exactly as if the units had written one by one:
rows inserted, older pending drafts superseded, a later draft of the same accession in the
batch superseding an earlier one, ``published_at`` set, and the superseded ids filled into the
very list the audit details hold.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from inference.types import Draft
from integration.report.model import RadiologyReport
from integration.storage import repository as store
from integration.storage.db import Database, DraftRecord, InboundMessage


def _report(accession: str, findings: str, message_id: str) -> RadiologyReport:
    return RadiologyReport(
        source_format="hl7v2", source_system="RIS", message_id=message_id,
        accession=accession, patient_id="MRN1", modality="CR", findings=findings,
    )  # fmt: skip


def _draft(text: str = "No acute cardiopulmonary process.") -> Draft:
    return Draft(
        text=text, raw_text=text, model_id="m", adapter_id="radiology", prompt_tokens=10,
        generated_tokens=5, latency_s=0.01, finish_reason="eos_token", backend="instant",
    )  # fmt: skip


async def _statuses(database: Database) -> dict[str, str]:
    async with database.sessions() as session:
        rows = (await session.execute(select(DraftRecord.id, DraftRecord.status))).all()
    return {str(i): str(s) for i, s in rows}


async def test_queued_rows_are_invisible_until_flushed_then_all_written(
    database: Database,
) -> None:
    async with database.sessions() as session:
        writes = store.Writes()
        assert not writes  # nothing queued yet
        inbound = writes.add_inbound(
            source_key="RIS|M1", topic="t", partition=0, offset=7, source_format="hl7v2",
            raw_sha256="a" * 64, outcome="drafted",
        )  # fmt: skip
        superseded: list[str] = []
        row = writes.add_draft(
            inbound_id=inbound.id, report_key="RIS|M1#0",
            report=_report("ACC1", "Heart size is normal.", "M1"), draft=_draft(),
            adapter_version="1", superseded=superseded,
        )  # fmt: skip
        writes.mark_published([row.id])
        assert await store.find_inbound(session, source_key="RIS|M1") is None  # still queued
        assert writes  # queued
        await writes.flush(session)
        assert not writes
        await writes.flush(session)  # a second flush has nothing left to write
        await session.commit()

    async with database.sessions() as session:
        stored = await store.find_inbound(session, source_key="RIS|M1")
        assert stored is not None and stored.id == inbound.id and stored.offset == 7
        draft = await store.find_draft(session, draft_id=row.id)
        assert draft is not None
        assert (draft.status, draft.version, draft.draft_text) == (
            "pending_review", 1, "No acute cardiopulmonary process.",
        )  # fmt: skip
        assert draft.published_at is not None
        assert draft.inbound_id == inbound.id
    assert superseded == []


async def test_new_drafts_supersede_older_pending_ones_in_order(database: Database) -> None:
    # Before the batch: one pending draft of ACC1, one approved draft of ACC1.
    async with database.sessions() as session:
        inbound = await store.record_inbound(
            session, source_key="RIS|OLD", topic="t", partition=0, offset=1,
            source_format="hl7v2", raw_sha256="b" * 64, outcome="drafted",
        )  # fmt: skip
        # (the approved one first: storing a draft supersedes the accession's pending ones)
        approved = await store.insert_draft(
            session, inbound_id=inbound.id, report_key="RIS|OLD#1",
            report=_report("ACC1", "Older findings.", "OLD"), draft=_draft(),
            adapter_version="1",
        )  # fmt: skip
        await session.execute(
            DraftRecord.__table__.update()
            .where(DraftRecord.__table__.c.id == approved.id)
            .values(status="approved")
        )
        old = await store.insert_draft(
            session, inbound_id=inbound.id, report_key="RIS|OLD#0",
            report=_report("ACC1", "Old findings.", "OLD"), draft=_draft(), adapter_version="1",
        )  # fmt: skip
        await session.commit()

    # One batch: two new drafts of ACC1 (from two messages) and one of ACC2.
    lists: list[list[str]] = [[], [], []]
    async with database.sessions() as session:
        writes = store.Writes()
        rows = []
        accessions = ("ACC1", "ACC2", "ACC1")
        for i, (accession, superseded) in enumerate(zip(accessions, lists, strict=True)):
            message = writes.add_inbound(
                source_key=f"RIS|N{i}", topic="t", partition=0, offset=10 + i,
                source_format="hl7v2", raw_sha256="c" * 64, outcome="drafted",
            )  # fmt: skip
            row = writes.add_draft(
                inbound_id=message.id, report_key=f"RIS|N{i}#0",
                report=_report(accession, f"New findings {i}.", f"N{i}"), draft=_draft(),
                adapter_version="1", superseded=superseded,
            )  # fmt: skip
            rows.append(row)
        await writes.flush(session)
        await session.commit()

    first, other, second = rows
    assert lists == [[old.id], [], [first.id]]
    assert (first.status, second.status) == ("superseded", "pending_review")
    statuses = await _statuses(database)
    assert statuses == {
        old.id: "superseded",
        approved.id: "approved",
        first.id: "superseded",
        other.id: "pending_review",
        second.id: "pending_review",
    }


async def test_a_duplicate_key_in_a_flush_is_a_duplicate_key_error(database: Database) -> None:
    async with database.sessions() as session:
        await store.record_inbound(
            session, source_key="RIS|DUP", topic="t", partition=0, offset=1,
            source_format="hl7v2", raw_sha256="d" * 64, outcome="drafted",
        )  # fmt: skip
        await session.commit()
    with pytest.raises(store.DuplicateKeyError):
        async with database.sessions() as session, store.storage_errors():
            writes = store.Writes()
            writes.add_inbound(
                source_key="RIS|DUP", topic="t", partition=0, offset=2,
                source_format="hl7v2", raw_sha256="d" * 64, outcome="drafted",
            )  # fmt: skip
            await writes.flush(session)
    async with database.sessions() as session:
        rows = (await session.execute(select(InboundMessage.offset))).scalars().all()
    assert list(rows) == [1]
