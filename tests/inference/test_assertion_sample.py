"""The labelled assertion sample (tests/data/assertion) and a regression guard on the safety
engine's assertion and side accuracy on it.

The engine won the comparison with medspaCy ConText on this sample (docs/safety-checks.md,
``bench/bench_assertion.py``): 365 of 373 lexicon targets (97.9 %) and 329 of 358 side
sets (91.9 %).  The guards sit two points below those figures.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from inference.safety import LEXICON, find_mentions

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "assertion" / "labelled.jsonl"
CLASSES = {"present", "uncertain", "absent"}
KEYS = {
    "id",
    "source",
    "report_idx",
    "text",
    "start",
    "end",
    "surface",
    "concept",
    "in_lexicon",
    "gold",
    "gold_sides",
    "historical",
}
LATERAL = {c.name for c in LEXICON if c.lateral}
CONCEPTS = {c.name for c in LEXICON}
# Measured on the sample (bench/bench_assertion.py), less a margin of two points.
MIN_ACCURACY = 0.96
MIN_UNCERTAIN_RECALL = 0.90
MIN_SIDE_ACCURACY = 0.90


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]


def _engine(rows: list[dict[str, Any]]) -> list[tuple[str, frozenset[str] | None]]:
    out: list[tuple[str, frozenset[str] | None]] = []
    for row in rows:
        found = [
            m
            for m in find_mentions(row["text"])
            if m.start == row["start"] and m.start + len(m.text) == row["end"]
        ]
        if not found:
            out.append(("missed", None))
            continue
        polarity = "absent" if found[0].polarity == "unasserted" else found[0].polarity
        out.append((polarity, frozenset(found[0].sides)))
    return out


def test_rows_are_well_formed(rows: list[dict[str, Any]]) -> None:
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        assert set(row) - {"note"} == KEYS, row["id"]
        assert row["text"][row["start"] : row["end"]] == row["surface"], row["id"]
        assert row["gold"] in CLASSES, row["id"]
        assert row["gold_sides"] == sorted(set(row["gold_sides"])), row["id"]
        assert set(row["gold_sides"]) <= {"left", "right"}, row["id"]
        assert isinstance(row["historical"], bool), row["id"]
        assert row["source"] in {"openi-validate", "handwritten"}, row["id"]
        if row["in_lexicon"]:
            assert row["concept"] in CONCEPTS, row["id"]
        else:
            assert row["concept"] not in CONCEPTS, row["id"]


def test_sample_size_and_coverage(rows: list[dict[str, Any]]) -> None:
    sources = Counter(r["source"] for r in rows)
    assert sources["openi-validate"] >= 300
    assert sources["handwritten"] >= 40
    gold = Counter(r["gold"] for r in rows)
    assert min(gold.values()) >= 30  # every class is represented
    assert sum(1 for r in rows if r["gold_sides"] == ["left", "right"]) >= 15
    assert sum(1 for r in rows if r["gold_sides"] == ["left"]) >= 15
    assert sum(1 for r in rows if r["gold_sides"] == ["right"]) >= 15
    assert sum(1 for r in rows if r["concept"] == "device") >= 20
    per_text = Counter(r["text"] for r in rows)
    assert sum(1 for n in per_text.values() if n >= 3) >= 20  # several findings per report


def test_validate_rows_come_from_the_validate_split(
    rows: list[dict[str, Any]], shared_dir: Path
) -> None:
    openi = shared_dir / "data" / "openi"
    validate = {
        r["idx"]: r["inputs"]
        for r in map(json.loads, (openi / "validate.jsonl").read_text().splitlines())
    }
    test_ids = {json.loads(line)["idx"] for line in (openi / "test.jsonl").read_text().splitlines()}
    for row in rows:
        if row["source"] == "openi-validate":
            assert row["report_idx"] not in test_ids, row["id"]
            assert validate[row["report_idx"]] == row["text"], row["id"]
        else:
            assert row["report_idx"] is None, row["id"]


def test_engine_assertion_accuracy_does_not_regress(rows: list[dict[str, Any]]) -> None:
    targets = [r for r in rows if r["in_lexicon"]]
    predicted = [p for p, _ in _engine(targets)]
    correct = sum(p == r["gold"] for p, r in zip(predicted, targets, strict=True))
    assert correct / len(targets) >= MIN_ACCURACY, f"{correct}/{len(targets)}"
    uncertain = [
        (p, r) for p, r in zip(predicted, targets, strict=True) if r["gold"] == "uncertain"
    ]
    hedged = sum(p == "uncertain" for p, _ in uncertain)
    assert hedged / len(uncertain) >= MIN_UNCERTAIN_RECALL, f"{hedged}/{len(uncertain)}"
    # A positive finding read as absent is the error that hides an abnormality.
    positive = [(p, r) for p, r in zip(predicted, targets, strict=True) if r["gold"] != "absent"]
    dropped = [r["id"] for p, r in positive if p == "absent"]
    assert len(dropped) <= 2, dropped


def test_engine_side_accuracy_does_not_regress(rows: list[dict[str, Any]]) -> None:
    targets = [r for r in rows if r["in_lexicon"] and r["concept"] in LATERAL]
    sides = [s for _, s in _engine(targets)]
    correct = sum(s == frozenset(r["gold_sides"]) for s, r in zip(sides, targets, strict=True))
    assert correct / len(targets) >= MIN_SIDE_ACCURACY, f"{correct}/{len(targets)}"
