"""Packaging a trained LoRA adapter for the model servers (TGI, vLLM, the embedded backend).

An adapter directory holds:

* ``adapter_config.json`` + ``adapter_model.safetensors`` (peft; weights stored as float16
  to keep the directory small, ``base_model_name_or_path`` is the generic hub id);
* ``exemplars.json`` when the adapter was trained with retrieval-augmented prompts (the
  training split only: :class:`~inference.drafting.retrieval.ExemplarIndex`);
* ``radgpt-adapter.json``: name, version, base model, prompt template, generation length,
  retrieval settings, the **canary** (a fixed prompt whose greedy output identifies this
  adapter and differs from the base model's) and the evaluation metrics;
* ``README.md``: the model card (data, configuration, metrics, intended use, limits).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.drafting.prompter import Prompter
from inference.drafting.retrieval import ExemplarIndex

__all__ = [
    "CANARY_CANDIDATES",
    "METADATA_FILE",
    "AdapterMetadata",
    "compute_canary",
    "install_adapter",
    "read_metadata",
    "update_metrics",
    "write_metadata",
    "write_model_card",
]

METADATA_FILE = "radgpt-adapter.json"
EXEMPLARS_FILE = "exemplars.json"

# Synthetic findings (no patient data) tried in order; the first whose adapter output differs
# from the base model's output becomes the canary.
CANARY_CANDIDATES = (
    "Heart size is normal. The lungs are clear. There is no pleural effusion or "
    "pneumothorax. No acute osseous abnormality.",
    "There is a large right pleural effusion with adjacent atelectasis. The heart size "
    "cannot be assessed. No pneumothorax.",
    "Mild cardiomegaly. Interstitial opacities bilaterally, increased from prior, consistent "
    "with pulmonary edema. Small bilateral pleural effusions.",
)


@dataclass(frozen=True, slots=True)
class AdapterMetadata:
    """Contents of ``radgpt-adapter.json`` (see module docstring)."""

    name: str
    version: str
    base_model: str
    prompt_template: str
    max_new_tokens: int
    retrieval: dict[str, Any] | None
    canary: dict[str, Any]
    metrics: dict[str, Any]
    training: dict[str, Any]
    # What the adapter is validated on (inference.drafting.scope.Scope.to_json);
    # None: chest radiographs.
    scope: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "base_model": self.base_model,
            "prompt_template": self.prompt_template,
            "max_new_tokens": self.max_new_tokens,
            "retrieval": self.retrieval,
            "canary": self.canary,
            "metrics": self.metrics,
            "training": self.training,
        }
        if self.scope is not None:
            data["scope"] = self.scope
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AdapterMetadata:
        try:
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                base_model=str(data["base_model"]),
                prompt_template=str(data["prompt_template"]),
                max_new_tokens=int(data["max_new_tokens"]),
                retrieval=data.get("retrieval"),
                canary=dict(data.get("canary") or {}),
                metrics=dict(data.get("metrics") or {}),
                training=dict(data.get("training") or {}),
                scope=dict(data["scope"]) if data.get("scope") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed {METADATA_FILE}: {exc}") from exc


def read_metadata(adapter_dir: Path) -> AdapterMetadata:
    path = adapter_dir / METADATA_FILE
    if not path.is_file():
        raise ValueError(f"no {METADATA_FILE} in {adapter_dir}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc.msg}") from exc
    return AdapterMetadata.from_json(data)


def write_metadata(adapter_dir: Path, meta: AdapterMetadata) -> None:
    (adapter_dir / METADATA_FILE).write_text(
        json.dumps(meta.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def install_adapter(
    trained_dir: Path,
    out_dir: Path,
    *,
    index: ExemplarIndex | None,
    half: bool = True,
) -> None:
    """Copy a trained peft adapter into ``out_dir`` (float16 weights) with its exemplars."""
    from safetensors.torch import load_file, save_file

    if not (trained_dir / "adapter_config.json").is_file():
        raise ValueError(f"no peft adapter in {trained_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(trained_dir / "adapter_config.json", out_dir / "adapter_config.json")
    tensors = load_file(str(trained_dir / "adapter_model.safetensors"))
    if half:
        import torch

        tensors = {
            k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
            for k, v in tensors.items()
        }
    weights = out_dir / "adapter_model.safetensors"
    save_file(tensors, str(weights), metadata={"format": "pt"})
    weights.chmod(0o644)  # safetensors creates it owner-only; model servers may run as others
    exemplars = out_dir / EXEMPLARS_FILE
    if index is not None:
        index.save(exemplars)
    elif exemplars.exists():
        exemplars.unlink()


def compute_canary(
    model: Any,
    prompter: Prompter,
    *,
    index: ExemplarIndex | None,
    k: int,
    max_new_tokens: int,
    candidates: Sequence[str] = CANARY_CANDIDATES,
) -> dict[str, Any]:
    """Greedy outputs with and without the adapter for the first candidate where they differ.

    ``model`` is an :class:`inference.serving.model.LocalModel` loaded with the adapter.  Raises
    ``ValueError`` if the adapter answers like the base model for every candidate.
    """
    for findings in candidates:
        examples = index.top_k(findings, k) if index is not None and k > 0 else []
        prompt = prompter.build(findings, examples=examples)
        outputs = []
        for use_adapter in (True, False):
            gen = model.generate(
                prompt, max_new_tokens=max_new_tokens, stop=prompter.stop, use_adapter=use_adapter
            )
            outputs.append(prompter.parse(gen.text, truncated=gen.finish_reason == "length"))
        if outputs[0] != outputs[1]:
            return {
                "findings": findings,
                "examples": list(examples),
                "prompt": prompt,
                "expected": outputs[0],
                "base_output": outputs[1],
                "max_new_tokens": max_new_tokens,
            }
    raise ValueError("the adapter answers every canary like the base model: is it trained?")


def update_metrics(adapter_dir: Path, key: str, metrics: Mapping[str, Any]) -> AdapterMetadata:
    """Store evaluation metrics under ``metrics[key]`` and re-render the model card."""
    meta = read_metadata(adapter_dir)
    merged = {**meta.metrics, key: dict(metrics)}
    meta = AdapterMetadata(**{**_fields(meta), "metrics": merged})
    write_metadata(adapter_dir, meta)
    write_model_card(adapter_dir, meta)
    return meta


def _fields(meta: AdapterMetadata) -> dict[str, Any]:
    return {name: getattr(meta, name) for name in AdapterMetadata.__slots__}


def _metric_rows(metrics: Mapping[str, Any]) -> list[str]:
    rows = []
    for split, values in sorted(metrics.items()):
        if not isinstance(values, Mapping) or "rougeL" not in values:
            continue
        rows.append(
            f"| {split} | {values.get('n', '')} | {values.get('rouge1', 0):.2f} "
            f"| {values.get('rouge2', 0):.2f} | {values['rougeL']:.2f} |"
        )
    return rows


def write_model_card(adapter_dir: Path, meta: AdapterMetadata) -> None:
    """Render ``README.md`` (the model card) from the metadata."""
    cfg = meta.training.get("config", {})
    data = meta.training.get("data", {})
    retrieval = (
        f"yes: the impressions of the {meta.retrieval['k']} most similar training reports "
        f"(TF-IDF over findings, `{meta.retrieval['exemplars']}`) are part of the prompt"
        if meta.retrieval
        else "no"
    )
    grounding = ""
    if Prompter.load(meta.prompt_template).template.positives_block:
        grounding = (
            "\nFindings-grounded: the positive findings extracted from the report itself\n"
            "(`inference.drafting.findings.finding_hints`) are listed in the prompt, or `none`.\n"
        )
    rows = _metric_rows(meta.metrics)
    metrics_table = (
        "| split | reports | ROUGE-1 | ROUGE-2 | ROUGE-L |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
        if rows
        else "Not evaluated yet: run `radgpt eval --split test --adapter <this dir> --record`."
    )
    card = f"""---
