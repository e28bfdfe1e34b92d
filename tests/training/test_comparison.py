"""Paired bootstrap and run comparison on hand-made series and reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.comparison import (
    compare_reports,
    format_comparison,
    pair_by_idx,
    paired_bootstrap,
    plot_comparison,
)
from training.evaluate import Prediction
from training.safety_metrics import ReportSafety, SafetyRow, TrainingSet, report_safety

NORMAL = "No acute cardiopulmonary abnormality."


def test_bootstrap_is_deterministic_and_contains_the_point_estimate() -> None:
    new = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    base = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    a = paired_bootstrap(new, base, resamples=500, seed=7)
    assert a == paired_bootstrap(new, base, resamples=500, seed=7)
    assert a != paired_bootstrap(new, base, resamples=500, seed=8)
    assert a.n == 8
    assert a.new.value == pytest.approx(5 / 8) and a.baseline.value == pytest.approx(2 / 8)
    assert a.diff.value == pytest.approx(3 / 8)
    for interval in (a.new, a.baseline, a.diff):
        assert interval.low <= interval.value <= interval.high
    # paired differences are 0 or 1 only, so resampled means stay in [0, 1]
    assert 0.0 <= a.diff.low < a.diff.high <= 1.0


def test_bootstrap_of_identical_runs_is_zero_width_at_zero() -> None:
    values = [12.5, 80.0, 0.0, 100.0, 33.3]
    d = paired_bootstrap(values, values)
    assert (d.diff.value, d.diff.low, d.diff.high) == (0.0, 0.0, 0.0)
    assert d.new == d.baseline
    shifted = paired_bootstrap([v + 2 for v in values], values)
    assert shifted.diff.low == pytest.approx(2) and shifted.diff.high == pytest.approx(2)


def test_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="nothing to compare"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap([1.0], [1.0], resamples=0)


def _pred(idx: int, output: str = NORMAL, inputs: str = "Lungs clear.") -> Prediction:
    return Prediction(idx, inputs, NORMAL, output)


def test_pair_by_idx_needs_the_same_reports() -> None:
    new = [_pred(1), _pred(2)]
    pairs = pair_by_idx(new, [_pred(2, "x"), _pred(1, "y")])
    assert [(a.idx, b.output) for a, b in pairs] == [(1, "y"), (2, "x")]
    with pytest.raises(ValueError, match=r"1 idx only in the predictions \[2\], 1 only in"):
        pair_by_idx(new, [_pred(1), _pred(3)])
    with pytest.raises(ValueError, match="more than once"):
        pair_by_idx(new, [_pred(1), _pred(1)])
    with pytest.raises(ValueError, match="different findings"):
        pair_by_idx(new, [_pred(1), _pred(2, inputs="Other findings.")])


def _reports(outputs: list[str]) -> list[ReportSafety]:
    rows = [
        SafetyRow(1, "Lungs clear.", NORMAL, outputs[0]),
        SafetyRow(2, "Right pleural effusion.", "Right pleural effusion.", outputs[1]),
        SafetyRow(3, "Left pneumothorax.", "Left pneumothorax.", outputs[2]),
    ]
    return report_safety(rows, training=TrainingSet.from_pairs([], source="none"))


def test_compare_reports_per_subset(tmp_path: Path) -> None:
    good = _reports([NORMAL, "Right pleural effusion.", "Left pneumothorax."])
    bad = _reports([NORMAL, NORMAL, "Left pneumothorax."])
    c = compare_reports(good, bad, resamples=200)
    assert (c["resamples"], c["seed"], c["level"]) == (200, 0, 0.95)
    assert c["subsets"]["exact_twin"]["rougeL"] is None  # no twins in an empty training set
    assert c["subsets"]["normal"]["missed_abnormal"] is None  # no abnormal report there
    missed = c["subsets"]["abnormal"]["missed_abnormal"]
    # good misses none of the 2 abnormal reports, bad misses 1: diff -1/2
    assert missed["n"] == 2 and missed["new"]["value"] == 0.0
    assert missed["baseline"]["value"] == 0.5 and missed["diff"]["value"] == -0.5
    assert missed["diff"]["low"] <= -0.5 <= missed["diff"]["high"]
    same = compare_reports(good, good, resamples=50)
    for entry in same["subsets"].values():
        for d in (entry or {}).values():
            if d is not None:
                assert d["diff"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    table = format_comparison(c, new="good", baseline="bad")
    assert "abnormal    missed_abnormal     2" in table and "-50.0%" in table
    png = tmp_path / "plots" / "cmp.png"
    plot_comparison(c, png, new="good", baseline="bad")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="same order"):
        compare_reports(good, list(reversed(bad)))
