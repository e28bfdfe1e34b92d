"""Findings in, draft IMPRESSION out: prompter + retrieval exemplars + backend + parser.

:class:`Drafter` is what the Kafka worker and the API call.  Before the first draft it runs
the adapter's canary through the backend (:func:`inference.canary.verify_adapter`) and
refuses to draft if the server does not answer with the expected adapter.  Each
:class:`~inference.types.Draft` carries provenance (model, adapter, token counts, latency,
finish reason, backend) and the flags of the rule-based safety checks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from types import TracebackType

from .adapters import AdapterInfo, read_adapter_info, shipped_adapter_dir
from .backend import BackendConfig, DraftBackend, create_backend
from .canary import CanaryResult, verify_adapter
from .errors import AdapterError, GenerationFailed, InvalidRequest
from .prompter import Prompter
from .retrieval import ExemplarIndex
from .safety import check_draft
from .types import Draft

__all__ = ["Drafter"]

log = logging.getLogger(__name__)


class Drafter:
    """Drafts impressions with one backend; verifies the adapter once before the first draft."""

    def __init__(
        self,
        backend: DraftBackend,
        *,
        prompter: Prompter | None = None,
        adapter_info: AdapterInfo | None = None,
        exemplars: ExemplarIndex | None = None,
        k: int = 0,
        max_new_tokens: int = 96,
        verify: bool = True,
        safety_checks: bool = True,
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if k < 0:
            raise ValueError("k must not be negative")
        if verify and backend.adapter_id is not None and adapter_info is None:
            raise AdapterError(
                f"cannot verify adapter {backend.adapter_id!r}: no adapter metadata "
                "(radgpt-adapter.json); set the adapter path or disable verification"
            )
        self.backend = backend
        self.adapter_info = adapter_info
        template = adapter_info.prompt_template if adapter_info else "radiology"
        self.prompter = prompter or Prompter.load(template)
        self.exemplars = exemplars
        self.k = k if exemplars is not None else 0
        self.max_new_tokens = max_new_tokens
        self.safety_checks = safety_checks
        self._verify = verify and backend.adapter_id is not None
        self._verified: CanaryResult | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(cls, config: BackendConfig, *, safety_checks: bool = True) -> Drafter:
        """Build the backend, read the adapter metadata and exemplars named by ``config``.

        Without ``config.adapter_path`` the shipped adapter's metadata is used for the
        adapter name ``radiology``.
        """
        info: AdapterInfo | None = None
        if config.adapter is not None:
            path = config.adapter_path
            if path is None and config.adapter == "radiology":
                path = shipped_adapter_dir()
            if path is not None:
                info = read_adapter_info(path)
            elif config.verify_adapter:
                raise AdapterError(
                    f"cannot verify adapter {config.adapter!r}: no adapter directory with "
                    "radgpt-adapter.json; set the adapter path or disable verification"
                )
        exemplars: ExemplarIndex | None = None
        k = 0
        if info is not None and info.retrieval is not None:
            try:
                exemplars = ExemplarIndex.load(info.retrieval.exemplars)
            except (OSError, ValueError) as exc:
                raise AdapterError(
                    f"adapter {info.name!r}: cannot load exemplars {info.retrieval.exemplars}"
                ) from exc
            k = info.retrieval.k
        backend = create_backend(config)
        return cls(
            backend,
            adapter_info=info,
            exemplars=exemplars,
            k=k,
            max_new_tokens=config.max_new_tokens,
            verify=config.verify_adapter,
            safety_checks=safety_checks,
        )

    @property
    def verified(self) -> CanaryResult | None:
        return self._verified

    async def start(self) -> None:
        """Run the canary now (idempotent); raises :class:`AdapterError` on mismatch."""
        if not self._verify or self._verified is not None:
            return
        async with self._lock:
            if self._verified is None:
                assert self.adapter_info is not None
                self._verified = await verify_adapter(
                    self.backend, self.adapter_info, self.prompter
                )

    async def draft(self, findings: str, *, context: Mapping[str, str] | None = None) -> Draft:
        """Draft the impression for ``findings`` (context: e.g. modality, indication)."""
        if not findings or not findings.strip():
            raise InvalidRequest("findings are empty: nothing to draft from")
        await self.start()
        examples = self.exemplars.top_k(findings, self.k) if self.exemplars and self.k else []
        prompt = self.prompter.build(findings, context=context, examples=examples)
        start = time.perf_counter()
        completion = await self.backend.generate(
            prompt, max_new_tokens=self.max_new_tokens, stop=self.prompter.stop
        )
        latency = time.perf_counter() - start
        truncated = completion.finish_reason == "length"
        text = self.prompter.parse(completion.text, truncated=truncated)
        if not text:
            raise GenerationFailed("the model returned an empty impression")
        flags = tuple(check_draft(findings, text)) if self.safety_checks else ()
        return Draft(
            text=text,
            raw_text=completion.text,
            model_id=completion.model_id,
            adapter_id=completion.adapter_id,
            prompt_tokens=completion.prompt_tokens,
            generated_tokens=completion.generated_tokens,
            latency_s=latency,
            finish_reason=completion.finish_reason,
            backend=completion.backend,
            exemplars=len(examples),
            safety_flags=flags,
        )

    async def probe(self) -> None:
        """Raise unless the model server is reachable (closes an open circuit on success)."""
        probe = getattr(self.backend, "probe", None)
        if probe is not None:
            await probe()

    async def aclose(self) -> None:
        await self.backend.aclose()

    async def __aenter__(self) -> Drafter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
