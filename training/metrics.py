"""Scores of draft impressions against reference impressions (pure functions).

* ROUGE-1/2/L F1 with ``rouge-score`` (no stemming), mean over reports, x100: the protocol
  of Van Veen et al. 2024, so numbers compare with the published ones;
* the same on the *normal* and *abnormal* subsets (normal = the reference impression is only
  a normal template such as "No acute cardiopulmonary abnormality.");
* length and conciseness (words of output vs reference, exact-match rate);
* clinical consistency: the rate of drafts flagged by :func:`inference.safety.check_draft`
  (negation flip, laterality conflict, invented finding, omitted critical finding).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean, median
from typing import Any

__all__ = [
    "Scores",
    "is_normal_impression",
    "length_stats",
    "mean_scores",
    "rouge_per_report",
    "rouge_scores",
    "safety_rates",
    "score_outputs",
]

# A sentence is a normal template when it has a normality cue and every word is one of the
# words normal templates are made of ("No acute radiographic cardiopulmonary process",
# "Negative chest x-XXXX", "Clear lungs", "Unremarkable radiographs of the chest").
_NORMAL_CUES = frozenset({"no", "negative", "normal", "unremarkable", "clear", "without"})
_NORMAL_VOCAB = _NORMAL_CUES | frozenset(
    [
        "acute",
        "active",
        "significant",
        "radiographic",
        "visualized",
        "visible",
        "evidence",
        "of",
        "for",
        "or",
        "and",
        "the",
        "a",
        "cardiopulmonary",
        "pulmonary",
        "cardiac",
        "pleural",
        "chest",
        "intrathoracic",
        "thoracic",
        "osseous",
        "bony",
        "lung",
        "lungs",
        "heart",
        "size",
        "mediastinum",
        "disease",
        "diseases",
        "abnormality",
        "abnormalities",
        "abnormal",
        "process",
        "processes",
        "finding",
        "findings",
        "pathology",
        "change",
        "changes",
        "study",
        "exam",
        "examination",
        "x",
        "ray",
        "xray",
        "radiograph",
        "radiographs",
        "film",
        "films",
        "two",
        "view",
        "views",
        "pa",
        "lateral",
        "is",
        "are",
        "there",
        "identified",
        "seen",
        "demonstrated",
        "detected",
        "present",
        "noted",
    ]
)
_NUMBER = re.compile(r"^\(?\d{1,2}[.)]\s*")


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.;!?])\s+|\s+(?=\(?\d{1,2}[.)]\s)", text.strip())
    out = []
    for part in parts:
        s = _NUMBER.sub("", part.strip()).lower()
        s = re.sub(r"\bxxxx\b", "", s)
        s = re.sub(r"[^a-z0-9/ ]+", " ", s)
        s = " ".join(s.split())
        if s:
            out.append(s)
    return out


def is_normal_impression(text: str) -> bool:
    """True when every sentence of ``text`` is a normal template (and there is one)."""
    sentences = _sentences(text)
    if not sentences:
        return False
    for sentence in sentences:
        words = sentence.replace("/", " ").split()
        if not _NORMAL_CUES.intersection(words) or not _NORMAL_VOCAB.issuperset(words):
            return False
    return True


@dataclass(frozen=True, slots=True)
class Scores:
    """Mean ROUGE F1 x100 over ``n`` reports."""

    n: int
    rouge1: float
    rouge2: float
    rougeL: float

    def to_json(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "rouge1": round(self.rouge1, 2),
            "rouge2": round(self.rouge2, 2),
            "rougeL": round(self.rougeL, 2),
        }


def rouge_per_report(
    outputs: Sequence[str], targets: Sequence[str]
) -> list[tuple[float, float, float]]:
    """ROUGE-1/2/L F1 x100 of each report (``rouge-score``, no stemming)."""
    if len(outputs) != len(targets):
        raise ValueError("outputs and targets must have the same length")
    if not outputs:
        return []
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    out = []
    for output, ref in zip(outputs, targets, strict=True):
        result = scorer.score(ref, output)
        out.append(
            (
                100.0 * result["rouge1"].fmeasure,
                100.0 * result["rouge2"].fmeasure,
                100.0 * result["rougeL"].fmeasure,
            )
        )
    return out


def mean_scores(per_report: Sequence[tuple[float, float, float]]) -> Scores:
    """The mean of per-report ROUGE-1/2/L triples (all zero for none)."""
    n = len(per_report)
    if not n:
        return Scores(0, 0.0, 0.0, 0.0)
    return Scores(n, *(sum(r[i] for r in per_report) / n for i in range(3)))


def rouge_scores(outputs: Sequence[str], targets: Sequence[str]) -> Scores:
    """Mean per-report ROUGE-1/2/L F1 x100 (``rouge-score``, no stemming)."""
    return mean_scores(rouge_per_report(outputs, targets))


def length_stats(outputs: Sequence[str], targets: Sequence[str]) -> dict[str, float]:
    """Words per output and reference, their ratio, empty and exact-match rates."""
    if not outputs:
        return {}
    out_words = [len(o.split()) for o in outputs]
    ref_words = [len(t.split()) for t in targets]
    exact = sum(
        " ".join(o.lower().split()) == " ".join(t.lower().split())
        for o, t in zip(outputs, targets, strict=True)
    )
    mean_ref = fmean(ref_words)
    return {
        "output_words_mean": round(fmean(out_words), 2),
        "output_words_median": float(median(out_words)),
        "reference_words_mean": round(mean_ref, 2),
        "length_ratio": round(fmean(out_words) / mean_ref, 3) if mean_ref else 0.0,
        "empty_rate": round(sum(w == 0 for w in out_words) / len(outputs), 4),
        "exact_match_rate": round(exact / len(outputs), 4),
    }


def safety_rates(findings: Sequence[str], outputs: Sequence[str]) -> dict[str, float] | None:
    """Rates of drafts flagged by each safety check, or ``None`` if the checks are absent."""
    try:
        from inference.safety import check_draft, summarise_flags
    except ImportError:
        return None
    results = [check_draft(f, o) for f, o in zip(findings, outputs, strict=True)]
    return {k: round(v, 4) for k, v in summarise_flags(results).items()}


def score_outputs(
    findings: Sequence[str],
    targets: Sequence[str],
    outputs: Sequence[str],
    *,
    safety: bool = True,
) -> dict[str, Any]:
    """All metrics of one system: overall, normal/abnormal subsets, length, safety."""
    if not len(findings) == len(targets) == len(outputs):
        raise ValueError("findings, targets and outputs must have the same length")
    normal = [is_normal_impression(t) for t in targets]
    subsets: dict[str, Any] = {}
    for name, want in (("normal", True), ("abnormal", False)):
        idx = [i for i, flag in enumerate(normal) if flag is want]
        subsets[name] = rouge_scores([outputs[i] for i in idx], [targets[i] for i in idx]).to_json()
    report: dict[str, Any] = {
        **rouge_scores(outputs, targets).to_json(),
        "subsets": subsets,
        "length": length_stats(outputs, targets),
    }
    if safety:
        rates = safety_rates(findings, outputs)
        if rates is not None:
            report["safety"] = rates
    return report
