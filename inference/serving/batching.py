"""Dynamic batching for the embedded model.

Requests that arrive within a short window (``window_s``, default 30 ms) are generated
together: grouped by adapter, left-padded, decoded in one batch with per-row stopping
(:meth:`inference.serving.model.LocalModel.generate_batch`).  One worker thread owns the
model; while it runs a batch, new requests queue up and form the next batch at once.  On a
CPU with few cores most of the cost of a decoding step is reading the weights, so a batch of
eight costs little more than one sequence; this is what makes concurrency pay off (see
``bench/bench_batching.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from inference.types import Generation, GenerationRequest

__all__ = ["BatchFn", "BatchStats", "DynamicBatcher"]

log = logging.getLogger(__name__)

BatchFn = Callable[[Sequence[GenerationRequest]], list[Generation]]


@dataclass(slots=True)
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest: int = 0
    sizes: list[int] = field(default_factory=list)

    def record(self, size: int) -> None:
        self.batches += 1
        self.requests += size
        self.largest = max(self.largest, size)
        if len(self.sizes) < 10_000:
            self.sizes.append(size)


@dataclass(slots=True)
class _Pending:
    request: GenerationRequest
    future: asyncio.Future[Generation]
    arrived: float


class DynamicBatcher:
    """Collects concurrent requests into batches for a synchronous batch function."""

    def __init__(
        self,
        batch_fn: BatchFn,
        *,
        window_s: float = 0.03,
        max_batch_size: int = 16,
    ) -> None:
        if window_s < 0:
            raise ValueError("window_s must not be negative")
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._batch_fn = batch_fn
        self.window_s = window_s
        self.max_batch_size = max_batch_size
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radgpt-model")
        self._closed = False

    async def submit(self, request: GenerationRequest) -> Generation:
        """Queue ``request`` and wait for its generation."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        loop = asyncio.get_running_loop()
        if (
            self._queue is None
            or self._worker is None
            or self._worker.done()
            or self._worker.get_loop() is not loop  # a new event loop (e.g. a startup check)
        ):
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run(), name="radgpt-batcher")
        future: asyncio.Future[Generation] = loop.create_future()
        await self._queue.put(_Pending(request, future, time.monotonic()))
        return await future

    async def _collect(self, queue: asyncio.Queue[_Pending]) -> list[_Pending]:
        first = await queue.get()
        batch = [first]
        deadline = first.arrived + self.window_s
        while len(batch) < self.max_batch_size:
            try:
                batch.append(queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        while True:
            pending = await self._collect(queue)
            groups: dict[str | None, list[_Pending]] = {}
            for item in pending:
                if not item.future.done():  # the caller may have gone away
                    groups.setdefault(item.request.adapter_id, []).append(item)
            for items in groups.values():
                self.stats.record(len(items))
                requests = [p.request for p in items]
                try:
                    results = await loop.run_in_executor(self._executor, self._batch_fn, requests)
                except Exception as exc:
                    for p in items:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                for p, result in zip(items, results, strict=True):
                    if not p.future.done():
                        p.future.set_result(result)

    async def aclose(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=False, cancel_futures=True)
