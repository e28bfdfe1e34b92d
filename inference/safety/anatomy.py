"""Which body regions a report text talks about: a small anatomical vocabulary.

Used by scope gating (:mod:`inference.drafting.scope`: is this a chest study?) and by the
``anatomical_scope`` safety flag (a draft about the lungs for a head CT).  Pure functions
over word patterns; English only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Literal

__all__ = ["REGIONS", "Region", "dominant_region", "region_counts"]

Region = Literal["chest", "head", "neck", "abdomen", "spine", "extremity", "breast"]

_PATTERNS: Final[Mapping[Region, str]] = {
    "chest": (
        r"lungs?|pulmonary|pleura\w*|cardiopulmonary|heart|cardiac|cardio\w*|mediastin\w*"
        r"|hil(?:um|a|ar)|thora\w*|chest|ribs?|costophrenic|hemidiaphragms?|diaphragm\w*"
        r"|pneumothorax|aort\w*|trachea\w*|bronch\w*|airspace|lobes?|lingula\w*|apical"
        r"|perihilar|retrocardiac|pericardi\w*|atelecta\w*|effusions?"
    ),
    "head": (
        r"brain|cerebr\w*|cerebell\w*|intracranial|cranial|cranium|skull|calvari\w*"
        r"|ventricles?|ventricular system|sulci|gyri|gray-white|grey-white|white matter"
        r"|basal ganglia|midline shift|subdural|epidural|subarachnoid|extra-axial|intra-axial"
        r"|pons|midbrain|brainstem|orbits?|mastoids?|paranasal|sella\w*|parenchymal hemorrhage"
    ),
    "neck": r"thyroid|cervical lymph|larynx|pharyn\w*|carotid|parotid|submandibular",
    "abdomen": (
        r"liver|hepat\w*|gallbladder|biliary|pancrea\w*|spleen|splenic|kidneys?|renal"
        r"|adrenal\w*|bowel|colon\w*|appendi\w*|peritone\w*|bladder|uter\w*|ovar\w*"
        r"|prostat\w*|abdomen|abdominal|pelvi\w*|mesenter\w*|retroperitone\w*"
    ),
    "spine": r"vertebra\w*|spinal canal|neural foramina|intervertebral|disc spaces?|spinous",
    "extremity": (
        r"femur|femoral head|tibia\w*|fibula\w*|humer\w*|radius|ulna\w*|wrist|ankle|knee"
        r"|elbow|carpal|metacarpal|tarsal|metatarsal|phalan\w*|acetabul\w*|patella\w*"
    ),
    "breast": r"breasts?|mammogra\w*|birads|bi-rads|axillary tail",
}

REGIONS: Final[tuple[Region, ...]] = tuple(_PATTERNS)
_COMPILED: Final[Mapping[Region, re.Pattern[str]]] = {
    region: re.compile(rf"\b(?:{pattern})\b", re.IGNORECASE)
    for region, pattern in _PATTERNS.items()
}


def region_counts(text: str) -> dict[Region, int]:
    """How many words of each region's vocabulary ``text`` contains (zero counts omitted)."""
    counts: dict[Region, int] = {}
    for region, pattern in _COMPILED.items():
        n = len(pattern.findall(text))
        if n:
            counts[region] = n
    return counts


def dominant_region(text: str) -> Region | None:
    """The region ``text`` is mostly about, or ``None`` when it names none.

    Chest wins ties: a chest report naming the upper abdomen ("the liver is unremarkable")
    is still a chest report.
    """
    counts = region_counts(text)
    if not counts:
        return None
    best = max(counts.values())
    if counts.get("chest", 0) == best:
        return "chest"
    return max(counts, key=lambda r: (counts[r], -REGIONS.index(r)))
