"""Coalesced idempotency look-ups on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from inference.types import Draft
from integration.errors import StorageError
from integration.report.model import RadiologyReport
from integration.storage import repository as store
from integration.storage.db import Database, open_database
from integration.storage.lookups import LookupBatcher


async def _seed(database: Database) -> tuple[str, str]:
    report = RadiologyReport(
        source_format="hl7v2", source_system="RIS", message_id="M1", accession="ACC1",
        findings="Heart size is normal.",
    )  # fmt: skip
    draft = Draft(
        text="Normal.", raw_text="Normal.", model_id="m", adapter_id="radiology",
        prompt_tokens=1, generated_tokens=1, latency_s=0.0, finish_reason="eos_token",
        backend="instant",
    )  # fmt: skip
    async with database.sessions() as session:
        inbound = await store.record_inbound(
            session, source_key="RIS|M1", topic="t", partition=0, offset=0,
            source_format="hl7v2", raw_sha256="a" * 64, outcome="drafted",
        )  # fmt: skip
        row = await store.insert_draft(
            session, inbound_id=inbound.id, report_key="RIS|M1#0", report=report, draft=draft,
            adapter_version="1",
        )  # fmt: skip
        await session.commit()
    return inbound.id, row.id


async def test_concurrent_lookups_share_reads_and_get_their_own_answers(
    database: Database,
) -> None:
    inbound_id, draft_id = await _seed(database)
    batcher = LookupBatcher(database)
    questions = [("RIS|M1", ["ACC1"]), ("RIS|M2", ["ACC1"]), ("RIS|M3", ["ACC9"])] * 20
    answers = await asyncio.gather(*(batcher.lookup(k, a) for k, a in questions))

    assert batcher.questions == 60
    assert batcher.reads < 60  # coalesced: the first read answers one, the next the rest
    for (key, accessions), known in zip(questions, answers, strict=True):
        if key == "RIS|M1":
            assert known.inbound is not None and known.inbound.id == inbound_id
        else:
            assert known.inbound is None
        if accessions == ["ACC1"]:
            [(pair, draft)] = known.drafts.items()
            assert pair[0] == "ACC1" and draft.id == draft_id
            assert pair[1] == draft.findings_hash
        else:
            assert known.drafts == {}


async def test_a_database_failure_reaches_every_waiting_caller(db_url: str) -> None:
    database = open_database(db_url)  # not migrated: the tables do not exist
    try:
        batcher = LookupBatcher(database)
        results = await asyncio.gather(
            *(batcher.lookup(f"RIS|{i}", ["ACC"]) for i in range(5)), return_exceptions=True
        )
    finally:
        await database.dispose()
    assert len(results) == 5
    assert all(isinstance(r, StorageError) for r in results)
    assert all(r.retriable for r in results if isinstance(r, StorageError))


async def test_max_batch_must_be_positive(database: Database) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        LookupBatcher(database, max_batch=0)
