"""The worker's consumer mechanics on the real broker: bounded concurrency, per-key order,
retries that never commit past an unfinished message, dead-lettering of internal faults."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

from aiokafka import TopicPartition

from integration.errors import StorageError
from integration.kafka_client import ensure_topics, make_consumer
from integration.processor import InboundRecord, ProcessResult
from integration.settings import KafkaSettings
from integration.worker import RetryPolicy, Worker

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
