"""Group commit on SQLite and PostgreSQL: shared transactions, isolated failures, a valid chain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from integration.audit.log import AuditEvent, verify_chain
from integration.storage.db import AuditEntry, Database, InboundMessage
from integration.storage.group_commit import GroupCommitter, UnitOfWork
from integration.storage.repository import DuplicateKeyError, Writes, record_inbound

MakeUnit = Callable[[str, int], UnitOfWork[str]]


def _event(entity_id: str, action: str = "received") -> AuditEvent:
    return AuditEvent(
        actor="radgpt-pipeline",
        actor_role="system",
        action=action,
        entity_type="message",
        entity_id=entity_id,
        details={"topic": "radiology.hl7.oru"},
    )


def _unit(source_key: str, offset: int) -> UnitOfWork[str]:
    """A unit that writes its row at once (queued and flushed in its own step)."""

    async def work(session: AsyncSession, _writes: Writes) -> tuple[str, Sequence[AuditEvent]]:
        row = await record_inbound(
            session,
            source_key=source_key,
            topic="radiology.hl7.oru",
            partition=0,
            offset=offset,
            source_format="hl7v2",
            raw_sha256="b" * 64,
            outcome="drafted",
        )
        return row.id, [_event(row.id), _event(row.id, "drafted")]

    return work


def _queued_unit(source_key: str, offset: int) -> UnitOfWork[str]:
    """Like :func:`_unit`, but the row is queued and written when the batch commits."""

    async def work(_session: AsyncSession, writes: Writes) -> tuple[str, Sequence[AuditEvent]]:
        row = writes.add_inbound(
            source_key=source_key, topic="radiology.hl7.oru", partition=0, offset=offset,
            source_format="hl7v2", raw_sha256="b" * 64, outcome="drafted",
        )  # fmt: skip
        return row.id, [_event(row.id), _event(row.id, "drafted")]

    return work


async def _count(database: Database, model: type[InboundMessage] | type[AuditEntry]) -> int:
    async with database.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_concurrent_units_share_transactions_and_keep_the_chain(
    database: Database, concurrency: int
) -> None:
    committer = GroupCommitter(database, max_batch=16, concurrency=concurrency)
    ids = await asyncio.gather(*(committer.run(_unit(f"RIS|{i}", i)) for i in range(40)))

    assert len(set(ids)) == 40
    assert committer.units == 40
    # 40 concurrent units, at most 16 per transaction: batched, but never over the limit.
    assert 3 <= committer.transactions < 40
    assert await _count(database, InboundMessage) == 40
    assert await _count(database, AuditEntry) == 80
    async with database.sessions() as session:
        report = await verify_chain(session)
        order = (
            await session.execute(select(AuditEntry.entity_id).order_by(AuditEntry.id))
        ).scalars()
        entity_order = list(order)
    assert report.ok and report.checked == 80
    # Each unit's events are consecutive and in the order the unit gave them.
    assert entity_order[0::2] == entity_order[1::2]


@pytest.mark.parametrize("make_unit", [_unit, _queued_unit], ids=["written", "queued"])
async def test_a_failing_unit_fails_alone(database: Database, make_unit: MakeUnit) -> None:
    # "queued": the duplicate key only shows when the batch's queued rows are written at
    # commit time, so the whole batch fails and is committed again unit by unit.
    committer = GroupCommitter(database)
    await committer.run(make_unit("RIS|taken", 0))

    results = await asyncio.gather(
        committer.run(make_unit("RIS|a", 1)),
        committer.run(make_unit("RIS|taken", 2)),  # the idempotency key is stored already
        committer.run(make_unit("RIS|b", 3)),
        return_exceptions=True,
    )

    assert isinstance(results[1], DuplicateKeyError)
    assert results[1].retriable  # the worker retries and then finds the stored row
    assert all(isinstance(r, str) for r in (results[0], results[2]))
    assert await _count(database, InboundMessage) == 3
    assert await _count(database, AuditEntry) == 6  # nothing of the failed unit
    async with database.sessions() as session:
        assert (await verify_chain(session)).ok


async def test_a_unit_cancelled_before_its_transaction_is_dropped(database: Database) -> None:
    committer = GroupCommitter(database)
    gate = asyncio.Event()

    async def slow(session: AsyncSession, _writes: Writes) -> tuple[None, Sequence[AuditEvent]]:
        await gate.wait()
        return None, [_event("slow")]

    first = asyncio.create_task(committer.run(slow))
    await asyncio.sleep(0.05)  # the first transaction is open and waits on the gate
    queued = asyncio.create_task(committer.run(_unit("RIS|cancelled", 1)))
    await asyncio.sleep(0)
    queued.cancel()
    gate.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert await _count(database, InboundMessage) == 0
    assert await _count(database, AuditEntry) == 1


async def test_batch_size_must_be_positive(database: Database) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommitter(database, max_batch=0)
    with pytest.raises(ValueError, match="concurrency"):
        GroupCommitter(database, concurrency=0)


async def test_a_unit_queued_as_the_last_drainer_finishes_is_still_committed(
    database: Database,
) -> None:
    """The caller of a finished unit runs before the drainer's done-callback: a unit queued
    right then must get a drainer of its own, not wait for the next message's (a stall)."""
    committer = GroupCommitter(database)
    first = await committer.run(_unit("RIS|LAST1", 1))
    async with asyncio.timeout(10):  # same task, at once: the old drainer is done, not gone
        second = await committer.run(_unit("RIS|LAST2", 2))
    async with database.sessions() as session:
        stored = (await session.execute(select(InboundMessage.id))).scalars().all()
    assert sorted(stored) == sorted([first, second])


async def test_a_unit_run_right_after_a_commit_is_not_left_waiting(database: Database) -> None:
    """Back-to-back units (the caller resumed by one commit runs the next at once) commit;
    a drainer that had just finished, not yet discarded, once left the second one queued."""
    committer = GroupCommitter(database)
    ids = []
    async with asyncio.timeout(10):  # no extra task between the calls (wait_for adds one)
        for offset in range(5):
            ids.append(await committer.run(_unit(f"src|b2b{offset}", offset)))
    async with database.sessions() as session:
        count = (await session.execute(select(func.count(InboundMessage.id)))).scalar_one()
    assert count == 5 and len(set(ids)) == 5
