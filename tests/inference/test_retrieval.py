"""The TF-IDF exemplar index used for retrieval-augmented prompts (scipy sparse matrices)."""

from __future__ import annotations

import json
import random
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from inference.drafting.retrieval import Exemplar, ExemplarIndex, tokenize

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "training/adapters/radiology/exemplars.json"
# Top-3 of the pure-Python index this one replaced (commit 15fffeb), ids and scores.
GOLDEN = REPO / "tests/data/retrieval/openi_top3_pure_python.json"

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
    assert SHIPPED.is_file(), "the shipped adapter's exemplar index is missing"
    index = ExemplarIndex.load(SHIPPED)
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


# --------------------------------------------------------------------------- same rankings


def _rows(shared_dir: Path, split: str) -> list[dict[str, Any]]:
    path = shared_dir / f"data/openi/{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _assert_same(got: list[tuple[str, float]], expected: list[list[Any]]) -> None:
    assert [eid for eid, _ in got] == [eid for eid, _ in expected]
    assert [score for _, score in got] == pytest.approx([s for _, s in expected], abs=1e-11)


def test_open_i_rankings_equal_the_pure_python_index(shared_dir: Path) -> None:
    """Every Open-i test query's top 3 from the shipped index, and every training report's
    top 3 with itself excluded (how training prompts are built), are the old index's."""
    golden = json.loads(GOLDEN.read_text())
    assert golden["k"] == 3
    index = ExemplarIndex.load(SHIPPED)
    test_rows = _rows(shared_dir, "test")
    assert len(test_rows) == len(golden["test"]) == 343
    for row in test_rows:
        hits = index.search(row["inputs"], 3)
        _assert_same([(h.exemplar.id, h.score) for h in hits], golden["test"][str(row["idx"])])
    train_rows = _rows(shared_dir, "train")
    assert len(train_rows) == len(golden["train_self_excluded"]) == 2735
    for row in train_rows:
        own = f"openi-train-{row['idx']}"
        hits = index.search(row["inputs"], 3, exclude=(own,))
        expected = golden["train_self_excluded"][str(row["idx"])]
        _assert_same([(h.exemplar.id, h.score) for h in hits], expected)


# --------------------------------------------------------------------------- large indexes

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def synthetic_exemplars(shared_dir: Path, n: int, seed: int = 11) -> list[Exemplar]:
    """Open-i training reports with about half of their sentences swapped for random ones
    (the generator of ``bench/bench_retrieval.py``, smaller)."""
    rows = _rows(shared_dir, "train")
    reports = [[s for s in _SENTENCE.split(" ".join(r["inputs"].split())) if s] for r in rows]
    pool = [s for report in reports for s in report]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        j = rng.randrange(len(reports))
        findings = " ".join(s if rng.random() < 0.5 else rng.choice(pool) for s in reports[j])
        out.append(Exemplar(f"syn-{i}", findings, rows[j]["target"]))
    return out


def brute_force(exemplars: list[Exemplar], queries: list[str]) -> Any:
    """Every query against every exemplar with scikit-learn's own TF-IDF: the reference."""
    vectorizer = TfidfVectorizer(analyzer=tokenize, sublinear_tf=True, norm="l2")
    matrix = vectorizer.fit_transform([e.findings for e in exemplars])
    return (vectorizer.transform(queries) @ matrix.T).toarray()


@pytest.fixture(scope="module")
def large(shared_dir: Path) -> tuple[list[Exemplar], ExemplarIndex]:
    exemplars = synthetic_exemplars(shared_dir, 12_000)
    # exact twins far apart in insertion order, to check ties at scale
    exemplars += [Exemplar(f"twin-{i}", exemplars[i].findings, "twin") for i in range(0, 40, 4)]
    return exemplars, ExemplarIndex.build(exemplars)


def test_pruned_search_equals_brute_force_on_a_large_index(
    shared_dir: Path, large: tuple[list[Exemplar], ExemplarIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    exemplars, index = large
    queries = [r["inputs"] for r in _rows(shared_dir, "test")[:120]]
    queries += [e.findings for e in exemplars[:40:4]]  # queries with exact twins
    scores = brute_force(exemplars, queries)
    paths = {"_exhaustive": 0, "_with_rest": 0}

    def counting(name: str) -> Any:
        method = getattr(ExemplarIndex, name)

        def counted(self: ExemplarIndex, *args: Any) -> Any:
            paths[name] += 1
            return method(self, *args)

        return counted

    for name in paths:
        monkeypatch.setattr(ExemplarIndex, name, counting(name))
    rng = random.Random(5)
    for q, (query, row_scores) in enumerate(zip(queries, scores, strict=True)):
        k = rng.choice([1, 3, 5, 10])
        exclude = {exemplars[int(r)].id for r in np.argsort(-row_scores, kind="stable")[:2]}
        for excluded in (set(), exclude):
            allowed = np.array([e.id not in excluded for e in exemplars])
            masked = np.where(allowed, row_scores, -1.0)
            order = np.lexsort((np.arange(len(exemplars)), -masked))[:k]
            hits = index.search(query, k, exclude=excluded)
            assert len(hits) == k, q
            assert not {h.exemplar.id for h in hits} & excluded
            assert [h.score for h in hits] == pytest.approx(masked[order].tolist(), abs=1e-12)
            for hit, row in zip(hits, order, strict=True):
                if hit.exemplar.id != exemplars[row].id:  # only a tie within rounding may differ
                    assert hit.score == pytest.approx(float(masked[row]), abs=1e-12), q
    searches = 2 * len(queries)
    # every way of answering was taken: survivors scored row by row (the rest), survivors
    # completed by a scan of the common words, and a full scan
    assert paths["_exhaustive"] > 0 and paths["_with_rest"] > 0
    assert paths["_exhaustive"] + paths["_with_rest"] < searches


def test_ties_keep_insertion_order_on_a_large_index(
    large: tuple[list[Exemplar], ExemplarIndex],
) -> None:
    exemplars, index = large
    for i in range(0, 40, 4):
        hits = index.search(exemplars[i].findings, 2)
        assert [h.exemplar.id for h in hits[:2]] == [f"syn-{i}", f"twin-{i}"], i
        assert hits[0].score == hits[1].score == pytest.approx(1.0)
        again = index.search(exemplars[i].findings, 1, exclude={f"syn-{i}"})
        assert [h.exemplar.id for h in again] == [f"twin-{i}"]


def test_concurrent_searches_agree(large: tuple[list[Exemplar], ExemplarIndex]) -> None:
    exemplars, index = large
    queries = [e.findings for e in exemplars[100:160]]
    alone = [[h.exemplar.id for h in index.search(q, 3)] for q in queries]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda q: [h.exemplar.id for h in index.search(q, 3)], queries))
    assert together == alone


def test_index_without_a_single_word_pads_in_order() -> None:
    index = ExemplarIndex.build([("a", "XXXX", "1"), ("b", "", "2"), ("c", "XXXX XXXX", "3")])
    assert [h.exemplar.id for h in index.search("clear lungs", 2)] == ["a", "b"]
    assert [h.exemplar.id for h in index.search("XXXX", 3, exclude={"a"})] == ["b", "c"]
