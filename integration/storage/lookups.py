"""Coalesced idempotency look-ups: the reads of concurrent messages share one query.

Before drafting, every message needs two answers from the database: was this message (its
source key) seen before, and which drafts exist for its accessions (the second idempotency
key is accession + findings hash; the pending ones are what a newer report supersedes).
:meth:`LookupBatcher.lookup` queues the question and returns when the answer is in; while a
read is running, the questions that arrive queue up and the next read answers all of them
with one ``IN`` query per table -- the read-side twin of
:class:`~integration.storage.group_commit.GroupCommitter`.  An idle service reads at once.

The answer is a snapshot, exactly like the separate read it replaces: a row written after
it is not in it, and the unique keys of the write transaction catch the race (the worker
retries the message, which then finds the row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from integration.storage.batch_queue import BatchQueue, Pending, settle, settle_all
from integration.storage.db import Database, DraftRecord, InboundMessage
from integration.storage.repository import lookup

__all__ = ["Known", "LookupBatcher"]


@dataclass(frozen=True)
class Known:
    """What the database knew of one message when it was looked up."""

    inbound: InboundMessage | None
    # (accession, findings hash) -> draft
    drafts: Mapping[tuple[str, str], DraftRecord] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Question:
    source_key: str
    accessions: tuple[str, ...]


class LookupBatcher:
    """Answers :meth:`lookup` calls from concurrent tasks with shared queries."""

    def __init__(self, database: Database, *, max_batch: int = 256) -> None:
        self.database = database
        self._queue: BatchQueue[_Question, Known] = BatchQueue(
            self._answer, max_batch=max_batch, name="lookups"
        )
        self.max_batch = self._queue.max_batch
        self.reads = 0
        self.questions = 0

    async def lookup(self, source_key: str, accessions: Sequence[str] = ()) -> Known:
        """The stored inbound row for ``source_key`` and the drafts of ``accessions``.

        Raises :class:`~integration.errors.StorageError` when the database fails.
        """
        return await self._queue.submit(_Question(source_key, tuple(accessions)))

    async def _answer(self, batch: list[Pending[_Question, Known]]) -> None:
        keys = sorted({p.item.source_key for p in batch})
        accessions = sorted({a for p in batch for a in p.item.accessions})
        try:
            async with self.database.reader() as session:
                inbound, drafts = await lookup(session, source_keys=keys, accessions=accessions)
        except Exception as exc:
            settle_all(batch, exc)
            return
        self.reads += 1
        self.questions += len(batch)
        by_key = {row.source_key: row for row in inbound}
        by_accession: dict[str, dict[tuple[str, str], DraftRecord]] = {}
        for draft in drafts:
            if draft.accession is not None:
                pair = (draft.accession, draft.findings_hash)
                by_accession.setdefault(draft.accession, {})[pair] = draft
        for pending in batch:
            known: dict[tuple[str, str], DraftRecord] = {}
            for accession in pending.item.accessions:
                known.update(by_accession.get(accession, {}))
            settle(pending, Known(by_key.get(pending.item.source_key), known))
