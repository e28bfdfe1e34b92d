"""Evaluation helpers on known strings: predictions files, reports, adapter settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.retrieval import ExemplarIndex
from training.evaluate import (
    DraftSettings,
    Prediction,
    evaluation_report,
    format_report,
    load_split,
    read_predictions,
    write_predictions,
)

PREDS = [
    Prediction(1, "The lungs are clear. No effusion.", "No acute disease.", "No acute disease."),
    Prediction(2, "Large right pleural effusion.", "Large right pleural effusion.", "Effusion."),
]


def test_predictions_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "preds.jsonl"
    write_predictions(path, PREDS)
    assert read_predictions(path) == PREDS
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {
        "idx": 1,
        "inputs": "The lungs are clear. No effusion.",
        "target": "No acute disease.",
        "output": "No acute disease.",
    }
    path.write_text('{"idx": 1}\n')
    with pytest.raises(ValueError, match="not a prediction line"):
        read_predictions(path)


def test_evaluation_report_scores_model_baselines_and_references() -> None:
    index = ExemplarIndex.build(
        [
            ("t1", "lungs are clear, no effusion", "No acute disease."),
            ("t2", "large right pleural effusion", "Right pleural effusion."),
        ]
    )
    report = evaluation_report(PREDS, baseline_index=index)
    model = report["model"]
    # report 1 exact (100), report 2: "effusion" vs 4 ref words -> P=1 R=1/4 F=0.4
    assert model["rougeL"] == pytest.approx((100 + 40) / 2)
    assert model["subsets"]["normal"]["rougeL"] == 100.0
    assert model["subsets"]["abnormal"]["rougeL"] == 40.0
    nn = report["tfidf-1nn"]
    # 1-NN: exact on report 1; "right pleural effusion" vs ref -> P=1 R=3/4 F=6/7
    assert nn["rougeL"] == pytest.approx((100 + 100 * 6 / 7) / 2, abs=0.005)  # rounded
    assert report["constant: No acute cardiopulmonary disease."]["n"] == 2
    assert "safety" in report["reference"]
    table = format_report(report)
    assert table.splitlines()[0].startswith("system")
    assert any(line.startswith("tfidf-1nn") for line in table.splitlines())
    assert "reference impressions" in table


def test_load_split_openi_ids_are_the_file_idx(shared_dir: Path, tmp_path: Path) -> None:
    test = load_split(shared_dir / "data/openi", "test")
    assert len(test) == 343
    first = json.loads((shared_dir / "data/openi/test.jsonl").read_text().splitlines()[0])
    assert test[0].id == str(first["idx"])
    with pytest.raises(ValueError, match="unknown split"):
        load_split(shared_dir / "data/openi", "dev")
    with pytest.raises(ValueError, match="no test file"):
        load_split(tmp_path, "test")


def test_draft_settings_without_metadata_use_the_plain_template(tmp_path: Path) -> None:
    settings = DraftSettings.for_adapter(tmp_path)
    assert settings.index is None and settings.k == 0
    assert "similar reports" not in settings.prompt("Lungs are clear.")


def test_draft_settings_of_the_shipped_adapter() -> None:
    shipped = Path(__file__).resolve().parents[2] / "training/adapters/radiology"
    assert (shipped / "radgpt-adapter.json").is_file(), "the shipped adapter is missing"
    settings = DraftSettings.for_adapter(shipped)
    meta = json.loads((shipped / "radgpt-adapter.json").read_text())
    canary = meta["canary"]
    assert settings.prompt(canary["findings"]) == canary["prompt"]
    assert settings.max_new_tokens == meta["max_new_tokens"]
