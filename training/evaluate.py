"""``radgpt eval``: draft every report of a split with an adapter and score the drafts.

Decoding is greedy, one prompt at a time, with :meth:`inference.local.LocalModel.generate`
and the adapter's own settings (prompt template, retrieval exemplars, ``max_new_tokens``
from ``radgpt-adapter.json``), so a stored prediction is reproduced exactly by re-running
the adapter on its report (``radgpt eval --verify FILE``).  The report compares the model
with baselines computed by the same code, on all reports and on the normal/abnormal subsets,
and includes length and clinical-consistency (safety check) rates.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from inference.prompter import Prompter
from inference.retrieval import ExemplarIndex

from .adapter import EXEMPLARS_FILE, read_metadata, update_metrics
from .baselines import CONSTANT_ANSWERS, constant_outputs, nearest_neighbour_outputs
from .data import OPENI_SPLITS, Example, load_jsonl_pairs
from .metrics import score_outputs

__all__ = [
    "DraftSettings",
    "Prediction",
    "eval_command",
    "evaluation_report",
    "format_report",
    "load_split",
    "predict",
    "read_predictions",
    "verify_predictions",
    "write_predictions",
]


@dataclass(frozen=True, slots=True)
class Prediction:
    """One line of a predictions file."""

    idx: int | str
    inputs: str
    target: str
    output: str

    def to_json(self) -> dict[str, Any]:
        return {
            "idx": self.idx,
            "inputs": self.inputs,
            "target": self.target,
            "output": self.output,
        }


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

    def prompt(self, findings: str) -> str:
        examples = self.index.top_k(findings, self.k) if self.index and self.k else []
        return self.prompter.build(findings, examples=examples)


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


def predict(
    model: Any,
    settings: DraftSettings,
    examples: Sequence[Example],
    *,
    use_adapter: bool = True,
    progress: bool = True,
) -> list[Prediction]:
    """Greedy drafts for ``examples`` with an :class:`inference.local.LocalModel`."""
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


def read_predictions(path: Path) -> list[Prediction]:
    preds = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            preds.append(Prediction(row["idx"], row["inputs"], row["target"], row["output"]))
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
    return [
        (p, again) for p in chosen if (again := _draft(model, settings, p.inputs, True)) != p.output
    ]


def evaluation_report(
    predictions: Sequence[Prediction],
    *,
    baseline_index: ExemplarIndex | None = None,
    safety: bool = True,
) -> dict[str, Any]:
    """Scores of the model, of baselines and of the reference impressions (safety only)."""
    findings = [p.inputs for p in predictions]
    targets = [p.target for p in predictions]
    systems: dict[str, list[str]] = {"model": [p.output for p in predictions]}
    for answer in CONSTANT_ANSWERS:
        systems[f"constant: {answer}"] = constant_outputs(answer, len(predictions))
    if baseline_index is not None:
        systems["tfidf-1nn"] = nearest_neighbour_outputs(baseline_index, findings)
    report: dict[str, Any] = {
        name: score_outputs(findings, targets, outputs, safety=safety)
        for name, outputs in systems.items()
    }
    if safety:
        reference = score_outputs(findings, targets, targets, safety=True)
        if "safety" in reference:
            report["reference"] = {"safety": reference["safety"]}
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
    return "\n".join(lines)


def eval_command(
    split: Annotated[str, typer.Option(help="train | validate | test")] = "test",
    adapter: Annotated[
        Path | None, typer.Option(help="adapter dir (default: the shipped one)")
    ] = Path("training/adapters/radiology"),
    out: Annotated[
        Path | None, typer.Option(help="predictions JSONL {idx,inputs,target,output}")
    ] = None,
    data: Annotated[
        Path, typer.Option(help="Open-i split dir or a JSONL file {idx,inputs,target}")
    ] = Path("../shared/data/openi"),
    predictions: Annotated[
        Path | None, typer.Option(help="score this predictions file instead of generating")
    ] = None,
    verify: Annotated[
        Path | None, typer.Option(help="re-draft stored predictions and compare exactly")
    ] = None,
    sample: Annotated[int | None, typer.Option(help="with --verify: check N random lines")] = None,
    limit: Annotated[int | None, typer.Option(help="first N reports only")] = None,
    no_adapter: Annotated[bool, typer.Option("--base", help="the base model alone")] = False,
    baselines: Annotated[bool, typer.Option(help="score the baselines too")] = True,
    safety: Annotated[bool, typer.Option(help="run the clinical-consistency checks")] = True,
    metrics_out: Annotated[Path | None, typer.Option(help="write the report as JSON")] = None,
    record: Annotated[
        bool, typer.Option(help="store the metrics in the adapter's metadata and model card")
    ] = False,
    cache_dir: Annotated[Path, typer.Option(help="cache of the embedded model")] = Path(
        ".radgpt/cache"
    ),
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Draft the IMPRESSION of every report of a split and print ROUGE-1/2/L and more."""
    if adapter is not None and not no_adapter and not adapter.is_dir():
        raise ValueError(f"no adapter directory {adapter}")
    adapter_dir = None if no_adapter else adapter
    settings = DraftSettings.for_adapter(adapter_dir)
    model: Any = None

    def load_model() -> Any:
        from inference.local import LocalModel
        from inference.model_store import prepare_base_model

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
    if predictions is not None:
        preds = read_predictions(predictions)
    else:
        examples = load_split(data, split)[:limit]
        if not examples:
            raise ValueError("no reports to evaluate")
        model = load_model()
        preds = predict(model, settings, examples, use_adapter=not no_adapter, progress=progress)
        if out is not None:
            write_predictions(out, preds)
            typer.echo(f"wrote {len(preds)} predictions to {out}")
    baseline_index = None
    if baselines and data.is_dir() and (data / "train.jsonl").is_file():
        train = load_jsonl_pairs(data / "train.jsonl", prefix="train-")
        baseline_index = ExemplarIndex.build((e.id, e.findings, e.impression) for e in train)
    report = evaluation_report(
        preds, baseline_index=baseline_index if baselines else None, safety=safety
    )
    if not baselines:
        report = {k: v for k, v in report.items() if not k.startswith(("constant", "tfidf"))}
    typer.echo(f"{split}: {len(preds)} reports (ROUGE F1 x100, mean per report, no stemming)")
    typer.echo(format_report(report))
    if metrics_out is not None:
        metrics_out.parent.mkdir(parents=True, exist_ok=True)
        metrics_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if record:
        if adapter_dir is None:
            raise ValueError("--record needs an adapter")
        model_scores = report["model"]
        update_metrics(
            adapter_dir,
            split,
            {k: model_scores[k] for k in ("n", "rouge1", "rouge2", "rougeL", "subsets", "length")}
            | ({"safety": model_scores["safety"]} if "safety" in model_scores else {}),
        )
        typer.echo(f"recorded {split} metrics in {adapter_dir}")
