"""Verify and choose: check each model candidate against the findings, keep the best.

A candidate *passes* when :func:`inference.safety.check_draft` raises no flag of a blocking
kind (by default every kind: a flipped negation, a side conflict, an invented finding, an
omitted critical or unreported positive finding, an anatomical scope error).  Among passing
candidates the first in generation order wins (greedy first), so a draft is only changed
when the greedy one is wrong.  When none passes, the caller writes the extractive fallback
(:func:`inference.drafting.findings.extractive_impression`).  Pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from inference.safety import FLAG_KINDS, FlagKind, SafetyFlag, check_draft

__all__ = ["BLOCKING_KINDS", "Verdict", "best_candidate", "verify"]

#: Flag kinds that reject a candidate.
BLOCKING_KINDS: Final[frozenset[FlagKind]] = frozenset(FLAG_KINDS)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One candidate and what the checks said about it."""

    text: str
    flags: tuple[SafetyFlag, ...]
    blocking: tuple[SafetyFlag, ...]

    @property
    def passes(self) -> bool:
        return not self.blocking

    @property
    def rank(self) -> tuple[int, int, int]:
        """Lower is better: blocking critical flags, blocking flags, all flags."""
        critical = sum(f.severity == "critical" for f in self.blocking)
        return (critical, len(self.blocking), len(self.flags))


def verify(findings: str, text: str, *, blocking: frozenset[FlagKind] = BLOCKING_KINDS) -> Verdict:
    """Check one candidate impression against its findings."""
    flags = tuple(check_draft(findings, text))
    return Verdict(text, flags, tuple(f for f in flags if f.kind in blocking))


def best_candidate(verdicts: Sequence[Verdict]) -> Verdict | None:
    """The first passing candidate, or ``None`` when every candidate is rejected."""
    for verdict in verdicts:
        if verdict.passes:
            return verdict
    return None
