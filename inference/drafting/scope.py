"""Scope gating: draft only the studies an adapter was validated on.

An adapter's ``radgpt-adapter.json`` says what it was validated on (``scope``: modalities,
body parts, procedure codes; chest radiographs for the shipped one).  :func:`decide` reads
what a report says about itself — the procedure code and its text (OBR-4 / FHIR
``DiagnosticReport.code``), the modality or diagnostic section (OBR-24 / category) — and,
when those say nothing, which body region the findings describe.  A study outside the scope
is not drafted: the pipeline audits it as skipped with reason ``out_of_scope``.  A site adds
the scopes it has validated itself with ``RADGPT_INFERENCE__EXTRA_SCOPES`` (``"CT:CHEST"``,
or ``"code:71250"``).  Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from inference.safety.anatomy import dominant_region

__all__ = ["DEFAULT_SCOPE", "Scope", "ScopeDecision", "decide", "parse_scope_items"]

Basis = Literal["procedure_code", "procedure", "modality", "findings", "none"]

# Modalities as written in procedure names and in OBR-24 / category codes.
_MODALITY_WORDS: Final[tuple[tuple[str, str], ...]] = (
    (r"cta|ct|cat scan|computed tomograph\w*", "CT"),
    (r"mra|mri|mr|nmr|magnetic resonance", "MR"),
    (r"us|cus|ultrasound|sonogra\w*|doppler|echo\w*", "US"),
    (r"pet|pt|spect|nm|nms|nuclear|scintigra\w*", "NM"),
    (r"mammo\w*|mg|tomosynthesis", "MG"),
    (r"fluoro\w*|rf|esophagram|swallow", "RF"),
    (r"xa|angio\w*", "XA"),
    (r"xr|cr|dx|x-?rays?|radiogra\w*|portable|cxr|plain film", "XR"),
)
_MODALITY_RE: Final = tuple(
    (re.compile(rf"\b(?:{words})\b", re.IGNORECASE), code) for words, code in _MODALITY_WORDS
)
_BODY_WORDS: Final[tuple[tuple[str, str], ...]] = (
    (r"chest|thorax|thoracic cavity|cxr|lungs?|pulmonary", "CHEST"),
    (r"head|brain|skull|cranial|intracranial|sinus\w*|orbits?|facial", "HEAD"),
    (r"neck|cervical soft tissue|thyroid", "NECK"),
    (r"abd\w*|pelvi\w*|kub|renal|liver|hepat\w*|gallbladder|appendix", "ABDOMEN"),
    (r"c-?spine|t-?spine|l-?spine|spine|lumbar|vertebra\w*", "SPINE"),
    (r"breasts?|mammo\w*", "BREAST"),
    (
        r"hand|wrist|elbow|shoulder|humerus|forearm|finger|hip|femur|knee|tibia|ankle|foot"
        r"|feet|toe|extremity|extremities",
        "EXTREMITY",
    ),
)
_BODY_RE: Final = tuple(
    (re.compile(rf"\b(?:{words})\b", re.IGNORECASE), code) for words, code in _BODY_WORDS
)
# OBR-24 (HL7 table 0074) and FHIR category codes that name no particular modality.
_GENERIC_SECTIONS: Final = frozenset({"RAD", "IMG", "RX", "LP29684-5", "RADIOLOGY", "IMAGING"})
_REGION_BODY: Final[Mapping[str, str]] = {
    "chest": "CHEST",
    "head": "HEAD",
    "neck": "NECK",
    "abdomen": "ABDOMEN",
    "spine": "SPINE",
    "extremity": "EXTREMITY",
    "breast": "BREAST",
}


@dataclass(frozen=True, slots=True)
class Scope:
    """What an adapter is validated on: (modality, body part) pairs and procedure codes."""

    pairs: frozenset[tuple[str, str]]
    procedure_codes: frozenset[str] = frozenset()

    @property
    def modalities(self) -> frozenset[str]:
        return frozenset(m for m, _ in self.pairs)

    @property
    def body_parts(self) -> frozenset[str]:
        return frozenset(b for _, b in self.pairs)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Scope:
        """``{"modalities": [...], "body_parts": [...], "procedure_codes": [...]}``: every
        listed modality with every listed body part."""
        modalities = [str(m).upper() for m in data.get("modalities") or []]
        body_parts = [str(b).upper() for b in data.get("body_parts") or []]
        codes = frozenset(str(c) for c in data.get("procedure_codes") or [])
        if not (modalities and body_parts) and not codes:
            raise ValueError("a scope needs modalities and body_parts, or procedure_codes")
        return cls(frozenset((m, b) for m in modalities for b in body_parts), codes)

    def to_json(self) -> dict[str, list[str]]:
        return {
            "modalities": sorted(self.modalities),
            "body_parts": sorted(self.body_parts),
            "procedure_codes": sorted(self.procedure_codes),
        }

    def extended(self, items: Iterable[str]) -> Scope:
        """This scope plus a site's validated extras (see :func:`parse_scope_items`)."""
        pairs, codes = parse_scope_items(items)
        return Scope(self.pairs | pairs, self.procedure_codes | codes)


