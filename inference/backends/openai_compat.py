"""The ``openai`` backend: chat completions on any OpenAI-compatible server.

vLLM (``--enable-lora --lora-modules radiology=/path``), SGLang (``--lora-paths``) and TGI's
Messages API select the LoRA adapter by the ``model`` field.  The prompt built by the
prompter is sent as the single user message; decoding is greedy (``temperature=0``, which
these servers treat as greedy on the chat route).  The server wraps the message in the
model's chat template, hence ``prompt_format == "chat"``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx
from huggingface_hub import AsyncInferenceClient
from huggingface_hub import errors as hf_errors

from inference.backends.base import PromptFormat
from inference.backends.resilience import map_error
from inference.backends.tgi import MAX_STOP_SEQUENCES, NO_API_KEY, require_online_client
from inference.errors import BackendUnavailable, GenerationFailed
from inference.types import BackendName, Completion, FinishReason, Sampling

__all__ = ["OpenAIBackend"]

_HTTP_ERRORS = (httpx.HTTPError, hf_errors.InferenceTimeoutError, TimeoutError)


class OpenAIBackend:
    """Drafts through ``/v1/chat/completions`` with the adapter chosen by ``model``."""

    def __init__(
        self,
        url: str,
        *,
        model: str | None,
        api_key: str | None = None,
        timeout_s: float | None = 60.0,
    ) -> None:
        if not model:
            raise ValueError("the openai backend needs a model name (the adapter, e.g. radiology)")
        require_online_client()
        self.url = url.rstrip("/")
        self.model = model
        self._health_base = self.url.removesuffix("/v1")
        self._health_timeout_s = min(timeout_s or 5.0, 5.0)
        self._client = AsyncInferenceClient(
            base_url=self.url, api_key=api_key or NO_API_KEY, timeout=timeout_s
        )

    @property
    def name(self) -> BackendName:
        return "openai"

    @property
    def adapter_id(self) -> str | None:
        return self.model

    @property
    def prompt_format(self) -> PromptFormat:
        return "chat"

    async def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        sampling: Sampling | None = None,
    ) -> Completion:
        stops = [s for s in stop if s][:MAX_STOP_SEQUENCES]
        start = time.perf_counter()
        try:
            output = await self._client.chat_completion(
                [{"role": "user", "content": prompt}],
                model=self.model,
                max_tokens=max_new_tokens,
                temperature=sampling.temperature if sampling else 0.0,
                top_p=sampling.top_p if sampling else None,
                seed=sampling.seed if sampling else None,
                stop=stops or None,
            )
        except _HTTP_ERRORS as exc:
            raise map_error(exc) from exc
        latency = time.perf_counter() - start
        if not output.choices:
            raise GenerationFailed("model server returned no choices")
        choice = output.choices[0]
        finish: FinishReason = "length" if choice.finish_reason == "length" else "eos_token"
        usage = output.usage
        return Completion(
            text=choice.message.content or "",
            model_id=str(output.model or self.model),
            adapter_id=self.model,
            prompt_tokens=int(usage.prompt_tokens) if usage else None,
            generated_tokens=int(usage.completion_tokens) if usage else None,
            finish_reason=finish,
            backend="openai",
            latency_s=latency,
        )

    async def health(self) -> None:
        """Raise unless the server answers ``GET /health`` (any answer below 500: it is up)."""
        async with httpx.AsyncClient(timeout=self._health_timeout_s) as client:
            response = await client.get(f"{self._health_base}/health")
        if response.status_code >= 500:
            raise BackendUnavailable(f"model server health answered {response.status_code}")

    async def aclose(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]
