"""Safety metrics on five hand-made reports (every expected value worked out by hand)."""

from __future__ import annotations

import pytest

from inference.safety import check_draft
from training.safety_metrics import (
    SUBSETS,
    SafetyRow,
    TrainingSet,
    names_positive_finding,
    normalise_findings,
    normalise_impression,
    report_safety,
    safety_metrics,
    subset_members,
)

NORMAL = "No acute cardiopulmonary abnormality."

ROWS = [
    # 1: normal reference, normal draft copied from an exemplar (trailing "." differs),
    #    findings identical to a training report's up to whitespace: an exact twin.
    SafetyRow(
        1,
        "The lungs are clear. No pleural effusion.",
        NORMAL,
        "No acute cardiopulmonary abnormality",
        exemplars=(NORMAL, "Normal chest."),
    ),
    # 2: abnormal reference drafted as the normal template: missed; omitted critical flag.
    SafetyRow(
        2,
        "Large right pleural effusion.",
        "Large right pleural effusion.",
        NORMAL,
        exemplars=("Right pleural effusion.",),
    ),
    # 3: abnormal reference, the draft is no template but names no finding: missed, and the
    #    consolidation it leaves out is an unreported_finding warning.
    SafetyRow(
        3,
        "Left lower lobe consolidation.",
        "Left lower lobe pneumonia.",
        "Stable chest.",
        exemplars=("STABLE  chest",),
    ),
    # 4: extractive fallback on the wrong side: not missed, laterality flag.
    SafetyRow(
        4,
        "Right pneumothorax.",
        "Right pneumothorax.",
        "Left pneumothorax.",
        method="extractive-fallback",
        exemplars=(),
    ),
    # 5: the reference itself is flagged (invented pneumothorax); the draft is a training
    #    impression ("Cardiomegaly" without the full stop).
    SafetyRow(
        5,
        "Heart is enlarged.",
        "Left pneumothorax.",
        "Cardiomegaly.",
        method="model",
        exemplars=("Small left pleural effusion.",),
    ),
]
TRAINING = TrainingSet.from_pairs(
    [("The lungs are clear.  No pleural effusion.", NORMAL), ("Enlarged heart.", "Cardiomegaly")],
    source="hand-made",
)


def test_normalisation_of_impressions_and_findings() -> None:
    assert normalise_impression("  No acute   Disease. . ") == "no acute disease"
    assert normalise_impression("1. Effusion; 2. Edema!?") == "1. effusion; 2. edema"
    assert normalise_findings(" Lungs  are\nclear. ") == "Lungs are clear."
    assert normalise_findings("Lungs are clear.") != normalise_findings("lungs are clear.")


@pytest.mark.parametrize(
    ("text", "positive"),
    [
        ("Right pleural effusion.", True),
        ("Possible cardiomegaly.", True),  # uncertain counts as named
        ("No pleural effusion.", False),
        ("Stable chest.", False),
        (NORMAL, False),
    ],
)
def test_names_positive_finding(text: str, positive: bool) -> None:
    assert names_positive_finding(text) is positive


def test_checker_behaviour_the_expected_values_rely_on() -> None:
    kinds = [sorted({f.kind for f in check_draft(r.inputs, r.output)}) for r in ROWS]
    assert kinds == [[], ["omitted_critical"], ["unreported_finding"], ["laterality_conflict"], []]
    refs = [sorted({f.kind for f in check_draft(r.inputs, r.target)}) for r in ROWS]
    assert refs == [[], [], [], [], ["invented_finding", "unreported_finding"]]


