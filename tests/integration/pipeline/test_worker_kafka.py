"""The worker's consumer mechanics on the real broker: bounded concurrency, per-key order,
retries that never commit past an unfinished message, dead-lettering of internal faults."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
from aiokafka import TopicPartition

from integration.app.settings import KafkaSettings
from integration.errors import (
    DatabaseUnavailable,
    DuplicateKeyError,
    RetriesExhausted,
    StorageError,
)
from integration.pipeline.fault_gate import FaultGate
from integration.pipeline.kafka_client import ensure_topics, make_consumer
from integration.pipeline.processor import InboundRecord, ProcessResult
from integration.pipeline.worker import RetryPolicy, Worker

from .conftest import publish


async def test_bounded_ordered_retried_and_committed(kafka_broker: str) -> None:
    topic = f"w{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=kafka_broker, session_timeout_ms=10_000)
    await ensure_topics(kafka, [topic], partitions=2)
    keys = [f"acc-{k}".encode() for k in range(6)]
    messages = [(topic, keys[i % 6], f"{i}".encode()) for i in range(120)]
    messages.append((topic, b"poison", b"boom"))
    await publish(kafka_broker, messages)

    in_flight = peak = 0
    seen: dict[bytes, list[int]] = defaultdict(list)
    failures: dict[int, int] = defaultdict(int)
    dead: list[bytes] = []

    async def handler(record: InboundRecord) -> ProcessResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.01)
            if record.value == b"boom":
                raise KeyError("an internal fault")  # not retriable: dead-lettered
            number = int(record.value)
            if number % 25 == 0 and failures[number] < 2:  # the database blinks twice
                failures[number] += 1
                raise StorageError("database unreachable")
            assert record.key is not None
            seen[record.key].append(number)
            return ProcessResult("drafted", drafts=1)
        finally:
            in_flight -= 1

    async def dead_letter(record: InboundRecord, exc: BaseException) -> ProcessResult:
        dead.append(record.value)
        return ProcessResult("dead_lettered", reason=type(exc).__name__)

    group = f"g{uuid.uuid4().hex[:8]}"
    worker = Worker(
        make_consumer(kafka, group_id=group), [topic], handler=handler, dead_letter=dead_letter,
        max_in_flight=5, retry=RetryPolicy(0.05, 0.2), commit_interval_s=0.05,
    )  # fmt: skip
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 60
    while sum(map(len, seen.values())) + len(dead) < len(messages):
        assert time.monotonic() < deadline, "worker did not finish"
        assert not task.done(), task
        await asyncio.sleep(0.05)
    worker.stop()
    await asyncio.wait_for(task, 30)

    assert peak <= 5
    assert dead == [b"boom"]
    assert all(count == 2 for count in failures.values()) and len(failures) == 5
    for key, numbers in seen.items():  # one study's messages in publish order, once each
        assert numbers == sorted(numbers) and len(numbers) == len(set(numbers)), key
    assert sum(map(len, seen.values())) == 120

    probe = make_consumer(kafka, group_id=group)
    await probe.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(2)]
        committed = [await probe.committed(tp) or 0 for tp in partitions]
    finally:
        await probe.stop()
    assert sum(committed) == len(messages)  # every offset is done, so all are committed


async def _run_worker(
    kafka_broker: str,
    values: list[bytes],
    handler: Any,
    dead_letter: Any,
    *,
    gate: FaultGate | None = None,
    until: Any,
    max_attempts: int = 3,
) -> Worker:
    topic = f"w{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=kafka_broker, session_timeout_ms=10_000)
    await ensure_topics(kafka, [topic], partitions=1)
    await publish(kafka_broker, [(topic, b"k", value) for value in values])
    worker = Worker(
        make_consumer(kafka, group_id=f"g{uuid.uuid4().hex[:8]}"), [topic], handler=handler,
        dead_letter=dead_letter, max_in_flight=4, retry=RetryPolicy(0.05, 0.2),
        commit_interval_s=0.05, gate=gate, max_attempts=max_attempts,
    )  # fmt: skip
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 60
    while not until():
        assert time.monotonic() < deadline, "worker did not finish"
        assert not task.done(), task
        await asyncio.sleep(0.05)
    worker.stop()
    await asyncio.wait_for(task, 30)
    return worker


async def test_a_transient_error_is_retried_at_most_max_attempts_then_dead_lettered(
    kafka_broker: str,
) -> None:
    attempts: dict[bytes, int] = defaultdict(int)
    done: list[bytes] = []
    dead: list[tuple[bytes, BaseException]] = []

    async def handler(record: InboundRecord) -> ProcessResult:
        attempts[record.value] += 1
        if record.value == b"stuck":
            raise DuplicateKeyError("a race that never resolves")
        done.append(record.value)
        return ProcessResult("drafted", drafts=1)

    async def dead_letter(record: InboundRecord, exc: BaseException) -> ProcessResult:
        dead.append((record.value, exc))
        return ProcessResult("dead_lettered")

    await _run_worker(
        kafka_broker, [b"a", b"stuck", b"b"], handler, dead_letter,
        until=lambda: len(done) + len(dead) == 3,
    )  # fmt: skip
    assert done == [b"a", b"b"]  # the one behind it (same key) was not blocked
    assert attempts[b"stuck"] == 3
    ((value, exc),) = dead
    assert value == b"stuck" and isinstance(exc, RetriesExhausted)
    assert exc.history == ["DuplicateKeyError"] * 3 and exc.attempts == 3


async def test_an_infrastructure_fault_pauses_everything_until_the_probe_succeeds(
    kafka_broker: str,
) -> None:
    down_until = time.monotonic() + 10**6
    probes = 0
    done: list[bytes] = []
    paused_seen: list[bool] = []

    async def probe() -> None:
        nonlocal probes
        probes += 1
        if time.monotonic() < down_until:
            raise DatabaseUnavailable("still refusing")

    gate = FaultGate({"database": probe}, probe_initial_s=0.05, probe_max_s=0.2)

    async def handler(record: InboundRecord) -> ProcessResult:
        nonlocal down_until
        if record.value == b"trip" and down_until > time.monotonic() + 1000:
            down_until = time.monotonic() + 1.0  # the database is down for a second
        if time.monotonic() < down_until:
            paused_seen.append(gate.paused)
            raise DatabaseUnavailable("connection refused")
        done.append(record.value)
        return ProcessResult("drafted", drafts=1)

    async def dead_letter(record: InboundRecord, exc: BaseException) -> ProcessResult:
        raise AssertionError(f"dead-lettered {record.value!r} on {type(exc).__name__}")

    values = [b"trip", *(f"m{i}".encode() for i in range(20))]
    await _run_worker(
        kafka_broker, values, handler, dead_letter, gate=gate, max_attempts=1,
        until=lambda: len(done) == len(values),
    )  # fmt: skip
    assert sorted(done) == sorted(values)  # retried past max_attempts=1: not the message's fault
    assert probes >= 3 and gate.recoveries
    dependency, seconds = gate.recoveries[0]
    assert dependency == "database" and 0.9 <= seconds <= 1.6
    assert not gate.paused


async def test_a_dead_letter_that_fails_on_infrastructure_is_retried_not_dropped(
    kafka_broker: str,
) -> None:
    failures = 0
    dead: list[bytes] = []
    gate = FaultGate(probe_initial_s=0.05, probe_max_s=0.1)  # no probe: released after a pause

    async def handler(record: InboundRecord) -> ProcessResult:
        raise KeyError("a bug in this message's path")

    async def dead_letter(record: InboundRecord, exc: BaseException) -> ProcessResult:
        nonlocal failures
        if failures < 3:
            failures += 1
            raise DatabaseUnavailable("the dead-letter write failed too")
        dead.append(record.value)
        return ProcessResult("dead_lettered")

    await _run_worker(
        kafka_broker, [b"x"], handler, dead_letter, gate=gate, until=lambda: dead == [b"x"]
    )
    assert failures == 3


class _Fatal(BaseException):
    """Not an Exception: escapes the task's own handling (stands for a bug)."""


async def test_a_message_task_that_dies_stops_the_worker_with_an_error(
    kafka_broker: str,
) -> None:
    topic = f"w{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=kafka_broker, session_timeout_ms=10_000)
    await ensure_topics(kafka, [topic], partitions=1)
    await publish(kafka_broker, [(topic, b"k", b"boom")])

    async def handler(record: InboundRecord) -> ProcessResult:
        raise _Fatal()

    async def dead_letter(record: InboundRecord, exc: BaseException) -> ProcessResult:
        raise AssertionError("not reached")

    worker = Worker(
        make_consumer(kafka, group_id=f"g{uuid.uuid4().hex[:8]}"), [topic], handler=handler,
        dead_letter=dead_letter, retry=RetryPolicy(0.05, 0.2),
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="message task failed: _Fatal"):
        await asyncio.wait_for(worker.run(), 60)
    assert worker.metrics.worker_failures._value.get() == 1
