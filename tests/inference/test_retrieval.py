"""The pure-Python TF-IDF exemplar index used for retrieval-augmented prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.retrieval import Exemplar, ExemplarIndex, tokenize

PAIRS = [
    ("a", "The lungs are clear. No pleural effusion or pneumothorax.", "No acute disease."),
    ("b", "Large right pleural effusion with right basilar atelectasis.", "Right effusion."),
    ("c", "Cardiomegaly. Pulmonary vascular congestion and interstitial edema.", "CHF."),
    ("d", "Small left pleural effusion. Lungs otherwise clear.", "Small left effusion."),
]


def test_tokenize_drops_deidentification_masks_and_case() -> None:
    assert tokenize("Left XXXX-A-XXXX remains, T11 stable.") == [
        "left",
        "a",
        "remains",
        "t11",
        "stable",
    ]


def test_most_similar_first() -> None:
    index = ExemplarIndex.build(PAIRS)
    hits = index.search("There is a large right pleural effusion.", 2)
    assert [h.exemplar.id for h in hits] == ["b", "d"]
    assert hits[0].score > hits[1].score > 0
    assert index.top_k("cardiomegaly with edema", 1) == ["CHF."]


def test_exact_duplicate_scores_one() -> None:
    index = ExemplarIndex.build(PAIRS)
    hit = index.search(PAIRS[2][1], 1)[0]
    assert hit.exemplar.id == "c"
    assert hit.score == pytest.approx(1.0)


def test_exclude_removes_ids_and_k_is_always_filled() -> None:
    index = ExemplarIndex.build(PAIRS)
    ids = [h.exemplar.id for h in index.search(PAIRS[1][1], 4, exclude={"b"})]
    assert "b" not in ids
    assert len(ids) == 3  # only three others exist
    # No word in common: zero-score exemplars in insertion order.
    padded = index.search("zzz qqq", 2)
    assert [h.exemplar.id for h in padded] == ["a", "b"]
    assert all(h.score == 0.0 for h in padded)
    assert index.search("lungs", 0) == []


def test_ties_break_by_insertion_order() -> None:
    index = ExemplarIndex.build([("x", "clear lungs", "1"), ("y", "clear lungs", "2")])
    assert index.top_k("clear lungs", 2) == ["1", "2"]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    index = ExemplarIndex.build(PAIRS)
    path = tmp_path / "exemplars.json"
    index.save(path)
    loaded = ExemplarIndex.load(path)
    assert loaded.exemplars == index.exemplars
    query = "small left effusion, lungs clear"
    assert [(h.exemplar.id, round(h.score, 9)) for h in loaded.search(query, 3)] == [
        (h.exemplar.id, round(h.score, 9)) for h in index.search(query, 3)
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not valid JSON"),
        (json.dumps({"format": "other"}), "not a radgpt exemplar index"),
        (json.dumps({"format": "radgpt-exemplars", "version": 9}), "unsupported"),
        (
            json.dumps({"format": "radgpt-exemplars", "version": 1, "exemplars": [{"id": 1}]}),
            "malformed",
        ),
    ],
)
def test_load_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        ExemplarIndex.load(path)


def test_build_validates_input() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ExemplarIndex.build([])
    with pytest.raises(ValueError, match="unique"):
        ExemplarIndex.build([Exemplar("a", "x", "y"), Exemplar("a", "z", "w")])
    with pytest.raises(ValueError, match="non-negative"):
        ExemplarIndex.build(PAIRS).search("lungs", -1)


def test_shipped_exemplars_hold_only_training_reports(shared_dir: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "training/adapters/radiology/exemplars.json"
    assert shipped.is_file(), "the shipped adapter's exemplar index is missing"
    index = ExemplarIndex.load(shipped)
    train = {}
    for line in (shared_dir / "data/openi/train.jsonl").read_text().splitlines():
        row = json.loads(line)
        train[f"openi-train-{row['idx']}"] = (" ".join(row["inputs"].split()), row["target"])
    # every exemplar is a training report, with its own findings (never validate/test ones)
    assert len(index) > 2700
    for exemplar in index.exemplars:
        findings, target = train[exemplar.id]
        assert exemplar.findings == findings
        assert exemplar.impression == " ".join(target.split())
