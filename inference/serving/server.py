"""``radgpt serve-model``: the embedded model behind the subset of TGI's HTTP API we use.

Routes: ``POST /generate`` (and ``POST /``, TGI's compat route, non-streaming),
``POST /v1/chat/completions`` (adapter by ``model``), ``GET /info``, ``GET /health``,
``GET /v1/models`` and ``GET /metrics`` (Prometheus, a subset of TGI's metric names so that
the same dashboards and autoscaling rules work).

Errors have TGI's shape ``{"error": ..., "error_type": ...}`` and status codes: 422
validation (``top_p >= 1``, ``temperature <= 0``, ``max_new_tokens`` 0 or over the token
limit, empty inputs, more than 4 stop sequences, unsupported parameters), 429 ``overloaded``
beyond ``max_concurrent_requests`` in flight, 424 ``generation`` when the engine fails.
Unlike TGI, an unknown adapter is a 404 ``adapter_not_found`` instead of a silent fallback
to the base model.  Error messages never contain the request's text.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field

from inference.errors import (
    BackendOverloaded,
    GenerationFailed,
    InferenceError,
    InvalidRequest,
    UnknownAdapter,
)
from inference.serving.engine import Engine
from inference.types import FinishReason, Generation, GenerationRequest

__all__ = ["ServerLimits", "create_app", "run_server"]

log = logging.getLogger(__name__)

_UNSUPPORTED = (
    "best_of",
    "frequency_penalty",
    "grammar",
    "repetition_penalty",
    "top_n_tokens",
    "truncate",
    "typical_p",
)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """TGI's launcher limits, same names."""

    max_concurrent_requests: int = 128
    max_stop_sequences: int = 4
    max_input_tokens: int = 1024
    max_total_tokens: int = 2048
    default_max_new_tokens: int = 256
    payload_limit: int = 2_000_000

    def __post_init__(self) -> None:
        if self.max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be at least 1")
        if self.max_input_tokens < 1 or self.max_total_tokens <= self.max_input_tokens:
            raise ValueError("need 0 < max_input_tokens < max_total_tokens")


def _error_type(exc: InferenceError) -> str:
    """TGI's ``error_type`` for an error (its status is the error's ``http_status``)."""
    if isinstance(exc, UnknownAdapter):
        return "adapter_not_found"
    if isinstance(exc, InvalidRequest):
        return "validation"
    if isinstance(exc, BackendOverloaded):
        return "overloaded"
    if isinstance(exc, GenerationFailed):
        return "generation"
    return "server"


# -- wire models (TGI / OpenAI field names) ------------------------------------------------


class GenerateParameters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    adapter_id: str | None = None
    best_of: int | None = None
    decoder_input_details: bool = False
    details: bool = False
    do_sample: bool = False
    frequency_penalty: float | None = None
    grammar: Any = None
    max_new_tokens: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = None
    return_full_text: bool | None = None
    seed: int | None = Field(default=None, ge=0)
    stop: list[str] = Field(default_factory=list)
    temperature: float | None = None
    top_k: int | None = None
    top_n_tokens: int | None = None
    top_p: float | None = None
    truncate: int | None = None
    typical_p: float | None = None
    watermark: bool = False


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputs: str
    parameters: GenerateParameters = Field(default_factory=GenerateParameters)
    stream: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str | list[dict[str, Any]]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = "tgi"
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = Field(default=None, ge=0)
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = 1


# -- the application -----------------------------------------------------------------------


