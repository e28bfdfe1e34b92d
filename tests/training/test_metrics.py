"""Evaluation metrics on known strings (values worked out by hand)."""

from __future__ import annotations

import pytest

from inference.drafting.retrieval import ExemplarIndex
from training.baselines import constant_outputs, nearest_neighbour_outputs
from training.metrics import (
    is_normal_impression,
    length_stats,
    rouge_scores,
    safety_rates,
    score_outputs,
)


def test_rouge_identical_and_disjoint() -> None:
    assert rouge_scores(["No acute disease."], ["No acute disease."]).rougeL == pytest.approx(100)
    zero = rouge_scores(["Cardiomegaly."], ["No acute disease."])
    assert (zero.rouge1, zero.rouge2, zero.rougeL) == (0.0, 0.0, 0.0)


def test_rouge_known_values() -> None:
    # ref 4 tokens, output 3 tokens, all 3 in ref in order:
    # R-1 P=1 R=3/4 F=6/7; R-2: bigrams "no acute" only of 2 vs 3 -> P=1/2 R=1/3 F=2/5;
    # R-L: LCS 3 -> F=6/7.  No stemming: "diseases" does not match "disease".
    s = rouge_scores(["No acute disease."], ["No acute cardiopulmonary disease."])
    assert s.n == 1
    assert s.rouge1 == pytest.approx(100 * 6 / 7)
    assert s.rouge2 == pytest.approx(100 * 2 / 5)
    assert s.rougeL == pytest.approx(100 * 6 / 7)
    assert rouge_scores(["diseases"], ["disease"]).rouge1 == 0.0


def test_rouge_is_mean_per_report() -> None:
    s = rouge_scores(["a b", "x"], ["a b", "y"])
    assert s.rougeL == pytest.approx(50.0)
    assert s.to_json() == {"n": 2, "rouge1": 50.0, "rouge2": 50.0, "rougeL": 50.0}
    with pytest.raises(ValueError, match="same length"):
        rouge_scores(["a"], [])
    assert rouge_scores([], []).n == 0


@pytest.mark.parametrize(
    "text",
    [
        "No acute cardiopulmonary abnormality.",
        "1. No evidence of active disease.",
        "No acute cardiopulmonary abnormality. .",
        "Negative chest x-XXXX.",
        "Normal chest",
        "No acute radiographic cardiopulmonary process.",
        "Clear lungs. No acute cardiopulmonary abnormality.",
        "Unremarkable radiographs of the chest.",
    ],
)
def test_normal_templates(text: str) -> None:
    assert is_normal_impression(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Cardiomegaly without acute cardiopulmonary abnormality.",
        "Low lung volumes, otherwise clear.",
        "1. No acute cardiopulmonary abnormality. 2. Stable hiatal hernia.",
        "Right upper lobe pneumonia.",
        "No pneumothorax. Small left pleural effusion.",
    ],
)
def test_abnormal_impressions(text: str) -> None:
    assert not is_normal_impression(text)


def test_length_stats() -> None:
    stats = length_stats(["No acute disease.", ""], ["no acute disease.", "Cardiomegaly."])
    assert stats["output_words_mean"] == 1.5
    assert stats["reference_words_mean"] == 2.0
    assert stats["length_ratio"] == 0.75
    assert stats["empty_rate"] == 0.5
    assert stats["exact_match_rate"] == 0.5
    assert length_stats([], []) == {}


def test_score_outputs_subsets_and_safety() -> None:
    findings = [
        "The lungs are clear. No effusion.",
        "Large right pleural effusion. No pneumothorax.",
    ]
    targets = ["No acute cardiopulmonary abnormality.", "Large right pleural effusion."]
    outputs = ["No acute cardiopulmonary abnormality.", "Large left pleural effusion."]
    report = score_outputs(findings, targets, outputs)
    assert report["n"] == 2
    assert report["subsets"]["normal"] == {
        "n": 1,
        "rouge1": 100.0,
        "rouge2": 100.0,
        "rougeL": 100.0,
    }
    assert report["subsets"]["abnormal"]["n"] == 1
    assert report["subsets"]["abnormal"]["rouge1"] == pytest.approx(75.0)
    # The laterality error of the second draft is caught by the safety checks.
    assert report["safety"]["laterality_conflict"] == 0.5
    assert report["safety"]["any"] == 0.5
    no_safety = score_outputs(findings, targets, outputs, safety=False)
    assert "safety" not in no_safety
    with pytest.raises(ValueError, match="same length"):
        score_outputs(findings, targets, outputs[:1])


def test_safety_rates_of_a_faithful_draft_are_zero() -> None:
    rates = safety_rates(["No pneumothorax. Lungs clear."], ["No pneumothorax."])
    assert rates is not None
    assert rates["any"] == 0.0


def test_baselines() -> None:
    assert constant_outputs("No acute disease.", 3) == ["No acute disease."] * 3
    index = ExemplarIndex.build(
        [("1", "lungs clear no effusion", "Normal."), ("2", "right effusion large", "Effusion.")]
    )
    assert nearest_neighbour_outputs(index, ["large right effusion", "clear lungs"]) == [
        "Effusion.",
        "Normal.",
    ]
