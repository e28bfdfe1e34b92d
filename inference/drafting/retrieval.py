"""Exemplar retrieval for retrieval-augmented drafting: a TF-IDF index on scipy sparse matrices.

The impressions of the training reports whose findings are most similar to a new report
are put into the prompt (``Prompter.build(findings, examples=...)``) at training and at
inference time, so the model can follow the local reporting style.

Vectors are scikit-learn's ``TfidfVectorizer`` with sublinear term frequency
(``1 + log tf``), smoothed IDF (``log((1 + n) / (1 + df)) + 1``) and L2 normalisation, over
:func:`tokenize`'s words; similarity is the cosine.  The ranking is deterministic: ties are
broken by insertion order.  Rankings equal those of the pure-Python index this replaces
(``tests/data/retrieval/openi_top3_pure_python.json``).

A query does not score every exemplar.  The search is exact but prunes with bounds:

1. an evenly spread *sample* of 2048 exemplars is scored in full; its k-th best score is a
   floor ``theta`` (real scores, so the true k-th best is at least ``theta``);
2. the query's most common words go into a *rest* set for as long as their largest possible
   contribution to any cosine (``min(||q_rest||, sum q_t * max_d x_dt)``) stays below
   ``theta``: an exemplar that shares none of the other words cannot reach ``theta``, so only
   the postings of those (rarer) words are accumulated;
3. an exemplar whose partial score plus what the rest words can add (per exemplar by
   Cauchy-Schwarz on its remaining norm) stays below ``theta`` is dropped; the best partial
   scores raise ``theta`` first; the survivors are scored in full, or completed with one
   sparse product over the rest words when there are too many of them.

When the rest set would leave out less than half of the postings, one sparse product scores
every exemplar sharing a word instead.  Common words (``no``, ``lungs``, ``clear``) have the
longest postings and the smallest weights, so much of the work is skipped on a large
archive.  ``bench/bench_retrieval.py`` measures it; ``tests/inference/test_retrieval.py``
checks it against brute force.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

__all__ = ["Exemplar", "ExemplarIndex", "Hit", "tokenize"]

_TOKEN = re.compile(r"[a-z0-9]+")
# ``XXXX`` is the de-identification mask of Open-i: it carries no meaning.
_IGNORED = frozenset({"xxxx"})
_FORMAT = "radgpt-exemplars"
_VERSION = 1
# Margin on the pruning bounds: far above float64 rounding in sums of a few hundred terms,
# far below any meaningful difference in cosine similarity.
_EPS = 1e-9
# Queries with at most this many postings in all are answered by one scan.
_SMALL_SCAN = 32768
# Rows of the index scored in full by every query (spread evenly): the first floor.
_SAMPLE_ROWS = 2048
# Prune only when the words kept leave out at least half of the postings ...
_PRUNE_WORTH = 2
# ... and score survivors row by row only while cheaper than scanning the other words
# (one entry of a row scored with numpy gathers costs about this many scanned postings).
_ROW_COST = 4.0
# Survivors above this count: the best of them by partial score raise theta first.
_REFINE_ROWS = 256

_Floats = npt.NDArray[np.float64]
_Ints = npt.NDArray[np.intp]


def _ragged(starts: _Ints, ends: _Ints) -> _Ints:
    """The concatenation of ``range(s, e)`` for each pair, without a Python loop."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.intp)
    shift = starts - np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return np.repeat(shift, lengths) + np.arange(total, dtype=np.intp)


def _best(rows: _Ints, scores: _Floats, k: int) -> list[tuple[int, float]]:
    """The ``k`` best ``(row, score)`` with a positive score, by score, then row."""
    positive = scores > 0.0
    rows, scores = rows[positive], scores[positive]
    if len(rows) > k:
        # every row scoring at least the k-th best, then the exact order with ties by row
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = scores >= kth
        rows, scores = rows[keep], scores[keep]
    best_first = np.lexsort((rows, -scores))[:k]
    return [(int(rows[i]), float(scores[i])) for i in best_first]


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric word tokens, without de-identification masks."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in _IGNORED]


