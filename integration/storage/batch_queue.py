"""Items from concurrent tasks handled in batches: the queue-and-drain loop of the group
committer (:mod:`~integration.storage.group_commit`) and the look-up coalescer
(:mod:`~integration.storage.lookups`).

A caller :meth:`BatchQueue.submit`\\ s an item and awaits its result.  While a batch is
being handled, the items that arrive queue up and the next batch takes all of them (up to
``max_batch``); an idle queue handles a lone item at once, so batching adds no delay.  The
handler settles each :class:`Pending` it is given (:func:`settle`).  Cancelling a caller
before its batch starts drops its item; shutting the loop down cancels everything queued.
(The embedded model's batcher, :mod:`inference.serving.batching`, waits a time window and
runs in a worker thread: a different policy, kept there.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["BatchQueue", "Pending", "settle", "settle_all"]

Q = TypeVar("Q")
R = TypeVar("R")


@dataclass(slots=True)
class Pending(Generic[Q, R]):
    """One queued item and the future its caller awaits."""

    item: Q
    future: asyncio.Future[R]


def settle(pending: Pending[Q, R], result: R) -> None:
    """Give ``pending`` its result (unless its caller has gone away)."""
    if not pending.future.done():
        pending.future.set_result(result)


def settle_all(batch: list[Pending[Q, R]], exc: BaseException) -> None:
    """Fail every item of ``batch`` whose caller still waits with ``exc``."""
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)


class BatchQueue(Generic[Q, R]):
    """Hands the items of concurrent callers to ``handle`` in batches of ``max_batch``,
    with at most ``concurrency`` batches in progress."""

    def __init__(
        self,
        handle: Callable[[list[Pending[Q, R]]], Awaitable[None]],
        *,
        max_batch: int,
        concurrency: int = 1,
        name: str = "batch-queue",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._handle = handle
        self.max_batch = max_batch
        self.concurrency = concurrency
        self._name = name
        self._queue: list[Pending[Q, R]] = []
        self._drainers: set[asyncio.Task[None]] = set()

    async def submit(self, item: Q) -> R:
        """Queue ``item``; return (or raise) what its batch's handler settles it with."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(Pending(item, future))
        # A drainer that has just finished is done but still in the set until its
        # done-callback runs; counting it would leave this item queued with nobody to drain
        # it (a stall until the next item arrives).
        self._drainers.difference_update([d for d in self._drainers if d.done()])
        if len(self._drainers) < self.concurrency:
            drainer = asyncio.create_task(self._drain(), name=self._name)
            self._drainers.add(drainer)
            drainer.add_done_callback(self._drainers.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = [p for p in self._queue[: self.max_batch] if not p.future.done()]
                del self._queue[: self.max_batch]
                if batch:
                    try:
                        await self._handle(batch)
                    except asyncio.CancelledError:
                        for pending in batch:
                            pending.future.cancel()
                        raise
        except BaseException:  # cancelled at shutdown: nobody may wait forever
            for pending in self._queue:
                pending.future.cancel()
            self._queue.clear()
            raise
