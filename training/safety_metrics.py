"""Safety metrics of draft impressions (pure functions over one predictions file).

Beside ROUGE, ``radgpt eval`` measures how drafts fail a radiologist:

* **missed-abnormal**: the reference impression is abnormal (not a normal template, see
  :func:`training.metrics.is_normal_impression`) and the draft is a normal template or
  names no positive finding (no mention with polarity ``present`` or ``uncertain`` from
  :func:`inference.safety.find_mentions`); a rate over the abnormal reports;
* **copy rate**: the draft equals (after :func:`normalise_impression`) one of the exemplar
  impressions retrieved for that report, and separately any training impression;
* **extractive-fallback rate**: the share of drafts whose ``method`` is
  ``extractive-fallback`` (the drafting step gave up on the model);
* **flag rates**: :func:`inference.safety.summarise_flags` over
  :func:`inference.safety.check_draft` of the drafts and of the reference impressions (the
  checker's own floor), and their ratio for ``any``;
* all of these and ROUGE-1/2/L on the subsets normal / abnormal / exact-twin (the findings
  are identical, up to whitespace, to a training report's findings) / non-twin.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from inference.safety import SafetyFlag, check_draft, find_mentions, summarise_flags

from .metrics import is_normal_impression, mean_scores, rouge_per_report

__all__ = [
    "FALLBACK_METHOD",
    "SUBSETS",
    "ReportSafety",
    "SafetyRow",
    "TrainingSet",
    "names_positive_finding",
    "normalise_findings",
    "normalise_impression",
    "report_safety",
    "safety_metrics",
    "subset_members",
    "summarise_subset",
]

FALLBACK_METHOD = "extractive-fallback"
SUBSETS = ("overall", "normal", "abnormal", "exact_twin", "non_twin")
_TRAILING = re.compile(r"[\s.,;:!?]+$")


def normalise_impression(text: str) -> str:
    """Lower case, single spaces, no trailing punctuation: how copies are compared."""
    return _TRAILING.sub("", " ".join(text.lower().split()))


def normalise_findings(text: str) -> str:
    """Findings with whitespace collapsed: how exact twins are compared (case kept)."""
    return " ".join(text.split())


def names_positive_finding(text: str) -> bool:
    """True when ``text`` mentions a lexicon finding as present or uncertain."""
    return any(m.polarity in ("present", "uncertain") for m in find_mentions(text))


@dataclass(frozen=True, slots=True)
class TrainingSet:
    """What a draft is compared with to find twins and copies of training impressions."""

    findings: frozenset[str]
    impressions: frozenset[str]
    source: str

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]], *, source: str) -> TrainingSet:
        """From ``(findings, impression)`` pairs of the training reports."""
        findings, impressions = set(), set()
        for f, i in pairs:
            findings.add(normalise_findings(f))
            impressions.add(normalise_impression(i))
        return cls(frozenset(findings), frozenset(impressions), source)


@dataclass(frozen=True, slots=True)
class SafetyRow:
    """The parts of one prediction the safety metrics need."""

    idx: int | str
    inputs: str
    target: str
    output: str
    method: str | None = None
    exemplars: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ReportSafety:
    """Per-report safety facts.  ``None`` means "cannot tell" (no exemplars, no training set)."""

    idx: int | str
    rouge: tuple[float, float, float]
    reference_normal: bool
    draft_normal_template: bool
    draft_names_positive: bool
    twin: bool | None
    copy_exemplar: bool | None
    copy_training: bool | None
    fallback: bool
    draft_flags: tuple[SafetyFlag, ...]
    reference_flags: tuple[SafetyFlag, ...]

    @property
    def missed_abnormal(self) -> bool:
        """The reference is abnormal and the draft is a normal template or names nothing."""
        return not self.reference_normal and (
            self.draft_normal_template or not self.draft_names_positive
        )


def report_safety(
    rows: Sequence[SafetyRow],
    *,
    training: TrainingSet | None = None,
    reference_flags: Sequence[Sequence[SafetyFlag]] | None = None,
) -> list[ReportSafety]:
    """Per-report safety facts of ``rows`` (ROUGE included).

    ``rows[i].exemplars`` are the exemplar impressions the draft was made with (``None``:
    unknown, so ``copy_exemplar`` is ``None``).  ``reference_flags`` may pass the checks of
    the reference impressions computed once for several systems on the same reports.
    """
    if reference_flags is not None and len(reference_flags) != len(rows):
        raise ValueError("reference_flags must have one entry per row")
    rouge = rouge_per_report([r.output for r in rows], [r.target for r in rows])
    out = []
    for n, (row, scores) in enumerate(zip(rows, rouge, strict=True)):
        draft = normalise_impression(row.output)
        ref_flags = (
            tuple(reference_flags[n])
            if reference_flags is not None
            else tuple(check_draft(row.inputs, row.target))
        )
        out.append(
            ReportSafety(
                idx=row.idx,
                rouge=scores,
                reference_normal=is_normal_impression(row.target),
                draft_normal_template=is_normal_impression(row.output),
                draft_names_positive=names_positive_finding(row.output),
                twin=None
                if training is None
                else normalise_findings(row.inputs) in training.findings,
                copy_exemplar=None
                if row.exemplars is None
                else draft in {normalise_impression(e) for e in row.exemplars},
                copy_training=None if training is None else draft in training.impressions,
                fallback=row.method == FALLBACK_METHOD,
                draft_flags=tuple(check_draft(row.inputs, row.output)),
                reference_flags=ref_flags,
            )
        )
    return out


def subset_members(reports: Sequence[ReportSafety], subset: str) -> list[int] | None:
    """Positions of the reports in ``subset`` (``None`` when twins are unknown)."""
    if subset == "overall":
        return list(range(len(reports)))
    if subset in ("normal", "abnormal"):
        want = subset == "normal"
        return [i for i, r in enumerate(reports) if r.reference_normal is want]
    if subset in ("exact_twin", "non_twin"):
        if any(r.twin is None for r in reports):
            return None
        want = subset == "exact_twin"
        return [i for i, r in enumerate(reports) if r.twin is want]
    raise ValueError(f"unknown subset {subset!r} (choose from {', '.join(SUBSETS)})")


def _count(flags: Sequence[bool | None]) -> dict[str, Any]:
    known = [f for f in flags if f is not None]
    if len(known) < len(flags):
        return {"n": len(flags), "count": None, "rate": None}
    count = sum(known)
    return {"n": len(flags), "count": count, "rate": round(count / len(flags), 4) if flags else 0.0}


def _rates(results: Sequence[Sequence[SafetyFlag]]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in summarise_flags(results).items()}


def summarise_subset(reports: Sequence[ReportSafety]) -> dict[str, Any]:
    """Aggregate metrics of some reports: ROUGE, missed-abnormal, copies, fallback, flags."""
    abnormal = [r for r in reports if not r.reference_normal]
    drafts = _rates([r.draft_flags for r in reports])
    reference = _rates([r.reference_flags for r in reports])
    missed = _count([r.missed_abnormal for r in abnormal])
    missed["normal_template"] = sum(r.draft_normal_template for r in abnormal)
    missed["idx"] = [r.idx for r in abnormal if r.missed_abnormal]
    return {
        **mean_scores([r.rouge for r in reports]).to_json(),
        "missed_abnormal": missed,
        "copy_exemplar": _count([r.copy_exemplar for r in reports]),
        "copy_training": _count([r.copy_training for r in reports]),
        "extractive_fallback": _count([r.fallback for r in reports]),
        "flags": {
            "drafts": drafts,
            "reference": reference,
            "any_ratio": round(drafts["any"] / reference["any"], 3) if reference["any"] else None,
        },
    }


def safety_metrics(
    reports: Sequence[ReportSafety], *, training_source: str | None = None
) -> dict[str, Any]:
    """:func:`summarise_subset` of every subset in :data:`SUBSETS` (``None``: unknown)."""
    out: dict[str, Any] = {"training_set": training_source}
    for subset in SUBSETS:
        members = subset_members(reports, subset)
        out[subset] = None if members is None else summarise_subset([reports[i] for i in members])
    return out
