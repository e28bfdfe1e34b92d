"""Unit tests of the dynamic batcher (a plain batch function stands in for the model)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from inference.serving.batching import DynamicBatcher
from inference.types import Generation, GenerationRequest


class Recorder:
    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.adapters: list[set[str | None]] = []
        self.threads: set[int] = set()
        self.fail_on = fail_on

    def __call__(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.threads.add(threading.get_ident())
        self.batches.append([r.prompt for r in requests])
        self.adapters.append({r.adapter_id for r in requests})
        if self.fail_on is not None and any(r.prompt == self.fail_on for r in requests):
            raise RuntimeError("model failure")
        return [Generation(r.prompt.upper(), 1, 1, "eos_token", 0.0) for r in requests]


def request(prompt: str, adapter: str | None = "radiology") -> GenerationRequest:
    return GenerationRequest(prompt=prompt, max_new_tokens=4, adapter_id=adapter)


async def test_concurrent_requests_form_one_batch_in_order() -> None:
    fn = Recorder()
    batcher = DynamicBatcher(fn, window_s=0.05, max_batch_size=8)
    try:
        results = await asyncio.gather(*(batcher.submit(request(f"p{i}")) for i in range(5)))
    finally:
        await batcher.aclose()
    assert [r.text for r in results] == [f"P{i}" for i in range(5)]
    assert fn.batches == [[f"p{i}" for i in range(5)]]
    assert threading.get_ident() not in fn.threads  # the model runs in a worker thread


async def test_batches_are_capped_and_grouped_by_adapter() -> None:
    fn = Recorder()
    batcher = DynamicBatcher(fn, window_s=0.05, max_batch_size=4)
    try:
        await asyncio.gather(
            *(batcher.submit(request(f"p{i}", "a" if i % 2 else None)) for i in range(6))
        )
    finally:
        await batcher.aclose()
    assert all(len(adapters) == 1 for adapters in fn.adapters)
    assert sorted(len(b) for b in fn.batches) == [1, 1, 2, 2]
    assert max(len(b) for b in fn.batches) <= 4
    assert batcher.stats.requests == 6


async def test_a_failing_batch_fails_its_requests_only() -> None:
    fn = Recorder(fail_on="bad")
    batcher = DynamicBatcher(fn, window_s=0.0, max_batch_size=1)
    try:
        with pytest.raises(RuntimeError, match="model failure"):
            await batcher.submit(request("bad"))
        assert (await batcher.submit(request("good"))).text == "GOOD"
    finally:
        await batcher.aclose()


async def test_sequential_requests_are_not_delayed_by_more_than_the_window() -> None:
    fn = Recorder()
    batcher = DynamicBatcher(fn, window_s=0.02, max_batch_size=8)
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        for i in range(3):
            await batcher.submit(request(f"p{i}"))
        elapsed = loop.time() - start
    finally:
        await batcher.aclose()
    assert fn.batches == [["p0"], ["p1"], ["p2"]]
    assert elapsed < 1.0


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        DynamicBatcher(Recorder(), max_batch_size=0)
