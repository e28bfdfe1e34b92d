"""One async interface over the three ways of running the model.

* ``tgi``: a text-generation-inference server (``/generate``, LoRA by ``adapter_id``);
  :mod:`inference.tgi`.  ``radgpt serve-model`` speaks the same API.
* ``openai``: any OpenAI-compatible server (vLLM, SGLang, TGI's Messages API; LoRA by
  ``model``); :mod:`inference.openai_compat`.
* ``local``: the embedded model in-process on CPU; :mod:`inference.local`.
* ``instant``: a deterministic extractive stand-in in-process, for benchmarks and smoke
  tests only (no model); :mod:`inference.instant_backend`.

:func:`create_backend` builds one from a :class:`BackendConfig` and wraps the HTTP ones in
:class:`~inference.resilience.ResilientBackend`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from .resilience import ResiliencePolicy, ResilientBackend
from .types import BackendName, Completion, Sampling

if TYPE_CHECKING:
    from integration.settings import InferenceSettings

__all__ = ["BackendConfig", "DraftBackend", "PromptFormat", "create_backend"]

PromptFormat = Literal["raw", "chat"]


@runtime_checkable
class DraftBackend(Protocol):
    """Generates a continuation of a prompt built by :class:`~inference.prompter.Prompter`.

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


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """Everything needed to build a backend; entry points fill it from settings or options."""

    backend: BackendName = "tgi"
    url: str = "http://127.0.0.1:8080"
    adapter: str | None = "radiology"
    model: str | None = None
    api_key: str | None = None
    max_new_tokens: int = 96
    verify_adapter: bool = True
    adapter_path: Path | None = None
    base_model_dir: Path | None = None
    cache_dir: Path | None = None
    threads: int | None = None
    policy: ResiliencePolicy = field(default_factory=ResiliencePolicy)

    def __post_init__(self) -> None:
        if self.backend not in ("tgi", "openai", "local", "instant"):
            raise ValueError(f"unknown backend {self.backend!r}; use tgi, openai, local or instant")
        if self.backend in ("tgi", "openai") and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"backend url must start with http:// or https://: {self.url!r}")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")

    @classmethod
    def from_settings(cls, settings: InferenceSettings) -> BackendConfig:
        return cls(
            backend=settings.backend,
            url=settings.url,
            adapter=settings.adapter or None,
            model=settings.model,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            max_new_tokens=settings.max_new_tokens,
            verify_adapter=settings.verify_adapter,
            adapter_path=settings.adapter_path,
            cache_dir=settings.cache_dir,
            policy=ResiliencePolicy(
                timeout_s=settings.timeout_s,
                max_retries=settings.max_retries,
                circuit_failure_threshold=settings.circuit_failure_threshold,
                circuit_reset_s=settings.circuit_reset_s,
                max_concurrency=settings.max_concurrency,
            ),
        )


def create_backend(config: BackendConfig) -> DraftBackend:
    """Build the configured backend (HTTP backends come wrapped with retries and a breaker)."""
    if config.backend == "tgi":
        from .tgi import TgiBackend

        return ResilientBackend(
            TgiBackend(
                config.url,
                adapter_id=config.adapter,
                api_key=config.api_key,
                timeout_s=config.policy.timeout_s,
            ),
            config.policy,
        )
    if config.backend == "openai":
        from .openai_compat import OpenAIBackend

        return ResilientBackend(
            OpenAIBackend(
                config.url,
                model=config.model or config.adapter,
                api_key=config.api_key,
                timeout_s=config.policy.timeout_s,
            ),
            config.policy,
        )
    if config.backend == "instant":
        from .instant_backend import InstantBackend

        return InstantBackend(adapter_id=config.adapter)
    from .local import LocalBackend

    return LocalBackend.open(
        base_dir=config.base_model_dir,
        cache_dir=config.cache_dir,
        adapter=config.adapter,
        adapter_path=config.adapter_path,
        threads=config.threads,
    )