def parse_scope_items(items: Iterable[str]) -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
    """``"CT:CHEST"`` -> a (modality, body part) pair; ``"code:71250"`` -> a procedure code."""
    pairs: set[tuple[str, str]] = set()
    codes: set[str] = set()
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        head, sep, tail = item.partition(":")
        if not sep or not head.strip() or not tail.strip():
            raise ValueError(f"scope item {raw!r}: write MODALITY:BODYPART or code:CODE")
        if head.strip().lower() == "code":
            codes.add(tail.strip())
        else:
            pairs.add((head.strip().upper(), tail.strip().upper()))
    return frozenset(pairs), frozenset(codes)


#: The shipped adapter's scope: chest radiographs (Open-i).
DEFAULT_SCOPE: Final = Scope(
    frozenset({("XR", "CHEST")}),
    frozenset({"71045", "71046", "71047", "71048", "36643-5", "36554-4", "24648-8"}),
)


@dataclass(frozen=True, slots=True)
class ScopeDecision:
    """Whether a study is in scope, why, and on what evidence."""

    in_scope: bool
    reason: str
    basis: Basis
    modality: str | None = None
    body_part: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "in_scope": self.in_scope,
            "reason": self.reason,
            "basis": self.basis,
            "modality": self.modality,
            "body_part": self.body_part,
        }


def _first(patterns: tuple[tuple[re.Pattern[str], str], ...], text: str) -> str | None:
    best: tuple[int, str] | None = None
    for pattern, code in patterns:
        m = pattern.search(text)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), code)
    return best[1] if best else None


def _modality_of(section: str | None) -> str | None:
    if not section or section.strip().upper() in _GENERIC_SECTIONS:
        return None
    return _first(_MODALITY_RE, section.strip())


def decide(
    scope: Scope,
    *,
    findings: str,
    procedure_code: str | None = None,
    procedure_text: str | None = None,
    modality: str | None = None,
) -> ScopeDecision:
    """Is this study inside ``scope``?  Evidence in order: the procedure code, the
    procedure name and modality field, and — when they say nothing — the findings' region.
    The findings also veto: a "chest" order whose findings describe the brain is out."""
    region = dominant_region(findings)
    region_part = _REGION_BODY.get(region) if region else None
    if procedure_code and procedure_code.strip() in scope.procedure_codes:
        if region_part is not None and region_part not in scope.body_parts:
            return ScopeDecision(
                False,
                f"procedure code {procedure_code} is in scope but the findings describe the "
                f"{region}",
                "findings",
                body_part=region_part,
            )
        return ScopeDecision(True, f"procedure code {procedure_code}", "procedure_code")
    text = procedure_text or ""
    mod = _first(_MODALITY_RE, text) if text else None
    mod = mod or _modality_of(modality)
    part = _first(_BODY_RE, text) if text else None
    if mod is not None and mod not in scope.modalities:
        return ScopeDecision(
            False, f"modality {mod} is not validated for this adapter", "procedure", mod, part
        )
    if part is not None and part not in scope.body_parts:
        return ScopeDecision(
            False, f"body part {part} is not validated for this adapter", "procedure", mod, part
        )
    if mod is not None and part is not None and (mod, part) not in scope.pairs:
        return ScopeDecision(
            False, f"{mod} {part} is not validated for this adapter", "procedure", mod, part
        )
    part = part or region_part
    if region_part is not None and region_part != part:
        return ScopeDecision(
            False, f"the findings describe the {region}", "findings", mod, region_part
        )
    if part is None:
        return ScopeDecision(
            False, "neither the procedure nor the findings say what was imaged", "none", mod
        )
    if part not in scope.body_parts:
        return ScopeDecision(False, f"the findings describe the {region}", "findings", mod, part)
    basis: Basis = "procedure" if (procedure_text and mod) else "findings"
    return ScopeDecision(True, f"{mod or 'study'} of the {part.lower()}", basis, mod, part)
