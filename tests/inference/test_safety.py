"""Rule-based safety checks: negation, laterality, invented and omitted findings."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.safety import (
    CRITICAL_CONCEPTS,
    FLAG_KINDS,
    LEXICON,
    SafetyFlag,
    assertion,
    check_draft,
    find_mentions,
    split_clauses,
    split_sentences,
    summarise_flags,
)


def _kinds(findings: str, draft: str) -> set[tuple[str, str]]:
    return {(f.kind, f.phrase) for f in check_draft(findings, draft)}


def _polarities(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for mention in find_mentions(text):
        out.setdefault(mention.concept, set()).add(mention.polarity)
    return out


def _load(shared_dir: Path, split: str) -> list[dict[str, str]]:
    path = shared_dir / "data" / "openi" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# --- splitting -------------------------------------------------------------------------------


def test_split_sentences_handles_numbered_lists_and_decimals() -> None:
    text = "1. Cardiomegaly and small effusions 2. Nodule measuring 1.2 cm. Dr. review."
    assert split_sentences(text) == [
        "1. Cardiomegaly and small effusions",
        "2. Nodule measuring 1.2 cm.",
        "Dr.",
        "review.",
    ]


def test_split_clauses_at_scope_terminators() -> None:
    assert split_clauses("No pneumothorax; small left effusion") == [
        "No pneumothorax",
        "small left effusion",
    ]
    assert split_clauses("No effusion, but there is consolidation") == [
        "No effusion",
        "but",
        "there is consolidation",
    ]
    assert split_clauses("Opacity which may represent atelectasis.") == [
        "Opacity",
        "which may represent atelectasis",
    ]


# --- negation / hedge scope ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "concept", "polarity"),
    [
        ("No evidence of pneumothorax.", "pneumothorax", "absent"),
        ("Lungs are clear without focal consolidation.", "consolidation", "absent"),
        ("Negative for pneumothorax.", "pneumothorax", "absent"),
        ("Lungs are free of infiltrate.", "infiltrate", "absent"),
        ("Pneumothorax is not seen.", "pneumothorax", "absent"),
        ("The right pleural effusion has resolved.", "pleural effusion", "absent"),
        ("Interval resolution of the left lower lobe pneumonia.", "pneumonia", "absent"),
        ("Pulmonary embolism is ruled out.", "pulmonary embolism", "absent"),
        ("Pneumonia is unlikely.", "pneumonia", "absent"),
        ("There is no pleural line to suggest pneumothorax.", "pneumothorax", "absent"),
        ("Left lower lobe opacity, cannot exclude pneumonia.", "pneumonia", "uncertain"),
        ("Pneumonia cannot be excluded.", "pneumonia", "uncertain"),
        ("Early edema is not excluded.", "edema", "uncertain"),
        ("Opacity may represent atelectasis.", "atelectasis", "uncertain"),
        ("Possible small left effusion.", "pleural effusion", "uncertain"),
        ("Questionable right upper lobe nodule.", "nodule", "uncertain"),
        ("Findings suspicious for malignancy.", "malignancy", "uncertain"),
        ("Pneumonia possible.", "pneumonia", "uncertain"),
        ("No change in the small left effusion.", "pleural effusion", "present"),
        ("No interval change in the right lower lobe nodule.", "nodule", "present"),
        ("Not only atelectasis but also consolidation.", "atelectasis", "present"),
        ("9 mm nodule, not seen on prior exams.", "nodule", "present"),
        ("No large pleural effusion.", "pleural effusion", "unasserted"),
        ("Evaluation for pneumothorax is limited.", "pneumothorax", "unasserted"),
        ("Recommend CT to exclude malignancy.", "malignancy", "unasserted"),
        ("Nodular opacity, not seen on the lateral view.", "nodule", "uncertain"),
    ],
)
def test_polarity(text: str, concept: str, polarity: str) -> None:
    assert _polarities(text)[concept] == {polarity}


def test_negation_covers_a_whole_list() -> None:
    polarities = _polarities("No pneumothorax, effusion, or focal consolidation.")
    assert polarities == {
        "pneumothorax": {"absent"},
        "pleural effusion": {"absent"},
        "consolidation": {"absent"},
    }


def test_negation_stops_at_terminators() -> None:
    polarities = _polarities("No pneumothorax, but small right effusion; mild atelectasis.")
    assert polarities["pneumothorax"] == {"absent"}
    assert polarities["pleural effusion"] == {"present"}
    assert polarities["atelectasis"] == {"present"}


def test_negation_does_not_cross_sentences() -> None:
    polarities = _polarities("No pneumothorax. Small left pleural effusion.")
    assert polarities == {"pneumothorax": {"absent"}, "pleural effusion": {"present"}}


def test_alternatives_are_hedged_on_both_sides() -> None:
    polarities = _polarities("Left basilar atelectasis versus pneumonia.")
    assert polarities == {"atelectasis": {"uncertain"}, "pneumonia": {"uncertain"}}


# --- laterality and qualifiers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sides"),
    [
        ("Left basilar atelectasis.", {"left"}),
        ("Atelectasis in the right lung base.", {"right"}),
        ("Bibasilar atelectasis.", {"left", "right"}),
        ("Atelectasis in both lower lobes.", {"left", "right"}),
        ("R lower lobe atelectasis.", {"right"}),
        ("Mild atelectasis.", set()),
        ("Atelectasis seen on both PA and lateral views.", set()),
    ],
)
def test_laterality_extraction(text: str, sides: set[str]) -> None:
    (mention,) = find_mentions(text)
    assert set(mention.sides) == sides


def test_each_side_word_attaches_to_the_nearest_finding() -> None:
    mentions = {m.concept: m for m in find_mentions("Small right effusion and left atelectasis.")}
    assert mentions["pleural effusion"].sides == frozenset({"right"})
    assert mentions["atelectasis"].sides == frozenset({"left"})


def test_inherent_side_of_scoliosis() -> None:
    (mention,) = find_mentions("Mild dextroscoliosis of the thoracic spine.")
    assert mention.sides == frozenset({"right"})


def test_single_letter_sides_need_upper_case_and_an_anatomic_word() -> None:
    assert find_mentions("r lower lobe opacity")[0].sides == frozenset()
    assert find_mentions("L base opacity")[0].sides == frozenset({"left"})


@pytest.mark.parametrize(
    ("text", "critical"),
    [
        ("Small left pleural effusion.", False),
        ("Moderate left pleural effusion.", True),
        ("Large right pleural effusion.", True),
        ("Old healed right rib fractures.", False),
        ("Acute fracture of the left fifth rib.", True),
        ("Small apical pneumothorax.", True),
        ("Chronic subdural hematoma.", False),
        ("History of lung cancer.", False),
    ],
)
def test_criticality_depends_on_qualifiers(text: str, critical: bool) -> None:
    assert any(m.critical for m in find_mentions(text)) is critical


def test_compound_surface_forms_assert_both_concepts() -> None:
    concepts = {m.concept for m in find_mentions("Right hemopneumothorax.")}
    assert concepts == {"pneumothorax", "hemorrhage"}


# --- check_draft: the four flags -------------------------------------------------------------


@pytest.mark.parametrize(
    ("findings", "draft"),
    [
        (
            "No pneumothorax or pleural effusion. Lungs are clear.",
            "No acute cardiopulmonary abnormality.",
        ),
        (
            "The lungs are clear, and without focal air space opacity. The cardiomediastinal "
            "silhouette is normal in size. There is no pneumothorax or large pleural effusion.",
            "No acute cardiopulmonary abnormality.",
        ),
        ("No focal consolidation, pneumothorax, or pleural effusion.", "No acute disease."),
        ("Heart size normal. No pleural effusion.", "Normal chest."),
        ("Lungs are clear. Heart size is normal.", "No active disease."),
        (
            "Right pleural effusion, but no pneumothorax.",
            "Right pleural effusion. No pneumothorax.",
        ),
        (
            "No left pleural effusion. Small right pleural effusion.",
            "Small right pleural effusion.",
        ),
        ("Left basilar atelectasis. Mild right basilar atelectasis.", "Bibasilar atelectasis."),
        ("Possible small left effusion.", "Small left pleural effusion."),
        ("Streaky left basilar opacity, likely atelectasis.", "Left basilar atelectasis."),
        ("Patchy right lower lobe opacity.", "Right lower lobe pneumonia."),
        ("Old healed right rib fractures.", "No acute cardiopulmonary abnormality."),
        (
            "Small left pleural effusion.",
            "No acute cardiopulmonary abnormality. Small left effusion.",
        ),
        ("No large pleural effusion.", "Small pleural effusion."),
        ("Moderate cardiomegaly.", "Cardiomegaly. No acute cardiopulmonary abnormality."),
        ("Emphysema. No focal consolidation.", "Emphysema without acute cardiopulmonary process."),
        ("US: no hydronephrosis.", "No acute abnormality."),
    ],
)
def test_consistent_drafts_are_not_flagged(findings: str, draft: str) -> None:
    assert check_draft(findings, draft) == []


@pytest.mark.parametrize(
    ("findings", "draft", "expected"),
    [
        # negation flips, both directions
        ("Small right pleural effusion.", "No pleural effusion.", "pleural effusion"),
        ("No evidence of pneumothorax.", "Small left pneumothorax.", "pneumothorax"),
        ("Negative for pneumothorax.", "Pneumothorax.", "pneumothorax"),
        ("Pneumothorax is not seen.", "Small apical pneumothorax.", "pneumothorax"),
        (
            "Lungs are clear without focal consolidation.",
            "Right lower lobe consolidation.",
            "consolidation",
        ),
        (
            "The right effusion has resolved.",
            "Persistent right pleural effusion.",
            "pleural effusion",
        ),
        (
            "No pneumothorax, effusion, or consolidation.",
            "Left pleural effusion.",
            "pleural effusion",
        ),
        ("No change in the small left effusion.", "No pleural effusion.", "pleural effusion"),
        ("Left lower lobe opacity, cannot exclude pneumonia.", "No pneumonia.", "pneumonia"),
        ("The lungs are clear.", "Right lower lobe pneumonia.", "pneumonia"),
        ("Heart size is normal.", "Cardiomegaly.", "cardiomegaly"),
        (
            "Right lower lobe consolidation.",
            "No acute cardiopulmonary abnormality.",
            "consolidation",
        ),
    ],
)
def test_negation_flip(findings: str, draft: str, expected: str) -> None:
    assert ("negation_flip", expected) in _kinds(findings, draft)


def test_negation_flip_severity_and_detail() -> None:
    (flag,) = check_draft("Small right pleural effusion.", "No pleural effusion.")
    assert flag == SafetyFlag(
        kind="negation_flip",
        phrase="pleural effusion",
        detail="findings report pleural effusion as present; the draft states it is absent",
        severity="critical",
    )
    (hedged,) = check_draft("Cannot exclude pneumonia.", "No pneumonia.")
    assert hedged.severity == "warning"


def test_side_specific_negation_does_not_flip_the_other_side() -> None:
    assert check_draft("No left pleural effusion.", "Small right pleural effusion.") == []
    assert _kinds("No left pleural effusion.", "Small left pleural effusion.") == {
        ("negation_flip", "pleural effusion")
    }


@pytest.mark.parametrize(
    ("findings", "draft", "expected_detail"),
    [
        (
            "Left basilar atelectasis.",
            "Right basilar atelectasis.",
            "findings place atelectasis on the left; the draft puts atelectasis on the right",
        ),
        (
            "Left basilar atelectasis.",
            "Bibasilar atelectasis.",
            "findings place atelectasis on the left; the draft puts atelectasis on both sides",
        ),
        (
            "R lower lobe opacity.",
            "Left lower lobe opacity.",
            "findings place opacity on the right; the draft puts opacity on the left",
        ),
        (
            "Mild levoscoliosis.",
            "Mild dextroscoliosis.",
            "findings place scoliosis on the left; the draft puts scoliosis on the right",
        ),
        (
            "Small right apical pneumothorax.",
            "Small left apical pneumothorax.",
            "findings place pneumothorax on the right; the draft puts pneumothorax on the left",
        ),
    ],
)
def test_laterality_conflict(findings: str, draft: str, expected_detail: str) -> None:
    flags = [f for f in check_draft(findings, draft) if f.kind == "laterality_conflict"]
    assert [f.detail for f in flags] == [expected_detail]


def test_laterality_conflict_on_critical_finding_is_critical() -> None:
    flags = check_draft("Small right apical pneumothorax.", "Small left apical pneumothorax.")
    assert [(f.kind, f.severity) for f in flags] == [("laterality_conflict", "critical")]
    soft = check_draft("Left basilar atelectasis.", "Right basilar atelectasis.")
    assert [f.severity for f in soft] == ["warning"]


def test_laterality_needs_a_side_in_both_texts() -> None:
    assert check_draft("Basilar atelectasis.", "Right basilar atelectasis.") == []
    assert check_draft("Right basilar atelectasis.", "Basilar atelectasis.") == []


@pytest.mark.parametrize(
    ("findings", "draft", "expected", "severity"),
    [
        (
            "Small left pleural effusion.",
            "Small left effusion. Cardiomegaly.",
            "cardiomegaly",
            "warning",
        ),
        (
            "Mild cardiomegaly.",
            "Mild cardiomegaly. Acute left rib fracture.",
            "fracture",
            "critical",
        ),
        ("Mild cardiomegaly.", "Cardiomegaly. Possible right hilar mass.", "mass", "warning"),
        ("Degenerative changes of the spine.", "Pneumoperitoneum.", "free air", "critical"),
    ],
)
def test_invented_finding(findings: str, draft: str, expected: str, severity: str) -> None:
    flags = [f for f in check_draft(findings, draft) if f.kind == "invented_finding"]
    assert [(f.phrase, f.severity) for f in flags] == [(expected, severity)]


def test_related_findings_support_an_impression() -> None:
    # An impression interprets: opacity -> pneumonia, costophrenic blunting -> effusion.
    assert check_draft("Right lower lobe airspace opacity.", "Right lower lobe pneumonia.") == []
    assert check_draft("Both costophrenic angles are blunted.", "Small bilateral effusions.") == []


@pytest.mark.parametrize(
    ("findings", "expected"),
    [
        ("Large right pneumothorax with mediastinal shift.", "pneumothorax"),
        ("Moderate left pleural effusion.", "pleural effusion"),
        ("Acute displaced fracture of the left 5th rib.", "fracture"),
        ("Free air under the right hemidiaphragm.", "free air"),
        (
            "Endotracheal tube tip in the right mainstem bronchus, recommend retraction.",
            "malpositioned device",
        ),
        ("Pneumothorax cannot be excluded.", "pneumothorax"),
        ("CT head: acute subdural hemorrhage along the left convexity.", "hemorrhage"),
        ("CT: intimal flap in the descending aorta, type B dissection.", "aortic dissection"),
        ("CTA: filling defects in the right lower lobe pulmonary arteries.", "pulmonary embolism"),
        ("Spiculated 3 cm mass in the right upper lobe.", "mass"),
    ],
)
def test_omitted_critical(findings: str, expected: str) -> None:
    flags = check_draft(findings, "No acute cardiopulmonary abnormality.")
    omitted = [f for f in flags if f.kind == "omitted_critical"]
    assert [f.phrase for f in omitted] == [expected]
    assert omitted[0].severity == "critical"


def test_non_critical_findings_left_out_are_unreported_warnings() -> None:
    # a small effusion left out is a warning (not critical); incidental scoliosis is not
    assert check_draft("Small left pleural effusion. Mild scoliosis.", "Mild cardiomegaly.") == [
        SafetyFlag(
            kind="invented_finding",
            phrase="cardiomegaly",
            detail="the draft reports cardiomegaly, which the findings do not describe",
            severity="warning",
        ),
        SafetyFlag(
            kind="unreported_finding",
            phrase="pleural effusion",
            detail="findings report pleural effusion; the draft neither mentions nor "
            "summarises it",
            severity="warning",
        ),
    ]


def test_mentioning_a_critical_finding_in_any_words_is_enough() -> None:
    assert check_draft("Large right pneumothorax.", "Large right pneumothorax.") == []
    assert check_draft("Right hemopneumothorax.", "Right-sided pneumothorax with hemothorax.") == []


def test_flags_are_ordered_critical_first_without_duplicates() -> None:
    flags = check_draft(
        "Small left pneumothorax. Small right pleural effusion. Mild scoliosis.",
        "No pleural effusion. Left pleural effusion. Cardiomegaly. Emphysema.",
    )
    assert [(f.kind, f.phrase, f.severity) for f in flags] == [
        ("laterality_conflict", "pleural effusion", "critical"),
        ("omitted_critical", "pneumothorax", "critical"),
        ("invented_finding", "emphysema", "warning"),
        ("invented_finding", "cardiomegaly", "warning"),
    ]
    assert len({(f.kind, f.phrase) for f in flags}) == len(flags)


def test_safety_flag_is_immutable() -> None:
    flag = SafetyFlag(kind="negation_flip", phrase="x", detail="y", severity="warning")
    with pytest.raises(dataclasses.FrozenInstanceError):
        flag.phrase = "z"  # type: ignore[misc]


def test_non_string_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="strings"):
        check_draft(None, "No acute abnormality.")  # type: ignore[arg-type]


# --- lexicon ---------------------------------------------------------------------------------


def test_critical_list_is_documented_and_in_the_lexicon() -> None:
    names = {c.name for c in LEXICON}
    assert set(CRITICAL_CONCEPTS) <= names
    for required in (
        "pneumothorax",
        "tension pneumothorax",
        "free air",
        "pleural effusion",
        "hemorrhage",
        "aortic dissection",
        "pulmonary embolism",
        "malpositioned device",
        "fracture",
        "mass",
        "malignancy",
    ):
        assert required in CRITICAL_CONCEPTS
    doc = Path(__file__).resolve().parents[2] / "docs" / "safety-checks.md"
    text = doc.read_text(encoding="utf-8")
    for name in CRITICAL_CONCEPTS:
        assert name in text, f"{name} missing from docs/safety-checks.md"


def test_related_concepts_exist() -> None:
    names = {c.name for c in LEXICON}
    for concept in LEXICON:
        assert concept.related <= names, concept.name


@pytest.mark.parametrize(
    ("surface", "concept"),
    [
        ("pneumothoraces", "pneumothorax"),
        ("effusions", "pleural effusion"),
        ("pericardial effusion", "pericardial effusion"),
        ("pneumoperitoneum", "free air"),
        ("free subdiaphragmatic air", "free air"),
        ("airspace disease", "airspace disease"),
        ("peribronchial cuffing", "bronchitis"),
        ("bronchial wall thickening", "bronchitis"),
        ("diminished lung volumes", "low lung volumes"),
        ("hypoventilatory changes", "low lung volumes"),
        ("air space opacities", "airspace disease"),
        ("granulomata", "granuloma"),
        ("calcified nodule", "granuloma"),
        ("hiatal hernia", "hernia"),
        ("the heart is mildly enlarged", "cardiomegaly"),
        ("PE", "pulmonary embolism"),
        ("subdural hematoma", "hemorrhage"),
        ("acute infarct", "infarct"),
        ("small bowel obstruction", "bowel obstruction"),
        ("catheter fracture", "device fracture"),
        ("laryngeal edema", "soft tissue edema"),
    ],
)
def test_lexicon_surface_forms(surface: str, concept: str) -> None:
    assert [m.concept for m in find_mentions(surface)] == [concept]


def test_pe_needs_upper_case_and_embolization_coils_are_not_emboli() -> None:
    assert find_mentions("pe") == []
    assert find_mentions("Splenic artery embolism coils.") == []


def test_first_character_dispatch_matches_one_big_regex(shared_dir: Path) -> None:
    """The per-first-character buckets must find exactly what one alternation finds."""
    parts: list[str] = []
    index = 0
    for concept in LEXICON:
        for pattern in concept.patterns:
            parts.append(f"(?P<g{index}>{pattern})")
            index += 1
    parts.sort(key=lambda part: -assertion._literal_length(part))
    big = re.compile(r"\b(?:" + "|".join(parts) + r")\b", re.IGNORECASE)
    texts = [t for row in _load(shared_dir, "validate") for t in (row["inputs"], row["target"])]
    texts += ["Hydropneumothorax, type A dissection; L base opacity. Tension pneumothorax."]
    for text in texts:
        expected = [(m.start(), m.end(), m.lastgroup) for m in big.finditer(text)]
        got = [(m.start(), m.end(), m.lastgroup) for m in assertion._concept_matches(text)]
        assert got == expected, text


# --- summarise_flags -------------------------------------------------------------------------


def test_summarise_flags_rates() -> None:
    flip = SafetyFlag("negation_flip", "pneumothorax", "d", "critical")
    invented = SafetyFlag("invented_finding", "nodule", "d", "warning")
    rates = summarise_flags([[flip, invented, invented], [invented], [], []])
    assert rates == {
        "negation_flip": 0.25,
        "laterality_conflict": 0.0,
        "invented_finding": 0.5,
        "omitted_critical": 0.0,
        "unreported_finding": 0.0,
        "anatomical_scope": 0.0,
        "any": 0.5,
        "critical": 0.25,
    }
    assert set(FLAG_KINDS) <= set(rates)


def test_summarise_flags_of_nothing_is_zero() -> None:
    assert set(summarise_flags([]).values()) == {0.0}


# --- reference impressions and injected errors (validate split, never test) ------------------


def test_reference_impressions_are_rarely_flagged(shared_dir: Path) -> None:
    rows = _load(shared_dir, "validate")
    started = time.perf_counter()
    results = [check_draft(row["inputs"], row["target"]) for row in rows]
    per_report_ms = (time.perf_counter() - started) / len(rows) * 1000
    rates = summarise_flags(results)
    print(f"\nvalidate reference impressions (n={len(rows)}), share of reports flagged:")
    for kind, rate in rates.items():
        print(f"  {kind:20s} {rate:6.1%}")
    print(f"  time per report      {per_report_ms:.3f} ms (uncached, shared CPU)")
    assert len(rows) == 341
    assert rates["negation_flip"] < 0.05
    assert rates["invented_finding"] < 0.10
    assert rates["negation_flip"] + rates["invented_finding"] < 0.15
    assert rates["laterality_conflict"] < 0.05
    assert rates["omitted_critical"] < 0.05


def _swap_sides(text: str) -> str:
    table = {"left": "right", "right": "left", "Left": "Right", "Right": "Left"}
    return re.sub(r"\b(?:[Ll]eft|[Rr]ight)\b", lambda m: table[m.group()], text)


def test_injected_errors_are_caught(shared_dir: Path) -> None:
    """Sensitivity: swap sides, negate findings and blank out critical findings in the
    radiologists' own impressions, and count how often the right flag is raised."""
    rows = _load(shared_dir, "validate") + _load(shared_dir, "train")[:1000]
    swapped = swapped_hit = negated = negated_hit = omitted = omitted_hit = 0
    for row in rows:
        findings, impression = row["inputs"], row["target"]
        if check_draft(findings, impression):
            continue  # only perturb impressions the checks accept as they are
        findings_sides = {
            m.concept: m.sides for m in find_mentions(findings) if m.polarity == "present"
        }
        one_sided = [
            m
            for m in find_mentions(impression)
            if m.polarity == "present"
            and len(m.sides) == 1
            and findings_sides.get(m.concept) == m.sides
        ]
        if one_sided:
            swapped += 1
            flags = check_draft(findings, _swap_sides(impression))
            swapped_hit += any(f.kind == "laterality_conflict" for f in flags)
        positive = [
            m.concept
            for m in find_mentions(impression)
            if m.polarity == "present" and m.concept in _polarity_present(findings)
        ]
        if positive:
            negated += 1
            flags = check_draft(findings, f"No {positive[0]}.")
            negated_hit += ("negation_flip", positive[0]) in {(f.kind, f.phrase) for f in flags}
        if any(
            m.critical and m.polarity in ("present", "uncertain") for m in find_mentions(findings)
        ):
            omitted += 1
            flags = check_draft(findings, "No acute cardiopulmonary abnormality.")
            omitted_hit += any(f.kind in ("omitted_critical", "negation_flip") for f in flags)
    print(
        f"\ninjected errors: side swapped {swapped_hit}/{swapped}, "
        f"negated {negated_hit}/{negated}, critical finding dropped {omitted_hit}/{omitted}"
    )
    assert swapped >= 30 and negated >= 30 and omitted >= 10
    assert swapped_hit / swapped > 0.9
    assert negated_hit / negated > 0.9
    assert omitted_hit / omitted > 0.9


