"""Calling a model server that can be slow, overloaded or dead.

* :func:`map_error` is the one place where httpx / huggingface_hub exceptions become the
  typed :mod:`inference.errors` hierarchy (``retriable`` tells the Kafka worker whether to
  retry the record or dead-letter it).
* :class:`CircuitBreaker`: closed → open after ``failure_threshold`` consecutive
  retriable failures → half-open after ``reset_s`` (one trial call) → closed on success.
* :class:`ResilientBackend` wraps any :class:`~inference.backends.base.DraftBackend` with a
  per-attempt timeout, jittered exponential backoff, the breaker and a concurrency limit
  (continuous-batching servers want many requests in flight, but not unboundedly many).
* :meth:`ResilientBackend.probe` asks the server's health endpoint (``GET /health``) and
  closes the circuit on the first success, so a caller that probes while it backs off (the
  pipeline's :class:`~integration.pipeline.fault_gate.FaultGate`) resumes as soon as the server is
  back instead of waiting for ``circuit_reset_s`` to run out.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import httpx
from huggingface_hub import errors as hf_errors

from inference.backends.base import DraftBackend, PromptFormat
from inference.errors import (
    AdapterError,
    BackendFailure,
    BackendOverloaded,
    BackendTimeout,
    BackendUnavailable,
    CircuitOpen,
    GenerationFailed,
    InferenceError,
    InvalidRequest,
)

if TYPE_CHECKING:
    from inference.types import BackendName, Completion, Sampling

__all__ = [
    "CircuitBreaker",
    "CircuitState",
    "ResiliencePolicy",
    "ResilientBackend",
    "backoff_delay",
    "map_error",
]

log = logging.getLogger(__name__)

CircuitState = Literal["closed", "open", "half_open"]

_MAX_DETAIL = 200


def _detail(message: object) -> str:
    """A short, single-line server message (servers do not echo the prompt in errors)."""
    text = " ".join(str(message).split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _status_of(exc: BaseException) -> int | None:
    for candidate in (exc, exc.__cause__):
        response = getattr(candidate, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _from_status(status: int, message: str) -> InferenceError:
    if status in (400, 413, 422):
        return InvalidRequest(f"model server rejected the request ({status}): {message}")
    if status in (401, 403):
        return InvalidRequest(f"model server refused the credentials ({status})")
    if status == 404:
        return AdapterError(
            f"model server does not know the requested adapter/model (404): {message}"
        )
    if status == 429:
        return BackendOverloaded(f"model server is overloaded (429): {message}")
    if status in (502, 503, 504):
        return BackendUnavailable(f"model server unavailable ({status}): {message}")
    if status >= 500 or status == 424:
        return BackendFailure(f"model server failed ({status}): {message}")
    return InvalidRequest(f"unexpected answer from the model server ({status}): {message}")


def map_error(exc: BaseException) -> InferenceError:
    """Translate an httpx / huggingface_hub / asyncio exception into an :class:`InferenceError`.

    The caller raises the result ``from exc``.  Unknown exception types become
    :class:`GenerationFailed` (not retriable) so that a bug is never retried forever.
    """
    if isinstance(exc, InferenceError):
        return exc
    message = _detail(exc)
    # TGI JSON errors, keyed on error_type by huggingface_hub (subclasses of httpx.HTTPError).
    if isinstance(exc, hf_errors.ValidationError):
        return InvalidRequest(f"model server rejected the request (validation): {message}")
    if isinstance(exc, hf_errors.OverloadedError):
        return BackendOverloaded(f"model server is overloaded (429): {message}")
    if isinstance(exc, hf_errors.GenerationError | hf_errors.IncompleteGenerationError):
        return BackendFailure(f"model server failed to generate: {message}")
    if isinstance(exc, hf_errors.InferenceTimeoutError | httpx.TimeoutException | TimeoutError):
        return BackendTimeout("model server did not answer within the timeout")
    if isinstance(exc, hf_errors.TextGenerationError):  # UnknownError: decide on the status
        status = _status_of(exc)
        if status is not None:
            return _from_status(status, message)
        return BackendFailure(f"model server error: {message}")
    if isinstance(exc, httpx.HTTPStatusError | hf_errors.HfHubHTTPError):
        status = _status_of(exc)
        if status is not None:
            return _from_status(status, message)
        return BackendFailure(f"model server error: {message}")
    if isinstance(exc, httpx.TransportError):  # connect refused/reset, protocol errors
        return BackendUnavailable(f"cannot reach the model server: {type(exc).__name__}")
    if isinstance(exc, httpx.HTTPError):
        return BackendFailure(f"model server error: {message}")
    return GenerationFailed(f"unexpected {type(exc).__name__} while generating: {message}")


def backoff_delay(
    attempt: int, *, base_s: float, max_s: float, rng: Callable[[], float] = random.random
) -> float:
    """Full-jitter exponential backoff: uniform in ``[0, min(max_s, base_s * 2**attempt)]``."""
    return rng() * min(max_s, base_s * 2.0**attempt)


@dataclass(frozen=True, slots=True)
class ResiliencePolicy:
    """How hard to try.  ``max_retries`` applies to connection errors, timeouts, 429 and 503;
    424/500 (:class:`BackendFailure`) get at most ``max_failure_retries``."""

    timeout_s: float = 60.0
    max_retries: int = 4
    max_failure_retries: int = 1
    backoff_base_s: float = 0.5
    backoff_max_s: float = 10.0
    circuit_failure_threshold: int = 5
    circuit_reset_s: float = 30.0
    max_concurrency: int = 16

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.max_retries < 0 or self.max_failure_retries < 0:
            raise ValueError("retry counts must not be negative")
        if self.circuit_failure_threshold < 1:
            raise ValueError("circuit_failure_threshold must be at least 1")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")


class CircuitBreaker:
    """Consecutive-failure circuit breaker with a single half-open trial call."""

    def __init__(
        self,
        *,
        failure_threshold: int,
        reset_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._state: CircuitState = "closed"
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        if self._state == "open" and self._clock() - self._opened_at >= self.reset_s:
            return "half_open"
        return self._state

    def before_call(self) -> None:
        """Raise :class:`CircuitOpen` unless a call may go out now."""
        state = self.state
        if state == "closed":
            return
        if state == "half_open" and not self._trial_in_flight:
            self._state = "half_open"
            self._trial_in_flight = True
            return
        wait = max(0.0, self.reset_s - (self._clock() - self._opened_at))
        raise CircuitOpen(
            f"model server circuit is open after {self._failures} consecutive failures; "
            f"next trial in {wait:.1f}s"
        )

    def allow_trial(self) -> None:
        """Let the next call through as the half-open trial now (instead of after reset_s)."""
        if self._state == "open":
            self._opened_at = self._clock() - self.reset_s

    def record_success(self) -> None:
        self._failures = 0
        self._state = "closed"
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state == "half_open" or self._failures >= self.failure_threshold:
            if self._state != "open":
                log.warning("model server circuit opened after %d failures", self._failures)
            self._state = "open"
            self._opened_at = self._clock()
        self._trial_in_flight = False


def _cause(error: InferenceError, exc: BaseException) -> BaseException | None:
    """The cause to chain: ``exc``, or an already-typed error's own cause."""
    return error.__cause__ if error is exc else exc


