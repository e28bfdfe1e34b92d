"""The ``instant`` backend: :class:`~inference.serving.instant.InstantEngine` in-process.

For benchmarks and smoke tests only.  It answers with the first sentence of the findings
(the same deterministic logic as ``radgpt serve-model --engine instant``) without a model
server, weights or HTTP, so a benchmark measures the pipeline around the model rather than a
network hop to a toy server.  The adapter name is reported as given but changes nothing, so
the adapter canary cannot pass against it: run it with ``verify_adapter`` off.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from inference.backends.base import PromptFormat
from inference.serving.instant import InstantEngine
from inference.types import BackendName, Completion, GenerationRequest, Sampling

__all__ = ["InstantBackend"]


class InstantBackend:
    """A :class:`~inference.backends.base.DraftBackend` over the extractive instant engine."""

    def __init__(self, *, adapter_id: str | None = None, delay_s: float = 0.0) -> None:
        self._adapter_id = adapter_id
        self._engine = InstantEngine(adapters=[adapter_id] if adapter_id else [], delay_s=delay_s)

    @property
    def name(self) -> BackendName:
        return "instant"

    @property
    def adapter_id(self) -> str | None:
        return self._adapter_id

    @property
    def prompt_format(self) -> PromptFormat:
        return "raw"

    async def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        sampling: Sampling | None = None,
    ) -> Completion:
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        start = time.perf_counter()
        generation = await self._engine.generate(
            GenerationRequest(
                prompt=prompt,
                max_new_tokens=max_new_tokens,
                stop=tuple(stop),
                adapter_id=self._adapter_id,
            )
        )
        return Completion(
            text=generation.text,
            model_id=self._engine.model_id,
            adapter_id=self._adapter_id,
            prompt_tokens=generation.prompt_tokens,
            generated_tokens=generation.generated_tokens,
            finish_reason=generation.finish_reason,
            backend="instant",
            latency_s=time.perf_counter() - start,
        )

    async def aclose(self) -> None:
        await self._engine.aclose()
