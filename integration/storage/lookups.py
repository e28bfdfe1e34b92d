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

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from integration.storage.db import Database, DraftRecord, InboundMessage
from integration.storage.repository import lookup

__all__ = ["Known", "LookupBatcher"]


@dataclass(frozen=True)
class Known:
    """What the database knew of one message when it was looked up."""

    inbound: InboundMessage | None
    # (accession, findings hash) -> draft
    drafts: Mapping[tuple[str, str], DraftRecord] = field(default_factory=dict)


@dataclass
class _Question:
    source_key: str
    accessions: tuple[str, ...]
    future: asyncio.Future[Known]


class LookupBatcher:
    """Answers :meth:`lookup` calls from concurrent tasks with shared queries."""

    def __init__(self, database: Database, *, max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.database = database
        self.max_batch = max_batch
        self._queue: list[_Question] = []
        self._drainer: asyncio.Task[None] | None = None
        self.reads = 0
        self.questions = 0

    async def lookup(self, source_key: str, accessions: Sequence[str] = ()) -> Known:
        """The stored inbound row for ``source_key`` and the drafts of ``accessions``.

        Raises :class:`~integration.errors.StorageError` when the database fails.
        """
        future: asyncio.Future[Known] = asyncio.get_running_loop().create_future()
        self._queue.append(_Question(source_key, tuple(accessions), future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="lookups")
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = [q for q in self._queue[: self.max_batch] if not q.future.done()]
                del self._queue[: self.max_batch]
                if batch:
                    await self._answer(batch)
        except BaseException:  # cancelled at shutdown: nobody may wait forever
            for question in self._queue:
                question.future.cancel()
            self._queue.clear()
            raise

    async def _answer(self, batch: list[_Question]) -> None:
        keys = sorted({q.source_key for q in batch})
        accessions = sorted({a for q in batch for a in q.accessions})
        try:
            async with self.database.reader() as session:
                inbound, drafts = await lookup(session, source_keys=keys, accessions=accessions)
        except asyncio.CancelledError:
            for question in batch:
                question.future.cancel()
            raise
        except Exception as exc:
            for question in batch:
                if not question.future.done():
                    question.future.set_exception(exc)
            return
        self.reads += 1
        self.questions += len(batch)
        by_key = {row.source_key: row for row in inbound}
        by_accession: dict[str, dict[tuple[str, str], DraftRecord]] = {}
        for draft in drafts:
            if draft.accession is not None:
                pair = (draft.accession, draft.findings_hash)
                by_accession.setdefault(draft.accession, {})[pair] = draft
        for question in batch:
            if question.future.done():  # the caller was cancelled meanwhile
                continue
            known: dict[tuple[str, str], DraftRecord] = {}
            for accession in question.accessions:
                known.update(by_accession.get(accession, {}))
            question.future.set_result(Known(by_key.get(question.source_key), known))
