"""Evaluation helpers on known strings: predictions files, reports, adapter settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inference.drafting.retrieval import ExemplarIndex
from training.evaluate import (
    DraftSettings,
    Prediction,
    evaluation_report,
    format_report,
    load_split,
    read_predictions,
    retrieved_exemplars,
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


EVAL_DATA = Path(__file__).resolve().parents[1] / "data/training/eval"
REPO = Path(__file__).resolve().parents[2]


def test_optional_prediction_fields_round_trip_and_old_lines_still_read(tmp_path: Path) -> None:
    stored = read_predictions(EVAL_DATA / "predictions.jsonl")
    assert [p.method for p in stored] == ["model", "model", "extractive-fallback", "model"]
    assert stored[0].exemplars == (
        "No acute cardiopulmonary abnormality.",
        "No acute cardiopulmonary disease.",
        "Normal chest.",
    )
    assert stored[0].candidates == 3 and stored[0].flags == ()
    path = tmp_path / "again.jsonl"
    write_predictions(path, stored)
    assert read_predictions(path) == stored
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        json.loads(line) for line in (EVAL_DATA / "predictions.jsonl").read_text().splitlines()
    ]
    flagged = Prediction(
        7,
        "Right pneumothorax.",
        "Right pneumothorax.",
        "Left pneumothorax.",
        flags=({"kind": "laterality_conflict", "severity": "critical"},),
    )
    assert flagged.to_json()["flags"] == [{"kind": "laterality_conflict", "severity": "critical"}]
    old = read_predictions(EVAL_DATA / "baseline.jsonl")
    assert all(p.method is None and p.exemplars is None and p.candidates is None for p in old)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"method": 1}, "method must be a string"),
        ({"exemplars": "No acute disease."}, "exemplars must be a list of strings"),
        ({"flags": ["omitted_critical"]}, "flags must be a list of objects"),
        ({"candidates": 0}, "candidates must be a positive integer"),
        ({"greedy": ["x"]}, "greedy must be a string"),
        ({"output": None}, "must be strings"),
        ({"idx": True}, "idx must be"),
    ],
)
def test_malformed_optional_fields_are_refused(
    tmp_path: Path, extra: dict[str, object], message: str
) -> None:
    row = {"idx": 1, "inputs": "a", "target": "b", "output": "c", **extra}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=f"bad.jsonl:1: not a prediction line .*{message}"):
        read_predictions(path)


def test_retrieved_exemplars_prefer_the_stored_ones() -> None:
    shipped = REPO / "training/adapters/radiology"
    settings = DraftSettings.for_adapter(shipped)
    rows = [PREDS[0], Prediction(3, "x", "y", "z", exemplars=("stored",))]
    got = retrieved_exemplars(rows, settings)
    assert got[0] == tuple(settings.index.top_k(PREDS[0].inputs, 3))  # type: ignore[union-attr]
    assert len(got[0]) == 3 and got[1] == ("stored",)
    plain = DraftSettings.for_adapter(None)
    assert retrieved_exemplars([PREDS[0]], plain) == [()]


def _radgpt(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "integration", "eval", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_radgpt_eval_scores_and_compares_stored_predictions(tmp_path: Path) -> None:
    metrics, png = tmp_path / "metrics.json", tmp_path / "cmp.png"
    done = _radgpt(
        "--score", EVAL_DATA / "predictions.jsonl",
        "--compare", EVAL_DATA / "baseline.jsonl",
        "--data", EVAL_DATA / "openi",
        "--metrics-out", metrics,
        "--plot", png,
        "--resamples", "300",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "missed-abnormal" in done.stdout and "diff [95% CI]" in done.stdout
    report = json.loads(metrics.read_text())
    model = report["model"]
    assert model["rougeL"] == 93.75  # 100, 100, 75 (LCS 3 of 4 words), 100
    sm = model["safety_metrics"]
    assert sm["training_set"] == str(EVAL_DATA / "openi" / "train.jsonl")
    assert sm["overall"]["missed_abnormal"] == {
        "n": 3, "count": 0, "rate": 0.0, "normal_template": 0, "idx": []
    }  # fmt: skip
    assert sm["overall"]["copy_exemplar"] == {"n": 4, "count": 1, "rate": 0.25}
    assert sm["overall"]["copy_training"] == {"n": 4, "count": 1, "rate": 0.25}
    assert sm["overall"]["extractive_fallback"] == {"n": 4, "count": 1, "rate": 0.25}
    assert sm["exact_twin"]["n"] == 1 and sm["non_twin"]["n"] == 3
    assert sm["overall"]["flags"]["drafts"]["any"] == 0.0
    base = report["compare"]["baseline_safety_metrics"]["overall"]
    assert base["missed_abnormal"]["count"] == 3 and base["missed_abnormal"]["idx"] == [
        3002, 3003, 3004
    ]  # fmt: skip
    # 3002 and 3004 omit a critical finding; "Stable chest." over a consolidation (3003) is
    # an unreported_finding
    assert base["rougeL"] == 25.0 and base["flags"]["drafts"]["any"] == 0.75
    cmp = report["compare"]
    assert cmp["resamples"] == 300 and cmp["baseline"] == str(EVAL_DATA / "baseline.jsonl")
    abnormal = cmp["subsets"]["abnormal"]
    # every abnormal report: new not missed, baseline missed -> a paired difference of -1
    assert abnormal["missed_abnormal"]["diff"] == {"value": -1.0, "low": -1.0, "high": -1.0}
    overall = cmp["subsets"]["overall"]
    assert overall["rougeL"]["diff"]["value"] == 68.75
    assert overall["any_flag"]["diff"]["value"] == -0.75  # 0 of 4 drafts vs 3 of 4 baseline
    assert overall["rougeL"]["diff"]["low"] <= 68.75 <= overall["rougeL"]["diff"]["high"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_radgpt_eval_bad_comparisons_exit_2_in_one_line(tmp_path: Path) -> None:
    short = tmp_path / "short.jsonl"
    lines = (EVAL_DATA / "baseline.jsonl").read_text().splitlines()
    short.write_text("\n".join(lines[:3]) + "\n")
    mismatch = _radgpt(
        "--score", EVAL_DATA / "predictions.jsonl", "--compare", short,
        "--data", EVAL_DATA / "openi",
    )  # fmt: skip
    assert mismatch.returncode == 2
    assert mismatch.stderr == (
        "error: --compare needs the same reports: 1 idx only in the predictions [3004], "
        "0 only in the baseline []\n"
    )
    no_compare = _radgpt("--score", EVAL_DATA / "predictions.jsonl", "--plot", tmp_path / "x.png")
    assert no_compare.returncode == 2
    assert no_compare.stderr == "error: --plot needs --compare BASELINE_PREDICTIONS\n"
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"idx": 1, "inputs": "a"}\n')
    bad = _radgpt("--score", broken, "--data", EVAL_DATA / "openi")
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"error: {broken}:1: not a prediction line")
    assert len(bad.stderr.splitlines()) == 1


def test_radgpt_eval_writes_tfidf_1nn_predictions_without_a_model(tmp_path: Path) -> None:
    out = tmp_path / "1nn.jsonl"
    done = _radgpt(
        "--system", "tfidf-1nn", "--split", "test", "--data", EVAL_DATA / "openi",
        "--out", out, "--no-baselines",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["idx"] for r in rows] == [3001, 3002, 3003, 3004]
    # 3001 has an exact findings twin in train.jsonl; 3002 shares 8 of its 10 words with one
    assert rows[0]["output"] == "No acute cardiopulmonary abnormality."
    assert rows[1]["output"] == "Large right pleural effusion, increased since the prior study."
    assert all(r["exemplars"] == [r["output"]] for r in rows)
    unknown = _radgpt("--system", "gpt-5", "--data", EVAL_DATA / "openi")
    assert unknown.returncode == 2
    assert unknown.stderr == "error: unknown --system 'gpt-5' (choose from model, tfidf-1nn)\n"


@pytest.mark.timeout(1200)
def test_verify_still_reproduces_the_stored_0_1_0_predictions(model_cache_dir: Path) -> None:
    """The stored run predates the optional fields; --verify re-drafts a sample exactly."""
    stored = REPO / "training/results/openi-test-predictions.jsonl"
    assert set(json.loads(stored.read_text().splitlines()[0])) == {
        "idx", "inputs", "target", "output"
    }  # fmt: skip
    done = _radgpt(
        "--verify", stored, "--sample", "2", "--adapter", REPO / "training/adapters/radiology",
        "--cache-dir", model_cache_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "verified 2 stored predictions: 2 identical" in done.stdout


def test_radgpt_eval_record_stores_the_safety_metrics_without_idx_lists(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name in ("radgpt-adapter.json", "exemplars.json"):
        (adapter / name).write_bytes((REPO / "training/adapters/radiology" / name).read_bytes())
    done = _radgpt(
        "--score", EVAL_DATA / "predictions.jsonl", "--data", EVAL_DATA / "openi",
        "--adapter", adapter, "--split", "validate", "--record",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    recorded = json.loads((adapter / "radgpt-adapter.json").read_text())["metrics"]["validate"]
    overall = recorded["safety_metrics"]["overall"]
    assert overall["missed_abnormal"] == {"n": 3, "count": 0, "rate": 0.0, "normal_template": 0}
    assert overall["extractive_fallback"]["rate"] == 0.25
    assert recorded["rougeL"] == 93.75
    assert "93.75" in (adapter / "README.md").read_text()


def test_a_verify_run_with_stored_greedy_candidates_also_scores_greedy_drafting() -> None:
    findings = "Heart size normal. Large right pleural effusion. No pneumothorax."
    preds = [
        Prediction(
            1,
            findings,
            "Large right pleural effusion.",
            "Large right pleural effusion.",
            method="extractive-fallback",
            candidates=1,
            greedy="No acute cardiopulmonary abnormality.",
        ),
        Prediction(
            2, "Lungs are clear.", "Normal chest.", "Normal chest.", method="model", candidates=1
        ),
    ]
    report = evaluation_report(preds)
    assert report["model"]["rougeL"] == 100.0
    greedy = report["model (greedy)"]
    assert greedy["rougeL"] < 100.0
    assert greedy["safety_metrics"]["overall"]["missed_abnormal"]["count"] == 1
    assert report["model"]["safety_metrics"]["overall"]["missed_abnormal"]["count"] == 0
    assert Prediction.from_json(preds[0].to_json()) == preds[0]
    # with sampled candidates the greedy one is not stored: no greedy system
    sampled = [preds[0], Prediction(2, "Lungs are clear.", "Normal.", "Normal.", candidates=4)]
    assert "model (greedy)" not in evaluation_report(sampled)


def test_recheck_runs_verify_and_choose_again_over_the_stored_greedy_drafts() -> None:
    from training.evaluate import recheck_predictions

    rows = [
        # greedy passed then and passes now: kept
        Prediction(1, "Lungs are clear.", "Normal chest.", "Normal chest.", method="model",
                   candidates=1),
        # greedy passed then, but today's checks see the low lung volumes it left out
        Prediction(2, "Low lung volumes. The lungs are clear.", "Low lung volumes.",
                   "No acute cardiopulmonary abnormality.", method="model", candidates=1),
        # the greedy draft had been replaced: today it is checked again
        Prediction(3, "Large right pleural effusion.", "Right effusion.",
                   "Large right pleural effusion.", method="extractive-fallback", candidates=1,
                   greedy="No acute cardiopulmonary abnormality."),
    ]  # fmt: skip
    again = recheck_predictions(rows)
    assert [(p.output, p.method) for p in again] == [
        ("Normal chest.", "model"),
        ("Low lung volumes.", "extractive-fallback"),
        ("Large right pleural effusion.", "extractive-fallback"),
    ]
    assert again[0].greedy is None and again[0].flags == ()
    assert again[1].greedy == "No acute cardiopulmonary abnormality."
    assert again[2].greedy == "No acute cardiopulmonary abnormality."


@pytest.mark.parametrize(
    "row",
    [
        Prediction(1, "Effusion.", "Effusion.", "Effusion.", method="model", candidates=4),
        Prediction(1, "Effusion.", "Effusion.", "Effusion.", method="extractive-fallback",
                   candidates=1),
        Prediction(1, "Effusion.", "Effusion.", "Effusion."),
    ],
)  # fmt: skip
def test_recheck_refuses_rows_it_cannot_reproduce(row: Prediction, tmp_path: Path) -> None:
    from training.evaluate import recheck_predictions

    with pytest.raises(ValueError, match="--recheck needs"):
        recheck_predictions([row])
    path = tmp_path / "sampled.jsonl"
    write_predictions(path, [row])
    result = subprocess.run(
        [sys.executable, "-m", "integration", "eval", "--recheck", str(path), "--no-baselines"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: idx 1: --recheck needs")
