"""Paired comparison of two prediction runs on the same reports, with bootstrap CIs.

Rows are paired by ``idx``; both runs must cover exactly the same reports (same findings
and reference).  For each subset of :data:`training.safety_metrics.SUBSETS` the difference
(new - baseline) of mean ROUGE-L, of the missed-abnormal rate (over that subset's abnormal
reports) and of the any-flag rate gets a paired percentile bootstrap 95 % CI: the same
resampled reports for both runs, ``resamples`` times, from a fixed seed, so the interval is
deterministic.  An interval that excludes 0 is a difference the test set supports.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .safety_metrics import SUBSETS, ReportSafety, subset_members

__all__ = [
    "COMPARED",
    "Interval",
    "PairedDifference",
    "compare_reports",
    "format_comparison",
    "pair_by_idx",
    "paired_bootstrap",
    "plot_comparison",
]

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
COMPARED = ("rougeL", "missed_abnormal", "any_flag")


class _HasIdx(Protocol):
    @property
    def idx(self) -> int | str: ...
    @property
    def inputs(self) -> str: ...
    @property
    def target(self) -> str: ...


P = TypeVar("P", bound=_HasIdx)
Q = TypeVar("Q", bound=_HasIdx)


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate and its bootstrap interval."""

    value: float
    low: float
    high: float

    def to_json(self, digits: int) -> dict[str, float]:
        return {
            "value": round(self.value, digits),
            "low": round(self.low, digits),
            "high": round(self.high, digits),
        }


@dataclass(frozen=True, slots=True)
class PairedDifference:
    """Means of two paired series, their difference, each with a bootstrap CI."""

    n: int
    new: Interval
    baseline: Interval
    diff: Interval

    def to_json(self, digits: int = 4) -> dict[str, Any]:
        return {
            "n": self.n,
            "new": self.new.to_json(digits),
            "baseline": self.baseline.to_json(digits),
            "diff": self.diff.to_json(digits),
        }


def pair_by_idx(new: Sequence[P], baseline: Sequence[Q]) -> list[tuple[P, Q]]:
    """``(new, baseline)`` pairs in the order of ``new``; a ValueError unless the same reports."""
    for name, rows in (("predictions", new), ("baseline", baseline)):
        ids = [r.idx for r in rows]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"{name} have idx {dup!r} more than once")
    base = {r.idx: r for r in baseline}
    only_new = [r.idx for r in new if r.idx not in base]
    only_base = sorted({r.idx for r in baseline} - {r.idx for r in new}, key=str)
    if only_new or only_base:
        raise ValueError(
            f"--compare needs the same reports: {len(only_new)} idx only in the predictions "
            f"{only_new[:3]}, {len(only_base)} only in the baseline {only_base[:3]}"
        )
    pairs = [(r, base[r.idx]) for r in new]
    for a, b in pairs:
        if a.inputs != b.inputs or a.target != b.target:
            raise ValueError(f"idx {a.idx!r} has different findings or reference in the baseline")
    return pairs


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks of a sorted sequence."""
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def paired_bootstrap(
    new: Sequence[float],
    baseline: Sequence[float],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> PairedDifference:
    """Means of ``new`` and ``baseline`` and of ``new - baseline`` with percentile CIs."""
    if len(new) != len(baseline):
        raise ValueError("paired series must have the same length")
    if not new:
        raise ValueError("nothing to compare")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError("resamples must be >= 1 and level in (0, 1)")
    n = len(new)
    rng = random.Random(seed)
    population = range(n)
    means_new, means_base, means_diff = [], [], []
    for _ in range(resamples):
        pick = rng.choices(population, k=n)
        a = sum(new[i] for i in pick) / n
        b = sum(baseline[i] for i in pick) / n
        means_new.append(a)
        means_base.append(b)
        means_diff.append(a - b)
    tail = (1 - level) / 2

    def interval(point: float, samples: list[float]) -> Interval:
        samples.sort()
        return Interval(point, _quantile(samples, tail), _quantile(samples, 1 - tail))

    mean_new = sum(new) / n
    mean_base = sum(baseline) / n
    return PairedDifference(
        n,
        interval(mean_new, means_new),
        interval(mean_base, means_base),
        interval(mean_new - mean_base, means_diff),
    )


_SERIES: dict[str, tuple[Callable[[ReportSafety], float], bool, int]] = {
    # name: (value of one report, abnormal reports only, rounding digits)
    "rougeL": (lambda r: r.rouge[2], False, 2),
    "missed_abnormal": (lambda r: float(r.missed_abnormal), True, 4),
    "any_flag": (lambda r: float(bool(r.draft_flags)), False, 4),
}


def compare_reports(
    new: Sequence[ReportSafety],
    baseline: Sequence[ReportSafety],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Paired bootstrap of :data:`COMPARED` on every subset; reports in the same order.

    A subset (or a metric on it) without reports is ``None``; so are the twin subsets when
    twins are unknown.
    """
    if len(new) != len(baseline) or any(a.idx != b.idx for a, b in zip(new, baseline, strict=True)):
        raise ValueError("compare_reports() needs the same reports in the same order")
    out: dict[str, Any] = {"resamples": resamples, "seed": seed, "level": 0.95, "subsets": {}}
    for subset in SUBSETS:
        members = subset_members(new, subset)
        if members is None:
            out["subsets"][subset] = None
            continue
        entry: dict[str, Any] = {}
        for metric, (value, abnormal_only, digits) in _SERIES.items():
            rows = [i for i in members if not (abnormal_only and new[i].reference_normal)]
            if not rows:
                entry[metric] = None
                continue
            entry[metric] = paired_bootstrap(
                [value(new[i]) for i in rows],
                [value(baseline[i]) for i in rows],
                resamples=resamples,
                seed=seed,
            ).to_json(digits)
        out["subsets"][subset] = entry
    return out


