"""``radgpt serve-model --engine instant`` as a real subprocess, driven through
huggingface_hub and the project's backends: API subset, TGI error shapes, unknown adapters,
overload, timeouts and a killed server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import AsyncInferenceClient
from huggingface_hub import errors as hf_errors
from inference_helpers import InstantServer

from inference.backends.factory import BackendConfig, create_backend
from inference.backends.openai_compat import OpenAIBackend
from inference.backends.resilience import ResiliencePolicy, ResilientBackend
from inference.backends.tgi import TgiBackend
from inference.errors import (
    AdapterError,
    BackendOverloaded,
    BackendTimeout,
    BackendUnavailable,
    CircuitOpen,
    InvalidRequest,
)

PROMPT = "### Findings:\nHeart size is normal. Lungs are clear.\n\n### Impression:\n"


def client(server: InstantServer, **kwargs: Any) -> AsyncInferenceClient:
    return AsyncInferenceClient(model=f"{server.url}/generate", api_key="test", **kwargs)


async def test_generate_with_details(instant_server: InstantServer) -> None:
    output = await client(instant_server).text_generation(
        PROMPT,
        adapter_id="radiology",
        max_new_tokens=20,
        details=True,
        return_full_text=False,
        do_sample=False,
    )
    assert output.generated_text == "Heart size is normal."
    assert output.details is not None
    assert output.details.finish_reason == "eos_token"
    assert output.details.generated_tokens == 4


async def test_return_full_text_prepends_the_prompt(instant_server: InstantServer) -> None:
    text = await client(instant_server).text_generation(
        PROMPT, max_new_tokens=20, return_full_text=True
    )
    assert text == PROMPT + "Heart size is normal."


async def test_compat_root_route_answers_too(instant_server: InstantServer) -> None:
    root = AsyncInferenceClient(model=instant_server.url, api_key="test")
    text = await root.text_generation(PROMPT, max_new_tokens=20, return_full_text=False)
    assert text == "Heart size is normal."


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
        ({"temperature": 0.0}, "`temperature` must be strictly positive"),
        ({"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
        ({"max_new_tokens": 5000}, "must be <= 2048"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "up to 4 stop sequences"),
        ({"repetition_penalty": 1.2}, "not supported"),
    ],
)
async def test_validation_errors_are_422(
    instant_server: InstantServer, parameters: dict[str, Any], message: str
) -> None:
    args = {"max_new_tokens": 10, **parameters}
    with pytest.raises(hf_errors.ValidationError, match=message) as info:
        await client(instant_server).text_generation(PROMPT, **args)
    assert info.value.__cause__.response.status_code == 422  # type: ignore[union-attr]


async def test_empty_inputs_and_too_long_inputs_are_422(instant_server: InstantServer) -> None:
    async with httpx.AsyncClient(base_url=instant_server.url) as http:
        empty = await http.post("/generate", json={"inputs": "  ", "parameters": {}})
        long = await http.post("/generate", json={"inputs": "word " * 1100})
        bad = await http.post("/generate", json={"parameters": {}})
    assert empty.status_code == 422
    assert empty.json() == {"error": "`inputs` cannot be empty", "error_type": "validation"}
    assert long.status_code == 422
    assert "must have less than 1024 tokens" in long.json()["error"]
    assert bad.status_code == 422 and bad.json()["error_type"] == "validation"


async def test_backend_maps_validation_to_invalid_request(instant_server: InstantServer) -> None:
    backend = TgiBackend(instant_server.url, adapter_id="radiology")
    try:
        with pytest.raises(InvalidRequest, match="must be <= 2048") as info:
            await backend.generate("word " * 1000, max_new_tokens=1500, stop=())
    finally:
        await backend.aclose()
    assert not info.value.retriable
    assert isinstance(info.value.__cause__, hf_errors.ValidationError)


async def test_unknown_adapter_is_refused_not_silently_served(
    instant_server: InstantServer,
) -> None:
    with pytest.raises(hf_errors.UnknownError, match="unknown adapter 'radiologie'") as info:
        await client(instant_server).text_generation(
            PROMPT, adapter_id="radiologie", max_new_tokens=5
        )
    assert info.value.__cause__.response.status_code == 404  # type: ignore[union-attr]
    tgi = TgiBackend(instant_server.url, adapter_id="radiologie")
    chat = OpenAIBackend(instant_server.url, model="radiologie")
    try:
        with pytest.raises(AdapterError, match="404"):
            await tgi.generate(PROMPT, max_new_tokens=5, stop=())
        with pytest.raises(AdapterError, match="404"):
            await chat.generate(PROMPT, max_new_tokens=5, stop=())
    finally:
        await tgi.aclose()
        await chat.aclose()


async def test_chat_completion_selects_the_adapter_by_model(
    instant_server: InstantServer,
) -> None:
    chat = AsyncInferenceClient(base_url=instant_server.url, api_key="test")
    output = await chat.chat_completion(
        [{"role": "user", "content": PROMPT}], model="radiology", max_tokens=20, temperature=0
    )
    assert output.choices[0].message.content == "Heart size is normal."
    assert output.choices[0].finish_reason == "stop"
    assert output.usage.completion_tokens == 4
    base = await chat.chat_completion(
        [{"role": "user", "content": PROMPT}], model="tgi", max_tokens=2
    )
    assert base.choices[0].finish_reason == "length"
    assert base.model == "radgpt/instant-extractive"


async def test_info_models_and_health(instant_server: InstantServer) -> None:
    async with httpx.AsyncClient(base_url=instant_server.url) as http:
        info = (await http.get("/info")).json()
        models = (await http.get("/v1/models")).json()
        health = await http.get("/health")
    assert info["model_id"] == "radgpt/instant-extractive"
    assert info["max_stop_sequences"] == 4 and info["max_total_tokens"] == 2048
    assert info["adapters"] == ["radiology"]
    assert [m["id"] for m in models["data"]] == ["radgpt/instant-extractive", "radiology"]
    assert models["data"][1]["parent"] == "radgpt/instant-extractive"
    assert health.status_code == 200


async def test_metrics_count_requests(instant_server: InstantServer) -> None:
    hf = client(instant_server)
    await hf.text_generation(PROMPT, max_new_tokens=5)
    with pytest.raises(hf_errors.UnknownError):
        await hf.text_generation(PROMPT, max_new_tokens=5, adapter_id="nope")
    async with httpx.AsyncClient(base_url=instant_server.url) as http:
        text = (await http.get("/metrics")).text
    assert "tgi_request_count_total 1.0" in text  # validation failures never reach the engine
    assert "tgi_request_success_total 1.0" in text
    assert "tgi_request_duration_count 1.0" in text
    assert "tgi_queue_size 0.0" in text


async def test_factory_backends_draft_through_the_server(instant_server: InstantServer) -> None:
    for kind in ("tgi", "openai"):
        backend = create_backend(
            BackendConfig(backend=kind, url=instant_server.url, adapter="radiology")  # type: ignore[arg-type]
        )
        try:
            completion = await backend.generate(PROMPT, max_new_tokens=3, stop=["###", "\n\n"])
        finally:
            await backend.aclose()
        assert completion.text == "Heart size is"
        assert completion.finish_reason == "length"
        assert completion.backend == kind
        assert completion.generated_tokens == 3


async def test_more_than_max_concurrent_requests_is_429(tmp_path: Path) -> None:
    server = InstantServer(tmp_path, delay_ms=400, extra=["--max-concurrent-requests", "2"]).start()
    try:
        hf = client(server)
        results = await asyncio.gather(
            *(hf.text_generation(PROMPT, max_new_tokens=5) for _ in range(5)),
            return_exceptions=True,
        )
        overloaded = [r for r in results if isinstance(r, hf_errors.OverloadedError)]
        assert len(overloaded) == 3
        assert [r for r in results if isinstance(r, str)] == ["Heart size is normal."] * 2
        backend = TgiBackend(server.url, adapter_id="radiology")
        try:
            outcomes = await asyncio.gather(
                *(backend.generate(PROMPT, max_new_tokens=5, stop=()) for _ in range(4)),
                return_exceptions=True,
            )
        finally:
            await backend.aclose()
        assert any(isinstance(o, BackendOverloaded) for o in outcomes)
    finally:
        server.kill()


async def test_slow_server_times_out(tmp_path: Path) -> None:
    server = InstantServer(tmp_path, delay_ms=5000).start()
    try:
        # huggingface_hub 1.33 leaks the raw httpx timeout ...
        with pytest.raises(httpx.TimeoutException):
            await client(server, timeout=0.3).text_generation(PROMPT, max_new_tokens=5)
        # ... which the backend maps; the resilient wrapper retries, then gives up.
        backend = ResilientBackend(
            TgiBackend(server.url, adapter_id="radiology", timeout_s=None),
            ResiliencePolicy(timeout_s=0.3, max_retries=1, backoff_base_s=0.01),
        )
        try:
            with pytest.raises(BackendTimeout, match=r"within 0\.3s") as info:
                await backend.generate(PROMPT, max_new_tokens=5, stop=())
        finally:
            await backend.aclose()
        assert info.value.retriable
    finally:
        server.kill()


async def test_killed_server_is_retried_then_the_circuit_opens(tmp_path: Path) -> None:
    server = InstantServer(tmp_path).start()
    backend = ResilientBackend(
        TgiBackend(server.url, adapter_id="radiology", timeout_s=2.0),
        ResiliencePolicy(
            timeout_s=2.0,
            max_retries=5,
            backoff_base_s=0.01,
            circuit_failure_threshold=3,
            circuit_reset_s=60.0,
        ),
    )
    try:
        ok = await backend.generate(PROMPT, max_new_tokens=5, stop=())
        assert ok.text == "Heart size is normal."
        server.kill()
        with pytest.raises(BackendUnavailable, match="cannot reach the model server") as info:
            await backend.generate(PROMPT, max_new_tokens=5, stop=())
        assert isinstance(info.value.__cause__, httpx.ConnectError)
        assert backend.breaker.state == "open"
        with pytest.raises(CircuitOpen):
            await backend.generate(PROMPT, max_new_tokens=5, stop=())
    finally:
        server.kill()
        await backend.aclose()


async def test_api_key_protects_generation_but_not_probes(tmp_path: Path) -> None:
    server = InstantServer(tmp_path, extra=["--require-api-key"])
    server.env["RADGPT_INFERENCE__API_KEY"] = "s3cret"
    server.start()
    try:
        with pytest.raises(hf_errors.HfHubHTTPError) as info:
            await client(server).text_generation(PROMPT, max_new_tokens=5)  # key "test"
        assert info.value.response.status_code == 401
        wrong = TgiBackend(server.url, adapter_id="radiology", api_key="nope")
        right = TgiBackend(server.url, adapter_id="radiology", api_key="s3cret")
        try:
            with pytest.raises(InvalidRequest, match="refused the credentials"):
                await wrong.generate(PROMPT, max_new_tokens=5, stop=())
            assert (await right.generate(PROMPT, max_new_tokens=5, stop=())).text
        finally:
            await wrong.aclose()
            await right.aclose()
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/health")).status_code == 200
            assert (await http.get("/info")).status_code == 200
    finally:
        server.kill()


async def test_oversized_payload_is_413(instant_server: InstantServer) -> None:
    async with httpx.AsyncClient(base_url=instant_server.url) as http:
        response = await http.post("/generate", json={"inputs": "x" * 2_100_000})
    assert response.status_code == 413
