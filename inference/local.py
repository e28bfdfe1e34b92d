"""In-process generation on CPU: the embedded base model plus a peft LoRA adapter.

Used by ``radgpt draft --backend local``, the evaluation and ``radgpt serve-model``.  Greedy
decoding of one prompt at a time (:meth:`LocalModel.generate`) is deterministic and is what
the evaluation uses, so stored predictions can be reproduced exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ModelNotAvailable
from .model_store import offline_environment

__all__ = ["FinishReason", "Generation", "LocalModel"]

log = logging.getLogger(__name__)

FinishReason = Literal["eos_token", "length", "stop_sequence"]


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    prompt_tokens: int
    generated_tokens: int
    finish_reason: FinishReason
    seconds: float


class LocalModel:
    """Base model (+ optional LoRA adapter) loaded once; generation is greedy."""

    def __init__(
        self,
        base_dir: Path,
        adapter_dir: Path | None = None,
        *,
        adapter_name: str = "radiology",
        threads: int | None = None,
    ) -> None:
        if not (base_dir / "config.json").is_file():
            raise ModelNotAvailable(
                f"no prepared base model at {base_dir}: run `radgpt model prepare`"
            )
        if adapter_dir is not None and not (adapter_dir / "adapter_config.json").is_file():
            raise ModelNotAvailable(f"no peft adapter (adapter_config.json) in {adapter_dir}")
        with offline_environment():
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if threads:
                torch.set_num_threads(threads)
            self._torch = torch
            self.tokenizer: Any = AutoTokenizer.from_pretrained(str(base_dir))
            model: Any = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
            self.adapter_name: str | None = None
            if adapter_dir is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(
                    model, str(adapter_dir), adapter_name=adapter_name
                )
                self.adapter_name = adapter_name
            model.eval()
            self.model: Any = model
        self.base_dir = base_dir
        self.adapter_dir = adapter_dir
        self.eos_token_id: int = int(self.tokenizer.eos_token_id)

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 96,
        stop: Sequence[str] = (),
        use_adapter: bool = True,
    ) -> Generation:
        """Greedy continuation of ``prompt`` (deterministic for a given model and prompt)."""
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        torch = self._torch
        start = time.perf_counter()
        ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
        prompt_len = int(ids.shape[1])
        generated: list[int] = []
        finish: FinishReason = "length"
        text = ""
        with torch.inference_mode(), self._adapter(use_adapter):
            past = None
            next_input = ids
            for _ in range(max_new_tokens):
                out = self.model(input_ids=next_input, past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = int(out.logits[0, -1].argmax())
                if token == self.eos_token_id:
                    finish = "eos_token"
                    break
                generated.append(token)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                if stop and any(s in text for s in stop):
                    finish = "stop_sequence"
                    break
                next_input = torch.tensor([[token]])
        return Generation(
            text=text,
            prompt_tokens=prompt_len,
            generated_tokens=len(generated),
            finish_reason=finish,
            seconds=time.perf_counter() - start,
        )

    def _adapter(self, use_adapter: bool) -> Any:
        from contextlib import nullcontext

        if self.adapter_name is not None and not use_adapter:
            return self.model.disable_adapter()
        return nullcontext()
