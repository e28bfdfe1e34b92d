"""Rule-based safety checks for AI-drafted impressions.

The draft IMPRESSION is compared with the FINDINGS it was drafted from, and every statement
a reviewing radiologist must look at is reported as a :class:`SafetyFlag`:

``negation_flip``
    a finding is present in one text and stated as absent in the other;
``laterality_conflict``
    the draft puts a finding on a side the findings do not (bilateral vs one side included);
``invented_finding``
    the draft asserts a finding that no finding (nor a related one) in the findings supports;
``omitted_critical``
    a critical finding present (or hedged) in the findings is not mentioned by the draft;
``unreported_finding``
    a reportable (not incidental, not chronic) positive finding of the findings that the
    draft neither mentions nor summarises by a related finding;
``anatomical_scope``
    the draft speaks of a body region the findings do not describe (lungs for a head CT).

The checks are pure, deterministic functions of the two strings: a finding lexicon
(:data:`LEXICON`), sentence/clause splitting, NegEx-style negation and hedge scopes, and
laterality attachment.  No model is involved, so the checks run in well under a millisecond
per report and can be applied to every draft and to whole evaluation sets.  They are English
only and meant to direct attention, not to certify a draft (see ``docs/safety-checks.md``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, Literal, get_args

from .anatomy import region_counts

__all__ = [
    "CRITICAL_CONCEPTS",
    "FLAG_KINDS",
    "INCIDENTAL_CONCEPTS",
    "LEXICON",
    "Concept",
    "FlagKind",
    "Mention",
    "SafetyFlag",
    "Severity",
    "check_draft",
    "find_mentions",
    "split_clauses",
    "split_sentences",
    "summarise_flags",
]

FlagKind = Literal[
    "negation_flip",
    "laterality_conflict",
    "invented_finding",
    "omitted_critical",
    "unreported_finding",
    "anatomical_scope",
]
Severity = Literal["warning", "critical"]
Polarity = Literal["present", "uncertain", "absent", "unasserted"]
Side = Literal["left", "right"]
Criticality = Literal["never", "always", "qualified", "unless_chronic"]

FLAG_KINDS: Final[tuple[FlagKind, ...]] = get_args(FlagKind)


@dataclass(frozen=True, slots=True)
class SafetyFlag:
    """One thing a reviewing radiologist must check in a draft impression."""

    kind: FlagKind
    phrase: str
    detail: str
    severity: Severity


@dataclass(frozen=True, slots=True)
class Concept:
    """A canonical finding with its surface forms.

    ``patterns`` are regular-expression fragments (matched case-insensitively on word
    boundaries).  ``related`` names concepts whose presence supports this one (an impression
    may call an "opacity" of the findings "pneumonia") and which cover it in a draft.
    ``criticality`` says when a present mention is critical: ``always``; ``qualified`` when
    one of ``critical_qualifiers`` modifies it ("large" effusion); ``unless_chronic`` unless
    a chronic qualifier ("old", "healed") does.  ``acute`` concepts are denied by a general
    statement such as "no acute cardiopulmonary abnormality".
    """

    name: str
    patterns: tuple[str, ...]
    related: frozenset[str] = frozenset()
    criticality: Criticality = "never"
    critical_qualifiers: frozenset[str] = frozenset()
    acute: bool = False
    lateral: bool = True


def _c(
    name: str,
    *patterns: str,
    related: Iterable[str] = (),
    criticality: Criticality = "never",
    qualifiers: Iterable[str] = (),
    acute: bool = False,
    lateral: bool = True,
) -> Concept:
    return Concept(
        name, patterns, frozenset(related), criticality, frozenset(qualifiers), acute, lateral
    )


_LUNG_OPACITIES: Final = frozenset(
    {
        "opacity",
        "consolidation",
        "pneumonia",
        "infiltrate",
        "airspace disease",
        "atelectasis",
        "edema",
        "scarring",
        "nodule",
        "mass",
        "granuloma",
        "pleural effusion",
        "infection",
        "aspiration",
        "interstitial disease",
    }
)


def _lung(name: str) -> frozenset[str]:
    return _LUNG_OPACITIES - {name}


_CHRONIC: Final = frozenset(
    {
        "old",
        "healed",
        "healing",
        "remote",
        "chronic",
        "prior",
        "previous",
        "ununited",
        "nonunited",
        "sequela",
        "sequelae",
        "stable",
        "unchanged",
        "known",
        "postsurgical",
        "postoperative",
        "history",
        "post",
        "s/p",
        "resected",
        "treated",
        "calcified",
        "fixation",
        "fixated",
        "again",
        "redemonstrated",
        "redemonstration",
        "similar",
        "repaired",
        "orif",
        "surgical",
    }
)
_SIZE_CRITICAL: Final = frozenset(
    {
        "moderate",
        "large",
        "massive",
        "sizable",
        "sizeable",
        "extensive",
        "significant",
        "substantial",
        "tension",
    }
)

#: The finding lexicon: canonical concept -> surface forms.  Order matters only for ties
#: (earlier alternatives win at the same position); compounds come first.
LEXICON: Final[tuple[Concept, ...]] = (
    # --- critical findings -------------------------------------------------------------
    _c(
        "tension pneumothorax",
        r"tension (?:hydro)?pneumothora(?:x|ces)",
        r"(?:signs?|evidence) of tension",
        r"tension physiology",
        r"under tension",
        related={"pneumothorax"},
        criticality="always",
        acute=True,
    ),
    _c(
        "pneumothorax",
        r"(?:hydro-?|ha?emo-?)?pneumothora(?:x|xes|ces)",
        r"pleural air(?: collections?)?",
        r"air in the (?:\w+ )?pleural space",
        r"ptx",
        related={"tension pneumothorax"},
        criticality="always",
        acute=True,
    ),
    _c(
        "free air",
        r"pneumoperitoneum",
        r"free (?:intraperitoneal |subdiaphragmatic |abdominal |intra-abdominal )?(?:air|gas)",
        r"(?:subdiaphragmatic|intraperitoneal|extraluminal|intra-abdominal) (?:free )?(?:air|gas)",
        criticality="always",
        acute=True,
        lateral=False,
    ),
    _c(
        "pneumomediastinum",
        r"pneumomediastinum",
        r"mediastinal (?:free )?air",
        criticality="always",
        acute=True,
        lateral=False,
    ),
    _c(
        "aortic dissection",
        r"(?:aortic|type [ab]) dissections?",
        r"dissecting aneurysms?",
        r"dissection of the (?:\w+ )?aorta",
        r"(?:intimal|dissection) flap",
        criticality="always",
        acute=True,
        lateral=False,
    ),
    _c(
        "widened mediastinum",
        r"(?:widened|widening of (?:the )?|wide) (?:superior )?mediastin(?:um|al silhouette|al "
        r"contours?|al shadow)",
        r"mediastin(?:um|al silhouette|al contours?) (?:is |appears? |remains? )?(?:\w+ )?"
        r"(?:widened|wide)",
        related={"aortic dissection", "aneurysm", "mass", "hemorrhage"},
        acute=True,
        lateral=False,
    ),
    _c(
        "pulmonary embolism",
        r"pulmonary (?:thrombo)?emboli(?:sm|sms)?",
        r"pulmonary embolus",
        r"(?:thrombo)?emboli(?:sm)?(?! coils?)",
        r"embolus",
        r"saddle embolus",
        r"filling defects? (?:with)?in (?:the )?(?:[\w-]+ ){0,4}pulmonary arter(?:y|ies)",
        criticality="always",
        acute=True,
    ),
    _c(
        "malpositioned device",
        r"mal-?positioned",
        r"mal-?position",
        r"mispositioned",
        r"misplaced",
        r"(?:right )?mainstem intubation",
        r"esophageal intubation",
        r"(?:recommend(?:ed)?|suggest(?:ed)?) (?:repositioning|retraction|withdrawal|advancement)",
        r"should be (?:repositioned|retracted|withdrawn|advanced)",
        r"kinked",
        r"(?:tip|catheter|line|tube|lead|wire)s? (?:has |have )?(?:migrated|moved|coiled|looped"
        r"|flipped)",
        # "endotracheal tube ... in the right mainstem bronchus"; an airway or enteric tube
        # ending in a bronchus, an enteric tube coiled/ending in the esophagus.
        r"(?:endotracheal|et|ett|tracheostomy) tube[\w ,-]{0,60}? (?:in|into|within|enters|at|"
        r"terminat\w* (?:in|at|within)|extend\w* into|projects? (?:over|into)) (?:the )?"
        r"(?:proximal |distal )?(?:right |left )?(?:main ?stem|main|intermedius|lower lobe)"
        r" (?:bronch\w*)",
        r"(?:endotracheal|et|ett) tube[\w ,-]{0,60}? (?:in|into|within|terminat\w* in) (?:the )?"
        r"(?:proximal |mid |distal )?(?:o|)esophag\w*",
        r"(?:enteric|nasogastric|orogastric|feeding|ng|og|dobhoff|dobbhoff) tube[\w ,-]{0,60}? "
        r"(?:in|into|within|terminat\w* (?:in|within)|extend\w* into|coil\w* in) (?:the )?"
        r"(?:right |left )?(?:main ?stem |lower lobe )?(?:bronch\w*|trachea|airway|lung|pleural)",
        r"(?:enteric|nasogastric|orogastric|feeding|ng|og) tube[\w ,-]{0,40}? (?:tip )?"
        r"(?:terminat\w* (?:in|within|at)|coiled in|ends? in) (?:the )?(?:proximal |mid |distal )?"
        r"(?:o|)esophag\w*",
        r"(?:right |left )?main ?stem (?:bronchus )?intubation",
        criticality="always",
        acute=True,
        lateral=False,
    ),
    _c(
        "hemorrhage",
        r"ha?emorrhag(?:e|es|ic)",
        r"bleed(?:s|ing)?",
        r"ha?ematomas?",
        r"ha?emothorax",
        r"ha?emoperitoneum",
        criticality="unless_chronic",
        acute=True,
    ),
    _c(
        "infarct",
        r"infarcts?",
        r"infarction",
        r"strokes?",
        criticality="unless_chronic",
        acute=True,
    ),
    _c(
        "bowel obstruction",
        r"(?:small |large )?bowel obstruction",
        r"(?:sbo)",
        r"obstructed bowel",
        criticality="always",
        acute=True,
        lateral=False,
    ),
    _c(
        "mass",
        r"mass(?:es)?",
        r"mass lesions?",
        related={"malignancy", "nodule"},
        criticality="unless_chronic",
    ),
    _c(
        "malignancy",
        r"malignan(?:cy|cies|t)",
        r"neoplasms?",
        r"neoplastic",
        r"tumou?rs?",
        r"carcinomas?",
        r"cancers?",
        r"metastas(?:is|es)",
        r"metastatic(?: disease)?",
        r"lymphomas?",
        related={"mass", "nodule"},
        criticality="unless_chronic",
    ),
    _c(
        "device fracture",
        r"(?:catheter|line|lead|wire|tube|port|picc|sternotomy wire)s? "
        r"(?:fractures?|breaks?|discontinuity)",
        r"(?:interruption|disruption|fracture|break|discontinuity) of the (?:[\w-]+ ){0,4}"
        r"(?:catheter|line|lead|wire|tube|port)",
        related={"malpositioned device"},
        lateral=False,
    ),
    _c(
        "fracture",
        r"(?:micro)?fractures?",
        r"fx",
        related={"deformity"},
        criticality="unless_chronic",
        acute=True,
    ),
    # --- pleura / lungs --------------------------------------------------------------------
    _c(
        "pericardial effusion",
        r"pericardial effusions?",
        r"pericardial fluid",
        criticality="qualified",
        qualifiers=_SIZE_CRITICAL,
        lateral=False,
    ),
    _c(
        "pleural effusion",
        r"pleural effusions?",
        r"effusions?",
        r"pleural fluid",
        r"hydrothora(?:x|ces)",
        r"fluid in the (?:\w+ )?(?:pleural space|fissure)",
        related={
            "costophrenic blunting",
            "pleural thickening",
            "opacity",
            "atelectasis",
            "edema",
            "consolidation",
            "airspace disease",
            "pneumonia",
            "heart failure",
        },
        criticality="qualified",
        qualifiers=_SIZE_CRITICAL,
        acute=True,
    ),
    _c(
        "costophrenic blunting",
        r"costophrenic (?:\w+ )?(?:angle )?blunting",
        r"blunt(?:ed|ing) (?:of )?(?:the )?(?:\w+ )?costophrenic",
        r"costophrenic (?:\w+ )?(?:are |is |remains? )?blunted",
        related={"pleural effusion", "pleural thickening", "scarring"},
    ),
    _c(
        "pleural thickening",
        r"pleural thickening",
        r"pleural plaques?",
        related={"pleural effusion", "costophrenic blunting", "scarring"},
    ),
    _c(
        "consolidation",
        r"consolidations?",
        r"consolidative (?:opacity|opacities|changes?)",
        r"consolidated",
        related=_lung("consolidation"),
        acute=True,
    ),
    _c(
        "airspace disease",
        r"air[- ]?space (?:disease|opacit(?:y|ies)|process|consolidation)",
        r"alveolar (?:disease|opacit(?:y|ies)|consolidation|process)",
        related=_lung("airspace disease"),
        acute=True,
    ),
    _c(
        "pneumonia",
        r"pneumonias?",
        r"pneumonitis",
        r"bronchopneumonia",
        related=_lung("pneumonia"),
        acute=True,
    ),
    _c(
        "infection",
        r"infections?",
        r"infectious (?:process|etiology)",
        related=_lung("infection") | {"pneumonia"},
    ),
    _c("aspiration", r"aspiration", related=_lung("aspiration")),
    _c("infiltrate", r"infiltrates?", r"infiltration", related=_lung("infiltrate"), acute=True),
    _c(
        "atelectasis",
        r"atelecta(?:sis|ses|tic)",
        r"subsegmental collapse",
        r"(?:lobar |lung )collapse",
        related=_lung("atelectasis"),
    ),
    _c(
        "edema",
        r"(?:pulmonary |interstitial |alveolar )?o?edema",
        r"congestive (?:changes|failure)",
        r"fluid overload",
        related=_lung("edema") | {"heart failure", "cardiomegaly"},
        acute=True,
    ),
    _c(
        "vascular congestion",
        r"(?:pulmonary |central )?(?:vascular|venous) (?:congestion|engorgement|cephalization"
        r"|redistribution)",
        r"(?:pulmonary )?venous hypertension",
        related={"edema", "heart failure", "cardiomegaly"},
        lateral=False,
    ),
    _c(
        "soft tissue edema",
        r"(?:soft[- ]tissue|laryngeal|subcutaneous|bowel wall|cerebral|vasogenic|(?:bone )?marrow"
        r"|scrotal|periportal|prevertebral|periorbital) o?edema",
    ),
    _c(
        "heart failure",
        r"(?:congestive )?heart failure",
        r"chf",
        related={"edema", "cardiomegaly", "pleural effusion"},
        lateral=False,
    ),
    _c(
        "interstitial disease",
        r"interstitial (?:lung )?(?:disease|markings|opacit(?:y|ies)|"
        r"prominence|changes|pattern|thickening)",
        r"fibrosis",
        r"fibrotic changes?",
        related=_lung("interstitial disease") | {"emphysema"},
    ),
    _c(
        "emphysema",
        r"emphysema(?:tous)?(?: changes)?",
        r"copd",
        r"chronic obstructive pulmonary disease",
        r"hyperinflat(?:ed|ion)",
        r"hyperexpan(?:ded|sion)",
        r"bullae",
        r"bullous",
        related={"interstitial disease"},
    ),
    _c(
        "nodule",
        r"nodules?",
        r"nodular (?:opacit(?:y|ies)|densit(?:y|ies))",
        related={"mass", "malignancy", "granuloma", "opacity"},
    ),
    _c(
        "granuloma",
        r"granulomas?",
        r"granulomata",
        r"granulomatous (?:disease|process|changes?)",
        r"calcified (?:pulmonary |lung )?nodules?",
        r"calcified (?:lymph )?nodes?",
        related={"nodule", "opacity", "calcification"},
    ),
    _c(
        "scarring",
        r"scar(?:ring|s)?",
        r"cicatricial",
        r"fibrotic scarring",
        related=_lung("scarring") | {"pleural thickening", "costophrenic blunting"},
    ),
    _c(
        "opacity",
        r"opacit(?:y|ies)",
        r"opacification",
        r"densit(?:y|ies)",
        related=_lung("opacity") | {"calcification"},
    ),
    _c("calcification", r"calcifications?", r"calcified", related={"granuloma", "opacity"}),
    _c(
        "lymphadenopathy",
        r"lymphadenopathy",
        r"adenopathy",
        r"(?:enlarged|prominent) (?:lymph )?nodes?",
        related={"mass", "malignancy", "opacity"},
    ),
    _c("cavitation", r"cavit(?:y|ies|ary lesions?|ation)", related={"mass", "infection"}),
    # --- heart / vessels / other -----------------------------------------------------------
    _c(
        "cardiomegaly",
        r"cardiomegaly",
        r"(?:heart|cardiac) enlargement",
        r"enlarged (?:heart|cardiac silhouette|cardiomediastinal silhouette)",
        r"enlargement of (?:the )?(?:heart|cardiac silhouette)",
        r"(?:heart(?: size)?|cardiac (?:silhouette|size)(?: size)?|cardiomediastinal silhouette) "
        r"(?:is |are |appears? |remains? )?(?:(?:mild|mildly|moderately|markedly|slightly|severely"
        r"|minimally|again|stably|significantly|borderline|to|quite) ){0,3}"
        r"(?:enlarged|increased|large)",
        r"(?:mildly |moderately |markedly )?enlarged heart size",
        r"(?:heart|cardiac silhouette|heart size|cardiac size) (?:is |appears? )?(?:at the |near )?"
        r"(?:borderline|upper limits? of normal|top normal|top-normal)(?: (?:in )?size)?",
        r"(?:borderline|upper limits? of normal|top normal|top-normal) (?:enlarged )?"
        r"(?:heart(?: size)?|cardiomegaly|cardiac size|enlargement)",
        related={"heart failure", "edema", "pericardial effusion"},
        lateral=False,
    ),
    _c("aneurysm", r"aneurysms?", r"aneurysmal(?: dilatation)?", related={"aortic dissection"}),
    _c("hernia", r"hernias?", r"herniation", related={"eventration"}),
    _c(
        "eventration",
        r"eventration",
        r"elevat(?:ed|ion) of (?:the )?(?:\w+ )?hemidiaphragm",
        r"elevated (?:\w+ )?hemidiaphragm",
        r"hemidiaphragm (?:is |appears? |remains? )?(?:\w+ )?elevated",
        related={"hernia"},
    ),
    _c(
        "scoliosis",
        r"(?:levo|dextro)?scoliosis",
        r"(?:levo|dextro)curvature",
        r"(?:levo|dextro)convex (?:curvature|scoliosis)",
    ),
    _c(
        "deformity",
        r"(?:compression |wedge )?deformit(?:y|ies)",
        r"wedging",
        r"compression fractures?",
        related={"fracture"},
    ),
    _c("dislocation", r"dislocations?", r"dislocated", criticality="unless_chronic", acute=True),
    _c("foreign body", r"foreign bod(?:y|ies)", related={"malpositioned device"}, lateral=False),
    _c("appendicitis", r"appendicitis", acute=True, lateral=False),
    _c("abscess", r"abscess(?:es)?", related={"infection"}, acute=True),
    _c(
        "thrombosis",
        r"(?:deep (?:vein|venous) )?thrombosis",
        r"thrombus",
        r"dvt",
        related={"pulmonary embolism"},
        acute=True,
    ),
)

_BY_NAME: Final[Mapping[str, Concept]] = {c.name: c for c in LEXICON}
# Relatedness is symmetric: an "opacity" supports "mass" as much as the other way round.
_RELATED: Final[Mapping[str, frozenset[str]]] = {
    c.name: c.related | {o.name for o in LEXICON if c.name in o.related} for c in LEXICON
}
_RANK: Final[Mapping[str, int]] = {c.name: i for i, c in enumerate(LEXICON)}

#: Findings that impressions conventionally leave out: never ``unreported_finding``.
#: Chosen on the Open-i validate split, where the radiologists' own impressions mention
#: them (or a related finding) in under a third of the reports whose findings assert them:
#: calcification 15 %, granuloma 26 %, scoliosis 11 %; opacity (80 %), scarring (55 %),
#: cardiomegaly (50 %) and the rest are reported (docs/safety-checks.md).
INCIDENTAL_CONCEPTS: Final[frozenset[str]] = frozenset({"granuloma", "calcification", "scoliosis"})
# Chronic-qualified fractures and dislocations (old, healed) are not critical and, on the
# validate split, never reported in the impression (0 of 7).
_INCIDENTAL_WHEN_CHRONIC: Final = frozenset({"fracture", "dislocation"})


def _reportable(mention: Mention) -> bool:
    if mention.concept in INCIDENTAL_CONCEPTS:
        return False
    return not (mention.concept in _INCIDENTAL_WHEN_CHRONIC and mention.qualifiers & _CHRONIC)

#: Concepts whose present (or hedged) mention in the findings must appear in the draft.
#: ``qualified`` ones only with a size qualifier, ``unless_chronic`` ones unless old/healed.
CRITICAL_CONCEPTS: Final[tuple[str, ...]] = tuple(
    c.name for c in LEXICON if c.criticality != "never"
)

# Surface forms with an inherent side (levoscoliosis is convex to the left).
_INHERENT_SIDE: Final = re.compile(r"^(levo|dextro)", re.IGNORECASE)


_ANY_START: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def _first_chars(fragment: str) -> frozenset[str]:
    """Lower-case characters a match of ``fragment`` can start with.

    A small analyser for the regex subset used in :data:`LEXICON` (literals, classes,
    non-capturing groups, alternation, quantifiers, lookaheads); anything else is
    answered conservatively with every character.
    """
    chars, _ = _seq_first(fragment)
    return frozenset(chars)


def _split_top(text: str) -> list[str]:
    parts: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            i = text.index("]", i + 1) + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _seq_first(seq: str) -> tuple[set[str], bool]:
    """(first characters, whether the sequence can match the empty string)."""
    alternatives = _split_top(seq)
    if len(alternatives) > 1:
        chars: set[str] = set()
        nullable = False
        for alternative in alternatives:
            c, n = _seq_first(alternative)
            chars |= c
            nullable |= n
        return chars, nullable
    chars = set()
    i = 0
    while i < len(seq):
        atom_chars: set[str]
        zero_width = False
        ch = seq[i]
        if ch == "(":
            depth, j = 1, i + 1
            while depth:
                if seq[j] == "\\":
                    j += 2
                    continue
                depth += {"(": 1, ")": -1}.get(seq[j], 0)
                j += 1
            inner = seq[i + 1 : j - 1]
            if inner.startswith(("?=", "?!", "?<")):
                zero_width, atom_chars, atom_null = True, set(), True
            else:
                inner = re.sub(r"^\?(?::|P<\w+>)", "", inner)
                atom_chars, atom_null = _seq_first(inner)
            i = j
        elif ch == "[":
            j = seq.index("]", i + 1)
            body = seq[i + 1 : j]
            atom_chars = set(_ANY_START) if body.startswith("^") or "\\" in body else set()
            if not atom_chars:
                for k, member in enumerate(body):
                    if member == "-" and 0 < k < len(body) - 1:
                        atom_chars |= {chr(x) for x in range(ord(body[k - 1]), ord(body[k + 1]))}
                    atom_chars.add(member.lower())
            atom_null = False
            i = j + 1
        elif ch == "\\":
            escaped = seq[i + 1]
            atom_chars = set(_ANY_START) if escaped.isalpha() else {escaped}
            atom_null = escaped == "b"
            i += 2
        elif ch in ".^$":
            atom_chars, atom_null = set(_ANY_START), ch != "."
            i += 1
        else:
            atom_chars, atom_null = {ch.lower()}, False
            i += 1
        if i < len(seq) and seq[i] in "?*{":
            atom_null = True if seq[i] != "{" or seq[i + 1] == "0" else atom_null
            i = seq.index("}", i) + 1 if seq[i] == "{" else i + 1
        elif i < len(seq) and seq[i] == "+":
            i += 1
        if i < len(seq) and seq[i] == "?":  # lazy quantifier
            i += 1
        chars |= atom_chars
        if not (atom_null or zero_width):
            return chars, False
    return chars, True


def _compile_concepts() -> tuple[dict[str, re.Pattern[str]], tuple[str, ...]]:
    """One regex per possible first character: trying ~150 alternatives at every word
    would cost a millisecond per report, the dispatch a few dozen microseconds."""
    parts: list[tuple[str, frozenset[str]]] = []
    names: list[str] = []
    for concept in LEXICON:
        for pattern in concept.patterns:
            parts.append((f"(?P<g{len(names)}>{pattern})", _first_chars(pattern)))
            names.append(concept.name)
    # Longer fragments first so "pleural effusion" wins over "effusion" at the same spot.
    parts.sort(key=lambda part: -_literal_length(part[0]))
    buckets: dict[str, re.Pattern[str]] = {}
    for ch in sorted(_ANY_START):
        chosen = [fragment for fragment, first in parts if ch in first]
        if chosen:
            buckets[ch] = re.compile(r"(?:" + "|".join(chosen) + r")\b", re.IGNORECASE)
    return buckets, tuple(names)


def _literal_length(fragment: str) -> int:
    """Length of a regex fragment without its syntax: a proxy for how specific it is."""
    return len(re.sub(r"\(\?P<g\d+>|[()?:|\\\[\]+*]", "", fragment))


_CONCEPT_BUCKETS, _GROUP_CONCEPT = _compile_concepts()
_WORD_START_RE: Final = re.compile(r"\b\w")


def _concept_matches(text: str) -> Iterator[re.Match[str]]:
    """Leftmost, non-overlapping lexicon matches starting at word boundaries."""
    resume = 0
    for word in _WORD_START_RE.finditer(text):
        at = word.start()
        if at < resume:
            continue
        bucket = _CONCEPT_BUCKETS.get(text[at].lower())
        if bucket is None:
            continue
        m = bucket.match(text, at)
        if m is not None:
            resume = m.end()
            yield m


_PE_RE: Final = re.compile(r"\bPE\b")  # upper-case only: pulmonary embolism

# --- negation / hedge triggers (NegEx-style) ----------------------------------------------

# Each trigger group: (name, direction, effect, phrases).  Earlier groups win when two
# phrases start at the same word, so "not excluded" is a hedge and "no change" is no negation.
_TriggerSpec = tuple[str, str, str, tuple[str, ...]]
_TRIGGERS: Final[tuple[_TriggerSpec, ...]] = (
    (
        "pseudo",
        "none",
        "none",
        (
            r"no (?:significant |appreciable |substantial |definite )?(?:interval )?change",
            r"no (?:significant )?(?:interval )?(?:increase|decrease|improvement|worsening"
            r"|progression)",
            r"without (?:significant |appreciable |interval )*change",
            r"not only",
            r"no further",
            r"gram[- ]negative",
            r"not (?:well|optimally|adequately)[- ](?:seen|visualized|evaluated|demonstrated)",
            r"no (?:prior|previous|comparison)",
            r"not changed",
            r"not (?:seen|present|visible|identified|evident|demonstrated|visualized|appreciated"
            r"|noted) (?:on|in) (?:the )?"
            r"(?:prior|previous|earlier|comparison|old)",
        ),
    ),
    (
        "unasserted",
        "pre",
        "unasserted",
        (
            r"(?:evaluation|evaluate|assessment|assess|examination|screening|search) (?:for|of)",
            r"to (?:exclude|evaluate|assess|rule out|look for|identify|detect|document)",
            r"rule out",
            r"r/o",
            r"(?:a |prior |past )?history of",
            r"previously (?:described|seen|noted|identified|reported|demonstrated)",
            r"(?:if|should) (?:there is )?(?:continued |persistent |further |ongoing )?"
            r"(?:clinical )?(?:concern|suspicion) (?:for|of)",
            r"(?:near|nearly|almost|partial|incomplete|near-complete)(?: complete)? "
            r"(?:clearing|resolution) of",
        ),
    ),
    (
        "post_hedge_neg",
        "post",
        "hedge",
        (
            r"(?:is |are )?(?:cannot|can ?not|could not) be (?:entirely |completely |definitely )?"
            r"(?:excluded|ruled out)",
            r"(?:is |are )?not (?:entirely |completely |definitely )?(?:excluded|ruled out)",
            r"(?:is |are )?(?:not|only partially) (?:seen|identified|visualized|visible|appreciated"
            r"|confirmed) (?:on|in) the (?:lateral|frontal|pa|ap|oblique) (?:view|projection|image"
            r"|radiograph)",
        ),
    ),
    (
        "pre_hedge_neg",
        "pre",
        "hedge",
        (
            r"cannot (?:be )?(?:entirely |completely |definitely )?(?:exclude|excluded|rule out)",
            r"can ?not (?:entirely |completely )?exclude",
            r"can't exclude",
            r"could not exclude",
            r"difficult to exclude",
        ),
    ),
    (
        "post_neg",
        "post",
        "neg",
        (
            r"(?:is |are )?(?:not|no longer) (?:seen|identified|visualized|present|evident|"
            r"demonstrated|appreciated|detected|noted|visible|apparent|observed)",
            r"(?:is |are |has |have )?(?:resolved|cleared|absent|excluded|ruled out)",
            r"(?:is |are )?unlikely",
            r"(?:has|have) (?:since )?resolved",
            r"(?:may |might |will |would )?not be (?:seen|demonstrated|visible|visualized|"
            r"detected|identified|evident|apparent)",
        ),
    ),
    (
        "pre_neg",
        "pre",
        "neg",
        (
            r"no (?:evidence|signs?|findings?|radiographic evidence|definite evidence|"
            r"convincing evidence|visible evidence|XXXX) (?:of|for|to suggest)",
            r"no (?:new|residual|definite|definitive|obvious|focal|convincing|discrete|visible|"
            r"overt|gross|acute|frank|significant|appreciable|other)",
            r"no",
            r"not",
            r"without(?: evidence of)?",
            r"negative for",
            r"free of",
            r"clear of",
            r"clear(?= (?:focal )?(?:air|alveolar|consolidat|infiltrat|opacit|edema|effusion"
            r"|pneumothora))",
            r"absence of",
            r"interval resolution of",
            r"resolution of",
            r"clearing of",
            r"resolved",
            r"denies",
            r"ruled out(?: for)?",
            r"neither",
            r"nor",
            r"no longer(?: (?:seen|visualized|present|evident|identified|demonstrated|apparent))?",
            r"(?:has|have) (?:resolved|cleared)",
            r"cleared",
        ),
    ),
    ("alternative", "both", "hedge", (r"versus", r"vs\.?", r"and/or", r"or")),
    (
        "pre_hedge",
        "pre",
        "hedge",
        (
            r"possible",
            r"possibly",
            r"probable",
            r"probably",
            r"questionable",
            r"question of",
            r"suspicious for",
            r"suspected",
            r"suspicion (?:of|for)",
            r"suggestive of",
            r"suggests?",
            r"suggesting",
            r"concerning for",
            r"concern for",
            r"worrisome for",
            r"may (?:represent|reflect|be|indicate)",
            r"might (?:represent|be)",
            r"could (?:represent|reflect|be|indicate)",
            r"likely",
            r"differential (?:diagnosis )?(?:includes?|of)?",
            r"equivocal",
            r"presumed",
            r"representing",
            r"borderline",
            r"favou?r(?:ed|s)?",
            r"raises? (?:the )?(?:possibility|question) of",
        ),
    ),
    (
        "post_hedge",
        "post",
        "hedge",
        (r"(?:is |are )?(?:possible|suspected|questioned|not certain|uncertain|favou?red)",),
    ),
)
_TRIGGER_KIND: Final[Mapping[str, tuple[str, str]]] = {
    name: (direction, effect) for name, direction, effect, _ in _TRIGGERS
}
_ALTERNATIVE_REACH: Final = 40  # characters an "or"/"versus" reaches to either side
_TERMINATORS: Final = (
    r"but",
    r"however",
    r"although",
    r"though",
    r"whereas",
    r"except(?: for)?",
    r"aside from",
    r"apart from",
    r"other than",
    r"which",
    r"yet",
    r"otherwise",
    r"with the exception of",
    r"while",
    r"there (?:is|are)",
)


def _trigger_regex() -> re.Pattern[str]:
    parts = [f"(?P<{name}>{'|'.join(items)})" for name, _, _, items in _TRIGGERS]
    return re.compile(r"\b(?:" + "|".join(parts) + r")\b", re.IGNORECASE)


_TRIGGER_RE: Final = _trigger_regex()
_TERMINATOR_RE: Final = re.compile(
    r"\s*;\s*|\s*:\s+|\s*\b(?=(?:" + "|".join(_TERMINATORS) + r")\b)", re.IGNORECASE
)
# Sentence ends, newlines and list markers ("... effusions 2. Nodule"), but not the space
# after a list number itself ("1. No acute ...").
_SENTENCE_RE: Final = re.compile(
    r"(?<=[.!?])(?<!\b\d\.)(?<!\b\d\d\.)\s+(?=\S)|\n+|\s+(?=\d{1,2}[.)]\s)"
)
_WORD_RE: Final = re.compile(r"[A-Za-z][A-Za-z'/-]*|\d+(?:\.\d+)?")
_SIDE_RE: Final = re.compile(
    r"\b(?P<left>left(?:-sided|ward)?)\b|\b(?P<right>right(?:-sided|ward)?)\b"
    r"|\b(?P<both>bilateral(?:ly)?|bibasilar|bibasal|biapical|bilobar"
    r"|both(?=\s+(?:\w+\s+)?(?:lungs|lobes|bases|apices|sides|hemithoraces|hila|hilar|kidneys"
    r"|breasts|lower|upper|mid|costophrenic|hemidiaphragms|pleural)))\b"
    r"|\b(?P<lr>[LR]|[Ll]t|[Rr]t)\b(?=\.?\s+(?:upper|lower|mid|middle|lung|base|basilar|apical"
    r"|apex|hemithorax|hilar|hilum|pleural|chest|lobe|costophrenic|kidney|breast"
    r"|hemidiaphragm|rib|sided|side)\b)",
    re.IGNORECASE,
)
_LR_CASE_RE: Final = re.compile(r"^(?:[LR]|[Ll]t|[Rr]t)$")
_HEDGED_SURFACE: Final = re.compile(r"borderline|upper limits? of normal|top.normal", re.IGNORECASE)
# Words allowed between a finding and a side word before it ("left ... effusion") or after
# it ("consolidation in the left upper lobe and both lower lobes").
_MAX_GAP_BEFORE: Final = 6
_MAX_GAP_AFTER: Final = 10

# General statements that deny a group of findings ("no acute cardiopulmonary process").
_IMPLIED_ABSENT: Final[tuple[tuple[re.Pattern[str], frozenset[str]], ...]] = (
    (
        re.compile(
            r"\b(?:no|without) (?:radiographic evidence of |evidence of )?(?:an )?(?:acute|active)"
            r"(?: radiographic)?(?: (?:cardiopulmonary|cardiothoracic|intrathoracic|pulmonary|"
            r"chest|thoracic|lung|cardiac))*(?: (?:or|and) \w+)? (?:abnormalit(?:y|ies)|process"
            r"(?:es)?|disease|findings?|pathology|changes?)\b|\bnormal (?:chest|study|exam"
            r"(?:ination)?|radiograph)\b",
            re.IGNORECASE,
        ),
        frozenset(
            {
                "pneumothorax",
                "consolidation",
                "airspace disease",
                "pneumonia",
                "infiltrate",
                "edema",
                "pleural effusion",
            }
        ),
    ),
    (
        re.compile(
            r"\b(?:lungs? (?:are |is |appear |appears |remain |remains )?(?:\w+ )?clear"
            r"|clear lungs?)\b",
            re.IGNORECASE,
        ),
        frozenset({"consolidation", "airspace disease", "pneumonia", "infiltrate", "edema"}),
    ),
    (
        re.compile(
            r"\b(?:heart (?:size )?(?:is |appears )?(?:within )?normal"
            r"|normal heart size|heart size (?:is |appears )?(?:within normal limits|"
            r"normal)|normal(?:-sized)? (?:cardiac|cardiomediastinal) silhouette)\b",
            re.IGNORECASE,
        ),
        frozenset({"cardiomegaly"}),
    ),
    (
        re.compile(r"\bpleural spaces? (?:are |is )?clear\b", re.IGNORECASE),
        frozenset({"pleural effusion", "pneumothorax"}),
    ),
)
_OTHERWISE_RE: Final = re.compile(
    r"\b(?:otherwise|other|else|additional|further|new)\b", re.IGNORECASE
)


# --- data shapes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mention:
    """One occurrence of a lexicon concept in a text, with its assertion status."""

    concept: str
    text: str
    start: int
    polarity: Polarity
    sides: frozenset[Side]
    qualifiers: frozenset[str]
    critical: bool


@dataclass(slots=True)
class _Status:
    """What one text says about one concept, aggregated over its mentions."""

    present: bool = False
    uncertain: bool = False
    absent: bool = False
    unasserted: bool = False
    implied_absent: bool = False
    critical: bool = False
    reportable: bool = False
    sides: set[Side] = field(default_factory=set)
    absent_sides: set[Side] = field(default_factory=set)
    absent_unsided: bool = False

    @property
    def positive(self) -> bool:
        return self.present or self.uncertain

    @property
    def mentioned(self) -> bool:
        return self.present or self.uncertain or self.absent or self.unasserted


# --- text splitting ------------------------------------------------------------------------


def split_sentences(text: str) -> list[str]:
    """Split a report section into sentences (also at numbered-list markers and newlines)."""
    return [s.strip() for s in _SENTENCE_RE.split(text) if s and s.strip(" .")]


def split_clauses(sentence: str) -> list[str]:
    """Split a sentence at scope terminators (";", "but", "however", "although", ...).

    The terminator word starts the next clause, so negation in one clause never reaches
    a finding in the next one.
    """
    clauses: list[str] = []
    start = 0
    for match in _TERMINATOR_RE.finditer(sentence):
        if match.start() == 0 and match.end() == 0:
            continue
        piece = sentence[start : match.start()].strip(" ,")
        if piece:
            clauses.append(piece)
        start = match.end()
    tail = sentence[start:].strip(" ,.")
    if tail:
        clauses.append(tail)
    return clauses


# --- mention extraction --------------------------------------------------------------------


def _words_between(text: str, a: int, b: int) -> int:
    return len(_WORD_RE.findall(text[a:b])) if b > a else 0


def _qualifiers(
    clause: str, lo: int, start: int, end: int, hi: int
) -> tuple[frozenset[str], frozenset[str]]:
    """Words modifying a mention, not reaching past a neighbouring mention: the wide set
    (8 words before, 3 after) and the near set (the 2 words just before it)."""
    before = [w.lower() for w in _WORD_RE.findall(clause[lo:start])[-8:]]
    after = [w.lower() for w in _WORD_RE.findall(clause[end:hi])[:3]]
    return frozenset((*before, *after)), frozenset(before[-2:])


def _is_critical(concept: Concept, qualifiers: frozenset[str]) -> bool:
    if concept.criticality == "always":
        return True
    if concept.criticality == "qualified":
        return bool(qualifiers & concept.critical_qualifiers)
    if concept.criticality == "unless_chronic":
        return not qualifiers & _CHRONIC
    return False


def _clause_mentions(clause: str, offset: int) -> list[Mention]:
    raw: list[tuple[str, int, int, str]] = []
    for m in _concept_matches(clause):
        group = m.lastgroup
        if group is None:  # pragma: no cover - every alternative is a named group
            continue
        raw.append((_GROUP_CONCEPT[int(group[1:])], m.start(), m.end(), m.group()))
    for m in _PE_RE.finditer(clause):
        if not any(s <= m.start() < e for _, s, e, _ in raw):
            raw.append(("pulmonary embolism", m.start(), m.end(), m.group()))
    if not raw:
        return []
    raw.sort(key=lambda r: r[1])

    triggers = [
        (m.lastgroup or "", m.start(), m.end())
        for m in _TRIGGER_RE.finditer(clause)
        if not any(s <= m.start() < e for _, s, e, _ in raw)
    ]
    sides = _attach_sides(clause, raw)
    mentions: list[Mention] = []
    for index, (concept_name, start, end, surface) in enumerate(raw):
        concept = _BY_NAME[concept_name]
        polarity = _polarity(clause, triggers, raw, index)
        lo = raw[index - 1][2] if index else 0
        hi = raw[index + 1][1] if index + 1 < len(raw) else len(clause)
        qualifiers, near = _qualifiers(clause, lo, start, end, hi)
        if polarity == "absent" and near & _LIMITING:
            polarity = "unasserted"
        if polarity == "present" and _HEDGED_SURFACE.search(surface):
            polarity = "uncertain"
        side_set = set(sides.get(index, ())) if concept.lateral else set()
        inherent = _INHERENT_SIDE.match(surface)
        if inherent:
            side_set.add("left" if inherent.group(1).lower() == "levo" else "right")
        names = [concept_name]
        names.extend(extra for prefix, extra in _COMPOUND_PREFIX if prefix.match(surface))
        for name in names:
            mentions.append(
                Mention(
                    concept=name,
                    text=surface,
                    start=offset + start,
                    polarity=polarity,
                    sides=frozenset(side_set) if _BY_NAME[name].lateral else frozenset(),
                    qualifiers=qualifiers,
                    critical=_is_critical(_BY_NAME[name], qualifiers),
                )
            )
    return mentions


# Negated with one of these ("no large effusion") does not deny a smaller finding.
_LIMITING: Final = frozenset(
    {
        "large",
        "significant",
        "sizable",
        "sizeable",
        "substantial",
        "appreciable",
        "moderate",
        "massive",
        "displaced",
        "overt",
        "gross",
        "frank",
        "typical",
        "cavitary",
        "suspicious",
        "new",
        "acute",
        "destructive",
        "dominant",
        "discrete",
        "enlarging",
        "noncalcified",
        "confluent",
        "lobar",
        "bacterial",
    }
)
# Compound surface forms that also assert a second concept ("hemopneumothorax").
_COMPOUND_PREFIX: Final = (
    (re.compile(r"ha?emo-?pneumothora", re.IGNORECASE), "hemorrhage"),
    (re.compile(r"hydro-?pneumothora", re.IGNORECASE), "pleural effusion"),
)


def _polarity(
    clause: str,
    triggers: Sequence[tuple[str, int, int]],
    raw: Sequence[tuple[str, int, int, str]],
    index: int,
) -> Polarity:
    """Assertion status of mention ``index``; negation wins over "unasserted", which wins
    over a hedge ("no pleural line to suggest pneumothorax" is a negation)."""
    _, start, end, _ = raw[index]
    effects: set[str] = set()
    for kind, t_start, t_end in triggers:
        direction, effect = _TRIGGER_KIND[kind]
        if direction == "none":
            continue
        if direction == "both":
            # "atelectasis or infiltrate", "fat versus effusion": the neighbours only.
            if t_end <= start:
                reach = start - t_end
            elif t_start >= end:
                reach = t_start - end
            else:
                continue
            if reach <= _ALTERNATIVE_REACH and not _mention_between(raw, t_start, t_end, index):
                effects.add(effect)
            continue
        if direction == "post":
            # "Pneumothorax is not seen"; opening a clause with nothing before it, it reads
            # forward ("Resolved: left effusion").
            forward = not clause[:t_start].strip() and not any(e <= t_start for *_, e, _ in raw)
        else:
            # "No pneumothorax"; a hedge closing a clause reads backward ("Pneumonia possible").
            forward = not (
                effect == "hedge"
                and not clause[t_end:].strip(" .,")
                and not any(s >= t_end for _, s, _, _ in raw)
            )
        if forward:
            if t_end > start:
                continue
            if effect != "hedge" and _list_item_reasserts(clause, t_end, start):
                continue
        elif t_start >= end:
            # A backward trigger reaches back only to the previous trigger.
            if any(end <= o_start < t_start for _, o_start, _ in triggers):
                continue
        else:
            continue
        effects.add(effect)
    if "neg" in effects:
        return "absent"
    if "unasserted" in effects:
        return "unasserted"
    if "hedge" in effects:
        return "uncertain"
    return "present"


# After a comma, these open a new, positive statement: "No pneumothorax, small left effusion".
_REASSERT_RE: Final = re.compile(
    r"\b(?:small|moderate|large|mild|mildly|minimal|trace|severe|moderately|markedly|new|"
    r"increased|increasing|persistent|there|a|an|stable|residual|tiny|subtle|patchy|focal)\b",
    re.IGNORECASE,
)


def _list_item_reasserts(clause: str, t_end: int, start: int) -> bool:
    """Whether a comma between a negation and a mention starts a new positive statement."""
    between = clause[t_end:start]
    comma = between.rfind(",")
    if comma == -1:
        return False
    return bool(_REASSERT_RE.match(between[comma + 1 :].lstrip()))


def _mention_between(
    raw: Sequence[tuple[str, int, int, str]], t_start: int, t_end: int, index: int
) -> bool:
    """Whether another mention sits between mention ``index`` and a trigger."""
    _, start, end, _ = raw[index]
    lo, hi = (end, t_start) if t_start >= end else (t_end, start)
    return any(lo <= s and e <= hi for i, (_, s, e, _) in enumerate(raw) if i != index)


def _attach_sides(clause: str, raw: Sequence[tuple[str, int, int, str]]) -> dict[int, list[Side]]:
    """Attach each side word to the nearest finding mention in the clause."""
    attached: dict[int, list[Side]] = {}
    for m in _SIDE_RE.finditer(clause):
        if m.lastgroup == "lr":
            token = m.group()
            if not _LR_CASE_RE.match(token):
                continue
            found: list[Side] = ["left" if token[0] in "Ll" else "right"]
        elif m.lastgroup == "left":
            found = ["left"]
        elif m.lastgroup == "right":
            found = ["right"]
        else:
            found = ["left", "right"]
        best: tuple[int, int, int] | None = None  # (gap, prefer-following, index)
        for index, (_, start, end, _) in enumerate(raw):
            if start <= m.start() < end:
                gap, after = 0, 0
            elif end <= m.start():
                gap, after = _words_between(clause, end, m.start()), 1
            else:
                gap, after = _words_between(clause, m.end(), start), 0
            limit = _MAX_GAP_AFTER if after else _MAX_GAP_BEFORE
            if gap <= limit and (best is None or (gap, after) < best[:2]):
                best = (gap, after, index)
        if best is not None:
            attached.setdefault(best[2], []).extend(found)
    return attached


def find_mentions(text: str) -> list[Mention]:
    """All lexicon mentions in ``text`` with polarity, laterality and criticality."""
    mentions: list[Mention] = []
    position = 0
    for sentence in split_sentences(text):
        sentence_at = text.find(sentence, position)
        sentence_at = max(sentence_at, 0)
        position = sentence_at + len(sentence)
        clause_pos = 0
        for clause in split_clauses(sentence):
            clause_at = sentence.find(clause, clause_pos)
            clause_at = max(clause_at, 0)
            clause_pos = clause_at + len(clause)
            mentions.extend(_clause_mentions(clause, sentence_at + clause_at))
    return mentions


def _implied_absences(text: str) -> set[str]:
    denied: set[str] = set()
    for sentence in split_sentences(text):
        for pattern, concepts in _IMPLIED_ABSENT:
            for m in pattern.finditer(sentence):
                lead = sentence[max(0, m.start() - 25) : m.end()]
                if _OTHERWISE_RE.search(lead):
                    continue
                denied |= concepts
    return denied


@lru_cache(maxsize=4096)
def _assess(text: str) -> Mapping[str, _Status]:
    statuses: dict[str, _Status] = {}
    for mention in find_mentions(text):
        status = statuses.setdefault(mention.concept, _Status())
        if mention.polarity == "present":
            status.present = True
        elif mention.polarity == "uncertain":
            status.uncertain = True
        elif mention.polarity == "absent":
            status.absent = True
            status.absent_sides |= mention.sides
            status.absent_unsided |= not mention.sides
        else:
            status.unasserted = True
        if mention.polarity in ("present", "uncertain"):
            status.sides |= mention.sides
            status.critical |= mention.critical
            status.reportable |= _reportable(mention)
    positive = {name for name, s in statuses.items() if s.positive}
    for name in _implied_absences(text):
        if name in statuses and statuses[name].mentioned:
            continue
        if positive & (_RELATED[name] | {name}):
            continue
        statuses.setdefault(name, _Status()).implied_absent = True
    return statuses


# --- the checks ----------------------------------------------------------------------------

_SEVERITY_RANK: Final[Mapping[Severity, int]] = {"critical": 0, "warning": 1}
_KIND_RANK: Final[Mapping[FlagKind, int]] = {k: i for i, k in enumerate(FLAG_KINDS)}


def _side_text(sides: Iterable[Side]) -> str:
    """ "on both sides", "on the left", "on the right"."""
    s = set(sides)
    return "on both sides" if s == {"left", "right"} else f"on the {''.join(s)}"


def _high_stakes(concept: Concept) -> bool:
    return concept.criticality != "never" or concept.acute


def _denies(negative: _Status, positive: _Status) -> bool:
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
    source = _assess(findings)
    target = _assess(draft)
    flags: list[tuple[int, int, int, SafetyFlag]] = []

    def add(kind: FlagKind, name: str, detail: str, severity: Severity) -> None:
        flags.append(
            (
                _SEVERITY_RANK[severity],
                _KIND_RANK[kind],
                _RANK[name],
                SafetyFlag(kind=kind, phrase=name, detail=detail, severity=severity),
            )
        )

    source_positive = {n for n, s in source.items() if s.positive}
    target_positive = {n for n, s in target.items() if s.positive}
    for name in sorted(set(source) | set(target), key=_RANK.__getitem__):
        concept = _BY_NAME[name]
        f = source.get(name, _Status())
        d = target.get(name, _Status())
        stakes: Severity = "critical" if _high_stakes(concept) else "warning"
        related_in_findings = bool(source_positive & _RELATED[concept.name])
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
                    (r for r in _RELATED[name] if r in source_positive and source[r].sides),
                    key=_RANK.__getitem__,
                )
                where = set().union(*(source[r].sides for r in supporting))
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
            and not (target_positive & _RELATED[concept.name])
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
            and not (target_positive & _RELATED[concept.name])
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