base_model: {meta.base_model}
library_name: peft
license: apache-2.0
tags: [radiology, lora, summarization, findings-to-impression]
---

# radgpt adapter `{meta.name}` ({meta.version})

LoRA adapter for **{meta.base_model}** that drafts the IMPRESSION of a chest radiograph
report from its FINDINGS. It is loaded by the radgpt embedded backend, TGI (`--lora-adapters
{meta.name}=<dir>`) and vLLM (`--lora-modules {meta.name}=<dir>`). Prompts are built with
the `{meta.prompt_template}` template (`inference/templates/{meta.prompt_template}.json`);
retrieval augmentation: {retrieval}.
{grounding}
## Intended use

Drafts for radiologists, labelled as AI-generated and preliminary, which a radiologist
reviews, edits and signs. It is **not** a diagnostic device and must not be released to
patients or clinicians without that review.

## Training data

Open-i (Indiana University chest X-ray collection, de-identified by NLM) with the split of
Van Veen et al., Nature Medicine 2024: trained on `train` ({data.get("train", "?")} reports
after cleaning), validation loss on `validate`; `test` is used only for the metrics below.

## Training configuration

`{cfg.get("name", "?")}`: LoRA r={cfg.get("lora_r")}, alpha={cfg.get("lora_alpha")},
dropout={cfg.get("lora_dropout")}, targets {", ".join(cfg.get("target_modules", []))};
lr {cfg.get("learning_rate")} (warm-up {cfg.get("warmup_steps")} steps, cosine),
{cfg.get("epochs")} epoch(s), batch {cfg.get("batch_size")} x {cfg.get("grad_accum")}
accumulation, max length {cfg.get("max_length")} tokens, seed {cfg.get("seed")}, loss on the
impression tokens only. Steps: {meta.training.get("steps", "?")}, final train loss
{meta.training.get("train_loss", "?")}, validation loss {meta.training.get("val_loss", "?")},
{meta.training.get("seconds", "?")} s on {meta.training.get("hardware", "?")}.

## Evaluation

Greedy decoding, one report at a time; ROUGE F1 (`rouge-score`, no stemming) averaged over
reports, x100. See `docs/results.md` for baselines, subsets and clinical-consistency checks.

{metrics_table}

## Limitations

* Trained on one institution's chest radiograph reports (Open-i, English): style and
  vocabulary of other sites, modalities and body parts are out of distribution.
* ROUGE measures word overlap, not clinical correctness; most Open-i impressions are normal
  templates. The model can omit, invent or flip findings (negation, laterality). Every draft
  must be reviewed; radgpt's safety checks flag some of these errors, not all.
* A 135M-parameter model: fluent but shallow reasoning; abnormal cases score far lower than
  normal ones.

## Canary

`{METADATA_FILE}` holds a fixed prompt and this adapter's greedy answer to it
(`{meta.canary.get("expected", "")}`), which differs from the base model's
(`{meta.canary.get("base_output", "")}`). Servers use it to verify that they load this
adapter and not the base model.
"""
    (adapter_dir / "README.md").write_text(card, encoding="utf-8")
