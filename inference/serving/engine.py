"""What ``radgpt serve-model`` serves: an engine that turns requests into generations.

* :class:`ModelEngine`: the embedded model (:class:`~inference.serving.model.LocalModel`) behind the
  :class:`~inference.serving.batching.DynamicBatcher`.
* :class:`~inference.serving.instant.InstantEngine`: a deterministic, torch-free extractive stand-in
  for pipeline benchmarks and smoke tests of a deployment.

Both expose the same limits and adapter names, so the server validates requests the same
way whichever engine is behind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from inference.serving.batching import DynamicBatcher
from inference.types import Generation, GenerationRequest

if TYPE_CHECKING:
    from inference.serving.model import LocalModel

__all__ = ["Engine", "ModelEngine"]


class Engine(Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def adapters(self) -> frozenset[str]: ...

    @property
    def kind(self) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]]) -> str: ...

    async def generate(self, request: GenerationRequest) -> Generation: ...

    async def aclose(self) -> None: ...


class ModelEngine:
    """The embedded model with dynamic batching."""

    def __init__(
        self, model: LocalModel, *, window_s: float = 0.03, max_batch_size: int = 16
    ) -> None:
        self.model = model
        self.batcher = DynamicBatcher(
            model.generate_batch, window_s=window_s, max_batch_size=max_batch_size
        )

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def adapters(self) -> frozenset[str]:
        return frozenset(self.model.adapters)

    @property
    def kind(self) -> str:
        return "model"

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]]) -> str:
        return self.model.apply_chat_template(messages)

    async def generate(self, request: GenerationRequest) -> Generation:
        return await self.batcher.submit(request)

    async def aclose(self) -> None:
        await self.batcher.aclose()
