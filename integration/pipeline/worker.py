"""The Kafka worker: consume, process concurrently, commit only what is done.

Guarantees (see docs/architecture.md):

* **At least once.**  Auto-commit is off.  A partition's offset is committed only up to the
  lowest offset that is not finished yet (:class:`PartitionOffsets`), and a message is
  finished only after the processor has stored its draft and Kafka acknowledged its outputs.
  A crash re-delivers everything after the last commit; the processor's idempotency keys turn
  that into re-publishing, never into a second draft.
* **Per-study order.**  Messages of one partition with the same Kafka key (accession) are
  processed one after the other; different keys run concurrently.
* **Bounded concurrency and backpressure.**  At most ``max_in_flight`` messages are in
  process; at the limit every partition is paused (the consumer keeps polling, so it stays in
  the group) instead of buffering.  A partition whose message is being retried is paused too.
* **Failures** are classified by :func:`integration.pipeline.faults.classify`.  An *infrastructure*
  fault (database, broker or model server down) pauses every partition and waits on the
  :class:`~integration.pipeline.fault_gate.FaultGate`, which probes the dependency and releases all
  waiting messages on its first success; it is retried without a cap and never dead-letters
  a good message.  A *transient* error of the message is retried with exponential backoff at
  most ``max_attempts`` times, then dead-lettered with the history
  (:class:`~integration.errors.RetriesExhausted`); a fault of the *message* is dead-lettered
  at once.  Nothing is committed past a message that has not finished.  A dead letter that
  cannot be written is retried (the partition waits) -- the message is never dropped.
* **Supervision.**  A message task that still ends with an unexpected error stops the
  worker, and :meth:`run` raises: the process exits non-zero and is restarted, instead of a
  partition stalling silently.
* **Rebalance and shutdown.**  Revoked partitions get ``drain_timeout_s`` to finish their
  in-flight messages; what finished is committed and the rest is released (cancelled), to be
  re-delivered to the new owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from integration.errors import RetriesExhausted, StorageError
from integration.pipeline.fault_gate import FaultGate
from integration.pipeline.faults import Fault, classify
from integration.pipeline.metrics import PipelineMetrics
from integration.pipeline.processor import InboundRecord, ProcessResult

__all__ = ["PartitionOffsets", "RetryPolicy", "Worker", "backoff_delay"]

log = logging.getLogger(__name__)

Handler = Callable[[InboundRecord], Awaitable[ProcessResult]]
DeadLetter = Callable[[InboundRecord, BaseException], Awaitable[ProcessResult]]


class PartitionOffsets:
    """Offsets taken from one partition and which of them are finished.

    ``committable()`` is the offset to commit (next to read): one past the longest finished
    prefix, so nothing unfinished is ever skipped.
    """

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._committable: int | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, offset: int) -> None:
        if self._pending and offset <= self._pending[-1]:
            raise ValueError(f"offset {offset} is not after {self._pending[-1]}")
        self._pending.append(offset)

    def complete(self, offset: int) -> None:
        self._done.add(offset)
        while self._pending and self._pending[0] in self._done:
            first = self._pending.popleft()
            self._done.discard(first)
            self._committable = first + 1

    def committable(self) -> int | None:
        return self._committable


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 1.0
    max_s: float = 30.0


def backoff_delay(attempt: int, policy: RetryPolicy, *, jitter: float = 0.2) -> float:
    """Exponential backoff with ±``jitter`` (attempt 1 waits about ``initial_s``)."""
    base = min(policy.max_s, policy.initial_s * 2 ** max(0, attempt - 1))
    return float(max(0.0, base * (1 + random.uniform(-jitter, jitter))))


@dataclass
class _PartitionState:
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    key_tails: dict[bytes | None, asyncio.Task[None]] = field(default_factory=dict)
    retrying: int = 0
    committed: int | None = None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._worker._release(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._worker._assigned(list(assigned))


class Worker:
    """One consumer-group member over ``topics``; run with :meth:`run`, stop with :meth:`stop`."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topics: list[str],
        *,
        handler: Handler,
        dead_letter: DeadLetter,
        max_in_flight: int = 32,
        retry: RetryPolicy | None = None,
        drain_timeout_s: float = 20.0,
        commit_interval_s: float = 0.2,
        metrics: PipelineMetrics | None = None,
        gate: FaultGate | None = None,
        max_attempts: int = 5,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.consumer = consumer
        self.topics = topics
        self.handler = handler
        self.dead_letter_handler = dead_letter
        self.max_in_flight = max_in_flight
        self.retry = retry or RetryPolicy()
        self.drain_timeout_s = drain_timeout_s
        self.commit_interval_s = commit_interval_s
        self.metrics = metrics or PipelineMetrics()
        self.gate = gate or FaultGate(metrics=self.metrics)
        self.max_attempts = max_attempts
        self._failure: BaseException | None = None
        self._partitions: dict[TopicPartition, _PartitionState] = {}
        self._in_flight = 0
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._started = asyncio.Event()
        self._last_commit = 0.0
        self._last_lag = 0.0
        self.processed = 0

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def started(self) -> bool:
        return self._started.is_set()

    def stop(self) -> None:
        """Ask :meth:`run` to finish in-flight work, commit and leave the group."""
        self._stopping.set()

    async def run(self) -> None:
        self.consumer.subscribe(self.topics, listener=_Rebalance(self))
        await self.consumer.start()
        self._started.set()
        self.metrics.last_progress.set_to_current_time()
        log.info("worker consuming %s", ", ".join(self.topics))
        try:
            while not self._stopping.is_set():
                await self._poll_once()
                await self._maybe_commit()
                self._maybe_report_lag()
            await self._release(list(self._partitions))
        finally:
            await self.gate.close()
            with contextlib.suppress(KafkaError):
                await self.consumer.stop()
            log.info("worker stopped after %d message(s)", self.processed)
        if self._failure is not None:
            raise RuntimeError(
                f"a message task failed: {type(self._failure).__name__}"
            ) from self._failure

    # --- polling, backpressure -----------------------------------------------------------

    def _set_paused(self) -> None:
        assignment = self.consumer.assignment()
        full = self._in_flight >= self.max_in_flight or self.gate.paused
        pause, resume = [], []
        for tp in assignment:
            state = self._partitions.get(tp)
            if full or (state is not None and state.retrying > 0):
                pause.append(tp)
            else:
                resume.append(tp)
        if pause:
            self.consumer.pause(*pause)
        if resume:
            self.consumer.resume(*resume)
        self.metrics.paused_partitions.set(len(pause))

    async def _poll_once(self) -> None:
        self._set_paused()
        room = self.max_in_flight - self._in_flight
        if room <= 0 or self.gate.paused:
            # Paused: wait for a slot, polling now and then to stay in the group.
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), timeout=0.5)
            await self.consumer.getmany(timeout_ms=0)
            return
        batches = await self.consumer.getmany(timeout_ms=100, max_records=room)
        for tp, records in batches.items():
            state = self._partitions.setdefault(tp, _PartitionState())
            for record in records:
                self._schedule(tp, state, record)

    def _schedule(self, tp: TopicPartition, state: _PartitionState, record: Any) -> None:
        inbound = InboundRecord(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            value=record.value or b"",
            key=record.key,
            timestamp_ms=record.timestamp,
        )
        state.offsets.add(record.offset)
        previous = state.key_tails.get(record.key)
        self._in_flight += 1
        self.metrics.in_flight.set(self._in_flight)
        task = asyncio.create_task(self._run_one(tp, state, inbound, previous))
        state.tasks.add(task)
        state.key_tails[record.key] = task

        def finished(done: asyncio.Task[None]) -> None:
            if not done.cancelled() and done.exception() is not None:
                # _run_one handles every error; this is a bug. Stop loudly, never stall.
                self.metrics.worker_failures.inc()
                log.critical(
                    "message task %s@%d failed: %s; stopping the worker",
                    tp, record.offset, type(done.exception()).__name__,
                )  # fmt: skip
                self._failure = self._failure or done.exception()
                self._stopping.set()
            state.tasks.discard(done)
            if state.key_tails.get(record.key) is done:
                del state.key_tails[record.key]
            self._in_flight -= 1
            self.metrics.in_flight.set(self._in_flight)
            self._slot_freed.set()

        task.add_done_callback(finished)

    async def _run_one(
        self,
        tp: TopicPartition,
        state: _PartitionState,
        record: InboundRecord,
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:  # same study: strictly after the previous message
            await asyncio.wait([previous])
        started = time.perf_counter()
        attempt = 0
        history: list[str] = []
        while True:
            try:
                result = await self.handler(record)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                kind = classify(exc)
                name = type(exc).__name__
                if kind.fault is Fault.MESSAGE:
                    # A traceback only for our own bugs: driver errors carry SQL parameters.
                    log.error(
                        "%s on %s@%d; dead-lettering", name, tp, record.offset,
                        exc_info=log.isEnabledFor(10) and not isinstance(exc, StorageError),
                    )  # fmt: skip
                    result = await self._dead_letter(tp, state, record, exc)
                    break
                self.metrics.retries.labels(name).inc()
                if kind.fault is Fault.INFRASTRUCTURE:
                    assert kind.dependency is not None
                    self.gate.trip(kind.dependency, exc)
                    await self._wait_for_gate(state)
                    continue
                attempt += 1
                history.append(name)
                if attempt >= self.max_attempts:
                    log.error(
                        "%s on %s@%d, attempt %d of %d; dead-lettering",
                        name, tp, record.offset, attempt, self.max_attempts,
                    )  # fmt: skip
                    exhausted = RetriesExhausted(attempt, history)
                    exhausted.__cause__ = exc
                    result = await self._dead_letter(tp, state, record, exhausted)
                    break
                delay = backoff_delay(attempt, self.retry)
                log.warning(
                    "retriable %s on %s@%d (attempt %d of %d); retrying in %.1fs",
                    name, tp, record.offset, attempt, self.max_attempts, delay,
                )  # fmt: skip
                state.retrying += 1
                try:
                    await asyncio.sleep(delay)
                finally:
                    state.retrying -= 1
        self.processed += 1
        self.gate.progressed()
        self.metrics.last_progress.set_to_current_time()
        self.metrics.messages.labels(record.topic, result.outcome).inc()
        self.metrics.processing.observe(time.perf_counter() - started)
        state.offsets.complete(record.offset)

    async def _wait_for_gate(self, state: _PartitionState) -> None:
        state.retrying += 1
        try:
            await self.gate.wait()
        finally:
            state.retrying -= 1

    async def _dead_letter(
        self,
        tp: TopicPartition,
        state: _PartitionState,
        record: InboundRecord,
        exc: BaseException,
    ) -> ProcessResult:
        """Dead-letter ``record``; keeps trying (the partition waits) until that succeeds."""
        attempt = 0
        while True:
            try:
                return await self.dead_letter_handler(record, exc)
            except asyncio.CancelledError:
                raise
            except Exception as dl_exc:
                kind = classify(dl_exc)
                self.metrics.dead_letter_failures.labels(type(dl_exc).__name__).inc()
                if kind.fault is Fault.INFRASTRUCTURE:
                    assert kind.dependency is not None
                    self.gate.trip(kind.dependency, dl_exc)
                    await self._wait_for_gate(state)
                    continue
                attempt += 1
                delay = backoff_delay(attempt, self.retry)
                log.error(
                    "dead-lettering %s@%d failed (%s, attempt %d); retrying in %.1fs",
                    tp, record.offset, type(dl_exc).__name__, attempt, delay,
                )  # fmt: skip
                state.retrying += 1
                try:
                    await asyncio.sleep(delay)
                finally:
                    state.retrying -= 1

    # --- commits, rebalance --------------------------------------------------------------

    async def _commit(self, tps: Iterable[TopicPartition]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for tp in tps:
            state = self._partitions.get(tp)
            if state is None:
                continue
            position = state.offsets.committable()
            if position is not None and position != state.committed:
                offsets[tp] = position
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # Lost the partition (rebalance) or the broker: the new owner re-delivers, and the
            # processor's idempotency makes that harmless.
            log.warning(
                "offset commit failed (%s); messages may be re-delivered", type(exc).__name__
            )
            return
        for tp, position in offsets.items():
            self._partitions[tp].committed = position
        self.metrics.commits.inc()

    async def _maybe_commit(self) -> None:
        now = time.monotonic()
        if now - self._last_commit >= self.commit_interval_s:
            self._last_commit = now
            await self._commit(list(self._partitions))

    def _maybe_report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < 5.0:
            return
        self._last_lag = now
        for tp, state in self._partitions.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                committed = state.committed or 0
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, highwater - committed)
                )

    def _assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self._partitions.setdefault(tp, _PartitionState())
        log.info("assigned %d partition(s)", len(assigned))

    async def _release(self, revoked: list[TopicPartition]) -> None:
        """Let in-flight work of ``revoked`` finish (bounded), commit it, cancel the rest."""
        tasks = [t for tp in revoked if tp in self._partitions for t in self._partitions[tp].tasks]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.drain_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                log.warning("released %d unfinished message(s) on revoke", len(pending))
        await self._commit(revoked)
        for tp in revoked:
            self._partitions.pop(tp, None)
        if revoked:
            log.info("revoked %d partition(s)", len(revoked))
