"""The positive findings of a report, and the extractive impression built from them.

:func:`positive_findings` lists what the FINDINGS assert (present or hedged, not negated),
with side, certainty and criticality, using the assertion engine of
:mod:`inference.safety` (lexicon, NegEx-style scopes; compared with medspaCy's ConText in
``docs/safety-checks.md``).  :func:`extractive_impression` condenses the clauses that carry
those findings into a short impression: the safe fallback when no model candidate passes the
consistency checks (``method: extractive-fallback``).  Pure functions; English only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from inference.safety import (
    INCIDENTAL_CONCEPTS,
    Mention,
    find_mentions,
    split_clauses,
    split_sentences,
)

__all__ = [
    "NORMAL_IMPRESSION",
    "PositiveFinding",
    "extractive_impression",
    "finding_hints",
    "positive_findings",
]

Certainty = Literal["present", "uncertain"]

#: The impression written when the findings assert nothing abnormal.
NORMAL_IMPRESSION: Final = "No acute cardiopulmonary abnormality."

_CHRONIC_WORDS: Final = frozenset(
    {"old", "healed", "remote", "chronic", "calcified", "stable", "unchanged", "postsurgical"}
)


@dataclass(frozen=True, slots=True)
class PositiveFinding:
    """One finding the report asserts: its concept, where it was said, side and certainty."""

    concept: str
    clause: str
    sides: frozenset[str]
    certainty: Certainty
    critical: bool
    incidental: bool

    @property
    def side_text(self) -> str:
        if self.sides == {"left", "right"}:
            return "bilateral"
        return next(iter(self.sides), "")


def _is_incidental(mention: Mention) -> bool:
    return mention.concept in INCIDENTAL_CONCEPTS or (
        mention.concept in ("fracture", "dislocation") and bool(mention.qualifiers & _CHRONIC_WORDS)
    )


def _clauses(findings: str) -> list[str]:
    return [c for s in split_sentences(findings) for c in split_clauses(s)]


def positive_findings(findings: str) -> list[PositiveFinding]:
    """The findings asserted (present or hedged) in ``findings``, one per concept and
    clause, in reading order; critical ones flagged."""
    found: list[PositiveFinding] = []
    seen: set[tuple[str, str]] = set()
    for clause in _clauses(findings):
        for mention in find_mentions(clause):
            if mention.polarity not in ("present", "uncertain"):
                continue
            key = (mention.concept, clause)
            if key in seen:
                continue
            seen.add(key)
            found.append(
                PositiveFinding(
                    concept=mention.concept,
                    clause=clause,
                    sides=frozenset(mention.sides),
                    certainty="present" if mention.polarity == "present" else "uncertain",
                    critical=mention.critical,
                    incidental=_is_incidental(mention),
                )
            )
    return found


_LEAD: Final = re.compile(
    r"^(?:(?:and|also|again|additionally|in addition|there (?:is|are|has been|have been)"
    r"|there is again|redemonstrat\w+ (?:of )?|again (?:seen|noted) (?:is|are)|an?)\s+)+",
    re.IGNORECASE,
)
_SPACE: Final = re.compile(r"\s+")


def _tidy(clause: str) -> str:
    text = _SPACE.sub(" ", clause).strip(" ,;:")
    text = _LEAD.sub("", text).strip(" ,;:")
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _ordered(items: list[PositiveFinding]) -> list[PositiveFinding]:
    """Critical findings first, then the other reportable ones, then incidental ones."""
    return (
        [f for f in items if f.critical]
        + [f for f in items if not f.critical and not f.incidental]
        + [f for f in items if not f.critical and f.incidental]
    )


def finding_hints(findings: str, *, max_items: int = 6) -> list[str]:
    """The positive clauses of ``findings`` as short lines for a prompt's hint block.

    Same order as :func:`extractive_impression` (critical, reportable, incidental), one
    line per clause, incidental ones marked ``(incidental)``; empty when nothing is
    asserted.  Training and inference build the block from this one function.
    """
    lines: list[str] = []
    seen: set[str] = set()
    for item in _ordered(positive_findings(findings)):
        text = _tidy(item.clause)
        if not text or text in seen:
            continue
        seen.add(text)
        lines.append(f"{text} (incidental)" if item.incidental and not item.critical else text)
        if len(lines) >= max_items:
            break
    return lines


def extractive_impression(findings: str, *, max_items: int = 4) -> str:
    """A short impression made only of this report's own positive clauses.

    Critical findings come first, then the other reportable ones in reading order, then
    (only when nothing else is left) incidental ones; at most ``max_items`` clauses.  With
    no positive finding at all the impression is :data:`NORMAL_IMPRESSION`.
    """
    items = positive_findings(findings)
    if not items:
        return NORMAL_IMPRESSION
    ordered = _ordered(items)
    reportable = [f for f in ordered if not f.incidental or f.critical]
    chosen = reportable or ordered
    clauses: list[str] = []
    for item in chosen:
        text = _tidy(item.clause)
        if text and text not in clauses:
            clauses.append(text)
        if len(clauses) >= max_items:
            break
    return " ".join(clauses)