def _fmt(metric: str, x: float, *, sign: bool = False) -> str:
    plus = "+" if sign else ""
    return f"{x:{plus}.2f}" if metric == "rougeL" else f"{100 * x:{plus}.1f}%"


def format_comparison(comparison: dict[str, Any], *, new: str, baseline: str) -> str:
    """A plain-text table: per subset and metric, both values and the difference with CI."""
    head = f"{'subset':11} {'metric':16} {'n':>4} {new[:12]:>12} {baseline[:12]:>12}  diff [95% CI]"
    lines = [head, "-" * (len(head) + 14)]
    for subset, entry in comparison["subsets"].items():
        if entry is None:
            continue
        for metric, d in entry.items():
            if d is None:
                continue
            diff = d["diff"]
            change = _fmt(metric, diff["value"], sign=True)
            lines.append(
                f"{subset:11} {metric:16} {d['n']:4d} {_fmt(metric, d['new']['value']):>12} "
                f"{_fmt(metric, d['baseline']['value']):>12}  {change} "
                f"[{_fmt(metric, diff['low'])}, {_fmt(metric, diff['high'])}]"
            )
    return "\n".join(lines)


def _tick(entry: dict[str, Any], subset: str, scale: float) -> str:
    d = entry["diff"]
    return (
        f"{subset}\nn={entry['n']}\ndiff {scale * d['value']:+.1f}\n"
        f"[{scale * d['low']:+.1f}, {scale * d['high']:+.1f}]"
    )


def plot_comparison(comparison: dict[str, Any], path: Path, *, new: str, baseline: str) -> None:
    """PNG: ROUGE-L and missed-abnormal per subset, both runs with their 95 % CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, metric, label, scale in (
        (axes[0], "rougeL", "ROUGE-L (mean F1 x100)", 1.0),
        (axes[1], "missed_abnormal", "missed-abnormal (% of abnormal reports)", 100.0),
    ):
        names = [
            s
            for s, e in comparison["subsets"].items()
            if e is not None and e.get(metric) is not None
        ]
        for offset, run, title in ((-0.2, "new", new), (0.2, "baseline", baseline)):
            values = [scale * comparison["subsets"][s][metric][run]["value"] for s in names]
            lows = [scale * comparison["subsets"][s][metric][run]["low"] for s in names]
            highs = [scale * comparison["subsets"][s][metric][run]["high"] for s in names]
            ax.bar(
                [i + offset for i in range(len(names))],
                values,
                width=0.4,
                yerr=[
                    [v - lo for v, lo in zip(values, lows, strict=True)],
                    [hi - v for v, hi in zip(values, highs, strict=True)],
                ],
                capsize=3,
                label=title,
            )
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([_tick(comparison["subsets"][s][metric], s, scale) for s in names])
        ax.tick_params(axis="x", labelsize=7)
        ax.set_ylim(0, 115)
        ax.set_ylabel(label)
        ax.legend(fontsize=8, loc="upper left", ncols=2)
    fig.suptitle(
        f"{new} vs {baseline}: paired bootstrap 95% CIs "
        f"({comparison['resamples']} resamples, seed {comparison['seed']})",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
