"""One async interface over the ways of running the model: :func:`create_backend`.

* ``tgi``: a text-generation-inference server (``/generate``, LoRA by ``adapter_id``);
  :mod:`inference.backends.tgi`.  ``radgpt serve-model`` speaks the same API.
* ``openai``: any OpenAI-compatible server (vLLM, SGLang, TGI's Messages API; LoRA by
  ``model``); :mod:`inference.backends.openai_compat`.
* ``local``: the embedded model in-process on CPU; :mod:`inference.backends.local`.
* ``instant``: a deterministic extractive stand-in in-process, for benchmarks and smoke
  tests only (no model); :mod:`inference.backends.instant`.

:func:`create_backend` builds one from a :class:`BackendConfig` and wraps the HTTP ones in
:class:`~inference.backends.resilience.ResilientBackend`.  This is the only module that
imports the concrete backends.  Entry points fill :class:`BackendConfig` from their settings
(``integration``'s ``InferenceSettings.backend_config()``); this package never reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inference.backends.base import DraftBackend
from inference.backends.resilience import ResiliencePolicy, ResilientBackend
from inference.types import BackendName

__all__ = ["BackendConfig", "create_backend"]


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


def create_backend(config: BackendConfig) -> DraftBackend:
    """Build the configured backend (HTTP backends come wrapped with retries and a breaker)."""
    if config.backend == "tgi":
        from inference.backends.tgi import TgiBackend

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
        from inference.backends.openai_compat import OpenAIBackend

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
        from inference.backends.instant import InstantBackend

        return InstantBackend(adapter_id=config.adapter)
    from inference.backends.local import LocalBackend

    return LocalBackend.open(
        base_dir=config.base_model_dir,
        cache_dir=config.cache_dir,
        adapter=config.adapter,
        adapter_path=config.adapter_path,
        threads=config.threads,
    )
