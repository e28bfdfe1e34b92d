"""The safety checks: a draft impression compared with the findings it was drafted from.

Every statement a reviewing radiologist must look at is reported as a :class:`SafetyFlag`
(the kinds are described in :mod:`inference.safety`).  Pure and deterministic: the
assertion engine (:mod:`inference.safety.assertion`) reads both texts, and the checks
compare what each asserts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

from inference.safety.anatomy import region_counts
from inference.safety.assertion import NOT_MENTIONED, ConceptStatus, assess
from inference.safety.lexicon import BY_NAME, RANK, RELATED, Concept, Side

__all__ = ["FLAG_KINDS", "FlagKind", "SafetyFlag", "Severity", "check_draft", "summarise_flags"]

FlagKind = Literal[
    "negation_flip",
    "laterality_conflict",
    "invented_finding",
    "omitted_critical",
    "unreported_finding",
    "anatomical_scope",
]
Severity = Literal["warning", "critical"]

FLAG_KINDS: Final[tuple[FlagKind, ...]] = get_args(FlagKind)


@dataclass(frozen=True, slots=True)
class SafetyFlag:
    """One thing a reviewing radiologist must check in a draft impression."""

    kind: FlagKind
    phrase: str
    detail: str
    severity: Severity


# --- the checks ----------------------------------------------------------------------------

_SEVERITY_RANK: Final[Mapping[Severity, int]] = {"critical": 0, "warning": 1}
_KIND_RANK: Final[Mapping[FlagKind, int]] = {k: i for i, k in enumerate(FLAG_KINDS)}


def _side_text(sides: Iterable[Side]) -> str:
    """ "on both sides", "on the left", "on the right"."""
    s = set(sides)
    return "on both sides" if s == {"left", "right"} else f"on the {''.join(s)}"


def _high_stakes(concept: Concept) -> bool:
    return concept.criticality != "never" or concept.acute


def _denies(negative: ConceptStatus, positive: ConceptStatus) -> bool:
    """Whether ``negative`` denies what ``positive`` asserts ("no left effusion" does not
    deny a right one)."""
    if negative.implied_absent:
        return True
    if not negative.absent:
        return False
    if negative.absent_unsided or not positive.sides:
        return True
    return bool(negative.absent_sides & positive.sides)


def check_draft(findings: str, draft: str) -> list[SafetyFlag]:
    """Compare a draft impression with its findings and return what a reviewer must check.

    Flags are ordered critical first, then by kind (``negation_flip``,
    ``laterality_conflict``, ``invented_finding``, ``omitted_critical``), then by lexicon
    order; there is at most one flag per kind and concept.
    """
    if not isinstance(findings, str) or not isinstance(draft, str):
        raise TypeError("check_draft() takes the findings and the draft as strings")
    source = assess(findings)
    target = assess(draft)
    flags: list[tuple[int, int, int, SafetyFlag]] = []

    def add(kind: FlagKind, name: str, detail: str, severity: Severity) -> None:
        flags.append(
            (
                _SEVERITY_RANK[severity],
                _KIND_RANK[kind],
                RANK[name],
                SafetyFlag(kind=kind, phrase=name, detail=detail, severity=severity),
            )
        )

    source_positive = {n for n, s in source.items() if s.positive}
    target_positive = {n for n, s in target.items() if s.positive}
    for name in sorted(set(source) | set(target), key=RANK.__getitem__):
        concept = BY_NAME[name]
        f = source.get(name, NOT_MENTIONED)
        d = target.get(name, NOT_MENTIONED)
        stakes: Severity = "critical" if _high_stakes(concept) else "warning"
        related_in_findings = bool(source_positive & RELATED[concept.name])
        # -- negation flips ------------------------------------------------------------
        if f.positive and not d.positive and _denies(d, f):
            if d.absent:
                how = "the draft states it is absent"
            else:
                how = "the draft's general statement denies it"
            said = "as present" if f.present else "as possible"
            severity: Severity = stakes if (f.present and d.absent) else "warning"
            if d.implied_absent and concept.criticality != "always":
                severity = "warning"
            if not (d.implied_absent and f.critical):  # that case is an omitted_critical
                add("negation_flip", name, f"findings report {name} {said}; {how}", severity)
        elif (
            d.positive
            and not f.positive
            and _denies(f, d)
            and (f.absent or not related_in_findings)
        ):
            said = "as present" if d.present else "as possible"
            how = "state it is absent" if f.absent else "describe normal appearances"
            severity = stakes if d.present else "warning"
            add(
                "negation_flip",
                name,
                f"the draft reports {name} {said}; the findings {how}",
                severity,
            )
        # -- laterality -----------------------------------------------------------------
        if d.positive and d.sides:
            if f.positive:
                where, basis = f.sides, name
            else:
                # "left upper lobe opacity" -> draft "right upper lobe pneumonia"
                supporting = sorted(
                    (r for r in RELATED[name] if r in source_positive and source[r].sides),
                    key=RANK.__getitem__,
                )
                where = frozenset().union(*(source[r].sides for r in supporting))
                basis = " / ".join(supporting)
            if where and not d.sides <= where:
                add(
                    "laterality_conflict",
                    name,
                    f"findings place {basis} {_side_text(where)}; "
                    f"the draft puts {name} {_side_text(d.sides)}",
                    "critical" if _high_stakes(concept) else "warning",
                )
        # -- invented findings ------------------------------------------------------------
        if d.positive and not f.mentioned and not f.implied_absent and not related_in_findings:
            severity = "critical" if d.critical and d.present else "warning"
            hedge = "" if d.present else " as possible"
            add(
                "invented_finding",
                name,
                f"the draft reports {name}{hedge}, which the findings do not describe",
                severity,
            )
        # -- omitted critical findings -------------------------------------------------------
        if (
            f.positive
            and f.critical
            and not d.mentioned
            and not (target_positive & RELATED[concept.name])
        ):
            said = "" if f.present else " as possible"
            add(
                "omitted_critical",
                name,
                f"findings report {name}{said}; the draft does not mention it",
                "critical",
            )
        # -- unreported (non-critical) findings ------------------------------------------
        elif (
            f.positive
            and f.reportable
            and not f.critical
            and not d.mentioned
            and not d.implied_absent  # a general denial is a negation_flip already
            and not (target_positive & RELATED[concept.name])
        ):
            said = "" if f.present else " as possible"
            add(
                "unreported_finding",
                name,
                f"findings report {name}{said}; the draft neither mentions nor summarises it",
                "warning",
            )
    scope = _scope_conflict(findings, draft)
    if scope is not None:
        flags.append((_SEVERITY_RANK["critical"], _KIND_RANK["anatomical_scope"], -1, scope))
    flags.sort(key=lambda item: item[:3])
    return [flag for *_, flag in flags]


def _scope_conflict(findings: str, draft: str) -> SafetyFlag | None:
    """A draft about a region the findings never describe (lungs for a head CT)."""
    source = region_counts(findings)
    target = region_counts(draft)
    foreign = sorted(r for r in target if r not in source)
    if not source or not foreign:
        return None
    # A chest impression that also suggests an abdominal study is not a scope error; one
    # that speaks mostly of a region the findings never describe is.
    shared = sum(n for r, n in target.items() if r in source)
    if sum(target[r] for r in foreign) <= shared:
        return None
    described = ", ".join(sorted(source))
    return SafetyFlag(
        kind="anatomical_scope",
        phrase=foreign[0],
        detail=f"the draft speaks of the {', '.join(foreign)}; the findings describe the "
        f"{described} only",
        severity="critical",
    )


def summarise_flags(results: Sequence[Sequence[SafetyFlag]]) -> dict[str, float]:
    """Rate of reports with at least one flag of each kind (plus ``any`` and ``critical``).

    ``results`` holds one flag list per report; an empty input gives all-zero rates.
    """
    total = len(results)
    counts = dict.fromkeys((*FLAG_KINDS, "any", "critical"), 0)
    for flags in results:
        for kind in {f.kind for f in flags}:
            counts[kind] += 1
        if flags:
            counts["any"] += 1
        if any(f.severity == "critical" for f in flags):
            counts["critical"] += 1
    return {k: (v / total if total else 0.0) for k, v in counts.items()}
