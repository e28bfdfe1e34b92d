"""Group commit: the database writes of concurrent messages share one transaction.

Each message's write is a *unit of work*: an async function given the session and the
transaction's :class:`~integration.storage.repository.Writes` (it never commits); it queues
its rows there, reads in the session (flushing the writes first when it must see them) and
returns its result and the audit events that describe it.  The committer writes what the
whole batch queued with one statement per kind before appending the audit events, so a
batch costs a handful of round trips however many units it holds (each round trip is an
event-loop turn, which under load is what bounded the pipeline, not the database).

:meth:`GroupCommitter.run` queues the unit and returns only after the
transaction holding it has committed, so a caller that goes on to publish or to commit a
Kafka offset still does so strictly after its rows are durable.

While a transaction is being written, the units that arrive queue up and the next
transaction takes all of them (up to ``max_batch``): under load many messages share one
transaction, one audit-chain lock, one chain-head read and one commit; an idle service
commits a lone unit at once (no added delay).  Transactions run one at a time by default:
SQLite has one writer anyway, and on PostgreSQL more open transactions (``concurrency``;
only the chain append is serialised, by the advisory lock) made smaller batches and cost
more CPU than they saved in the benchmark on a 2-core machine.  The audit events of a
batch are appended last, in unit order, so the chain lock is held only from the append to
the commit.

If a batch fails (a unique-key race with another replica, a bad audit detail, a value the
database refuses), it is rolled back and its units are run again one per transaction, so only
the unit at fault sees the error -- exactly what it would have seen on its own.  An
infrastructure fault (:mod:`integration.pipeline.faults`) fails the whole batch at once.  Units must
therefore be safe to run twice: they build their rows from their arguments, never from a
previous attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from integration.audit.log import AuditEvent, append_events
from integration.pipeline.faults import Fault, classify
from integration.storage.batch_queue import BatchQueue, Pending, settle, settle_all
from integration.storage.db import Database
from integration.storage.repository import Writes

__all__ = ["GroupCommitter", "UnitOfWork"]

log = logging.getLogger(__name__)

T = TypeVar("T")
UnitOfWork = Callable[[AsyncSession, Writes], Awaitable[tuple[T, Sequence[AuditEvent]]]]


_Unit = Pending[UnitOfWork[Any], Any]


class GroupCommitter:
    """Runs units of work from concurrent tasks in shared transactions."""

    def __init__(self, database: Database, *, max_batch: int = 64, concurrency: int = 1) -> None:
        self.database = database
        self._queue: BatchQueue[UnitOfWork[Any], Any] = BatchQueue(
            self._commit, max_batch=max_batch, concurrency=concurrency, name="group-commit"
        )
        self.max_batch = max_batch
        self.concurrency = concurrency
        self.transactions = 0
        self.units = 0

    async def run(self, work: UnitOfWork[T]) -> T:
        """Run ``work`` in the next transaction; return its result once that has committed.

        Raises what the unit raised (database errors as
        :class:`~integration.errors.StorageError`).  Cancelling the caller before the unit's
        transaction starts drops the unit; once started, the transaction completes anyway.
        """
        result: T = await self._queue.submit(work)
        return result

    async def _commit(self, batch: list[_Unit]) -> None:
        try:
            results = await self._transaction(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(batch) == 1 or classify(exc).fault is Fault.INFRASTRUCTURE:
                # One unit, or the database is down for all of them: no point in retrying
                # the units one by one (each would wait for a connection to fail again).
                settle_all(batch, exc)
                return
            log.info(
                "group commit of %d units failed (%s); committing them one by one",
                len(batch), type(exc).__name__,
            )  # fmt: skip
            for unit in batch:
                await self._commit([unit])
            return
        for unit, result in zip(batch, results, strict=True):
            settle(unit, result)

    async def _transaction(self, batch: list[_Unit]) -> list[Any]:
        results: list[Any] = []
        events: list[AuditEvent] = []
        writes = Writes()  # the transaction's one write path, handed to every unit
        async with self.database.writer() as session:
            for unit in batch:
                result, unit_events = await unit.item(session, writes)
                results.append(result)
                events.extend(unit_events)
            await writes.flush(session)  # what the units queued
            await append_events(session, events)  # last: the chain lock is held to commit
            await session.commit()
        self.transactions += 1
        self.units += len(batch)
        return results
