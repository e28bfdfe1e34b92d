"""The ``tgi`` backend: text-generation-inference ``/generate`` through huggingface_hub.

Every call sets what TGI would otherwise default dangerously: ``return_full_text=False``
(the ``POST /`` route defaults it to true for local models), an explicit
``max_new_tokens``, greedy decoding (``do_sample=False``, never ``temperature=0``, which is a
422), at most 4 stop sequences, ``details=True`` for the finish reason and token counts, and
an explicit API key so that a developer's cached Hugging Face token is never sent to the
model server.  TGI answers an unknown ``adapter_id`` with the base model; the canary check
(:mod:`inference.drafting.canary`) catches that.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx
from huggingface_hub import AsyncInferenceClient, constants
from huggingface_hub import errors as hf_errors

from inference.backends.base import PromptFormat
from inference.backends.resilience import map_error
from inference.errors import BackendUnavailable, GenerationFailed, ModelNotAvailable
from inference.types import BackendName, Completion, FinishReason, Sampling

__all__ = ["MAX_STOP_SEQUENCES", "NO_API_KEY", "TgiBackend", "require_online_client"]

MAX_STOP_SEQUENCES = 4
# Sent when no key is configured: keeps huggingface_hub from sending the cached HF token.
NO_API_KEY = "radgpt-no-key"

_FINISH: dict[str, FinishReason] = {
    "length": "length",
    "eos_token": "eos_token",
    "stop_sequence": "stop_sequence",
}
_HTTP_ERRORS = (httpx.HTTPError, hf_errors.InferenceTimeoutError, TimeoutError)


def require_online_client() -> None:
    """huggingface_hub in offline mode refuses every request, even to a self-hosted server."""
    if constants.is_offline_mode():
        raise ModelNotAvailable(
            "HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set, so huggingface_hub refuses every HTTP "
            "request, including to the model server: unset it for the tgi and openai backends "
            "(keep HF_HUB_DISABLE_IMPLICIT_TOKEN=1; only model loading needs the offline flags)"
        )


class TgiBackend:
    """Drafts through a TGI-compatible ``/generate`` endpoint."""

    def __init__(
        self,
        url: str,
        *,
        adapter_id: str | None,
        api_key: str | None = None,
        timeout_s: float | None = 60.0,
    ) -> None:
        require_online_client()
        self.url = url.rstrip("/")
        self._adapter_id = adapter_id or None
        self._api_key = api_key or NO_API_KEY
        self._timeout_s = timeout_s
        self._client = AsyncInferenceClient(
            model=f"{self.url}/generate", api_key=self._api_key, timeout=timeout_s
        )
        self._model_id: str | None = None
        self._health_base = self.url
        self._health_timeout_s = min(timeout_s or 5.0, 5.0)

    @property
    def name(self) -> BackendName:
        return "tgi"

    @property
    def adapter_id(self) -> str | None:
        return self._adapter_id

    @property
    def prompt_format(self) -> PromptFormat:
        return "raw"

    async def info(self) -> dict[str, Any]:
        """The server's ``/info`` (model id, token limits)."""
        headers = {"authorization": f"Bearer {self._api_key}"}
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s, headers=headers) as client:
                response = await client.get(f"{self.url}/info")
                response.raise_for_status()
                info = response.json()
        except _HTTP_ERRORS as exc:
            raise map_error(exc) from exc
        except ValueError as exc:
            raise GenerationFailed("model server /info is not JSON") from exc
        if not isinstance(info, dict):
            raise GenerationFailed("model server /info is not a JSON object")
        return info

    async def _resolve_model_id(self) -> str:
        if self._model_id is None:
            try:
                self._model_id = str((await self.info()).get("model_id") or self.url)
            except Exception:  # /info is optional for TGI-compatible servers
                self._model_id = self.url
        return self._model_id

    async def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        sampling: Sampling | None = None,
    ) -> Completion:
        stops = [s for s in stop if s][:MAX_STOP_SEQUENCES]
        model_id = await self._resolve_model_id()
        start = time.perf_counter()
        try:
            output = await self._client.text_generation(
                prompt,
                adapter_id=self._adapter_id,
                max_new_tokens=max_new_tokens,
                do_sample=sampling is not None,
                temperature=sampling.temperature if sampling else None,
                top_p=sampling.top_p if sampling else None,
                seed=sampling.seed if sampling else None,
                return_full_text=False,
                details=True,
                stop=stops or None,
            )
        except _HTTP_ERRORS as exc:
            raise map_error(exc) from exc
        latency = time.perf_counter() - start
        details = output.details
        if details is None:
            raise GenerationFailed("model server returned no generation details")
        finish = _FINISH.get(str(details.finish_reason))
        if finish is None:
            raise GenerationFailed(f"unknown finish reason {details.finish_reason!r}")
        prefill = details.prefill or []
        return Completion(
            text=output.generated_text,
            model_id=model_id,
            adapter_id=self._adapter_id,
            prompt_tokens=len(prefill) or None,
            generated_tokens=int(details.generated_tokens),
            finish_reason=finish,
            backend="tgi",
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
