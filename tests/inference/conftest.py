"""Fixtures of the inference tests: tiny LoRA adapters with their own canary, the embedded
model, ``serve-model`` on a free port (uvicorn in a thread for the real model, a real
subprocess for the instant engine)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from inference_helpers import InstantServer, ThreadServer

from inference.drafting.prompter import Prompter
from inference.serving.engine import ModelEngine
from inference.serving.model import LocalModel

REPO = Path(__file__).resolve().parents[2]
CANARY_FINDINGS = (
    "Heart size is normal. The lungs are clear. There is no pleural effusion or pneumothorax."
)
CANARY_TOKENS = 8


def _make_lora(base_dir: Path, out: Path, seed: int) -> None:
    """A randomly initialised LoRA (A and B random, so it changes the output) in peft format."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    config = LoraConfig(
        r=4,
        lora_alpha=64,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(model, config).save_pretrained(str(out))


def _write_metadata(model: LocalModel, adapter_dir: Path, name: str) -> None:
    from inference.drafting.canary import chat_canary

    prompter = Prompter.load()
    prompt = prompter.build(CANARY_FINDINGS)
    outputs = []
    for use_adapter in (True, False):
        gen = model.generate(
            prompt,
            max_new_tokens=CANARY_TOKENS,
            stop=prompter.stop,
            use_adapter=use_adapter,
            adapter=name,
        )
        outputs.append(prompter.parse(gen.text, truncated=gen.finish_reason == "length"))
    assert outputs[0] != outputs[1], "the test adapter must change the greedy output"
    canary = {
        "findings": CANARY_FINDINGS,
        "examples": [],
        "prompt": prompt,
        "expected": outputs[0],
        "base_output": outputs[1],
        "max_new_tokens": CANARY_TOKENS,
    }
    from inference.drafting.adapters import Canary

    canary.update(
        chat_canary(
            model, prompter, Canary.from_json(canary), adapter=name, max_new_tokens=CANARY_TOKENS
        )
    )
    metadata = {
        "name": "radiology",
        "version": f"test-{name}",
        "base_model": model.model_id,
        "prompt_template": "radiology",
        "max_new_tokens": CANARY_TOKENS,
        "retrieval": None,
        "canary": canary,
        "metrics": {},
    }
    (adapter_dir / "radgpt-adapter.json").write_text(json.dumps(metadata, indent=2))


@pytest.fixture(scope="session")
def adapter_dirs(base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two different random adapters (``radiology`` and ``impostor``), each with metadata."""
    root = tmp_path_factory.mktemp("adapters")
    dirs = {"radiology": root / "radiology", "impostor": root / "impostor"}
    for seed, path in enumerate(dirs.values(), start=7):
        _make_lora(base_model_dir, path, seed)
    model = LocalModel(base_model_dir, adapters=dirs, threads=1)
    for name, path in dirs.items():
        _write_metadata(model, path, name)
    return dirs


@pytest.fixture(scope="session")
def adapter_dir(adapter_dirs: dict[str, Path]) -> Path:
    return adapter_dirs["radiology"]


@pytest.fixture(scope="session")
def local_model(base_model_dir: Path, adapter_dirs: dict[str, Path]) -> LocalModel:
    """The embedded model with both test adapters, one thread (the machine is shared)."""
    return LocalModel(base_model_dir, adapters=adapter_dirs, threads=1)


@dataclass(frozen=True)
class ModelServer:
    url: str
    engine: ModelEngine


@pytest.fixture(scope="session")
def model_server(local_model: LocalModel) -> Iterator[ModelServer]:
    """``serve-model`` with the real embedded model and the test adapters (uvicorn thread)."""
    from inference.serving.server import ServerLimits, create_app

    engine = ModelEngine(local_model, window_s=0.05)
    app = create_app(engine, ServerLimits(max_input_tokens=512, max_total_tokens=640))
    with ThreadServer(app) as server:
        yield ModelServer(server.url, engine)


@pytest.fixture
def instant_server(tmp_path: Path) -> Iterator[InstantServer]:
    server = InstantServer(tmp_path).start()
    try:
        yield server
    finally:
        server.kill()