@dataclass(frozen=True, slots=True)
class Exemplar:
    """One reference report: an identifier, its findings and its impression."""

    id: str
    findings: str
    impression: str


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved exemplar and its cosine similarity to the query."""

    exemplar: Exemplar
    score: float


class ExemplarIndex:
    """TF-IDF index over the findings of exemplar reports (build once, query many times).

    Immutable after construction, so :meth:`search` may run in several threads at once.
    """

    __slots__ = (
        "_colmax",
        "_idf",
        "_postings",
        "_postings_len",
        "_row_cost",
        "_row_of",
        "_rows",
        "_sample",
        "_sample_rows",
        "_vocabulary",
        "exemplars",
    )

    def __init__(self, exemplars: Sequence[Exemplar]) -> None:
        if not exemplars:
            raise ValueError("an exemplar index needs at least one exemplar")
        ids = [e.id for e in exemplars]
        if len(set(ids)) != len(ids):
            raise ValueError("exemplar ids must be unique")
        self.exemplars: tuple[Exemplar, ...] = tuple(exemplars)
        self._row_of: dict[str, int] = {eid: row for row, eid in enumerate(ids)}
        vectorizer = TfidfVectorizer(
            analyzer=tokenize,
            lowercase=False,
            sublinear_tf=True,
            smooth_idf=True,
            use_idf=True,
            norm="l2",
            dtype=np.float64,
        )
        try:
            rows = vectorizer.fit_transform([e.findings for e in self.exemplars])
            self._idf: _Floats = np.asarray(vectorizer.idf_, dtype=np.float64)
            self._vocabulary: dict[str, int] = {
                str(term): int(col) for term, col in vectorizer.vocabulary_.items()
            }
        except ValueError:  # no exemplar has a single word: an empty vocabulary
            rows = sp.csr_matrix((len(self.exemplars), 0), dtype=np.float64)
            self._idf = np.zeros(0, dtype=np.float64)
            self._vocabulary = {}
        # Rows: one exemplar each, columns in ascending order, for full scores.
        self._rows: sp.csr_matrix = sp.csr_matrix(rows, dtype=np.float64)
        self._rows.sort_indices()
        # Postings: one term each, exemplars (rows) in ascending order.
        self._postings: sp.csr_matrix = sp.csr_matrix(self._rows.T)
        self._postings.sort_indices()
        self._postings_len: _Ints = np.diff(self._postings.indptr).astype(np.intp)
        colmax = np.zeros(len(self._vocabulary), dtype=np.float64)
        np.maximum.at(colmax, self._rows.indices, self._rows.data)
        self._colmax: _Floats = colmax
        n = len(self.exemplars)
        # Scoring a row in full (numpy gathers) costs about this many postings of a scan.
        self._row_cost: float = _ROW_COST * max(1.0, self._rows.nnz / n)
        # Evenly spread rows scored in full by every query: a first floor for theta.
        self._sample_rows: _Ints = np.unique(
            np.linspace(0, n - 1, min(n, _SAMPLE_ROWS)).astype(np.intp)
        )
        self._sample: sp.csr_matrix = sp.csr_matrix(self._rows[self._sample_rows])

    @classmethod
    def build(cls, pairs: Iterable[tuple[str, str, str] | Exemplar]) -> ExemplarIndex:
        """Index ``(id, findings, impression)`` triples (or :class:`Exemplar` objects)."""
        exemplars = [p if isinstance(p, Exemplar) else Exemplar(*p) for p in pairs]
        return cls(exemplars)

    def __len__(self) -> int:
        return len(self.exemplars)

    # ------------------------------------------------------------------ query vectors

    def _query(self, findings: str) -> tuple[_Ints, _Floats]:
        """The query's TF-IDF vector: its terms (ascending columns) and L2-normed weights.

        The same weighting as ``TfidfVectorizer.transform`` (words outside the vocabulary
        dropped), computed directly: transform's input validation costs more than a query.
        """
        counts = Counter(t for t in tokenize(findings) if t in self._vocabulary)
        if not counts:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float64)
        pairs = sorted((self._vocabulary[t], tf) for t, tf in counts.items())
        terms = np.fromiter((col for col, _ in pairs), dtype=np.intp, count=len(pairs))
        tf = np.fromiter((tf for _, tf in pairs), dtype=np.float64, count=len(pairs))
        weights = (np.log(tf) + 1.0) * self._idf[terms]
        return terms, weights / math.sqrt(float(np.dot(weights, weights)))

    def _scan(self, terms: _Ints, weights: _Floats) -> sp.csr_matrix:
        """Scores over ``terms`` of every row sharing one of them: one sparse product over
        the postings (compiled code), a 1 x n sparse row."""
        query = sp.csr_matrix(
            (weights, terms, np.array([0, len(terms)])), shape=(1, len(self._vocabulary))
        )
        return sp.csr_matrix(query @ self._postings)

    def _accumulate(
        self, terms: _Ints, weights: _Floats, *, mass: bool = False
    ) -> tuple[_Floats, _Floats | None]:
        """Partial scores over ``terms`` for every row (0 where no word is shared) and, with
        ``mass``, each row's squared norm on those terms."""
        indptr = self._postings.indptr
        positions = _ragged(indptr[terms], indptr[terms + 1])
        rows = self._postings.indices[positions]
        values = self._postings.data[positions]
        contributions = values * np.repeat(weights, self._postings_len[terms])
        n = len(self.exemplars)
        partial = np.bincount(rows, weights=contributions, minlength=n).astype(np.float64)
        if not mass:
            return partial, None
        return partial, np.bincount(rows, weights=values * values, minlength=n).astype(np.float64)

    def _full_scores(self, rows: _Ints, dense_query: _Floats) -> _Floats:
        """Cosine of each of ``rows`` with the query.

        Each row's products are summed in its own column order, so a row's score does not
        depend on which other rows are scored with it, and identical findings tie exactly.
        """
        if len(rows) == 0:
            return np.zeros(0, dtype=np.float64)
        indptr = self._rows.indptr
        starts, ends = indptr[rows], indptr[rows + 1]
        positions = _ragged(starts, ends)
        products = self._rows.data[positions] * dense_query[self._rows.indices[positions]]
        lengths = ends - starts
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        # every scored row shares a word with the query, so no segment is empty
        return np.add.reduceat(products, offsets).astype(np.float64, copy=False)

    def _kth_best(self, rows: _Ints, dense_query: _Floats, k: int, excluded: _Ints | None) -> float:
        """The k-th best full score among ``rows`` (excluded rows left out), or 0."""
        if excluded is not None:
            rows = rows[~np.isin(rows, excluded)]
        if len(rows) < k:
            return 0.0
        scores = self._full_scores(rows, dense_query)
        return float(np.partition(scores, len(scores) - k)[len(scores) - k])

    def _floor(self, dense_query: _Floats, k: int, excluded: _Ints | None) -> float:
        """A lower bound on the k-th best score: the k-th best of an evenly spread sample of
        rows (real scores, so the true k-th best is at least this)."""
        sample = np.asarray(self._sample @ dense_query, dtype=np.float64)
        if excluded is not None:
            sample = sample[~np.isin(self._sample_rows, excluded)]
        if len(sample) < k:
            return 0.0
        return float(np.partition(sample, len(sample) - k)[len(sample) - k])

    def _ranked(self, findings: str, k: int, excluded: set[int]) -> list[tuple[int, float]]:
        """The best ``k`` rows with a positive score, by (score descending, row ascending)."""
        terms, weights = self._query(findings)
        if len(terms) == 0:
            return []
        banned = np.fromiter(sorted(excluded), dtype=np.intp) if excluded else None
        lengths = self._postings_len[terms]
        total = int(lengths.sum())
        if len(self.exemplars) <= _SAMPLE_ROWS or total <= _SMALL_SCAN:
            return self._exhaustive(terms, weights, k, banned)
        dense_query = np.zeros(len(self._vocabulary), dtype=np.float64)
        dense_query[terms] = weights
        theta = self._floor(dense_query, k, banned)
        # Most common words first into the rest set while they cannot lift a score to theta.
        order = np.argsort(-lengths, kind="stable")
        squares = linear = bound = 0.0
        rest = 0
        for j in order:
            next_squares = squares + float(weights[j]) ** 2
            next_linear = linear + float(weights[j] * self._colmax[terms[j]])
            next_bound = min(math.sqrt(next_squares), next_linear)
            if next_bound >= theta - _EPS:
                break
            squares, linear, bound, rest = next_squares, next_linear, next_bound, rest + 1
        kept = order[rest:]
        kept_postings = int(lengths[kept].sum())
        if kept_postings * _PRUNE_WORTH > total:  # too little left out: scan everything
            return self._exhaustive(terms, weights, k, banned)
        partial, mass = self._accumulate(terms[kept], weights[kept], mass=True)
        assert mass is not None
        rows = np.flatnonzero((partial > 0.0) & (partial >= theta - _EPS - bound))
        # The most a row can score: its partial score plus what the rest words can add, per
        # row by Cauchy-Schwarz on the row's remaining mass (the 1e-12 keeps it an upper
        # bound through the rounding of ``mass``).
        room = np.sqrt(np.maximum(1.0 - mass[rows] + 1e-12, 0.0))
        ceiling = partial[rows] + np.minimum(bound, math.sqrt(squares) * room)
        reachable = ceiling >= theta - _EPS
        rows, ceiling = rows[reachable], ceiling[reachable]
        if len(rows) > _REFINE_ROWS:
            # Raise theta with the best partial scores, then drop what cannot reach it.
            best = rows[np.argpartition(-partial[rows], _REFINE_ROWS - 1)[:_REFINE_ROWS]]
            theta = max(theta, self._kth_best(best, dense_query, k, banned))
            rows = rows[ceiling >= theta - _EPS]
        if banned is not None:
            rows = rows[~np.isin(rows, banned)]
        if len(rows) * self._row_cost > total - kept_postings:
            # Scoring the survivors row by row would cost more than scanning the rest words.
            others = np.sort(order[:rest])
            return self._with_rest(rows, partial, terms[others], weights[others], k)
        return _best(rows, self._full_scores(rows, dense_query), k)

    def _with_rest(
        self, rows: _Ints, partial: _Floats, terms: _Ints, weights: _Floats, k: int
    ) -> list[tuple[int, float]]:
        """Complete the partial scores of ``rows`` with one sparse product over the rest
        words (``terms``) and rank them."""
        product = self._scan(terms, weights)
        rest = np.zeros(len(self.exemplars), dtype=np.float64)
        rest[product.indices] = product.data
        return _best(rows, partial[rows] + rest[rows], k)

    def _exhaustive(
        self, terms: _Ints, weights: _Floats, k: int, excluded: _Ints | None
    ) -> list[tuple[int, float]]:
        """Every row sharing a word with the query, scored with one sparse product."""
        product = self._scan(terms, weights)
        rows = product.indices.astype(np.intp, copy=False)
        scores = np.asarray(product.data, dtype=np.float64)
        if excluded is not None:
            keep = ~np.isin(rows, excluded)
            rows, scores = rows[keep], scores[keep]
        return _best(rows, scores, k)

    def search(self, findings: str, k: int, *, exclude: Collection[str] = ()) -> list[Hit]:
        """The ``k`` exemplars most similar to ``findings``, best first.

        ``exclude`` holds exemplar ids never to return (e.g. the query's own report when
        building training prompts).  Exemplars with no word in common score 0 and are
        returned last, in insertion order, so the answer always has ``min(k, n)`` hits.
        """
        if k < 0:
            raise ValueError("k must be non-negative")
        if k == 0:
            return []
        excluded_ids = set(exclude)
        excluded = {self._row_of[e] for e in excluded_ids if e in self._row_of}
        hits = [
            Hit(self.exemplars[row], score) for row, score in self._ranked(findings, k, excluded)
        ]
        if len(hits) < k:  # pad with zero-similarity exemplars, deterministically
            seen = {h.exemplar.id for h in hits} | excluded_ids
            for exemplar in self.exemplars:
                if len(hits) >= k:
                    break
                if exemplar.id not in seen:
                    hits.append(Hit(exemplar, 0.0))
        return hits

    def top_k(self, findings: str, k: int, *, exclude: Collection[str] = ()) -> list[str]:
        """The impressions of the ``k`` most similar exemplars, best first."""
        return [h.exemplar.impression for h in self.search(findings, k, exclude=exclude)]

    # ------------------------------------------------------------------ files

    def save(self, path: Path) -> None:
        """Write the exemplars as JSON (the vectors are rebuilt on load)."""
        payload = {
            "format": _FORMAT,
            "version": _VERSION,
            "tokenizer": "lowercase-alnum-no-xxxx",
            "weighting": "tfidf-sublinear-smooth-l2",
            "exemplars": [
                {"id": e.id, "findings": e.findings, "impression": e.impression}
                for e in self.exemplars
            ],
        }
        path.write_text(json.dumps(payload, ensure_ascii=False, indent=0) + "\n", "utf-8")

    @classmethod
    def load(cls, path: Path) -> ExemplarIndex:
        """Read an index written by :meth:`save`; a bad file raises ``ValueError``."""
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"exemplar index {path} is not valid JSON: {exc.msg}") from exc
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a radgpt exemplar index")
        if payload.get("version") != _VERSION:
            raise ValueError(f"unsupported exemplar index version {payload.get('version')!r}")
        items = payload.get("exemplars")
        if not isinstance(items, list):
            raise ValueError(f"exemplar index {path} has no exemplar list")
        exemplars: list[Exemplar] = []
        for item in items:
            if not (
                isinstance(item, dict)
                and all(isinstance(item.get(key), str) for key in ("id", "findings", "impression"))
            ):
                raise ValueError(f"exemplar index {path} has a malformed entry")
            exemplars.append(Exemplar(item["id"], item["findings"], item["impression"]))
        return cls(exemplars)
