"""The finding lexicon and the trigger phrases of the safety checks: data, no logic.

:data:`LEXICON` lists the findings (:class:`Concept`: surface forms as regex fragments,
related findings, when a finding is critical); :data:`TRIGGERS` the NegEx-style negation
and hedge phrases; :data:`TERMINATORS` the words that end a trigger's scope;
:data:`IMPLIED_ABSENT` the general statements ("no acute cardiopulmonary process") that
deny a group of findings.  The matching engine is :mod:`inference.safety.assertion`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

__all__ = [
    "BY_NAME",
    "CHRONIC",
    "CRITICAL_CONCEPTS",
    "IMPLIED_ABSENT",
    "INCIDENTAL_CONCEPTS",
    "INCIDENTAL_WHEN_CHRONIC",
    "LEXICON",
    "RANK",
    "RELATED",
    "TERMINATORS",
    "TRIGGERS",
    "TRIGGER_BY_NAME",
    "Concept",
    "Criticality",
    "GeneralDenial",
    "Polarity",
    "Side",
    "TriggerGroup",
]

Polarity = Literal["present", "uncertain", "absent", "unasserted"]
Side = Literal["left", "right"]
Criticality = Literal["never", "always", "qualified", "unless_chronic"]


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


LUNG_OPACITIES: Final = frozenset(
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


def lung_related(name: str) -> frozenset[str]:
    return LUNG_OPACITIES - {name}


CHRONIC: Final = frozenset(
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
SIZE_CRITICAL: Final = frozenset(
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
        qualifiers=SIZE_CRITICAL,
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
        qualifiers=SIZE_CRITICAL,
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
        related=lung_related("consolidation"),
        acute=True,
    ),
    _c(
        "airspace disease",
        r"air[- ]?space (?:disease|opacit(?:y|ies)|process|consolidation)",
        r"alveolar (?:disease|opacit(?:y|ies)|consolidation|process)",
        related=lung_related("airspace disease"),
        acute=True,
    ),
    _c(
        "pneumonia",
        r"pneumonias?",
        r"pneumonitis",
        r"bronchopneumonia",
        related=lung_related("pneumonia"),
        acute=True,
    ),
    _c(
        "infection",
        r"infections?",
        r"infectious (?:process|etiology)",
        related=lung_related("infection") | {"pneumonia"},
    ),
    _c(
        "bronchitis",
        r"bronchitis",
        r"bronchiolitis",
        r"bronch(?:ial|ovascular) wall thickening",
        r"peribronchial (?:thickening|cuffing|opacit(?:y|ies))",
        r"airway inflammation",
        related={"infection", "pneumonia", "interstitial disease"},
        acute=True,
    ),
    _c(
        "low lung volumes",
        r"(?:low|diminished|decreased|reduced|small) (?:inspiratory |lung )volumes?",
        r"lung volumes? (?:are |is |remain |remains |appear |appears )?(?:slightly |mildly |"
        r"somewhat |very |again )?(?:low|diminished|decreased|reduced)",
        r"hypoinflat(?:ed|ion)",
        r"hypoventilat(?:ed|ion|ory)(?: changes)?",
        r"poor(?:ly)? inspirat(?:ion|ory)(?: effort)?",
        r"shallow inspiration",
        lateral=False,
    ),
    _c("aspiration", r"aspiration", related=lung_related("aspiration")),
    _c(
        "infiltrate",
        r"infiltrates?",
        r"infiltration",
        related=lung_related("infiltrate"),
        acute=True,
    ),
    _c(
        "atelectasis",
        r"atelecta(?:sis|ses|tic)",
        r"subsegmental collapse",
        r"(?:lobar |lung )collapse",
        related=lung_related("atelectasis"),
    ),
    _c(
        "edema",
        r"(?:pulmonary |interstitial |alveolar )?o?edema",
        r"congestive (?:changes|failure)",
        r"fluid overload",
        related=lung_related("edema") | {"heart failure", "cardiomegaly"},
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
        related=lung_related("interstitial disease") | {"emphysema"},
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
        related=lung_related("scarring") | {"pleural thickening", "costophrenic blunting"},
    ),
    _c(
        "opacity",
        r"opacit(?:y|ies)",
        r"opacification",
        r"densit(?:y|ies)",
        related=lung_related("opacity") | {"calcification"},
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

BY_NAME: Final[Mapping[str, Concept]] = {c.name: c for c in LEXICON}
# Relatedness is symmetric: an "opacity" supports "mass" as much as the other way round.
RELATED: Final[Mapping[str, frozenset[str]]] = {
    c.name: c.related | {o.name for o in LEXICON if c.name in o.related} for c in LEXICON
}
RANK: Final[Mapping[str, int]] = {c.name: i for i, c in enumerate(LEXICON)}

#: Findings that impressions conventionally leave out: never ``unreported_finding``.
#: Chosen on the Open-i validate split, where the radiologists' own impressions mention
#: them (or a related finding) in under a third of the reports whose findings assert them:
#: calcification 15 %, granuloma 26 %, scoliosis 11 %; opacity (80 %), scarring (55 %),
#: cardiomegaly (50 %) and the rest are reported (docs/safety-checks.md).
INCIDENTAL_CONCEPTS: Final[frozenset[str]] = frozenset({"granuloma", "calcification", "scoliosis"})
# Chronic-qualified fractures and dislocations (old, healed) are not critical and, on the
# validate split, never reported in the impression (0 of 7).
INCIDENTAL_WHEN_CHRONIC: Final = frozenset({"fracture", "dislocation"})


#: Concepts whose present (or hedged) mention in the findings must appear in the draft.
#: ``qualified`` ones only with a size qualifier, ``unless_chronic`` ones unless old/healed.
CRITICAL_CONCEPTS: Final[tuple[str, ...]] = tuple(
    c.name for c in LEXICON if c.criticality != "never"
)

# --- negation / hedge triggers (NegEx-style) ----------------------------------------------


class TriggerGroup(NamedTuple):
    """Phrases that negate or hedge the findings in their scope (NegEx-style).

    ``direction``: where the scope reaches (``forward``, ``backward``, ``both`` or
    ``none`` for pseudo-triggers that only stop other matches); ``effect``: what the
    phrases do to a finding in scope.  Earlier groups win when two phrases start at the same
    word, so "not excluded" is a hedge and "no change" is no negation.
    """

    name: str
    direction: str
    effect: str
    phrases: tuple[str, ...]


_TRIGGERS_DATA: Final = (
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
TRIGGERS: Final[tuple[TriggerGroup, ...]] = tuple(TriggerGroup(*g) for g in _TRIGGERS_DATA)
TRIGGER_BY_NAME: Final[Mapping[str, TriggerGroup]] = {g.name: g for g in TRIGGERS}
TERMINATORS: Final = (
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


# General statements that deny a group of findings ("no acute cardiopulmonary process").


class GeneralDenial(NamedTuple):
    """A general statement and the findings it denies when nothing else says otherwise."""

    pattern: re.Pattern[str]
    concepts: frozenset[str]


_IMPLIED_ABSENT_DATA: Final = (
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
IMPLIED_ABSENT: Final[tuple[GeneralDenial, ...]] = tuple(
    GeneralDenial(*d) for d in _IMPLIED_ABSENT_DATA
)
