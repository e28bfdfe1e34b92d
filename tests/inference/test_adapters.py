"""Unit tests of the adapter metadata reader and the canary comparison."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from inference.drafting.adapters import AdapterInfo, read_adapter_info, shipped_adapter_dir
from inference.drafting.canary import matches
from inference.errors import AdapterError


def metadata(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "radiology",
        "version": "2024-06-01",
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "prompt_template": "radiology",
        "max_new_tokens": 64,
        "retrieval": {"k": 3, "exemplars": "exemplars.json"},
        "canary": {
            "findings": "Lungs are clear.",
            "examples": ["Normal chest."],
            "prompt": "P",
            "expected": "No acute disease.",
            "base_output": "The lungs are clear.",
            "max_new_tokens": 48,
        },
        "metrics": {"test": {"rougeL": 0.3}},
        "training": {"epochs": 1},
    }
    data.update(overrides)
    return data


def test_reads_the_training_helpers_metadata(tmp_path: Path) -> None:
    (tmp_path / "radgpt-adapter.json").write_text(json.dumps(metadata()))
    info = read_adapter_info(tmp_path)
    assert (info.name, info.version, info.max_new_tokens) == ("radiology", "2024-06-01", 64)
    assert info.retrieval is not None
    assert info.retrieval.k == 3 and info.retrieval.exemplars == tmp_path / "exemplars.json"
    assert info.canary.examples == ("Normal chest.",) and info.canary.max_new_tokens == 48
    assert info.canary.expected_chat is None


def test_no_retrieval_is_none() -> None:
    assert AdapterInfo.from_json(metadata(retrieval=None)).retrieval is None


def test_missing_metadata_file_is_an_adapter_error(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match=r"no radgpt-adapter\.json"):
        read_adapter_info(tmp_path)


def test_malformed_json_is_an_adapter_error(tmp_path: Path) -> None:
    (tmp_path / "radgpt-adapter.json").write_text("{not json")
    with pytest.raises(AdapterError, match="cannot read"):
        read_adapter_info(tmp_path)


def test_missing_canary_is_an_adapter_error() -> None:
    with pytest.raises(AdapterError, match="canary"):
        AdapterInfo.from_json(metadata(canary=None))


def test_canary_without_expected_output_is_an_adapter_error() -> None:
    canary = {k: v for k, v in metadata()["canary"].items() if k != "expected"}
    with pytest.raises(AdapterError, match="expected"):
        AdapterInfo.from_json(metadata(canary=canary))


def test_shipped_adapter_dir_is_a_peft_directory_or_none() -> None:
    found = shipped_adapter_dir()
    assert found is None or (found / "adapter_config.json").is_file()


@pytest.mark.parametrize(
    ("output", "expected", "same"),
    [
        ("No acute disease.", "no acute  disease", True),
        ("No acute\ndisease.", "No acute disease.", True),
        ("No acute disease.", "No acute disease. Stable.", False),
        ("", "No acute disease.", False),
    ],
)
def test_canary_comparison_is_normalised(output: str, expected: str, same: bool) -> None:
    assert matches(output, expected) is same
