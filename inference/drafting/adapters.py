"""Where adapters live and what their ``radgpt-adapter.json`` says (read side).

The training package writes the metadata (``training.adapter``); inference only reads the
fields it needs: the prompt template, the generation length, the retrieval settings and the
canary used to verify that a server really answers with this adapter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

from inference.errors import AdapterError

__all__ = [
    "METADATA_FILE",
    "SHIPPED_ADAPTER",
    "AdapterInfo",
    "Canary",
    "RetrievalSpec",
    "read_adapter_info",
    "shipped_adapter_dir",
]

METADATA_FILE = "radgpt-adapter.json"
SHIPPED_ADAPTER = "radiology"


@dataclass(frozen=True, slots=True)
class Canary:
    """A fixed prompt and the greedy outputs (parsed) with and without the adapter.

    ``expected_chat``/``base_output_chat`` are the same for servers that wrap the prompt in
    the model's chat template (the ``openai`` backend); ``radgpt model canary`` adds them.
    """

    findings: str
    examples: tuple[str, ...]
    prompt: str
    expected: str
    base_output: str
    max_new_tokens: int | None = None
    expected_chat: str | None = None
    base_output_chat: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Canary:
        try:
            examples = data.get("examples") or []
            if not isinstance(examples, list):
                raise TypeError("examples must be a list")
            mnt = data.get("max_new_tokens")
            return cls(
                findings=str(data["findings"]),
                examples=tuple(str(e) for e in examples),
                prompt=str(data["prompt"]),
                expected=str(data["expected"]),
                base_output=str(data["base_output"]),
                max_new_tokens=int(mnt) if mnt is not None else None,
                expected_chat=_opt_str(data.get("expected_chat")),
                base_output_chat=_opt_str(data.get("base_output_chat")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AdapterError(f"malformed canary in {METADATA_FILE}: {exc}") from exc


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class RetrievalSpec:
    k: int
    exemplars: Path


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """The inference-relevant part of an adapter's metadata."""

    name: str
    version: str
    base_model: str
    prompt_template: str
    max_new_tokens: int
    canary: Canary
    retrieval: RetrievalSpec | None = None
    directory: Path | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, directory: Path | None = None) -> AdapterInfo:
        try:
            retrieval = None
            spec = data.get("retrieval")
            if spec:
                exemplars = Path(str(spec["exemplars"]))
                if directory is not None and not exemplars.is_absolute():
                    exemplars = directory / exemplars
                retrieval = RetrievalSpec(k=int(spec["k"]), exemplars=exemplars)
            canary = data.get("canary")
            if not isinstance(canary, Mapping):
                raise KeyError("canary")
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                base_model=str(data["base_model"]),
                prompt_template=str(data.get("prompt_template") or "radiology"),
                max_new_tokens=int(data["max_new_tokens"]),
                canary=Canary.from_json(canary),
                retrieval=retrieval,
                directory=directory,
                raw=dict(data),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AdapterError(f"malformed {METADATA_FILE}: missing or bad {exc}") from exc


def read_adapter_info(adapter_dir: Path) -> AdapterInfo:
    """Read ``radgpt-adapter.json`` from ``adapter_dir`` (:class:`AdapterError` if unusable)."""
    path = adapter_dir / METADATA_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AdapterError(f"no {METADATA_FILE} in {adapter_dir}") from exc
    except (OSError, ValueError) as exc:
        raise AdapterError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise AdapterError(f"{path} is not a JSON object")
    return AdapterInfo.from_json(data, directory=adapter_dir)


def shipped_adapter_dir() -> Path | None:
    """``training/adapters/radiology`` of the installed project, or ``None`` if absent."""
    spec = importlib_util.find_spec("training")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / "adapters" / SHIPPED_ADAPTER
        if (candidate / "adapter_config.json").is_file():
            return candidate
    return None