class _Metrics:
    """TGI's metric names (``tgi_*``), one registry per application."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tgi_request_count", "Generation requests received", registry=self.registry
        )
        self.successes = Counter(
            "tgi_request_success", "Generation requests answered", registry=self.registry
        )
        self.failures = Counter(
            "tgi_request_failure", "Generation requests failed", ["err"], registry=self.registry
        )
        self.duration = Histogram(
            "tgi_request_duration",
            "Request duration in seconds",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.generated = Histogram(
            "tgi_request_generated_tokens",
            "Generated tokens per request",
            buckets=(1, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.queue = Gauge(
            "tgi_queue_size", "Requests in flight (queued or generating)", registry=self.registry
        )


class _Service:
    def __init__(self, engine: Engine, limits: ServerLimits) -> None:
        self.engine = engine
        self.limits = limits
        self.in_flight = 0
        self.metrics = _Metrics()

    def adapter(self, name: str | None, *, chat: bool) -> str | None:
        if not name:
            return None
        if name == self.engine.model_id or (chat and name == "tgi"):
            return None
        if name in self.engine.adapters:
            return name
        loaded = ", ".join(sorted(self.engine.adapters)) or "none"
        raise UnknownAdapter(
            f"unknown adapter {name!r}: this server has the base model "
            f"{self.engine.model_id!r} and the adapters: {loaded}"
        )

    def check_tokens(self, prompt: str, max_new_tokens: int | None) -> tuple[int, int]:
        limits = self.limits
        input_tokens = self.engine.count_tokens(prompt)
        if input_tokens > limits.max_input_tokens:
            raise InvalidRequest(
                f"`inputs` must have less than {limits.max_input_tokens} tokens. "
                f"Given: {input_tokens}"
            )
        room = limits.max_total_tokens - input_tokens
        if max_new_tokens is None:
            return input_tokens, min(room, limits.default_max_new_tokens)
        if max_new_tokens == 0:
            raise InvalidRequest("`max_new_tokens` must be strictly positive")
        if max_new_tokens > room:
            raise InvalidRequest(
                f"`inputs` tokens + `max_new_tokens` must be <= {limits.max_total_tokens}. "
                f"Given: {input_tokens} `inputs` tokens and {max_new_tokens} `max_new_tokens`"
            )
        return input_tokens, max_new_tokens

    def check_stop(self, stop: list[str]) -> tuple[str, ...]:
        if len(stop) > self.limits.max_stop_sequences:
            raise InvalidRequest(
                f"`stop` supports up to {self.limits.max_stop_sequences} stop sequences. "
                f"Given: {len(stop)}"
            )
        return tuple(s for s in stop if s)

    async def run(self, request: GenerationRequest) -> Generation:
        metrics = self.metrics
        metrics.requests.inc()
        if self.in_flight >= self.limits.max_concurrent_requests:
            metrics.failures.labels(err="overloaded").inc()
            raise BackendOverloaded("Model is overloaded")
        self.in_flight += 1
        metrics.queue.set(self.in_flight)
        start = time.perf_counter()
        try:
            generation = await self.engine.generate(request)
        except Exception as exc:
            log.warning("generation failed: %s", type(exc).__name__)
            metrics.failures.labels(err="generation").inc()
            raise GenerationFailed(f"generation failed: {type(exc).__name__}") from exc
        finally:
            self.in_flight -= 1
            metrics.queue.set(self.in_flight)
        metrics.successes.inc()
        metrics.duration.observe(time.perf_counter() - start)
        metrics.generated.observe(generation.generated_tokens)
        return generation

    def info(self) -> dict[str, Any]:
        limits = self.limits
        try:
            version = dist_version("radgpt")
        except PackageNotFoundError:
            version = "0"
        return {
            "model_id": self.engine.model_id,
            "model_sha": None,
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": limits.max_concurrent_requests,
            "max_best_of": 1,
            "max_stop_sequences": limits.max_stop_sequences,
            "max_input_tokens": limits.max_input_tokens,
            "max_total_tokens": limits.max_total_tokens,
            "validation_workers": 1,
            "max_client_batch_size": 1,
            "router": "radgpt-serve-model",
            "version": version,
            "sha": None,
            "docker_label": None,
            # radgpt extensions (TGI does not list adapters)
            "adapters": sorted(self.engine.adapters),
            "engine": self.engine.kind,
        }


def _generate_request(service: _Service, body: GenerateRequest) -> tuple[GenerationRequest, int]:
    p = body.parameters
    if body.stream:
        raise InvalidRequest("streaming is not supported by radgpt serve-model")
    if not body.inputs.strip():
        raise InvalidRequest("`inputs` cannot be empty")
    for name in _UNSUPPORTED:
        if getattr(p, name) is not None:
            raise InvalidRequest(f"`{name}` is not supported by radgpt serve-model")
    if p.watermark or p.decoder_input_details:
        raise InvalidRequest("`watermark` and `decoder_input_details` are not supported")
    if p.temperature is not None and p.temperature <= 0:
        raise InvalidRequest("`temperature` must be strictly positive")
    if p.top_p is not None and not 0.0 < p.top_p < 1.0:
        raise InvalidRequest("`top_p` must be > 0.0 and < 1.0")
    if p.top_k is not None and p.top_k <= 0:
        raise InvalidRequest("`top_k` must be strictly positive")
    stop = service.check_stop(p.stop)
    adapter = service.adapter(p.adapter_id, chat=False)
    input_tokens, max_new_tokens = service.check_tokens(body.inputs, p.max_new_tokens)
    request = GenerationRequest(
        prompt=body.inputs,
        max_new_tokens=max_new_tokens,
        stop=stop,
        adapter_id=adapter,
        do_sample=p.do_sample,
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=p.top_k,
        seed=p.seed,
    )
    return request, input_tokens


def _headers(generation: Generation, total_s: float) -> dict[str, str]:
    per_token = generation.seconds / max(1, generation.generated_tokens)
    return {
        "x-compute-type": "cpu",
        "x-compute-time": f"{generation.seconds:.6f}",
        "x-total-time": str(int(total_s * 1000)),
        "x-inference-time": str(int(generation.seconds * 1000)),
        "x-time-per-token": str(int(per_token * 1000)),
        "x-prompt-tokens": str(generation.prompt_tokens),
        "x-generated-tokens": str(generation.generated_tokens),
    }


_OPENAI_FINISH: Mapping[FinishReason, str] = {
    "eos_token": "stop",
    "stop_sequence": "stop",
    "length": "length",
}


_OPEN_ROUTES = frozenset({"/health", "/info", "/metrics", "/v1/models"})


def create_app(
    engine: Engine, limits: ServerLimits | None = None, *, api_key: str | None = None
) -> FastAPI:
    """The FastAPI application serving ``engine``; the engine is closed on shutdown.

    With ``api_key``, generation routes require ``Authorization: Bearer <api_key>`` (401
    otherwise, like TGI's ``--api-key``); ``/health``, ``/info``, ``/metrics`` and
    ``/v1/models`` stay open for probes.  Bodies over ``payload_limit`` bytes get a 413.
    """
    service = _Service(engine, limits or ServerLimits())
    expected_auth = f"bearer {api_key}".encode() if api_key else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await engine.aclose()

    app = FastAPI(title="radgpt serve-model", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service

    @app.middleware("http")
    async def _guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path not in _OPEN_ROUTES:
            if expected_auth is not None:
                given = request.headers.get("authorization", "").encode()
                scheme, _, token = given.partition(b" ")
                if not hmac.compare_digest(scheme.lower() + b" " + token, expected_auth):
                    return Response(status_code=401)
            length = request.headers.get("content-length")
            too_large = length is not None and length.isdigit()
            if too_large and int(str(length)) > service.limits.payload_limit:
                return JSONResponse(
                    {"error": "payload too large", "error_type": "validation"},
                    status_code=413,
                )
        return await call_next(request)

    @app.exception_handler(InferenceError)
    async def _api_error(_: Request, exc: InferenceError) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc), "error_type": _error_type(exc)}, status_code=exc.http_status
        )

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid JSON"
        return JSONResponse({"error": message, "error_type": "validation"}, status_code=422)

    async def _generate(body: GenerateRequest) -> JSONResponse:
        start = time.perf_counter()
        request, _ = _generate_request(service, body)
        generation = await service.run(request)
        text = generation.text
        if body.parameters.return_full_text:
            text = body.inputs + text
        payload: dict[str, Any] = {"generated_text": text}
        if body.parameters.details:
            payload["details"] = {
                "finish_reason": generation.finish_reason,
                "generated_tokens": generation.generated_tokens,
                "seed": generation.seed,
                "prefill": [],
                "tokens": [
                    {"id": t.id, "text": t.text, "logprob": t.logprob, "special": False}
                    for t in generation.tokens
                ],
            }
        return JSONResponse(payload, headers=_headers(generation, time.perf_counter() - start))

    @app.post("/generate")
    async def generate(body: GenerateRequest) -> JSONResponse:
        return await _generate(body)

    @app.post("/")
    async def compat_generate(body: GenerateRequest) -> JSONResponse:
        return await _generate(body)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest) -> JSONResponse:
        start = time.perf_counter()
        if body.stream:
            raise InvalidRequest("streaming is not supported by radgpt serve-model")
        if body.n != 1:
            raise InvalidRequest("`n` must be 1")
        if body.temperature is not None and body.temperature < 0:
            raise InvalidRequest("`temperature` must be >= 0")
        if body.top_p is not None and not 0.0 < body.top_p <= 1.0:
            raise InvalidRequest("`top_p` must be > 0.0 and <= 1.0")
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        stop = service.check_stop(stops)
        adapter = service.adapter(body.model, chat=True)
        prompt = engine.apply_chat_template(
            [{"role": m.role, "content": m.text()} for m in body.messages]
        )
        _, max_new_tokens = service.check_tokens(
            prompt, body.max_completion_tokens or body.max_tokens
        )
        sampling = bool(body.temperature)  # 0 or absent: greedy
        request = GenerationRequest(
            prompt=prompt,
            max_new_tokens=max_new_tokens,
            stop=stop,
            adapter_id=adapter,
            do_sample=sampling,
            temperature=body.temperature if sampling else None,
            top_p=body.top_p if sampling and body.top_p is not None and body.top_p < 1 else None,
            seed=body.seed,
        )
        generation = await service.run(request)
        text = generation.text
        for s in stop:  # OpenAI servers do not return the stop sequence
            text = text.split(s, 1)[0]
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model if adapter is not None else engine.model_id,
            "system_fingerprint": f"radgpt-{engine.kind}",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": _OPENAI_FINISH[generation.finish_reason],
                }
            ],
            "usage": {
                "prompt_tokens": generation.prompt_tokens,
                "completion_tokens": generation.generated_tokens,
                "total_tokens": generation.prompt_tokens + generation.generated_tokens,
            },
        }
        return JSONResponse(payload, headers=_headers(generation, time.perf_counter() - start))

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return service.info()

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        created = int(time.time())
        data = [
            {"id": engine.model_id, "object": "model", "created": created, "owned_by": "radgpt"}
        ]
        data += [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "radgpt",
                "parent": engine.model_id,
            }
            for name in sorted(engine.adapters)
        ]
        return {"object": "list", "data": data}

    return app


def run_server(
    engine: Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    limits: ServerLimits | None = None,
    api_key: str | None = None,
    log_level: str = "warning",
) -> None:
    """Serve ``engine`` with uvicorn until interrupted (blocking)."""
    import uvicorn

    config = uvicorn.Config(
        create_app(engine, limits, api_key=api_key),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
    )
    uvicorn.Server(config).run()
