"""From data to a packaged adapter: load, clean and split the data, train, install, canary.

:func:`run_training` is what ``radgpt train`` runs; it takes plain arguments (no
environment) so tests call it directly on a handful of examples.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from inference.drafting.prompter import Prompter
from inference.drafting.scope import DEFAULT_SCOPE

from .adapter import (
    EXEMPLARS_FILE,
    AdapterMetadata,
    compute_canary,
    install_adapter,
    write_metadata,
    write_model_card,
)
from .config import TrainConfig
from .data import (
    Example,
    build_records,
    clean_examples,
    deduplicate,
    exemplar_index,
    load_jsonl_pairs,
    load_messages,
    load_openi,
    load_text_reports,
    patient_split,
    write_jsonl_pairs,
)
from .train import TrainResult, train

__all__ = ["DataFormat", "Splits", "default_run_name", "load_splits", "run_training"]

log = logging.getLogger(__name__)

DataFormat = Literal["openi", "jsonl", "text", "messages"]


@dataclass(frozen=True, slots=True)
class Splits:
    train: list[Example]
    validate: list[Example]
    test: list[Example]


def load_splits(data: Path, fmt: DataFormat, *, max_examples: int | None = None) -> Splits:
    """Training/validation/test examples from one of the supported sources.

    ``openi``: ``data`` is the directory of the benchmark split.  ``jsonl`` (``{"idx",
    "inputs", "target", "patient_id"?}``), ``text`` (free-text reports) and ``messages``
    (a directory of HL7/FHIR files) are cleaned, de-duplicated and split by patient.
    """
    if fmt == "openi":
        train_ex = deduplicate(clean_examples(load_openi(data, "train")))
        splits = Splits(train_ex, load_openi(data, "validate"), load_openi(data, "test"))
    else:
        if fmt == "jsonl":
            examples = load_jsonl_pairs(data)
        elif fmt == "text":
            examples = load_text_reports(data)
        elif fmt == "messages":
            if not data.is_dir():
                raise ValueError(f"{data} is not a directory of HL7/FHIR messages")
            files = sorted(p for p in data.rglob("*") if p.is_file())
            examples = load_messages(files)
        else:
            raise ValueError(f"unknown data format {fmt!r}")
        parts = patient_split(deduplicate(clean_examples(examples)))
        splits = Splits(parts["train"], parts["validate"], parts["test"])
    if max_examples is not None:
        splits = Splits(splits.train[:max_examples], splits.validate, splits.test)
    if not splits.train:
        raise ValueError(f"no usable training examples in {data}")
    return splits


def run_training(
    config: TrainConfig,
    *,
    base_dir: Path,
    splits: Splits,
    run_dir: Path,
    out_dir: Path,
    adapter_name: str = "radiology",
    version: str | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    val_examples: int = 64,
    progress: bool = True,
) -> tuple[TrainResult, AdapterMetadata]:
    """Train on ``splits.train`` and install the adapter (with canary) into ``out_dir``."""
    prompter = Prompter.load(config.prompt_template)
    index = exemplar_index(splits.train) if config.retrieval_k > 0 else None
    train_records = build_records(splits.train, prompter, index=index, k=config.retrieval_k)
    val_records = build_records(
        splits.validate[:val_examples], prompter, index=index, k=config.retrieval_k
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("validate", splits.validate), ("test", splits.test)):
        if part:
            write_jsonl_pairs(run_dir / f"{name}.jsonl", part)
    result = train(
        config,
        base_dir=base_dir,
        train_records=train_records,
        val_records=val_records,
        run_dir=run_dir,
        resume=resume,
        max_steps=max_steps,
        progress=progress,
    )
    install_adapter(result.adapter_dir, out_dir, index=index)
    from inference.serving.model import LocalModel

    local = LocalModel(base_dir, out_dir, adapter_name=adapter_name)
    canary = compute_canary(
        local, prompter, index=index, k=config.retrieval_k, max_new_tokens=config.max_new_tokens
    )
    meta = AdapterMetadata(
        name=adapter_name,
        version=version or dt.date.today().isoformat(),
        base_model=config.base_model_id,
        prompt_template=config.prompt_template,
        max_new_tokens=config.max_new_tokens,
        retrieval={"k": config.retrieval_k, "exemplars": EXEMPLARS_FILE} if index else None,
        canary=canary,
        metrics={},
        scope=DEFAULT_SCOPE.to_json(),  # Open-i: chest radiographs
        training={
            "config": config.to_dict(),
            "data": {
                "train": len(splits.train),
                "validate": len(splits.validate),
                "test": len(splits.test),
            },
            "steps": result.steps,
            "train_loss": round(result.train_loss, 4),
            "val_loss": None if result.val_loss is None else round(result.val_loss, 4),
            "seconds": round(result.seconds),
            "hardware": f"{platform.machine()} x{os.cpu_count()} CPU"
            if config.device in ("auto", "cpu")
            else config.device,
        },
    )
    write_metadata(out_dir, meta)
    write_model_card(out_dir, meta)
    (run_dir / "result.json").write_text(
        json.dumps({"adapter": str(out_dir), "steps": result.steps}, indent=2) + "\n",
        encoding="utf-8",
    )
    return result, meta


def default_run_name(config: TrainConfig) -> str:
    return f"{config.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
