"""The ``local`` backend: the embedded model (:class:`inference.serving.model.LocalModel`)
in this process, behind the dynamic batcher of :class:`inference.serving.engine.ModelEngine`
in a worker thread, so that the event loop is never blocked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from inference.backends.base import PromptFormat
from inference.errors import AdapterError
from inference.serving.engine import ModelEngine
from inference.serving.model import LocalModel
from inference.types import BackendName, Completion, GenerationRequest, Sampling

__all__ = ["LocalBackend"]


class LocalBackend:
    """The ``local`` backend: the embedded model in this process, batched in a worker thread."""

    def __init__(self, engine: ModelEngine, *, adapter_id: str | None) -> None:
        if adapter_id is not None and adapter_id not in engine.adapters:
            raise AdapterError(
                f"adapter {adapter_id!r} is not loaded; loaded: {sorted(engine.adapters)}"
            )
        self.engine = engine
        self._adapter_id = adapter_id

    @classmethod
    def open(
        cls,
        *,
        base_dir: Path | None = None,
        cache_dir: Path | None = None,
        adapter: str | None = "radiology",
        adapter_path: Path | None = None,
        threads: int | None = None,
    ) -> LocalBackend:
        """Load the base model (prepared into ``cache_dir`` if needed) and the adapter.

        Without ``adapter_path`` the shipped adapter is used for the name ``radiology``.
        """
        from inference.drafting.adapters import shipped_adapter_dir
        from inference.model_store import default_cache_dir, prepare_base_model

        if base_dir is None:
            base_dir = prepare_base_model(cache_dir or default_cache_dir())
        adapters: dict[str, Path] = {}
        if adapter is not None:
            path = adapter_path or (shipped_adapter_dir() if adapter == "radiology" else None)
            if path is None:
                raise AdapterError(
                    f"no adapter directory for {adapter!r}: pass --adapter-path "
                    "(the shipped adapter training/adapters/radiology is not installed)"
                )
            adapters[adapter] = path
        model = LocalModel(base_dir, adapters=adapters, threads=threads)
        return cls(ModelEngine(model), adapter_id=adapter)

    @property
    def name(self) -> BackendName:
        return "local"

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
        request = GenerationRequest(
            prompt=prompt,
            max_new_tokens=max_new_tokens,
            stop=tuple(stop),
            adapter_id=self._adapter_id,
            do_sample=sampling is not None,
            temperature=sampling.temperature if sampling else None,
            top_p=sampling.top_p if sampling else None,
            seed=sampling.seed if sampling else None,
        )
        generation = await self.engine.generate(request)
        return Completion(
            text=generation.text,
            model_id=self.engine.model_id,
            adapter_id=self._adapter_id,
            prompt_tokens=generation.prompt_tokens,
            generated_tokens=generation.generated_tokens,
            finish_reason=generation.finish_reason,
            backend="local",
            latency_s=generation.seconds,
        )

    async def aclose(self) -> None:
        await self.engine.aclose()
