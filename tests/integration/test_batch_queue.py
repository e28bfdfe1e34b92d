"""The queue-and-drain loop shared by the group committer and the look-up coalescer."""

from __future__ import annotations

import asyncio

import pytest

from integration.storage.batch_queue import BatchQueue, Pending, settle, settle_all


async def test_items_that_arrive_while_a_batch_runs_share_the_next_one() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def handle(batch: list[Pending[int, int]]) -> None:
        batches.append([p.item for p in batch])
        if len(batches) == 1:
            await gate.wait()
        for p in batch:
            settle(p, p.item * 10)

    queue: BatchQueue[int, int] = BatchQueue(handle, max_batch=3)
    first = asyncio.create_task(queue.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(queue.submit(n)) for n in (2, 3, 4, 5)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(first, *rest) == [10, 20, 30, 40, 50]
    assert batches == [[1], [2, 3, 4], [5]]  # idle: at once; busy: batched, max_batch each


async def test_a_failed_batch_fails_its_callers_and_the_queue_goes_on() -> None:
    async def handle(batch: list[Pending[str, str]]) -> None:
        if any(p.item == "bad" for p in batch):
            settle_all(batch, ValueError("refused"))
            return
        for p in batch:
            settle(p, p.item.upper())

    queue: BatchQueue[str, str] = BatchQueue(handle, max_batch=8)
    with pytest.raises(ValueError, match="refused"):
        await queue.submit("bad")
    assert await queue.submit("good") == "GOOD"


async def test_a_cancelled_caller_is_dropped_before_its_batch() -> None:
    seen: list[int] = []
    gate = asyncio.Event()

    async def handle(batch: list[Pending[int, int]]) -> None:
        seen.extend(p.item for p in batch)
        await gate.wait()
        for p in batch:
            settle(p, p.item)

    queue: BatchQueue[int, int] = BatchQueue(handle, max_batch=8)
    running = asyncio.create_task(queue.submit(1))
    await asyncio.sleep(0)
    dropped = asyncio.create_task(queue.submit(2))
    kept = asyncio.create_task(queue.submit(3))
    await asyncio.sleep(0)
    dropped.cancel()
    gate.set()
    assert await running == 1 and await kept == 3
    assert seen == [1, 3]


def test_bad_sizes_are_refused() -> None:
    async def handle(batch: list[Pending[int, int]]) -> None: ...

    with pytest.raises(ValueError, match="max_batch"):
        BatchQueue(handle, max_batch=0)
    with pytest.raises(ValueError, match="concurrency"):
        BatchQueue(handle, max_batch=1, concurrency=0)