class ResilientBackend:
    """A :class:`~inference.backends.base.DraftBackend` with timeout, retries, breaker and a
    concurrency limit."""

    def __init__(
        self,
        inner: DraftBackend,
        policy: ResiliencePolicy,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.breaker = CircuitBreaker(
            failure_threshold=policy.circuit_failure_threshold,
            reset_s=policy.circuit_reset_s,
            clock=clock,
        )
        self._semaphore = asyncio.Semaphore(policy.max_concurrency)
        self._sleep = sleep
        self._rng = rng

    @property
    def name(self) -> BackendName:
        return self.inner.name

    @property
    def adapter_id(self) -> str | None:
        return self.inner.adapter_id

    @property
    def prompt_format(self) -> PromptFormat:
        return self.inner.prompt_format

    async def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        sampling: Sampling | None = None,
    ) -> Completion:
        attempt = 0
        while True:
            self.breaker.before_call()
            try:
                async with self._semaphore, asyncio.timeout(self.policy.timeout_s):
                    completion = await self.inner.generate(
                        prompt, max_new_tokens=max_new_tokens, stop=stop, sampling=sampling
                    )
            except (InferenceError, TimeoutError, httpx.HTTPError) as exc:
                error = map_error(exc)
                if isinstance(exc, TimeoutError):
                    error = BackendTimeout(
                        f"model server did not answer within {self.policy.timeout_s:g}s"
                    )
                if not error.retriable:
                    self.breaker.record_success()  # the server answered; it is alive
                    raise error from _cause(error, exc)
                self.breaker.record_failure()
                allowed = (
                    self.policy.max_failure_retries
                    if isinstance(error, BackendFailure)
                    else self.policy.max_retries
                )
                if attempt >= allowed or self.breaker.state == "open":
                    raise error from _cause(error, exc)
                delay = backoff_delay(
                    attempt,
                    base_s=self.policy.backoff_base_s,
                    max_s=self.policy.backoff_max_s,
                    rng=self._rng,
                )
                log.info(
                    "model server call failed (%s), retry %d in %.2fs",
                    type(error).__name__,
                    attempt + 1,
                    delay,
                )
                await self._sleep(delay)
                attempt += 1
            else:
                self.breaker.record_success()
                return completion

    async def probe(self) -> None:
        """Raise :class:`BackendUnavailable` unless the server answers its health check.

        Success closes the circuit.  A backend without ``health()`` gets its next call let
        through as the half-open trial instead.
        """
        health: Callable[[], Awaitable[None]] | None = getattr(self.inner, "health", None)
        if health is None:
            self.breaker.allow_trial()
            return
        try:
            async with asyncio.timeout(min(self.policy.timeout_s, 5.0)):
                await health()
        except (InferenceError, TimeoutError, httpx.HTTPError) as exc:
            error = map_error(exc)
            raise error from _cause(error, exc)
        if self.breaker.state != "closed":
            log.info("model server answers its health check: circuit closed")
        self.breaker.record_success()

    async def aclose(self) -> None:
        await self.inner.aclose()
