"""LoRA fine-tuning of a causal language model on findings -> impression records.

A small, explicit training loop (peft + torch) rather than ``transformers.Trainer`` so that
it stays cheap on a 2-core CPU:

* the loss covers only the target (impression + EOS); prompt tokens are masked, and the
  LM head is applied only at target positions (the 49k-word vocabulary projection is a large
  share of the compute of a 135M model);
* batches are built from examples of similar length (little padding), shuffled per epoch
  with a fixed seed; gradient accumulation gives the effective batch size;
* a checkpoint (adapter, optimiser, step, RNG state) is written every ``save_every``
  optimiser steps and ``train`` resumes from the latest one, so a killed run loses little;
* progress is shown with tqdm; losses go to ``log.jsonl`` and a PNG loss curve.

Entry point: :func:`train` (``radgpt train``); the result is a peft adapter directory.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .data import Record

__all__ = [
    "TokenizedRecord",
    "TrainResult",
    "length_batches",
    "lr_factor",
    "plot_loss_curve",
    "tokenize_records",
    "train",
]

log = logging.getLogger(__name__)

IGNORE = -100


@dataclass(frozen=True, slots=True)
class TokenizedRecord:
    """Token ids of prompt + target and the number of prompt tokens (masked in the loss)."""

    id: str
    input_ids: tuple[int, ...]
    prompt_len: int


@dataclass(frozen=True, slots=True)
class TrainResult:
    run_dir: Path
    adapter_dir: Path
    steps: int
    train_loss: float
    val_loss: float | None
    seconds: float
    examples: int
    skipped: int


def tokenize_records(
    records: Sequence[Record], tokenizer: Any, max_length: int
) -> tuple[list[TokenizedRecord], int]:
    """Tokenise prompt and target separately, exactly as inference sees the prompt.

    The target is followed by the EOS token.  A record longer than ``max_length`` keeps its
    whole prompt and a truncated target; a record whose prompt leaves fewer than 8 target
    tokens is skipped.  Returns the records and the number skipped.
    """
    eos = int(tokenizer.eos_token_id)
    out: list[TokenizedRecord] = []
    skipped = 0
    for rec in records:
        prompt_ids = list(tokenizer(rec.prompt)["input_ids"])
        target_ids = [*tokenizer(rec.completion, add_special_tokens=False)["input_ids"], eos]
        room = max_length - len(prompt_ids)
        if room < min(8, len(target_ids)):
            skipped += 1
            continue
        ids = prompt_ids + target_ids[:room]
        out.append(TokenizedRecord(rec.id, tuple(int(i) for i in ids), len(prompt_ids)))
    return out, skipped


def length_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, in a seeded random order.

    Sorting by length with a random tie-break and then shuffling whole batches keeps padding
    small while every epoch (seed) sees a different order.
    """
    rng = random.Random(seed)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def plot_loss_curve(log_path: Path, png_path: Path, title: str = "") -> None:
    """Plot train (and validation) loss per optimiser step from ``log.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_pts: list[tuple[int, float]] = []
    val_pts: list[tuple[int, float]] = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "loss" in row:
            train_pts.append((row["step"], row["loss"]))
        if "val_loss" in row:
            val_pts.append((row["step"], row["val_loss"]))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train_pts:
        ax.plot(*zip(*train_pts, strict=True), label="train loss", linewidth=1)
    if val_pts:
        ax.plot(*zip(*val_pts, strict=True), "o-", label="validation loss")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("cross-entropy (target tokens)")
    ax.set_title(title or "LoRA fine-tuning")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


class _Batcher:
    def __init__(self, torch: Any, pad_id: int, device: Any) -> None:
        self.torch = torch
        self.pad_id = pad_id
        self.device = device

    def __call__(self, items: Sequence[TokenizedRecord]) -> tuple[Any, Any, Any]:
        torch = self.torch
        width = max(len(it.input_ids) for it in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it.input_ids)
            ids[row, :n] = torch.tensor(it.input_ids)
            mask[row, :n] = 1
            labels[row, it.prompt_len : n] = ids[row, it.prompt_len : n]
        return ids.to(self.device), mask.to(self.device), labels.to(self.device)


def _target_loss(model: Any, torch: Any, ids: Any, mask: Any, labels: Any) -> tuple[Any, int]:
    """Mean cross-entropy over target tokens; the LM head runs only where it is needed."""
    causal = model.get_base_model()
    hidden = causal.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    shifted = labels[:, 1:]
    select = shifted != IGNORE
    states = hidden[:, :-1][select]
    logits = causal.get_output_embeddings()(states).float()
    targets = shifted[select]
    loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    return loss, int(targets.numel())


def _evaluate_loss(
    model: Any, torch: Any, batcher: _Batcher, items: Sequence[TokenizedRecord], bs: int
) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for batch in length_batches([len(i.input_ids) for i in items], bs, 0):
            ids, mask, labels = batcher([items[i] for i in batch])
            loss, n = _target_loss(model, torch, ids, mask, labels)
            total += float(loss)
            count += n
    model.train()
    return total / max(count, 1)


def _latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(
        (p for p in run_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()),
        key=lambda p: int(p.name.rsplit("-", 1)[1]),
    )
    return found[-1] if found else None


def _save_adapter(model: Any, out: Path, base_model_id: str) -> None:
    """Save the peft adapter with a generic base-model id (not a local path)."""
    model.save_pretrained(str(out), safe_serialization=True)
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["base_model_name_or_path"] = base_model_id
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def train(
    config: TrainConfig,
    *,
    base_dir: Path,
    train_records: Sequence[Record],
    run_dir: Path,
    val_records: Sequence[Record] = (),
    resume: bool = True,
    max_steps: int | None = None,
    progress: bool = True,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Fine-tune a LoRA adapter on ``train_records``; return where the adapter is.

    ``run_dir`` receives ``config.json``, ``log.jsonl``, ``loss.png``, checkpoints and the
    final adapter (``run_dir/adapter``).  With ``resume`` the latest checkpoint in
    ``run_dir`` is continued.  ``max_steps`` caps the number of optimiser steps (tests).
    """
    if not train_records:
        raise ValueError("no training records")
    if not (base_dir / "config.json").is_file():
        raise ValueError(f"no Hugging Face model directory at {base_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if config.threads:
        torch.set_num_threads(config.threads)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    dtype = getattr(torch, config.dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(
            str(base_dir), dtype=dtype, local_files_only=True
        )
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        bias="none",
    )
    device = torch.device(
        config.device
        if config.device != "auto"
        else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    model: Any = get_peft_model(base, lora).to(device)
    pad_id = tokenizer.pad_token_id
    batcher = _Batcher(
        torch, int(pad_id if pad_id is not None else tokenizer.eos_token_id), device
    )

    items, skipped = tokenize_records(train_records, tokenizer, config.max_length)
    val_items, _ = tokenize_records(val_records, tokenizer, config.max_length)
    if not items:
        raise ValueError("every training record is longer than max_length")
    lengths = [len(it.input_ids) for it in items]
    per_epoch = math.ceil(len(items) / config.batch_size)
    total_micro = max(1, int(per_epoch * config.epochs))
    total_steps = math.ceil(total_micro / config.grad_accum)
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
        total_micro = min(total_micro, total_steps * config.grad_accum)

    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    step = 0
    log_path = run_dir / "log.jsonl"
    checkpoint = _latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        set_peft_model_state_dict(
            model, load_file(str(checkpoint / "adapter_model.safetensors"))
        )
        optim.load_state_dict(
            torch.load(checkpoint / "optimizer.pt", weights_only=True, map_location=device)
        )
        step = int(state["step"])
        torch.set_rng_state(torch.load(checkpoint / "rng.pt", weights_only=True))
        log.info("resumed from %s at step %d", checkpoint.name, step)
    elif not resume and log_path.exists():
        log_path.unlink()
    (run_dir / "config.json").write_text(
        json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8"
    )

    def write_log(row: dict[str, Any]) -> None:
        with log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if on_log is not None:
            on_log(row)

    def save_checkpoint() -> None:
        ckpt = run_dir / f"checkpoint-{step}"
        tmp = run_dir / f".tmp-checkpoint-{step}"
        shutil.rmtree(tmp, ignore_errors=True)
        _save_adapter(model, tmp, config.base_model_id)
        torch.save(optim.state_dict(), tmp / "optimizer.pt")
        torch.save(torch.get_rng_state(), tmp / "rng.pt")
        (tmp / "trainer_state.json").write_text(
            json.dumps({"step": step, "total_steps": total_steps}), encoding="utf-8"
        )
        shutil.rmtree(ckpt, ignore_errors=True)
        tmp.rename(ckpt)
        olds = sorted(
            (p for p in run_dir.glob("checkpoint-*") if p != ckpt),
            key=lambda p: int(p.name.rsplit("-", 1)[1]),
        )
        for old in olds[: max(0, len(olds) - config.keep_checkpoints + 1)]:
            shutil.rmtree(old, ignore_errors=True)

    # The micro-batch schedule is a pure function of the seed: resuming skips what the
    # completed optimiser steps consumed.
    schedule: list[list[int]] = []
    epoch = 0
    while len(schedule) < total_micro:
        schedule.extend(length_batches(lengths, config.batch_size, config.seed + epoch))
        epoch += 1
    schedule = schedule[:total_micro]
    model.train()
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=not progress)
    running: list[float] = []
    last_loss = float("nan")
    val_loss: float | None = None
    micro = step * config.grad_accum
    while step < total_steps and micro < total_micro:
        group = schedule[micro : micro + config.grad_accum]
        micro += len(group)
        batches = [batcher([items[i] for i in b]) for b in group]
        n_targets = sum(int((lab[:, 1:] != IGNORE).sum()) for _, _, lab in batches)
        total_loss = 0.0
        for ids, mask, labels in batches:
            loss, _ = _target_loss(model, torch, ids, mask, labels)
            (loss / n_targets).backward()
            total_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        factor = lr_factor(step, total_steps, config.warmup_steps, config.min_lr_ratio)
        for param_group in optim.param_groups:
            param_group["lr"] = config.learning_rate * factor
        optim.step()
        optim.zero_grad(set_to_none=True)
        step += 1
        last_loss = total_loss / n_targets
        running.append(last_loss)
        bar.update(1)
        bar.set_postfix(loss=f"{sum(running[-20:]) / len(running[-20:]):.3f}")
        row: dict[str, Any] = {
            "step": step,
            "loss": round(last_loss, 5),
            "lr": optim.param_groups[0]["lr"],
            "tokens": n_targets,
            "elapsed_s": round(time.perf_counter() - started, 1),
        }
        if step % config.save_every == 0 or step == total_steps:
            if val_items:
                val_loss = _evaluate_loss(model, torch, batcher, val_items, config.batch_size)
                row["val_loss"] = round(val_loss, 5)
            write_log(row)
            save_checkpoint()
        elif step % config.log_every == 0:
            write_log(row)
    bar.close()
    adapter_dir = run_dir / "adapter"
    shutil.rmtree(adapter_dir, ignore_errors=True)
    _save_adapter(model, adapter_dir, config.base_model_id)
    if log_path.is_file():
        plot_loss_curve(log_path, run_dir / "loss.png", title=config.name)
    # Mean over the last steps (the last one alone is noisy).
    tail = running[-20:] if running else [last_loss]
    return TrainResult(
        run_dir=run_dir,
        adapter_dir=adapter_dir,
        steps=step,
        train_loss=sum(tail) / len(tail),
        val_loss=val_loss,
        seconds=time.perf_counter() - started,
        examples=len(items),
        skipped=skipped,
    )
