"""``radgpt train`` and ``radgpt eval``.

Heavy imports (torch, transformers, peft) happen inside the commands so that ``radgpt``
starts without the ``train`` extra installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

__all__ = ["register"]

DEFAULT_OPENI = Path("../shared/data/openi")
DEFAULT_CACHE = Path(".radgpt/cache")
DEFAULT_ADAPTER = Path("training/adapters/radiology")


def _base_dir(base_model: str, cache_dir: Path) -> Path:
    if base_model == "embedded":
        from inference.model_store import prepare_base_model

        return prepare_base_model(cache_dir)
    if not base_model:
        raise ValueError("this config needs --base-model DIR (a local Hugging Face model dir)")
    path = Path(base_model)
    if not (path / "config.json").is_file():
        raise ValueError(f"--base-model {path} is not a Hugging Face model directory")
    return path


def train_command(
    config: Annotated[
        str, typer.Option(help="preset (cpu-smollm2-135m, gpu-7b) or a JSON config file")
    ] = "cpu-smollm2-135m",
    data: Annotated[
        Path, typer.Option(help="Open-i split dir, or the hospital's reports (see --format)")
    ] = DEFAULT_OPENI,
    data_format: Annotated[
        str, typer.Option("--format", help="openi | jsonl | text | messages")
    ] = "openi",
    out: Annotated[Path, typer.Option(help="where to install the adapter")] = DEFAULT_ADAPTER,
    run_dir: Annotated[
        Path | None, typer.Option(help="run directory (default training/runs/<name>-<time>)")
    ] = None,
    base_model: Annotated[
        str | None, typer.Option(help="local HF model dir, or 'embedded' (SmolLM2-135M)")
    ] = None,
    cache_dir: Annotated[Path, typer.Option(help="cache of the embedded model")] = DEFAULT_CACHE,
    name: Annotated[str, typer.Option(help="adapter name")] = "radiology",
    version: Annotated[str | None, typer.Option(help="adapter version (default: today)")] = None,
    epochs: Annotated[float | None, typer.Option()] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr")] = None,
    rank: Annotated[int | None, typer.Option("--rank", help="LoRA r")] = None,
    alpha: Annotated[int | None, typer.Option("--alpha", help="LoRA alpha")] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    grad_accum: Annotated[int | None, typer.Option()] = None,
    max_length: Annotated[int | None, typer.Option()] = None,
    retrieval_k: Annotated[int | None, typer.Option(help="exemplars in the prompt, 0=off")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    max_steps: Annotated[int | None, typer.Option(help="stop after N optimiser steps")] = None,
    max_examples: Annotated[int | None, typer.Option(help="use the first N examples")] = None,
    resume: Annotated[bool, typer.Option(help="continue the latest checkpoint")] = True,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Fine-tune a LoRA adapter (findings -> impression) and install it with its canary."""
    import os

    from inference.model_store import set_offline

    from .config import load_config
    from .pipeline import default_run_name, load_splits, run_training

    if data_format not in ("openi", "jsonl", "text", "messages"):
        raise ValueError(f"unknown --format {data_format!r}")
    fmt: Literal["openi", "jsonl", "text", "messages"] = data_format  # type: ignore[assignment]
    cfg = load_config(config).replace(
        base_model=base_model,
        epochs=epochs,
        learning_rate=learning_rate,
        lora_r=rank,
        lora_alpha=alpha,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length,
        retrieval_k=retrieval_k,
        seed=seed,
        device=device,
    )
    set_offline(os.environ)  # this command loads the model itself: never reach a hub
    base_dir = _base_dir(cfg.base_model, cache_dir)
    splits = load_splits(data, fmt, max_examples=max_examples)
    run = run_dir or Path("training/runs") / default_run_name(cfg)
    typer.echo(
        f"training {cfg.name}: {len(splits.train)} train / {len(splits.validate)} validate "
        f"examples, run dir {run}"
    )
    result, meta = run_training(
        cfg,
        base_dir=base_dir,
        splits=splits,
        run_dir=run,
        out_dir=out,
        adapter_name=name,
        version=version,
        resume=resume,
        max_steps=max_steps,
        progress=progress,
    )
    typer.echo(
        f"adapter {meta.name} {meta.version} -> {out} ({result.steps} steps, "
        f"train loss {result.train_loss:.3f}, {result.seconds / 60:.1f} min); "
        f"canary: {meta.canary['expected']!r}"
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    from .evaluate import eval_command

    app.command("eval")(eval_command)
