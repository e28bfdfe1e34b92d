"""LoRA training: unit tests of the pieces and a tiny end-to-end run on the real base model.

The end-to-end run trains a few steps on a handful of Open-i reports, installs the adapter
(float16 weights, exemplars, canary, model card), loads it in the embedded backend
(:class:`inference.serving.model.LocalModel`), resumes from its checkpoint and evaluates it through
the real ``radgpt`` command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inference.drafting.prompter import Prompter
from training.config import load_config
from training.data import Record
from training.pipeline import Splits, load_splits, run_training
from training.train import IGNORE, length_batches, lr_factor, tokenize_records

REPO = Path(__file__).resolve().parents[2]

# Real training and generation on a shared 2-core CPU: allow well over the default limit.
SLOW = pytest.mark.timeout(2400)


def test_lr_schedule_warms_up_then_decays_to_the_floor() -> None:
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.1) == pytest.approx(0.55)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(0, 10, 0, 0.0) == pytest.approx(1.0)


def test_length_batches_group_similar_lengths_deterministically() -> None:
    lengths = [5, 100, 6, 101, 7, 102, 8, 103]
    batches = length_batches(lengths, 4, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert sorted(sorted(lengths[i] for i in b) for b in batches) == [
        [5, 6, 7, 8],
        [100, 101, 102, 103],
    ]
    assert batches == length_batches(lengths, 4, seed=1)
    orders = {tuple(map(tuple, length_batches(list(range(40)), 4, seed=s))) for s in range(5)}
    assert len(orders) > 1


class _CharTokenizer:
    """One token per character; EOS = 0 (enough to check masking and truncation)."""

    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}


def test_tokenize_records_masks_the_prompt_and_appends_eos() -> None:
    records = [
        Record("1", "abc", "xy"),
        Record("2", "p" * 20, "z" * 40),  # target truncated to the room left
        Record("3", "p" * 60, "z"),  # prompt leaves no room: skipped
    ]
    items, skipped = tokenize_records(records, _CharTokenizer(), max_length=40)
    assert skipped == 1
    assert items[0].input_ids == (97, 98, 99, 120, 121, 0)
    assert items[0].prompt_len == 3
    assert len(items[1].input_ids) == 40
    assert items[1].prompt_len == 20
    assert IGNORE == -100


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, base_model_dir: Path, shared_dir: Path):  # type: ignore[no-untyped-def]
    """A 3-step training run on 12 Open-i reports with retrieval (k=2)."""
    splits = load_splits(shared_dir / "data/openi", "openi")
    tiny = Splits(splits.train[:12], splits.validate[:4], splits.test[:4])
    config = load_config("cpu-smollm2-135m").replace(
        learning_rate=5e-3,
        epochs=2.0,
        batch_size=2,
        grad_accum=2,
        warmup_steps=0,
        save_every=2,
        retrieval_k=2,
        max_length=256,
        max_new_tokens=24,
    )
    root = tmp_path_factory.mktemp("tiny")
    run_dir, out_dir = root / "run", root / "adapter"
    result, meta = run_training(
        config,
        base_dir=base_model_dir,
        splits=tiny,
        run_dir=run_dir,
        out_dir=out_dir,
        version="0.0.1-test",
        max_steps=2,
        val_examples=2,
        progress=False,
    )
    return config, tiny, result, meta, run_dir, out_dir


@SLOW
def test_tiny_training_writes_a_servable_adapter(tiny_run) -> None:  # type: ignore[no-untyped-def]
    _config, _tiny, result, meta, run_dir, out_dir = tiny_run
    assert result.steps == 2
    assert result.examples == 12
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "README.md",
        "radgpt-adapter.json",
        "exemplars.json",
    ):
        assert (out_dir / name).is_file(), name
    adapter_config = json.loads((out_dir / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert adapter_config["r"] == 8
    from safetensors.torch import load_file

    tensors = load_file(str(out_dir / "adapter_model.safetensors"))
    assert tensors and all(str(t.dtype) == "torch.float16" for t in tensors.values())
    assert any(float(t.abs().sum()) > 0 for k, t in tensors.items() if "lora_B" in k)
    data = json.loads((out_dir / "radgpt-adapter.json").read_text())
    assert data["name"] == "radiology" and data["version"] == "0.0.1-test"
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data["retrieval"] == {"k": 2, "exemplars": "exemplars.json"}
    assert data["max_new_tokens"] == 24
    canary = data["canary"]
    assert canary["expected"] != canary["base_output"]
    assert canary["prompt"] == Prompter.load("radiology").build(
        canary["findings"], examples=canary["examples"]
    )
    assert meta.training["steps"] == 2
    card = (out_dir / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "Intended use" in card and "Limitations" in card
    log_rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_rows] == [2]
    assert "val_loss" in log_rows[0]
    assert (run_dir / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (run_dir / "checkpoint-2" / "optimizer.pt").is_file()


@SLOW
def test_embedded_backend_loads_the_adapter_and_reproduces_the_canary(  # type: ignore[no-untyped-def]
    tiny_run, base_model_dir: Path
) -> None:
    from inference.serving.model import LocalModel

    *_, out_dir = tiny_run
    canary = json.loads((out_dir / "radgpt-adapter.json").read_text())["canary"]
    model = LocalModel(base_model_dir, out_dir)
    prompter = Prompter.load("radiology")
    for use_adapter, key in ((True, "expected"), (False, "base_output")):
        gen = model.generate(
            canary["prompt"],
            max_new_tokens=canary["max_new_tokens"],
            stop=prompter.stop,
            use_adapter=use_adapter,
        )
        assert prompter.parse(gen.text, truncated=gen.finish_reason == "length") == canary[key]


@SLOW
def test_training_resumes_from_the_latest_checkpoint(  # type: ignore[no-untyped-def]
    tiny_run, base_model_dir: Path, tmp_path: Path
) -> None:
    config, tiny, _result, _meta, run_dir, _out = tiny_run
    result, _ = run_training(
        config,
        base_dir=base_model_dir,
        splits=tiny,
        run_dir=run_dir,
        out_dir=tmp_path / "adapter",
        max_steps=3,
        val_examples=2,
        progress=False,
    )
    assert result.steps == 3
    steps = [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 3]  # steps 1-2 were not trained again
    assert (run_dir / "checkpoint-3").is_dir()


def _radgpt(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "integration", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@SLOW
def test_radgpt_eval_command_on_the_tiny_adapter(  # type: ignore[no-untyped-def]
    tiny_run, tmp_path: Path, model_cache_dir: Path, shared_dir: Path
) -> None:
    *_, out_dir = tiny_run
    preds = tmp_path / "preds.jsonl"
    metrics = tmp_path / "metrics.json"
    done = _radgpt(
        "eval",
        "--split",
        "validate",
        "--limit",
        "3",
        "--adapter",
        str(out_dir),
        "--out",
        str(preds),
        "--metrics-out",
        str(metrics),
        "--no-progress",
        "--data",
        str(shared_dir / "data/openi"),
        "--cache-dir",
        str(model_cache_dir),
    )
    assert done.returncode == 0, done.stderr
    assert "tfidf-1nn" in done.stdout and "model" in done.stdout
    lines = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(lines) == 3
    # the default drafting is verify-and-choose: each line says how its draft was made
    # (and, when the greedy draft was replaced, what the greedy draft was)
    for line in lines:
        assert set(line) == {
            "idx", "inputs", "target", "output", "method", "flags", "exemplars", "candidates"
        } | ({"greedy"} if line["method"] != "model" else set())  # fmt: skip
        if line["method"] != "model":
            assert line["greedy"] and line["greedy"] != line["output"]
    assert all(line["method"] in {"model", "extractive-fallback"} for line in lines)
    assert all(line["candidates"] == 1 for line in lines)  # --samples 0, the default
    report = json.loads(metrics.read_text())
    assert report["model"]["n"] == 3
    assert report["constant: No acute cardiopulmonary disease."]["n"] == 3
    verified = _radgpt(
        "eval",
        "--verify",
        str(preds),
        "--adapter",
        str(out_dir),
        "--cache-dir",
        str(model_cache_dir),
    )
    assert verified.returncode == 0, verified.stderr
    assert "3 identical" in verified.stdout
    # a tampered prediction is detected
    lines[0]["output"] = "tampered"
    preds.write_text("".join(json.dumps(line) + "\n" for line in lines))
    tampered = _radgpt(
        "eval",
        "--verify",
        str(preds),
        "--adapter",
        str(out_dir),
        "--cache-dir",
        str(model_cache_dir),
    )
    assert tampered.returncode == 1
    assert "2 identical" in tampered.stdout


@SLOW
def test_radgpt_train_and_eval_report_bad_input_in_one_line(tmp_path: Path) -> None:
    bad_config = _radgpt("train", "--config", "tpu-70b")
    assert bad_config.returncode == 2
    assert bad_config.stderr.startswith("error: unknown training config")
    assert len(bad_config.stderr.strip().splitlines()) == 1
    missing = _radgpt("eval", "--adapter", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: no adapter directory {tmp_path / 'nope'}"
    gpu = _radgpt("train", "--config", "gpu-7b")
    assert gpu.returncode == 2
    assert "--base-model" in gpu.stderr
