"""Typed results crossing the inference boundary: a backend's :class:`Completion` and the
drafter's :class:`Draft`.

Both are frozen dataclasses so that the Kafka worker, the audit log and the API can pass
them around without copying; :meth:`Draft.to_dict` gives a JSON-ready view for logs of
provenance (it carries the impression text, so it is not meant for plain log messages).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .safety.checks import SafetyFlag

__all__ = [
    "BackendName",
    "Completion",
    "Draft",
    "DraftMethod",
    "FinishReason",
    "Generation",
    "GenerationRequest",
    "Sampling",
    "TokenInfo",
]

FinishReason = Literal["eos_token", "length", "stop_sequence"]
#: How a draft's text was made: the model's best verified candidate, or — when no candidate
#: passed the consistency checks — the report's own positive findings, condensed.
DraftMethod = Literal["model", "extractive-fallback"]
BackendName = Literal["tgi", "openai", "local", "instant"]


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampled (not greedy) decoding for one generation: the extra candidates of
    verify-and-choose drafting.  ``seed`` makes a sample reproducible on servers that
    honour it (TGI, vLLM, the embedded model)."""

    temperature: float = 0.7
    top_p: float | None = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError("sampling temperature must be > 0")
        if self.top_p is not None and not 0 < self.top_p < 1:
            raise ValueError("top_p must be in (0, 1)")


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One generation for an engine (embedded model or the instant engine).

    ``adapter_id`` ``None`` means the base model.  Greedy unless ``do_sample`` or one of the
    sampling parameters is set (TGI semantics).
    """

    prompt: str
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    adapter_id: str | None = None
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None

    @property
    def sampling(self) -> bool:
        return self.do_sample or any(
            v is not None for v in (self.temperature, self.top_p, self.top_k)
        )


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    text: str
    logprob: float


@dataclass(frozen=True, slots=True)
class Generation:
    """What an engine produced for one :class:`GenerationRequest`."""

    text: str
    prompt_tokens: int
    generated_tokens: int
    finish_reason: FinishReason
    seconds: float
    tokens: tuple[TokenInfo, ...] = ()
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """One raw generation as returned by a backend (before parsing)."""

    text: str
    model_id: str
    adapter_id: str | None
    prompt_tokens: int | None
    generated_tokens: int | None
    finish_reason: FinishReason
    backend: BackendName
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Draft:
    """A parsed, AI-generated IMPRESSION and where it came from.

    ``text`` is the clean impression; ``raw_text`` what the model produced.  ``truncated``
    is true when generation hit ``max_new_tokens`` (the impression may be incomplete).
    ``safety_flags`` are the findings of :func:`inference.safety.check_draft` (empty when
    that module is not installed or nothing was flagged).  ``method`` says whether the text
    is a model candidate or the extractive fallback; ``candidates`` how many model
    candidates were generated and checked; ``rejected`` the flag kinds that made the
    verifier reject candidates.
    """

    text: str
    raw_text: str
    model_id: str
    adapter_id: str | None
    prompt_tokens: int | None
    generated_tokens: int | None
    latency_s: float
    finish_reason: FinishReason
    backend: BackendName
    exemplars: int = 0
    safety_flags: tuple[SafetyFlag, ...] = field(default=())
    method: DraftMethod = "model"
    candidates: int = 1
    rejected: tuple[str, ...] = field(default=())

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["truncated"] = self.truncated
        data["safety_flags"] = [_flag_dict(f) for f in self.safety_flags]
        return data


def _flag_dict(flag: Any) -> Any:
    if hasattr(flag, "model_dump"):
        return flag.model_dump(mode="json")
    if hasattr(flag, "__dataclass_fields__"):
        return asdict(flag)
    return str(flag)
