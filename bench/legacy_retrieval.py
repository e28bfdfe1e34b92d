"""The pure-Python TF-IDF exemplar index as shipped up to commit 15fffeb (verbatim, baseline).

``bench/bench_retrieval.py`` measures it in the same run as :mod:`inference.drafting.retrieval`, and
``tests/data/retrieval/openi_top3_pure_python.json`` holds its rankings on Open-i.  Not used
by the service.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Exemplar", "ExemplarIndex", "Hit", "tokenize"]  # the old names, unchanged

_TOKEN = re.compile(r"[a-z0-9]+")
# ``XXXX`` is the de-identification mask of Open-i: it carries no meaning.
_IGNORED = frozenset({"xxxx"})
_FORMAT = "radgpt-exemplars"
_VERSION = 1


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
    """TF-IDF index over the findings of exemplar reports (build once, query many times)."""

    __slots__ = ("_idf", "_postings", "_vectors", "exemplars")

    def __init__(self, exemplars: Sequence[Exemplar]) -> None:
        if not exemplars:
            raise ValueError("an exemplar index needs at least one exemplar")
        ids = [e.id for e in exemplars]
        if len(set(ids)) != len(ids):
            raise ValueError("exemplar ids must be unique")
        self.exemplars: tuple[Exemplar, ...] = tuple(exemplars)
        counts = [Counter(tokenize(e.findings)) for e in self.exemplars]
        df: Counter[str] = Counter()
        for c in counts:
            df.update(c.keys())
        n = len(counts)
        self._idf: dict[str, float] = {
            term: math.log((1 + n) / (1 + d)) + 1.0 for term, d in df.items()
        }
        self._vectors: list[dict[str, float]] = [self._weigh(c) for c in counts]
        self._postings: dict[str, list[tuple[int, float]]] = {}
        for row, vec in enumerate(self._vectors):
            for term, weight in vec.items():
                self._postings.setdefault(term, []).append((row, weight))

    @classmethod
    def build(cls, pairs: Iterable[tuple[str, str, str] | Exemplar]) -> ExemplarIndex:
        """Index ``(id, findings, impression)`` triples (or :class:`Exemplar` objects)."""
        exemplars = [p if isinstance(p, Exemplar) else Exemplar(*p) for p in pairs]
        return cls(exemplars)

    def __len__(self) -> int:
        return len(self.exemplars)

    def _weigh(self, counts: Counter[str]) -> dict[str, float]:
        vec = {
            term: (1.0 + math.log(tf)) * self._idf[term]
            for term, tf in counts.items()
            if term in self._idf
        }
        norm = math.sqrt(sum(w * w for w in vec.values()))
        if norm == 0.0:
            return {}
        return {term: w / norm for term, w in vec.items()}

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
        query = self._weigh(Counter(tokenize(findings)))
        scores: dict[int, float] = {}
        for term, qw in query.items():
            for row, weight in self._postings.get(term, ()):
                scores[row] = scores.get(row, 0.0) + qw * weight
        excluded = set(exclude)
        # Only the best k (+ the excluded ones) are needed: a bounded heap, same total order.
        ranked = heapq.nsmallest(
            k + len(excluded), scores.items(), key=lambda item: (-item[1], item[0])
        )
        hits = [
            Hit(self.exemplars[row], score)
            for row, score in ranked
            if self.exemplars[row].id not in excluded
        ][:k]
        if len(hits) < k:  # pad with zero-similarity exemplars, deterministically
            seen = {h.exemplar.id for h in hits} | excluded
            for exemplar in self.exemplars:
                if len(hits) >= k:
                    break
                if exemplar.id not in seen:
                    hits.append(Hit(exemplar, 0.0))
        return hits

    def top_k(self, findings: str, k: int, *, exclude: Collection[str] = ()) -> list[str]:
        """The impressions of the ``k`` most similar exemplars, best first."""
        return [h.exemplar.impression for h in self.search(findings, k, exclude=exclude)]

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
