"""Training configuration: one dataclass, named presets and JSON config files.

Presets live in ``training/configs/<name>.json``; ``radgpt train --config NAME|FILE.json``
loads one and command-line options override single fields.  Unknown keys are an error, so a
typo in a config file cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

__all__ = ["PRESETS", "TrainConfig", "load_config"]

PRESETS = ("cpu-smollm2-135m", "gpu-7b")

Dtype = Literal["float32", "bfloat16", "float16"]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Everything that determines a LoRA fine-tuning run (and so its adapter)."""

    name: str = "cpu-smollm2-135m"
    # Model: ``base_model`` is a local HF directory or "embedded" (the prepared SmolLM2-135M);
    # ``base_model_id`` is the generic hub id written into the adapter for model servers.
    base_model: str = "embedded"
    base_model_id: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    dtype: Dtype = "float32"
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1"...
    prompt_template: str = "radiology"
    # LoRA
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    # Optimisation
    learning_rate: float = 6e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 2
    max_length: int = 320
    max_grad_norm: float = 1.0
    seed: int = 42
    # Retrieval augmentation: k impressions of similar training reports in the prompt (0 = off)
    retrieval_k: int = 3
    # Book-keeping
    save_every: int = 25
    keep_checkpoints: int = 2
    log_every: int = 5
    threads: int = 0
    max_new_tokens: int = 96
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = {
            "lora_r": self.lora_r >= 1,
            "lora_alpha": self.lora_alpha >= 1,
            "lora_dropout": 0.0 <= self.lora_dropout < 1.0,
            "learning_rate": self.learning_rate > 0,
            "epochs": self.epochs > 0,
            "batch_size": self.batch_size >= 1,
            "grad_accum": self.grad_accum >= 1,
            "max_length": self.max_length >= 32,
            "retrieval_k": self.retrieval_k >= 0,
            "save_every": self.save_every >= 1,
            "min_lr_ratio": 0.0 <= self.min_lr_ratio <= 1.0,
            "max_new_tokens": self.max_new_tokens >= 1,
            "target_modules": len(self.target_modules) > 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training config value(s): {', '.join(bad)}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config key(s): {', '.join(unknown)}")
        values = dict(data)
        if "target_modules" in values:
            modules = values["target_modules"]
            if not isinstance(modules, list | tuple) or not all(
                isinstance(m, str) for m in modules
            ):
                raise ValueError("target_modules must be a list of module names")
            values["target_modules"] = tuple(modules)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ValueError(f"bad training config: {exc}") from exc


def load_config(name_or_path: str | Path) -> TrainConfig:
    """A preset by name (``cpu-smollm2-135m``, ``gpu-7b``) or a JSON config file by path."""
    path = Path(name_or_path)
    if path.suffix == ".json":
        text = path.read_text(encoding="utf-8")
    else:
        res = resources.files("training").joinpath("configs", f"{name_or_path}.json")
        if not res.is_file():
            raise ValueError(
                f"unknown training config {str(name_or_path)!r} (presets: {', '.join(PRESETS)})"
            )
        text = res.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"training config {name_or_path} is not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"training config {name_or_path} must be a JSON object")
    data.pop("description", None)
    return TrainConfig.from_dict(data)