def test_per_report_facts() -> None:
    reports = report_safety(ROWS, training=TRAINING)
    assert [r.idx for r in reports] == [1, 2, 3, 4, 5]
    assert [r.reference_normal for r in reports] == [True, False, False, False, False]
    assert [r.draft_normal_template for r in reports] == [True, True, False, False, False]
    assert [r.missed_abnormal for r in reports] == [False, True, True, False, False]
    assert [r.copy_exemplar for r in reports] == [True, False, True, False, False]
    assert [r.copy_training for r in reports] == [True, True, False, False, True]
    assert [r.twin for r in reports] == [True, False, False, False, False]
    assert [r.fallback for r in reports] == [False, False, False, True, False]
    # ROUGE-L: exact; disjoint; disjoint; "left pneumothorax" vs "right pneumothorax" LCS 1
    # of 2 -> P = R = F = 1/2; disjoint.
    assert [round(r.rouge[2], 6) for r in reports] == [100.0, 0.0, 0.0, 50.0, 0.0]
    unknown = report_safety([SafetyRow(9, "x", NORMAL, NORMAL)])
    assert unknown[0].twin is None and unknown[0].copy_exemplar is None
    assert unknown[0].copy_training is None


def test_aggregate_metrics_overall() -> None:
    m = safety_metrics(report_safety(ROWS, training=TRAINING), training_source="hand-made")
    assert m["training_set"] == "hand-made"
    o = m["overall"]
    assert (o["n"], o["rougeL"]) == (5, 30.0)  # (100 + 0 + 0 + 50 + 0) / 5
    assert o["missed_abnormal"] == {
        "n": 4,
        "count": 2,
        "rate": 0.5,
        "normal_template": 1,
        "idx": [2, 3],
    }
    assert o["copy_exemplar"] == {"n": 5, "count": 2, "rate": 0.4}
    assert o["copy_training"] == {"n": 5, "count": 3, "rate": 0.6}
    assert o["extractive_fallback"] == {"n": 5, "count": 1, "rate": 0.2}
    flags = o["flags"]
    assert flags["drafts"]["any"] == 0.6 and flags["drafts"]["critical"] == 0.4
    assert flags["drafts"]["unreported_finding"] == 0.2
    assert flags["drafts"]["omitted_critical"] == 0.2
    assert flags["drafts"]["laterality_conflict"] == 0.2
    assert flags["drafts"]["negation_flip"] == 0.0
    assert flags["reference"]["any"] == 0.2 and flags["reference"]["invented_finding"] == 0.2
    assert flags["any_ratio"] == 3.0


def test_aggregate_metrics_by_subset() -> None:
    m = safety_metrics(report_safety(ROWS, training=TRAINING))
    assert set(m) == {"training_set", *SUBSETS}
    assert (m["normal"]["n"], m["normal"]["rougeL"]) == (1, 100.0)
    assert m["normal"]["missed_abnormal"]["n"] == 0
    assert m["normal"]["missed_abnormal"]["rate"] == 0.0
    assert (m["abnormal"]["n"], m["abnormal"]["rougeL"]) == (4, 12.5)
    assert m["abnormal"]["missed_abnormal"]["count"] == 2
    assert m["abnormal"]["flags"]["drafts"]["any"] == 0.75
    assert m["abnormal"]["flags"]["reference"]["any"] == 0.25
    assert m["exact_twin"]["n"] == 1 and m["exact_twin"]["copy_exemplar"]["count"] == 1
    assert m["non_twin"]["n"] == 4 and m["non_twin"]["missed_abnormal"]["rate"] == 0.5
    assert m["non_twin"]["extractive_fallback"]["count"] == 1
    assert m["exact_twin"]["flags"]["any_ratio"] is None  # the reference has no flag there


def test_unknown_training_set_and_exemplars_give_none_not_zero() -> None:
    rows = [SafetyRow(r.idx, r.inputs, r.target, r.output, r.method) for r in ROWS]
    m = safety_metrics(report_safety(rows))
    assert m["training_set"] is None
    assert m["exact_twin"] is None and m["non_twin"] is None
    assert m["overall"]["copy_exemplar"] == {"n": 5, "count": None, "rate": None}
    assert m["overall"]["copy_training"]["count"] is None
    assert m["overall"]["missed_abnormal"]["count"] == 2
    with pytest.raises(ValueError, match="unknown subset"):
        subset_members([], "twins")
    with pytest.raises(ValueError, match="one entry per row"):
        report_safety(ROWS, reference_flags=[[]])
