"""What every backend is: the :class:`DraftBackend` protocol and the prompt formats.

Concrete backends (:mod:`~inference.backends.tgi`, :mod:`~inference.backends.openai_compat`,
:mod:`~inference.backends.local`, :mod:`~inference.backends.instant`) implement it; only
:mod:`inference.backends.factory` imports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from inference.types import BackendName, Completion, Sampling

__all__ = ["DraftBackend", "PromptFormat"]

PromptFormat = Literal["raw", "chat"]


@runtime_checkable
class DraftBackend(Protocol):
    """Generates a continuation of a prompt built by :class:`~inference.drafting.prompter.Prompter`.

    ``prompt_format`` says how the server sees the prompt: ``raw`` (as is, like training) or
    ``chat`` (wrapped in the model's chat template by the server); the canary check picks
    the matching expected output.
    """

    @property
    def name(self) -> BackendName: ...

    @property
    def adapter_id(self) -> str | None: ...

    @property
    def prompt_format(self) -> PromptFormat: ...

    async def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        sampling: Sampling | None = None,
    ) -> Completion:
        """Greedy unless ``sampling`` is given."""
        ...

    async def aclose(self) -> None: ...
