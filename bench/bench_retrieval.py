"""Exemplar retrieval at archive scale: query time, build time and memory at 3k/30k/300k.

Synthetic exemplars are Open-i training reports with each sentence kept or, with
probability 0.5, swapped for a random sentence of another training report (fixed seed), so
the vocabulary, sentence lengths and phrasing are real and most texts are new.  The queries
are the Open-i test findings.  For each size it builds :class:`inference.drafting.retrieval.
ExemplarIndex` (scipy sparse matrices, pruned exact top-k) and, up to ``--old-max``
exemplars, the pure-Python index it replaced (``bench/legacy_retrieval.py``) in the same
run, and prints query p50/p99, build time, the resident memory the index added, the ratios
old / new and how many top-k answers agree.  Usage::

    nice -n 10 .venv/bin/python bench/bench_retrieval.py [--sizes 3000,30000,300000]
        [--queries 343] [--old-queries 40] [--old-max 30000] [--k 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import legacy_retrieval  # noqa: E402

from inference.drafting.retrieval import ExemplarIndex  # noqa: E402

DATA = Path("/work/shared/data/openi")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def load_rows(data: Path, split: str) -> list[dict[str, object]]:
    path = data / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def synthetic(rows: list[dict[str, object]], n: int, seed: int) -> list[tuple[str, str, str]]:
    """``n`` ``(id, findings, impression)``: training reports with sentences recombined."""
    reports = [[s for s in _SENTENCE.split(" ".join(str(r["inputs"]).split())) if s] for r in rows]
    pool = [s for report in reports for s in report]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        j = rng.randrange(len(reports))
        findings = " ".join(s if rng.random() < 0.5 else rng.choice(pool) for s in reports[j])
        out.append((f"syn-{i}", findings, " ".join(str(rows[j]["target"]).split())))
    return out


def resident_mib() -> float:
    """Current resident set size (Linux ``/proc``), MiB; NaN elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def build(factory: Callable[[], object]) -> tuple[object, float, float]:
    """The index, seconds to build it and the resident MiB it added."""
    gc.collect()
    before = resident_mib()
    start = time.perf_counter()
    index = factory()
    elapsed = time.perf_counter() - start
    gc.collect()
    return index, elapsed, resident_mib() - before


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


_calls = {"_exhaustive": 0, "_with_rest": 0}


def _counting(name: str) -> Any:
    method = getattr(ExemplarIndex, name)

    def counted(self: ExemplarIndex, *args: Any) -> Any:
        _calls[name] += 1
        return method(self, *args)

    return counted


for _name in list(_calls):
    setattr(ExemplarIndex, _name, _counting(_name))


def search_path(index: ExemplarIndex, query: str, k: int) -> str:
    """Search; say how it was answered: pruned, pruned then a scan of the rest words, or
    one full scan of every exemplar sharing a word."""
    before = dict(_calls)
    index.search(query, k)
    if _calls["_exhaustive"] > before["_exhaustive"]:
        return "full scan"
    if _calls["_with_rest"] > before["_with_rest"]:
        return "pruned+scan"
    return "pruned"


def time_queries(
    search: Callable[[str], object], queries: list[str]
) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (this thread) milliseconds per query, after a short warm-up.

    On shared cores the wall clock includes waiting for a core; CPU time does not."""
    for q in queries[:3]:
        search(q)
    gc.collect()
    wall, cpu = [], []
    for q in queries:
        start, start_cpu = time.perf_counter(), time.thread_time()
        search(q)
        cpu.append((time.thread_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3000,30000,300000")
    parser.add_argument("--queries", type=int, default=343, help="Open-i test findings")
    parser.add_argument("--old-queries", type=int, default=40, help="for the old index")
    parser.add_argument("--old-max", type=int, default=30_000, help="largest size for the old")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    train = load_rows(args.data, "train")
    queries = [str(r["inputs"]) for r in load_rows(args.data, "test")][: args.queries]
    old_queries = queries[: args.old_queries]
    started = time.perf_counter()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{len(queries)} queries (Open-i test findings), k={args.k}, seed {args.seed}")
    print(
        f"{'exemplars':>9} {'index':<12} {'build s':>8} {'+RSS MiB':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'CPU p50':>8} {'CPU p99':>8}  notes"
    )
    for size in sizes:
        triples = synthetic(train, size, args.seed)
        new, new_build, new_mem = build(lambda triples=triples: ExemplarIndex.build(triples))
        assert isinstance(new, ExemplarIndex)
        paths: list[str] = []
        times, cpu = time_queries(
            lambda q, new=new, log=paths: log.append(search_path(new, q, args.k)), queries
        )
        paths = paths[-len(queries) :]  # after the warm-up
        by_path = {
            name: [c for c, p in zip(cpu, paths, strict=True) if p == name]
            for name in ("pruned", "pruned+scan", "full scan")
        }
        notes = ", ".join(
            f"{name} {len(v)} (CPU p50 {percentile(v, 50):.2f})" for name, v in by_path.items() if v
        )
        print(
            f"{size:>9} {'sparse':<12} {new_build:>8.2f} {new_mem:>9.0f} "
            f"{percentile(times, 50):>8.3f} {percentile(times, 99):>8.3f} "
            f"{percentile(cpu, 50):>8.3f} {percentile(cpu, 99):>8.3f}  {notes}"
        )
        if size <= args.old_max:
            exemplars = [legacy_retrieval.Exemplar(*t) for t in triples]
            old, old_build, old_mem = build(
                lambda exemplars=exemplars: legacy_retrieval.ExemplarIndex(exemplars)
            )
            assert isinstance(old, legacy_retrieval.ExemplarIndex)
            old_times, old_cpu = time_queries(lambda q, old=old: old.search(q, args.k), old_queries)
            _, new_cpu = time_queries(lambda q, new=new: new.search(q, args.k), old_queries)
            same = sum(
                [h.exemplar.id for h in old.search(q, args.k)]
                == [h.exemplar.id for h in new.search(q, args.k)]
                for q in old_queries
            )
            old_p50, new_p50 = percentile(old_cpu, 50), percentile(new_cpu, 50)
            print(
                f"{size:>9} {'pure-Python':<12} {old_build:>8.2f} {old_mem:>9.0f} "
                f"{percentile(old_times, 50):>8.3f} {percentile(old_times, 99):>8.3f} "
                f"{old_p50:>8.3f} {percentile(old_cpu, 99):>8.3f}  "
                f"first {len(old_queries)} queries: CPU p50 {old_p50 / new_p50:.0f}x the "
                f"sparse index's ({new_p50:.3f} ms), build {old_build / new_build:.1f}x, "
                f"same top-{args.k} {same}/{len(old_queries)}"
            )
            del old, exemplars
        del new, triples
        gc.collect()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