def _polarity_present(text: str) -> set[str]:
    return {m.concept for m in find_mentions(text) if m.polarity == "present"}


# --- properties ------------------------------------------------------------------------------

_VOCABULARY = [
    "no",
    "not",
    "without",
    "pneumothorax",
    "left",
    "right",
    "bilateral",
    "effusion",
    "pleural",
    "cannot",
    "exclude",
    "possible",
    "or",
    "versus",
    "but",
    ";",
    ".",
    ",",
    "large",
    "old",
    "fracture",
    "rib",
    "L",
    "R",
    "lower",
    "lobe",
    "resolved",
    "is",
    "seen",
    "mass",
    "no change in",
    "clear",
    "lungs are clear",
    "no acute cardiopulmonary abnormality",
    "1.",
    "2.",
    "heart size normal",
    "cardiomegaly",
    "free air",
    "hemopneumothorax",
    "PE",
    "XXXX",
    "levoscoliosis",
    "history of",
    "to exclude",
    "\n",
    "(",
    ")",
    "[",
    "\\",
    "both lower lobes",
]
_report_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(_VOCABULARY), max_size=40).map(" ".join),
)


@settings(max_examples=300, deadline=None)
@given(findings=_report_text, draft=_report_text)
def test_check_draft_never_raises_and_flags_are_well_formed(findings: str, draft: str) -> None:
    flags = check_draft(findings, draft)
    assert flags == check_draft(findings, draft)  # deterministic
    assert len({(f.kind, f.phrase) for f in flags}) == len(flags)
    ranks = [(f.severity != "critical", FLAG_KINDS.index(f.kind)) for f in flags]
    assert ranks == sorted(ranks)
    for flag in flags:
        assert flag.kind in FLAG_KINDS
        assert flag.severity in ("warning", "critical")
        assert flag.phrase and flag.detail


@settings(max_examples=300, deadline=None)
@given(text=_report_text)
def test_identical_texts_never_flip_or_conflict(text: str) -> None:
    assert check_draft(text, text) == []
