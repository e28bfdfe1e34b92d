"""Training configuration: presets, JSON files, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.config import PRESETS, TrainConfig, load_config


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load(name: str) -> None:
    config = load_config(name)
    assert config.name == name
    assert config.prompt_template == "radiology"
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_cpu_preset_is_the_embedded_model_and_gpu_preset_is_bf16() -> None:
    cpu, gpu = load_config("cpu-smollm2-135m"), load_config("gpu-7b")
    assert cpu.base_model == "embedded"
    assert cpu.base_model_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert cpu.dtype == "float32"
    assert gpu.dtype == "bfloat16"
    assert gpu.base_model == ""  # the hospital passes --base-model


def test_json_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "lora_r": 4, "target_modules": ["q_proj"]}))
    config = load_config(path)
    assert (config.lora_r, config.target_modules) == (4, ("q_proj",))
    changed = config.replace(lora_r=2, epochs=None)
    assert changed.lora_r == 2
    assert changed.epochs == config.epochs


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"lora_rank": 4}', "unknown training config key"),
        ('{"lora_r": 0}', "lora_r"),
        ('{"learning_rate": -1}', "learning_rate"),
        ('{"target_modules": "q_proj"}', "target_modules"),
        ("[1, 2]", "JSON object"),
        ("{", "not valid JSON"),
    ],
)
def test_bad_config_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="unknown training config"):
        load_config("tpu-70b")
