"""Pausing all consumption while a dependency is down, and resuming as soon as it is back.

When a message fails with an *infrastructure* fault (:mod:`integration.pipeline.faults`) the worker
calls :meth:`FaultGate.trip` with the dependency (database, broker, model server) and waits
in :meth:`FaultGate.wait`.  While any dependency is tripped the worker pauses every partition
(``/readyz`` answers 503, ``radgpt_fault_paused`` is 1).  One probe task per dependency calls
its probe (``SELECT 1``, a metadata request, the model server's health) with a short backoff
(``probe_initial_s`` doubling to ``probe_max_s``); the first success releases every waiting
message at once, so recovery takes at most about ``probe_max_s`` after the dependency
returns -- no per-message backoff or circuit timer has to run out.

A dependency without a probe is released after the same backoff; the messages' own retry
then trips the gate again if it is still down.  Trips that repeat without any message
finishing in between (a fault the probe cannot see, e.g. a wrong adapter) wait longer each
time, up to ``max_wait_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from integration.pipeline.faults import Dependency
from integration.pipeline.metrics import PipelineMetrics

__all__ = ["FaultGate", "Probe"]

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[object]]
DEPENDENCIES: tuple[Dependency, ...] = ("database", "broker", "model")


class FaultGate:
    """Which dependencies are down now, their probes, and the waiters on their return."""

    def __init__(
        self,
        probes: Mapping[Dependency, Probe] | None = None,
        *,
        probe_initial_s: float = 0.2,
        probe_max_s: float = 2.0,
        probe_timeout_s: float = 5.0,
        max_wait_s: float = 30.0,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        if probe_initial_s <= 0 or probe_max_s < probe_initial_s:
            raise ValueError("need 0 < probe_initial_s <= probe_max_s")
        self.probes = dict(probes or {})
        self.probe_initial_s = probe_initial_s
        self.probe_max_s = probe_max_s
        self.probe_timeout_s = probe_timeout_s
        self.max_wait_s = max(max_wait_s, probe_max_s)
        self.metrics = metrics
        self._down: dict[Dependency, str] = {}
        self._since: dict[Dependency, float] = {}
        self._probing: dict[Dependency, asyncio.Task[None]] = {}
        self._clear = asyncio.Event()
        self._clear.set()
        self._trips_without_progress = 0
        self._closing = False
        self.recoveries: list[tuple[Dependency, float]] = []  # (dependency, seconds down)
        for dependency in DEPENDENCIES:
            self._gauge(dependency, 0)

    @property
    def paused(self) -> bool:
        return bool(self._down)

    @property
    def down(self) -> dict[Dependency, str]:
        """Tripped dependencies and the error class that tripped each."""
        return dict(self._down)

    def _gauge(self, dependency: Dependency, value: int) -> None:
        if self.metrics is not None:
            self.metrics.fault_paused.labels(dependency).set(value)

    def trip(self, dependency: Dependency, exc: BaseException) -> None:
        """Mark ``dependency`` down (idempotent) and start probing it."""
        if dependency in self._down:
            return
        self._down[dependency] = type(exc).__name__
        self._since[dependency] = time.monotonic()
        self._clear.clear()
        self._gauge(dependency, 1)
        self._trips_without_progress += 1
        log.warning(
            "%s unavailable (%s): consumption paused, probing", dependency, type(exc).__name__
        )
        self._probing[dependency] = asyncio.create_task(
            self._probe(dependency), name=f"probe-{dependency}"
        )

    def progressed(self) -> None:
        """A message finished: the next trip starts probing from the shortest interval."""
        self._trips_without_progress = 0

    async def wait(self) -> None:
        """Return once no dependency is tripped."""
        await self._clear.wait()

    async def _probe(self, dependency: Dependency) -> None:
        probe = self.probes.get(dependency)
        grown = self.probe_initial_s * 2 ** max(0, self._trips_without_progress - 1)
        delay = min(self.probe_max_s, grown)
        # Repeated trips without progress: the probe says "up" but messages still fail.
        hold = min(self.max_wait_s, grown)
        started = time.monotonic()
        try:
            while True:
                await asyncio.sleep(delay)
                if probe is None:
                    break
                try:
                    await asyncio.wait_for(probe(), timeout=self.probe_timeout_s)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("probe of %s failed: %s", dependency, type(exc).__name__)
                    delay = min(self.probe_max_s, delay * 2)
                    continue
                remaining = hold - (time.monotonic() - started)
                if remaining > 0:
                    await asyncio.sleep(remaining)
                break
        finally:
            self._release(dependency)

    def _release(self, dependency: Dependency) -> None:
        since = self._since.pop(dependency, time.monotonic())
        self._down.pop(dependency, None)
        self._probing.pop(dependency, None)
        self._gauge(dependency, 0)
        seconds = time.monotonic() - since
        if not self._closing:
            self.recoveries.append((dependency, seconds))
            log.warning("%s available again after %.1fs: consumption resumed", dependency, seconds)
        if not self._down:
            self._clear.set()

    async def close(self) -> None:
        """Stop the probes (shutdown); waiters are released."""
        self._closing = True
        tasks = list(self._probing.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._clear.set()
