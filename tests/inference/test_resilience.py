"""Unit tests of the error mapping, backoff, circuit breaker and retry policy."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest
from huggingface_hub import errors as hf_errors
from inference_helpers import InstantServer, free_port

from inference.backends.resilience import (
    CircuitBreaker,
    ResiliencePolicy,
    ResilientBackend,
    backoff_delay,
    map_error,
)
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
from inference.types import BackendName, Completion, Sampling

REQUEST = httpx.Request("POST", "http://model:8080/generate")


def http_error(status: int) -> hf_errors.HfHubHTTPError:
    return hf_errors.HfHubHTTPError("boom", response=httpx.Response(status, request=REQUEST))


def status_error(status: int) -> httpx.HTTPStatusError:
    response = httpx.Response(status, request=REQUEST)
    return httpx.HTTPStatusError("boom", request=REQUEST, response=response)


def tgi_unknown(status: int) -> hf_errors.UnknownError:
    error = hf_errors.UnknownError("unknown adapter")
    error.__cause__ = http_error(status)
    return error


# -- one mapping per test ------------------------------------------------------------------


def test_validation_error_is_invalid_request() -> None:
    assert type(map_error(hf_errors.ValidationError("bad top_p"))) is InvalidRequest


def test_overloaded_error_is_backend_overloaded() -> None:
    assert type(map_error(hf_errors.OverloadedError("busy"))) is BackendOverloaded


def test_generation_error_is_backend_failure() -> None:
    assert type(map_error(hf_errors.GenerationError("cuda"))) is BackendFailure


def test_incomplete_generation_is_backend_failure() -> None:
    assert type(map_error(hf_errors.IncompleteGenerationError("cut"))) is BackendFailure


def test_inference_timeout_is_backend_timeout() -> None:
    assert type(map_error(hf_errors.InferenceTimeoutError("slow"))) is BackendTimeout


def test_httpx_read_timeout_is_backend_timeout() -> None:
    assert type(map_error(httpx.ReadTimeout("slow", request=REQUEST))) is BackendTimeout


def test_asyncio_timeout_is_backend_timeout() -> None:
    assert type(map_error(TimeoutError())) is BackendTimeout


def test_connect_error_is_backend_unavailable() -> None:
    assert type(map_error(httpx.ConnectError("refused", request=REQUEST))) is BackendUnavailable


def test_remote_protocol_error_is_backend_unavailable() -> None:
    error = httpx.RemoteProtocolError("closed", request=REQUEST)
    assert type(map_error(error)) is BackendUnavailable


def test_tgi_unknown_error_404_is_adapter_error() -> None:
    assert type(map_error(tgi_unknown(404))) is AdapterError


def test_tgi_unknown_error_503_is_backend_unavailable() -> None:
    assert type(map_error(tgi_unknown(503))) is BackendUnavailable


def test_hf_http_400_is_invalid_request() -> None:
    assert type(map_error(http_error(400))) is InvalidRequest


def test_hf_http_401_is_invalid_request() -> None:
    assert type(map_error(http_error(401))) is InvalidRequest


def test_hf_http_404_is_adapter_error() -> None:
    assert type(map_error(http_error(404))) is AdapterError


def test_hf_http_422_is_invalid_request() -> None:
    assert type(map_error(http_error(422))) is InvalidRequest


def test_hf_http_424_is_backend_failure() -> None:
    assert type(map_error(http_error(424))) is BackendFailure


def test_hf_http_429_is_backend_overloaded() -> None:
    assert type(map_error(http_error(429))) is BackendOverloaded


def test_hf_http_500_is_backend_failure() -> None:
    assert type(map_error(http_error(500))) is BackendFailure


def test_hf_http_503_is_backend_unavailable() -> None:
    assert type(map_error(http_error(503))) is BackendUnavailable


def test_httpx_status_502_is_backend_unavailable() -> None:
    assert type(map_error(status_error(502))) is BackendUnavailable


def test_unexpected_exception_is_generation_failed() -> None:
    assert type(map_error(KeyError("x"))) is GenerationFailed


def test_inference_errors_pass_through() -> None:
    error = AdapterError("x")
    assert map_error(error) is error


@pytest.mark.parametrize(
    ("error", "retriable"),
    [
        (InvalidRequest("x"), False),
        (AdapterError("x"), False),
        (GenerationFailed("x"), False),
        (BackendUnavailable("x"), True),
        (BackendTimeout("x"), True),
        (BackendOverloaded("x"), True),
        (BackendFailure("x"), True),
        (CircuitOpen("x"), True),
    ],
)
def test_retriable_flags(error: InferenceError, retriable: bool) -> None:
    assert error.retriable is retriable


def test_long_server_messages_are_shortened() -> None:
    message = str(map_error(hf_errors.ValidationError("x" * 1000)))
    assert len(message) < 300


# -- backoff and breaker -------------------------------------------------------------------


def test_backoff_is_exponential_and_capped() -> None:
    delays = [backoff_delay(a, base_s=0.5, max_s=3.0, rng=lambda: 1.0) for a in range(5)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(3, base_s=0.5, max_s=3.0, rng=lambda: 0.25) == 0.75


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_and_half_opens_after_reset() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_s=10.0, clock=clock)
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen, match=r"next trial in 10\.0s"):
        breaker.before_call()
    clock.now = 10.0
    assert breaker.state == "half_open"
    breaker.before_call()  # the single trial call
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # no second call while the trial is in flight
    breaker.record_success()
    assert breaker.state == "closed"


def test_breaker_reopens_when_the_trial_fails() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_s=5.0, clock=clock)
    breaker.record_failure()
    clock.now = 5.0
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now = 9.0
    with pytest.raises(CircuitOpen):
        breaker.before_call()


def test_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_s=5.0)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        ResiliencePolicy(timeout_s=0)


# -- retry policy over a scripted backend --------------------------------------------------


class ScriptedBackend:
    """Raises the scripted errors in turn, then answers; records the calls."""

    def __init__(self, errors: Sequence[BaseException], delay_s: float = 0.0) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.delay_s = delay_s
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def name(self) -> BackendName:
        return "tgi"

    @property
    def adapter_id(self) -> str | None:
        return "radiology"

    @property
    def prompt_format(self) -> str:
        return "raw"

    async def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        sampling: Sampling | None = None,
    ) -> Completion:
        self.calls += 1
        self.sampling = sampling
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.errors:
                raise self.errors.pop(0)
            return Completion("ok", "m", "radiology", 1, 1, "eos_token", "tgi")
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        return None


def resilient(inner: ScriptedBackend, **policy: float) -> tuple[ResilientBackend, list[float]]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    settings = {"backoff_base_s": 0.1, "backoff_max_s": 1.0, **policy}
    backend = ResilientBackend(
        inner,  # type: ignore[arg-type]
        ResiliencePolicy(**settings),  # type: ignore[arg-type]
        sleep=sleep,
        rng=lambda: 1.0,
    )
    return backend, sleeps


async def test_retries_transient_errors_with_backoff() -> None:
    inner = ScriptedBackend([http_error(503), hf_errors.OverloadedError("busy")])
    backend, sleeps = resilient(inner)
    completion = await backend.generate("p", max_new_tokens=4, stop=())
    assert completion.text == "ok"
    assert inner.calls == 3
    assert sleeps == [0.1, 0.2]


async def test_does_not_retry_invalid_requests() -> None:
    inner = ScriptedBackend([hf_errors.ValidationError("top_p")])
    backend, sleeps = resilient(inner)
    with pytest.raises(InvalidRequest) as info:
        await backend.generate("p", max_new_tokens=4, stop=())
    assert inner.calls == 1 and sleeps == []
    assert isinstance(info.value.__cause__, hf_errors.ValidationError)


async def test_generation_failures_are_retried_a_bounded_number_of_times() -> None:
    inner = ScriptedBackend([http_error(500)] * 5)
    backend, _ = resilient(inner, max_retries=4, max_failure_retries=1)
    with pytest.raises(BackendFailure):
        await backend.generate("p", max_new_tokens=4, stop=())
    assert inner.calls == 2


async def test_gives_up_after_max_retries() -> None:
    inner = ScriptedBackend([httpx.ConnectError("refused", request=REQUEST)] * 10)
    backend, sleeps = resilient(inner, max_retries=2, circuit_failure_threshold=10)
    with pytest.raises(BackendUnavailable):
        await backend.generate("p", max_new_tokens=4, stop=())
    assert inner.calls == 3 and len(sleeps) == 2


async def test_times_out_each_attempt() -> None:
    inner = ScriptedBackend([], delay_s=5.0)
    backend, _ = resilient(inner, timeout_s=0.05, max_retries=1)
    with pytest.raises(BackendTimeout, match=r"within 0\.05s"):
        await backend.generate("p", max_new_tokens=4, stop=())
    assert inner.calls == 2


async def test_open_circuit_refuses_without_calling() -> None:
    inner = ScriptedBackend([httpx.ConnectError("refused", request=REQUEST)] * 10)
    backend, _ = resilient(inner, max_retries=5, circuit_failure_threshold=2)
    with pytest.raises(BackendUnavailable):
        await backend.generate("p", max_new_tokens=4, stop=())
    assert inner.calls == 2  # stopped retrying when the circuit opened
    with pytest.raises(CircuitOpen):
        await backend.generate("p", max_new_tokens=4, stop=())
    assert inner.calls == 2


async def test_concurrency_is_limited() -> None:
    inner = ScriptedBackend([], delay_s=0.02)
    backend, _ = resilient(inner, max_concurrency=3)
    await asyncio.gather(*(backend.generate("p", max_new_tokens=4, stop=()) for _ in range(10)))
    assert inner.calls == 10
    assert inner.max_in_flight == 3


# -- probing while the circuit is open -------------------------------------------------------


async def test_probe_without_a_health_check_lets_the_next_call_through_now() -> None:
    inner = ScriptedBackend([http_error(503)] * 2)
    backend, _ = resilient(inner, circuit_failure_threshold=2, circuit_reset_s=3600, max_retries=1)
    with pytest.raises(BackendUnavailable):
        await backend.generate("p", max_new_tokens=4, stop=())
    assert backend.breaker.state == "open"
    with pytest.raises(CircuitOpen):
        await backend.generate("p", max_new_tokens=4, stop=())
    await backend.probe()  # no health(): the next call is the half-open trial
    assert backend.breaker.state == "half_open"
    assert (await backend.generate("p", max_new_tokens=4, stop=())).text == "ok"
    assert backend.breaker.state == "closed"


async def test_probe_of_a_real_server_closes_the_circuit_on_first_success(
    instant_server: InstantServer,
) -> None:
    from inference.backends.tgi import TgiBackend

    policy = ResiliencePolicy(circuit_failure_threshold=1, circuit_reset_s=3600, timeout_s=5)
    down = ResilientBackend(TgiBackend(f"http://127.0.0.1:{free_port()}", adapter_id=None), policy)
    with pytest.raises(BackendUnavailable):
        await down.probe()  # nothing listens there
    backend = ResilientBackend(TgiBackend(instant_server.url, adapter_id=None), policy)
    backend.breaker.record_failure()
    assert backend.breaker.state == "open"  # an hour before the next trial, without a probe
    await backend.probe()
    assert backend.breaker.state == "closed"
    await backend.aclose()
    await down.aclose()
