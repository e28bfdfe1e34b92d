"""Findings in, draft IMPRESSION out: prompter + retrieval exemplars + backend + parser.

:class:`Drafter` is what the Kafka worker and the API call.  Before the first draft it runs
the adapter's canary through the backend (:func:`inference.drafting.canary.verify_adapter`) and
refuses to draft if the server does not answer with the expected adapter.  Each
:class:`~inference.types.Draft` carries provenance (model, adapter, token counts, latency,
finish reason, backend, method) and the flags of the rule-based safety checks.

Drafting is *verify and choose* (:mod:`inference.drafting.choose`): the greedy candidate is checked
against the findings; when it is rejected (an omitted or invented finding, a flipped
negation, a side conflict, ...), ``samples`` sampled candidates are generated together (one
batch on the server) and the first passing one is used.  When none passes, the draft is the
report's own positive findings, condensed (``method="extractive-fallback"``), never a model
text that hides an abnormality.  Studies outside the adapter's validated scope
(:mod:`inference.drafting.scope`) are refused with :class:`~inference.errors.OutOfScope`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from types import TracebackType

from inference.backends.base import DraftBackend
from inference.backends.factory import BackendConfig, create_backend
from inference.drafting.adapters import AdapterInfo, read_adapter_info, shipped_adapter_dir
from inference.drafting.canary import CanaryResult, verify_adapter
from inference.drafting.choose import Verdict, best_candidate, verify
from inference.drafting.findings import extractive_impression
from inference.drafting.prompter import Prompter
from inference.drafting.retrieval import ExemplarIndex
from inference.drafting.scope import DEFAULT_SCOPE, Scope, ScopeDecision, decide
from inference.errors import AdapterError, GenerationFailed, InvalidRequest, OutOfScope
from inference.safety import SafetyFlag, check_draft
from inference.types import Completion, Draft, DraftMethod, Sampling

__all__ = ["Drafter", "adapter_scope"]

log = logging.getLogger(__name__)

# An empty candidate is rejected like a flagged one.
_EMPTY = SafetyFlag(
    kind="invented_finding", phrase="", detail="the model returned nothing", severity="warning"
)


def adapter_scope(info: AdapterInfo) -> Scope:
    """The scope in an adapter's metadata (``scope``), or chest radiographs by default."""
    data = info.raw.get("scope")
    if not data:
        return DEFAULT_SCOPE
    try:
        return Scope.from_json(data)
    except (TypeError, ValueError, AttributeError) as exc:
        raise AdapterError(f"adapter {info.name!r}: malformed scope: {exc}") from exc


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
        samples: int = 0,
        temperature: float = 0.7,
        scope: Scope | None = None,
        fallback: bool = True,
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if samples < 0:
            raise ValueError("samples must not be negative")
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
        # Verify-and-choose needs the checks; without them the greedy text is returned.
        self.samples = samples if safety_checks else 0
        self.fallback = fallback and safety_checks
        self.temperature = temperature
        if scope is None:
            scope = adapter_scope(adapter_info) if adapter_info is not None else DEFAULT_SCOPE
        self.scope = scope
        self._verify = verify and backend.adapter_id is not None
        self._verified: CanaryResult | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(
        cls,
        config: BackendConfig,
        *,
        safety_checks: bool = True,
        samples: int = 0,
        extra_scopes: tuple[str, ...] = (),
        fallback: bool = True,
    ) -> Drafter:
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
        scope = adapter_scope(info) if info is not None else DEFAULT_SCOPE
        if extra_scopes:
            try:
                scope = scope.extended(extra_scopes)
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from exc
        backend = create_backend(config)
        return cls(
            backend,
            adapter_info=info,
            exemplars=exemplars,
            k=k,
            max_new_tokens=config.max_new_tokens,
            verify=config.verify_adapter,
            safety_checks=safety_checks,
            samples=samples,
            scope=scope,
            fallback=fallback,
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

    async def _examples(self, findings: str) -> list[str]:
        """The impressions of the most similar exemplars, searched in a worker thread.

        A search costs milliseconds on a large archive (``bench/bench_retrieval.py``): on the
        event loop it would stall every other message, heartbeat and HTTP request meanwhile.
        The index is immutable, so concurrent searches are safe.
        """
        if self.exemplars is None or not self.k:
            return []
        return await asyncio.to_thread(self.exemplars.top_k, findings, self.k)

    def check_scope(
        self,
        findings: str,
        *,
        procedure_code: str | None = None,
        procedure_text: str | None = None,
        modality: str | None = None,
    ) -> ScopeDecision:
        """Whether this study is inside the adapter's validated scope (pure; no model)."""
        return decide(
            self.scope,
            findings=findings,
            procedure_code=procedure_code,
            procedure_text=procedure_text,
            modality=modality,
        )

    async def draft(
        self,
        findings: str,
        *,
        context: Mapping[str, str] | None = None,
        scope: ScopeDecision | None = None,
    ) -> Draft:
        """Draft the impression for ``findings`` (context: e.g. modality, indication).

        ``scope`` is the caller's :meth:`check_scope` decision made with the procedure;
        without it the findings alone decide.  Out of scope raises :class:`OutOfScope`.
        """
        if not findings or not findings.strip():
            raise InvalidRequest("findings are empty: nothing to draft from")
        decision = scope if scope is not None else self.check_scope(findings)
        if not decision.in_scope:
            raise OutOfScope(f"not drafted: {decision.reason}")
        await self.start()
        examples = await self._examples(findings)
        prompt = self.prompter.build(findings, context=context, examples=examples)
        start = time.perf_counter()
        greedy = await self._generate(prompt, None)
        completions = [greedy]
        verdicts = [self._check(findings, greedy)]
        chosen: Verdict | None = verdicts[0]
        if self.safety_checks and not verdicts[0].passes and self.samples:
            sampled = await asyncio.gather(
                *(
                    self._generate(prompt, Sampling(temperature=self.temperature, seed=i))
                    for i in range(1, self.samples + 1)
                )
            )
            completions.extend(sampled)
            verdicts.extend(self._check(findings, c) for c in sampled)
        if self.safety_checks:
            chosen = best_candidate(verdicts)
        latency = time.perf_counter() - start
        rejected = tuple(sorted({f.kind for v in verdicts for f in v.blocking}))
        if chosen is None and self.fallback:
            text = extractive_impression(findings)
            flags = tuple(check_draft(findings, text))
            method: DraftMethod = "extractive-fallback"
            completion = greedy
        else:
            if chosen is None:  # checks on, fallback off: the least-flagged candidate
                chosen = min(verdicts, key=lambda v: v.rank)
            index = verdicts.index(chosen)
            completion = completions[index]
            text, flags, method = chosen.text, chosen.flags, "model"
        if not text:
            raise GenerationFailed("the model returned an empty impression")
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
            safety_flags=flags if self.safety_checks else (),
            method=method,
            candidates=len(completions),
            rejected=rejected,
        )

    async def _generate(self, prompt: str, sampling: Sampling | None) -> Completion:
        return await self.backend.generate(
            prompt, max_new_tokens=self.max_new_tokens, stop=self.prompter.stop, sampling=sampling
        )

    def _check(self, findings: str, completion: Completion) -> Verdict:
        text = self.prompter.parse(completion.text, truncated=completion.finish_reason == "length")
        if not self.safety_checks:
            return Verdict(text, (), ())
        if not text:
            return Verdict(text, (), (_EMPTY,))
        return verify(findings, text)

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
