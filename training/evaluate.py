"""``radgpt eval``: draft every report of a split with an adapter and score the drafts.

Drafting (``--drafting verify``, the default) is the product's own path,
:class:`inference.drafting.drafter.Drafter` over the embedded model: the greedy candidate, sampled
candidates (seeded) when it fails the consistency checks, and the extractive fallback when
none passes; ``--drafting greedy`` is plain greedy decoding (how adapter 0.1.0 was scored).
Both use the adapter's own settings (prompt template, retrieval exemplars,
``max_new_tokens`` from ``radgpt-adapter.json``) and are deterministic, so a stored
prediction is reproduced exactly by re-running the adapter on its report
(``radgpt eval --verify FILE``; rows with a ``candidates`` field are re-drafted the
verify-and-choose way).  The report compares the model
with baselines computed by the same code, on all reports and on the normal/abnormal subsets,
and includes length and clinical-consistency (safety check) rates.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from inference.drafting.prompter import Prompter
from inference.drafting.retrieval import ExemplarIndex
from inference.safety import check_draft

from .adapter import EXEMPLARS_FILE, read_metadata, update_metrics
from .baselines import CONSTANT_ANSWERS, constant_outputs, nearest_neighbour_outputs
from .comparison import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    compare_reports,
    format_comparison,
    pair_by_idx,
    plot_comparison,
)
from .data import OPENI_SPLITS, Example, load_jsonl_pairs
from .metrics import score_outputs
from .safety_metrics import (
    SUBSETS,
    ReportSafety,
    SafetyRow,
    TrainingSet,
    report_safety,
    safety_metrics,
)

__all__ = [
    "DraftSettings",
    "Prediction",
    "eval_command",
    "evaluation_report",
    "format_report",
    "format_safety",
    "load_split",
    "predict",
    "predict_verified",
    "read_predictions",
    "retrieved_exemplars",
    "verify_predictions",
    "write_predictions",
]


@dataclass(frozen=True, slots=True)
class Prediction:
    """One line of a predictions file.

    ``idx, inputs, target, output`` are always there.  The optional fields are written only
    when set, so files of older runs read and verify unchanged: ``method`` (how the draft
    was made: ``model`` when absent, or ``extractive-fallback``), ``flags`` (the safety
    flags stored with the draft, as JSON objects), ``exemplars`` (the exemplar impressions
    the prompt contained), ``candidates`` (how many candidates were generated) and
    ``greedy`` (the greedy candidate, stored when the draft is not that candidate, so one
    verify-mode run also scores plain greedy drafting: system ``model (greedy)``).
    """

    idx: int | str
    inputs: str
    target: str
    output: str
    method: str | None = None
    flags: tuple[dict[str, Any], ...] | None = None
    exemplars: tuple[str, ...] | None = None
    candidates: int | None = None
    greedy: str | None = None

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "idx": self.idx,
            "inputs": self.inputs,
            "target": self.target,
            "output": self.output,
        }
        if self.method is not None:
            row["method"] = self.method
        if self.flags is not None:
            row["flags"] = list(self.flags)
        if self.exemplars is not None:
            row["exemplars"] = list(self.exemplars)
        if self.candidates is not None:
            row["candidates"] = self.candidates
        if self.greedy is not None:
            row["greedy"] = self.greedy
        return row

    @classmethod
    def from_json(cls, row: Any) -> Prediction:
        """A prediction from one parsed line; ValueError/KeyError/TypeError when malformed."""
        if not isinstance(row, dict):
            raise TypeError("a prediction line is a JSON object")
        idx = row["idx"]
        if isinstance(idx, bool) or not isinstance(idx, int | str):
            raise TypeError("idx must be an integer or a string")
        inputs, target, output = (row[k] for k in ("inputs", "target", "output"))
        if not all(isinstance(t, str) for t in (inputs, target, output)):
            raise TypeError("inputs, target and output must be strings")
        method = row.get("method")
        if method is not None and not isinstance(method, str):
            raise TypeError("method must be a string")
        flags = row.get("flags")
        if flags is not None and (
            not isinstance(flags, list) or not all(isinstance(f, dict) for f in flags)
        ):
            raise TypeError("flags must be a list of objects")
        exemplars = row.get("exemplars")
        if exemplars is not None and (
            not isinstance(exemplars, list) or not all(isinstance(e, str) for e in exemplars)
        ):
            raise TypeError("exemplars must be a list of strings")
        candidates = row.get("candidates")
        if candidates is not None and (
            isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1
        ):
            raise TypeError("candidates must be a positive integer")
        greedy = row.get("greedy")
        if greedy is not None and not isinstance(greedy, str):
            raise TypeError("greedy must be a string")
        return cls(
            idx,
            inputs,
            target,
            output,
            method=method,
            flags=None if flags is None else tuple(flags),
            exemplars=None if exemplars is None else tuple(exemplars),
            candidates=candidates,
            greedy=greedy,
        )


@dataclass(frozen=True, slots=True)
class DraftSettings:
    """How an adapter drafts: template, exemplar retrieval and generation length."""

    prompter: Prompter
    index: ExemplarIndex | None
    k: int
    max_new_tokens: int

    @classmethod
    def for_adapter(cls, adapter_dir: Path | None, *, max_new_tokens: int = 96) -> DraftSettings:
        """Settings from ``radgpt-adapter.json`` (plain template, no retrieval if absent)."""
        if adapter_dir is None or not (adapter_dir / "radgpt-adapter.json").is_file():
            return cls(Prompter.load("radiology"), None, 0, max_new_tokens)
        meta = read_metadata(adapter_dir)
        index, k = None, 0
        if meta.retrieval:
            k = int(meta.retrieval.get("k", 0))
            index = ExemplarIndex.load(
                adapter_dir / str(meta.retrieval.get("exemplars", EXEMPLARS_FILE))
            )
        return cls(Prompter.load(meta.prompt_template), index, k, meta.max_new_tokens)

    def exemplars(self, findings: str) -> list[str]:
        """The exemplar impressions the prompt for ``findings`` lists (none without an index)."""
        return self.index.top_k(findings, self.k) if self.index and self.k else []

    def prompt(self, findings: str) -> str:
        return self.prompter.build(findings, examples=self.exemplars(findings))


def load_split(data: Path, split: str) -> list[Example]:
    """A split of the Open-i directory ``data`` (ids are the file's ``idx``), or a JSONL file."""
    if data.is_file():
        return load_jsonl_pairs(data)
    if split not in OPENI_SPLITS:
        raise ValueError(f"unknown split {split!r} (choose from {', '.join(OPENI_SPLITS)})")
    path = data / f"{split}.jsonl"
    if not path.is_file():
        raise ValueError(f"no {split} file {path}")
    return load_jsonl_pairs(path)


def _idx(example_id: str) -> int | str:
    return int(example_id) if example_id.isdigit() else example_id


def _draft(model: Any, settings: DraftSettings, findings: str, use_adapter: bool) -> str:
    gen = model.generate(
        settings.prompt(findings),
        max_new_tokens=settings.max_new_tokens,
        stop=settings.prompter.stop,
        use_adapter=use_adapter,
    )
    return settings.prompter.parse(gen.text, truncated=gen.finish_reason == "length")


def _drafter(model: Any, settings: DraftSettings, *, use_adapter: bool, samples: int) -> Any:
    from inference.backends.local import LocalBackend
    from inference.drafting.drafter import Drafter
    from inference.serving.engine import ModelEngine

    backend = LocalBackend(ModelEngine(model), adapter_id="radiology" if use_adapter else None)
    return Drafter(
        backend,
        prompter=settings.prompter,
        exemplars=settings.index,
        k=settings.k,
        max_new_tokens=settings.max_new_tokens,
        verify=False,
        samples=samples,
    )


# Open-i reports are chest radiographs: scope gating is the pipeline's job, not the eval's.
def _chest_radiograph() -> Any:
    from inference.drafting.scope import ScopeDecision

    return ScopeDecision(True, "Open-i chest radiograph", "procedure", "XR", "CHEST")


def predict_verified(
    model: Any,
    settings: DraftSettings,
    examples: Sequence[Prediction | Example],
    *,
    use_adapter: bool = True,
    samples: int = 0,
    progress: bool = True,
) -> list[Prediction]:
    """Verify-and-choose drafts (the :class:`~inference.drafting.drafter.Drafter` path) for
    ``examples``, with method, flags, exemplars and the number of candidates."""
    import asyncio

    from tqdm import tqdm

    drafter = _drafter(model, settings, use_adapter=use_adapter, samples=samples)
    scope = _chest_radiograph()
    rows = [
        (e.idx, e.inputs, e.target) if isinstance(e, Prediction)
        else (_idx(e.id), e.findings, e.impression)
        for e in examples
    ]  # fmt: skip

    async def run() -> list[Prediction]:
        out: list[Prediction] = []
        fallbacks = 0
        bar = tqdm(rows, desc="eval", unit="report", disable=not progress)
        try:
            for idx, findings, target in bar:
                draft = await drafter.draft(findings, scope=scope)
                fallbacks += draft.method != "model"
                first = drafter.prompter.parse(draft.raw_text, truncated=draft.truncated)
                bar.set_postfix(fallback=fallbacks)
                out.append(
                    Prediction(
                        idx, findings, target, draft.text,
                        method=draft.method,
                        flags=tuple(draft.to_dict()["safety_flags"]),
                        exemplars=tuple(settings.exemplars(findings)),
                        candidates=draft.candidates,
                        greedy=first if first != draft.text and draft.candidates == 1 else None,
                    )
                )  # fmt: skip
        finally:
            await drafter.aclose()
        return out

    return asyncio.run(run())


def predict(
    model: Any,
    settings: DraftSettings,
    examples: Sequence[Example],
    *,
    use_adapter: bool = True,
    progress: bool = True,
) -> list[Prediction]:
    """Greedy drafts for ``examples`` with an :class:`inference.serving.model.LocalModel`."""
    from tqdm import tqdm

    out = []
    for ex in tqdm(examples, desc="eval", unit="report", disable=not progress):
        output = _draft(model, settings, ex.findings, use_adapter)
        out.append(Prediction(_idx(ex.id), ex.findings, ex.impression, output))
    return out


def write_predictions(path: Path, predictions: Sequence[Prediction]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for p in predictions:
            fh.write(json.dumps(p.to_json(), ensure_ascii=False) + "\n")


def recheck_predictions(predictions: Sequence[Prediction]) -> list[Prediction]:
    """Verify and choose again, with the checks as they are now, over stored greedy drafts.

    Exact for rows of a ``--drafting verify --samples 0`` run (one candidate each, the greedy
    draft stored as ``output`` or, when it was replaced, as ``greedy``): the model's greedy
    draft is deterministic, so this is what drafting would give today, in seconds.  Rows
    with sampled candidates, or without the greedy draft, are refused.
    """
    from inference.drafting.choose import verify
    from inference.drafting.findings import extractive_impression

    out: list[Prediction] = []
    for p in predictions:
        if p.candidates != 1 or (p.method not in (None, "model") and p.greedy is None):
            raise ValueError(
                f"idx {p.idx}: --recheck needs the rows of a --samples 0 verify run with the "
                "greedy draft stored (re-draft with this version of radgpt eval)"
            )
        greedy = p.greedy if p.greedy is not None else p.output
        verdict = verify(p.inputs, greedy)
        if verdict.passes:
            text, flags, method = greedy, verdict.flags, "model"
        else:
            text = extractive_impression(p.inputs)
            flags, method = tuple(check_draft(p.inputs, text)), "extractive-fallback"
        out.append(
            dataclasses.replace(
                p,
                output=text,
                method=method,
                flags=tuple(dataclasses.asdict(f) for f in flags),
                greedy=greedy if text != greedy else None,
            )
        )
    return out


def read_predictions(path: Path) -> list[Prediction]:
    preds = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            preds.append(Prediction.from_json(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: not a prediction line ({exc})") from exc
    return preds


def verify_predictions(
    model: Any,
    settings: DraftSettings,
    predictions: Sequence[Prediction],
    *,
    sample: int | None = None,
    seed: int = 0,
) -> list[tuple[Prediction, str]]:
    """Re-draft (a random sample of) stored predictions; return those that differ."""
    chosen = list(predictions)
    if sample is not None and sample < len(chosen):
        chosen = random.Random(seed).sample(chosen, sample)
    greedy = [p for p in chosen if p.candidates is None]
    verified = [p for p in chosen if p.candidates is not None]
    bad = [
        (p, again) for p in greedy if (again := _draft(model, settings, p.inputs, True)) != p.output
    ]
    if verified:
        samples = max(p.candidates or 1 for p in verified) - 1
        again_rows = predict_verified(model, settings, verified, samples=samples, progress=False)
        # files written before ``greedy`` was stored verify on everything else
        bad.extend(
            (p, a.output)
            for p, a in zip(verified, again_rows, strict=True)
            if (a if p.greedy is not None else dataclasses.replace(a, greedy=None)) != p
        )
    return bad


def retrieved_exemplars(
    predictions: Sequence[Prediction], settings: DraftSettings
) -> list[tuple[str, ...]]:
    """The exemplars each draft was made with: the stored ones, else those ``settings`` give."""
    return [
        p.exemplars if p.exemplars is not None else tuple(settings.exemplars(p.inputs))
        for p in predictions
    ]


def _safety_rows(
    predictions: Sequence[Prediction],
    outputs: Sequence[str],
    exemplars: Sequence[tuple[str, ...] | None],
    methods: Sequence[str | None],
) -> list[SafetyRow]:
    return [
        SafetyRow(p.idx, p.inputs, p.target, o, m, e)
        for p, o, e, m in zip(predictions, outputs, exemplars, methods, strict=True)
    ]


def _without_idx_lists(metrics: dict[str, Any]) -> dict[str, Any]:
    """Safety metrics without the per-report idx lists (for the adapter's metadata)."""
    return {
        k: (
            {**v, "missed_abnormal": {a: b for a, b in v["missed_abnormal"].items() if a != "idx"}}
            if isinstance(v, dict)
            else v
        )
        for k, v in metrics.items()
    }


def evaluation_report(
    predictions: Sequence[Prediction],
    *,
    baseline_index: ExemplarIndex | None = None,
    safety: bool = True,
    training: TrainingSet | None = None,
    exemplars: Sequence[tuple[str, ...] | None] | None = None,
    compare: Sequence[Prediction] | None = None,
    compare_exemplars: Sequence[tuple[str, ...] | None] | None = None,
    compare_name: str = "baseline",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Scores of the model, of baselines and of the reference impressions (safety only).

    With ``safety`` every system also gets ``safety_metrics`` (missed-abnormal, copy,
    fallback and flag rates, by subset; see :mod:`training.safety_metrics`).  ``exemplars``
    are the exemplar impressions of each report's prompt (default: those stored in the
    predictions); ``training`` gives the twin subsets and the training-copy rate.  With
    ``compare`` (a baseline run on the same reports) the report gets ``compare``: paired
    bootstrap CIs of the differences (see :mod:`training.comparison`).
    """
    if compare is not None and not safety:
        raise ValueError("--compare needs the safety checks (drop --no-safety)")
    findings = [p.inputs for p in predictions]
    targets = [p.target for p in predictions]
    systems: dict[str, list[str]] = {"model": [p.output for p in predictions]}
    if any(p.greedy is not None for p in predictions) and all(
        p.candidates == 1 for p in predictions
    ):
        systems["model (greedy)"] = [p.greedy or p.output for p in predictions]
    for answer in CONSTANT_ANSWERS:
        systems[f"constant: {answer}"] = constant_outputs(answer, len(predictions))
    if baseline_index is not None:
        systems["tfidf-1nn"] = nearest_neighbour_outputs(baseline_index, findings)
    report: dict[str, Any] = {
        name: score_outputs(findings, targets, outputs, safety=safety)
        for name, outputs in systems.items()
    }
    if not safety:
        return report
    reference = score_outputs(findings, targets, targets, safety=True)
    if "safety" in reference:
        report["reference"] = {"safety": reference["safety"]}
    shown = list(exemplars) if exemplars is not None else [p.exemplars for p in predictions]
    source = None if training is None else training.source
    reference_flags = [check_draft(f, t) for f, t in zip(findings, targets, strict=True)]
    model_reports: list[ReportSafety] = []
    for name, outputs in systems.items():
        methods = [p.method for p in predictions] if name == "model" else [None] * len(outputs)
        reports = report_safety(
            _safety_rows(predictions, outputs, shown, methods),
            training=training,
            reference_flags=reference_flags,
        )
        if name == "model":
            model_reports = reports
        report[name]["safety_metrics"] = safety_metrics(reports, training_source=source)
    if compare is not None:
        pairs = pair_by_idx(predictions, compare)
        base = [b for _, b in pairs]
        base_shown = (
            list(compare_exemplars)
            if compare_exemplars is not None
            else [p.exemplars for p in compare]
        )
        by_idx = {p.idx: e for p, e in zip(compare, base_shown, strict=True)}
        base_reports = report_safety(
            _safety_rows(
                base,
                [b.output for b in base],
                [by_idx[b.idx] for b in base],
                [b.method for b in base],
            ),
            training=training,
            reference_flags=reference_flags,
        )
        comparison = compare_reports(model_reports, base_reports, resamples=resamples, seed=seed)
        report["compare"] = {
            "baseline": compare_name,
            "baseline_safety_metrics": safety_metrics(base_reports, training_source=source),
            **comparison,
        }
    return report


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table: ROUGE overall and by subset, words, any-safety-flag rate."""
    head = (
        f"{'system':44} {'R-1':>6} {'R-2':>6} {'R-L':>6} {'R-L norm':>8} {'R-L abn':>8} "
        f"{'words':>6} {'flagged':>7}"
    )
    lines = [head, "-" * len(head)]
    for name, r in report.items():
        if "rougeL" not in r:
            continue
        flagged = r.get("safety", {}).get("any")
        lines.append(
            f"{name[:44]:44} {r['rouge1']:6.2f} {r['rouge2']:6.2f} {r['rougeL']:6.2f} "
            f"{r['subsets']['normal']['rougeL']:8.2f} {r['subsets']['abnormal']['rougeL']:8.2f} "
            f"{r['length'].get('output_words_mean', 0):6.1f} "
            f"{'' if flagged is None else f'{100 * flagged:6.1f}%':>7}"
        )
    ref = report.get("reference", {}).get("safety")
    if ref is not None:
        lines.append(
            f"{'reference impressions':44} {'':>6} {'':>6} {'':>6} {'':>8} {'':>8} "
            f"{'':>6} {100 * ref['any']:6.1f}%"
        )
    safety = format_safety(report)
    return "\n".join(lines) + (f"\n{safety}" if safety else "")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _missed(m: dict[str, Any]) -> str:
    return f"{m['count']}/{m['n']} {_pct(m['rate'])}" if m["n"] else "-"


def format_safety(report: dict[str, Any]) -> str:
    """Plain-text tables of the safety metrics: per system, then the model's subsets."""
    rows: list[tuple[str, dict[str, Any]]] = [
        (name, r["safety_metrics"]) for name, r in report.items() if "safety_metrics" in r
    ]
    if "compare" in report:
        rows.append(
            (
                f"--compare {Path(report['compare']['baseline']).name}",
                report["compare"]["baseline_safety_metrics"],
            )
        )
    if not rows:
        return ""
    head = (
        f"{'system':44} {'missed-abnormal':>17} {'normal tmpl':>11} {'copy exempl':>11} "
        f"{'copy train':>10} {'fallback':>8} {'any flag':>8} {'x ref':>6}"
    )
    lines = [
        "",
        "safety (missed-abnormal over the abnormal reports; x ref = any flag / "
        "reference impressions' any flag)",
        head,
        "-" * len(head),
    ]
    for name, m in rows:
        o = m["overall"]
        miss = o["missed_abnormal"]
        ratio = "n/a" if o["flags"]["any_ratio"] is None else f"{o['flags']['any_ratio']:.2f}"
        lines.append(
            f"{name[:44]:44} {miss['count']:>5}/{miss['n']:<4} {_pct(miss['rate']):>6} "
            f"{miss['normal_template']:>11} {_pct(o['copy_exemplar']['rate']):>11} "
            f"{_pct(o['copy_training']['rate']):>10} {_pct(o['extractive_fallback']['rate']):>8} "
            f"{_pct(o['flags']['drafts']['any']):>8} {ratio:>6}"
        )
    ref_any = rows[0][1]["overall"]["flags"]["reference"]["any"]
    lines.append(
        f"{'reference impressions':44} {'':>17} {'':>11} {'':>11} {'':>10} {'':>8} "
        f"{_pct(ref_any):>8}"
    )
    model = report.get("model", {}).get("safety_metrics")
    if model is not None:
        head = (
            f"{'model subset':12} {'n':>4} {'R-1':>6} {'R-2':>6} {'R-L':>6} "
            f"{'missed-abn':>16} {'copy exempl':>11} {'any flag':>8} {'ref flag':>8}"
        )
        lines += ["", head, "-" * len(head)]
        for subset in SUBSETS:
            s = model.get(subset)
            if s is None:
                lines.append(f"{subset:12} (unknown: no training set)")
                continue
            miss = s["missed_abnormal"]
            lines.append(
                f"{subset:12} {s['n']:4d} {s['rouge1']:6.2f} {s['rouge2']:6.2f} {s['rougeL']:6.2f} "
                f"{_missed(miss):>16} "
                f"{_pct(s['copy_exemplar']['rate']):>11} {_pct(s['flags']['drafts']['any']):>8} "
                f"{_pct(s['flags']['reference']['any']):>8}"
            )
    if "compare" in report:
        lines += [
            "",
            f"model - {report['compare']['baseline']} (paired bootstrap, "
            f"{report['compare']['resamples']} resamples, seed {report['compare']['seed']})",
            format_comparison(report["compare"], new="model", baseline="baseline"),
        ]
    return "\n".join(lines)


SYSTEMS = ("model", "tfidf-1nn")


def _training_set(data: Path, settings: DraftSettings) -> tuple[TrainingSet | None, list[Example]]:
    """The training reports: ``data/train.jsonl`` if there, else the adapter's exemplars."""
    if data.is_dir() and (data / "train.jsonl").is_file():
        train = load_jsonl_pairs(data / "train.jsonl", prefix="train-")
        pairs = ((e.findings, e.impression) for e in train)
        return TrainingSet.from_pairs(pairs, source=str(data / "train.jsonl")), train
    if settings.index is not None:
        pairs = ((e.findings, e.impression) for e in settings.index.exemplars)
        return TrainingSet.from_pairs(pairs, source="adapter exemplars"), []
    return None, []


def eval_command(
    split: Annotated[str, typer.Option(help="train | validate | test")] = "test",
    adapter: Annotated[
        Path | None, typer.Option(help="adapter dir (default: the shipped one)")
    ] = Path("training/adapters/radiology"),
    out: Annotated[
        Path | None, typer.Option(help="predictions JSONL {idx,inputs,target,output,...}")
    ] = None,
    data: Annotated[
        Path, typer.Option(help="Open-i split dir or a JSONL file {idx,inputs,target}")
    ] = Path("../shared/data/openi"),
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions", "--score", help="score this predictions file (no model is loaded)"
        ),
    ] = None,
    compare: Annotated[
        Path | None,
        typer.Option(help="baseline predictions on the same reports: paired bootstrap CIs"),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="with --compare: PNG of ROUGE-L and missed-abnormal")
    ] = None,
    system: Annotated[
        str, typer.Option(help="model | tfidf-1nn (the 1-NN training impression, no model)")
    ] = "model",
    verify: Annotated[
        Path | None, typer.Option(help="re-draft stored predictions and compare exactly")
    ] = None,
    sample: Annotated[int | None, typer.Option(help="with --verify: check N random lines")] = None,
    recheck: Annotated[
        Path | None,
        typer.Option(
            help="re-run verify and choose with the current checks over the greedy drafts "
            "stored by a --samples 0 run (no model), then score; --out keeps the rows"
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="first N reports only")] = None,
    no_adapter: Annotated[bool, typer.Option("--base", help="the base model alone")] = False,
    baselines: Annotated[bool, typer.Option(help="score the baselines too")] = True,
    safety: Annotated[bool, typer.Option(help="run the clinical-consistency checks")] = True,
    resamples: Annotated[int, typer.Option(help="bootstrap resamples")] = DEFAULT_RESAMPLES,
    seed: Annotated[int, typer.Option("--bootstrap-seed", help="bootstrap seed")] = DEFAULT_SEED,
    metrics_out: Annotated[Path | None, typer.Option(help="write the report as JSON")] = None,
    record: Annotated[
        bool, typer.Option(help="store the metrics in the adapter's metadata and model card")
    ] = False,
    cache_dir: Annotated[Path, typer.Option(help="cache of the embedded model")] = Path(
        ".radgpt/cache"
    ),
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    drafting: Annotated[
        str,
        typer.Option(help="verify (greedy, samples when it fails, extractive fallback) | greedy"),
    ] = "verify",
    samples: Annotated[
        int, typer.Option(help="--drafting verify: sampled candidates when greedy fails")
    ] = 0,
) -> None:
    """Draft the IMPRESSION of every report of a split and print ROUGE and safety metrics."""
    if adapter is not None and not no_adapter and not adapter.is_dir():
        raise ValueError(f"no adapter directory {adapter}")
    if system not in SYSTEMS:
        raise ValueError(f"unknown --system {system!r} (choose from {', '.join(SYSTEMS)})")
    if plot is not None and compare is None:
        raise ValueError("--plot needs --compare BASELINE_PREDICTIONS")
    if resamples < 1:
        raise ValueError("--resamples must be at least 1")
    if drafting not in ("verify", "greedy"):
        raise ValueError(f"--drafting must be verify or greedy, not {drafting!r}")
    if samples < 0:
        raise ValueError("--samples must not be negative")
    adapter_dir = None if no_adapter else adapter
    settings = DraftSettings.for_adapter(adapter_dir)
    model: Any = None

    def load_model() -> Any:
        import os

        from inference.model_store import prepare_base_model, set_offline
        from inference.serving.model import LocalModel

        set_offline(os.environ)  # this command loads the model itself: never reach a hub
        return LocalModel(prepare_base_model(cache_dir), adapter_dir)

    if verify is not None:
        stored = read_predictions(verify)
        model = load_model()
        bad = verify_predictions(model, settings, stored, sample=sample)
        checked = min(sample, len(stored)) if sample is not None else len(stored)
        typer.echo(f"verified {checked} stored predictions: {checked - len(bad)} identical")
        if bad:
            for pred, again in bad[:5]:
                typer.echo(f"  idx {pred.idx}: stored {pred.output!r} != now {again!r}")
            raise typer.Exit(1)
        return
    baseline_preds = read_predictions(compare) if compare is not None else None
    training, train = _training_set(data, settings)
    baseline_index = (
        ExemplarIndex.build((e.id, e.findings, e.impression) for e in train) if train else None
    )
    if predictions is not None and recheck is not None:
        raise ValueError("use --score or --recheck, not both")
    if recheck is not None:
        preds = recheck_predictions(read_predictions(recheck))
        if out is not None:
            write_predictions(out, preds)
            typer.echo(f"wrote {len(preds)} re-checked predictions to {out}")
    elif predictions is not None:
        preds = read_predictions(predictions)
    else:
        examples = load_split(data, split)[:limit]
        if not examples:
            raise ValueError("no reports to evaluate")
        if system == "tfidf-1nn":
            if baseline_index is None:
                raise ValueError(f"--system tfidf-1nn needs the training split {data}/train.jsonl")
            nearest = nearest_neighbour_outputs(baseline_index, [e.findings for e in examples])
            preds = [
                Prediction(_idx(e.id), e.findings, e.impression, o, exemplars=(o,))
                for e, o in zip(examples, nearest, strict=True)
            ]
        else:
            model = load_model()
            if drafting == "verify":
                preds = predict_verified(
                    model, settings, examples, use_adapter=not no_adapter, samples=samples,
                    progress=progress,
                )  # fmt: skip
            else:
                preds = predict(
                    model, settings, examples, use_adapter=not no_adapter, progress=progress
                )
        if out is not None:
            write_predictions(out, preds)
            typer.echo(f"wrote {len(preds)} predictions to {out}")
    if baseline_preds is not None:
        pair_by_idx(preds, baseline_preds)  # fail before the slow part
    report = evaluation_report(
        preds,
        baseline_index=baseline_index if baselines else None,
        safety=safety,
        training=training,
        exemplars=retrieved_exemplars(preds, settings),
        compare=baseline_preds,
        compare_exemplars=(
            None if baseline_preds is None else retrieved_exemplars(baseline_preds, settings)
        ),
        compare_name=str(compare),
        resamples=resamples,
        seed=seed,
    )
    if not baselines:
        report = {k: v for k, v in report.items() if not k.startswith(("constant", "tfidf"))}
    typer.echo(f"{split}: {len(preds)} reports (ROUGE F1 x100, mean per report, no stemming)")
    typer.echo(format_report(report))
    if metrics_out is not None:
        metrics_out.parent.mkdir(parents=True, exist_ok=True)
        metrics_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if plot is not None and "compare" in report:
        label = predictions.stem if predictions is not None else system
        plot_comparison(report["compare"], plot, new=label, baseline=Path(str(compare)).stem)
        typer.echo(f"wrote {plot}")
    if record:
        if adapter_dir is None:
            raise ValueError("--record needs an adapter")
        model_scores = report["model"]
        update_metrics(
            adapter_dir,
            split,
            {k: model_scores[k] for k in ("n", "rouge1", "rouge2", "rougeL", "subsets", "length")}
            | ({"safety": model_scores["safety"]} if "safety" in model_scores else {})
            | (
                {"safety_metrics": _without_idx_lists(model_scores["safety_metrics"])}
                if "safety_metrics" in model_scores
                else {}
            ),
        )
        typer.echo(f"recorded {split} metrics in {adapter_dir}")
