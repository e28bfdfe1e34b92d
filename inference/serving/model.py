"""In-process generation on CPU: the embedded base model plus peft LoRA adapters.

Used by ``radgpt draft --backend local``, the evaluation and ``radgpt serve-model``.
:meth:`LocalModel.generate_batch` decodes several prompts together (left padding, a shared
KV cache, per-row stopping, finished rows dropped from the batch); :meth:`LocalModel.generate`
is the one-prompt case of the same code path.  Greedy decoding is deterministic, so stored
predictions can be reproduced.  The model is used by one thread at a time (a lock guards
it); :class:`inference.backends.local.LocalBackend` runs it in a worker thread behind the
dynamic batcher so that the event loop is never blocked.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inference.errors import AdapterError, ModelNotAvailable
from inference.model_store import BASE_MODEL_ID
from inference.types import FinishReason, Generation, GenerationRequest, TokenInfo

__all__ = ["LocalModel"]

log = logging.getLogger(__name__)


class LocalModel:
    """Base model (+ optional LoRA adapters by name) loaded once; greedy by default."""

    def __init__(
        self,
        base_dir: Path,
        adapter_dir: Path | None = None,
        *,
        adapter_name: str = "radiology",
        adapters: Mapping[str, Path] | None = None,
        threads: int | None = None,
    ) -> None:
        if not (base_dir / "config.json").is_file():
            raise ModelNotAvailable(
                f"no prepared base model at {base_dir}: run `radgpt model prepare`"
            )
        all_adapters: dict[str, Path] = {}
        if adapter_dir is not None:
            all_adapters[adapter_name] = adapter_dir
        all_adapters.update(adapters or {})
        for name, path in all_adapters.items():
            if not name or name.strip() != name:
                raise ValueError(f"invalid adapter name {name!r}")
            if not (path / "adapter_config.json").is_file():
                raise ModelNotAvailable(
                    f"adapter {name!r}: no peft adapter (adapter_config.json) in {path}"
                )
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(base_dir), dtype=torch.float32, local_files_only=True
        )
        if all_adapters:
            from peft import PeftModel

            items = iter(all_adapters.items())
            first_name, first_path = next(items)
            model = PeftModel.from_pretrained(model, str(first_path), adapter_name=first_name)
            for name, path in items:
                model.load_adapter(str(path), adapter_name=name)
        model.eval()
        self.model: Any = model
        self.base_dir = base_dir
        self.adapter_dir = adapter_dir
        self.adapters: dict[str, Path] = all_adapters
        self.adapter_name: str | None = adapter_name if adapter_dir is not None else None
        self.eos_token_id: int = int(self.tokenizer.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_token_id: int = int(pad) if pad is not None else self.eos_token_id
        self.model_id = _model_id(base_dir)
        self._lock = threading.Lock()

    # -- helpers -----------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt a chat server would build (the model's template + generation prompt)."""
        text = self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
        )
        return str(text)

    @contextmanager
    def _use(self, adapter: str | None) -> Iterator[None]:
        if adapter is not None and adapter not in self.adapters:
            raise AdapterError(f"unknown adapter {adapter!r}; loaded: {sorted(self.adapters)}")
        if not self.adapters:
            yield
        elif adapter is None:
            with self.model.disable_adapter():
                yield
        else:
            self.model.set_adapter(adapter)
            yield

    # -- generation --------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 96,
        stop: Sequence[str] = (),
        use_adapter: bool = True,
        adapter: str | None = None,
    ) -> Generation:
        """Greedy continuation of ``prompt`` with the default adapter (or ``adapter``)."""
        name = (adapter or self.adapter_name) if use_adapter else None
        request = GenerationRequest(
            prompt=prompt, max_new_tokens=max_new_tokens, stop=tuple(stop), adapter_id=name
        )
        return self.generate_batch([request])[0]

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Generate all ``requests`` (same adapter) together; results in request order."""
        if not requests:
            return []
        adapters = {r.adapter_id for r in requests}
        if len(adapters) != 1:
            raise ValueError("a batch must use a single adapter")
        for r in requests:
            if r.max_new_tokens < 1:
                raise ValueError("max_new_tokens must be at least 1")
        with self._lock, self._torch.inference_mode(), self._use(next(iter(adapters))):
            return self._decode(requests)

    def _decode(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        torch = self._torch
        start = time.perf_counter()
        encoded = [self.tokenizer(r.prompt)["input_ids"] for r in requests]
        if any(not ids for ids in encoded):
            raise ValueError("prompt is empty")
        n = len(requests)
        width = max(len(ids) for ids in encoded)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, ids in enumerate(encoded):
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[i, width - len(ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)

        seeds: list[int | None] = []
        generators: list[Any] = []
        for r in requests:
            if r.sampling:
                seed = r.seed if r.seed is not None else random.getrandbits(63)
                generators.append(torch.Generator().manual_seed(seed))
                seeds.append(seed)
            else:
                generators.append(None)
                seeds.append(None)

        generated: list[list[int]] = [[] for _ in range(n)]
        token_infos: list[list[TokenInfo]] = [[] for _ in range(n)]
        texts = [""] * n
        finish: list[FinishReason] = ["length"] * n
        active = list(range(n))  # request index of each row still in the batch
        past: Any = None
        step_input, step_mask, step_pos = input_ids, mask, positions
        while active:
            out = self.model(
                input_ids=step_input,
                attention_mask=step_mask,
                position_ids=step_pos,
                cache=past,
                use_cache=True,
                logits_to_keep=1,
            )
            past = out.cache
            logprobs = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
            keep: list[int] = []
            next_tokens: list[int] = []
            for row, idx in enumerate(active):
                token = self._choose(logprobs[row], requests[idx], generators[idx])
                if token == self.eos_token_id:
                    finish[idx] = "eos_token"
                    continue
                generated[idx].append(token)
                piece = self.tokenizer.decode([token], skip_special_tokens=True)
                token_infos[idx].append(TokenInfo(token, piece, float(logprobs[row, token])))
                texts[idx] = self.tokenizer.decode(generated[idx], skip_special_tokens=True)
                stops = requests[idx].stop
                if stops and any(s in texts[idx] for s in stops):
                    finish[idx] = "stop_sequence"
                    continue
                if len(generated[idx]) >= requests[idx].max_new_tokens:
                    finish[idx] = "length"
                    continue
                keep.append(row)
                next_tokens.append(token)
            if not keep:
                break
            if len(keep) != len(active):
                rows = torch.tensor(keep, dtype=torch.long)
                past.batch_select_indices(rows)
                step_mask = step_mask[rows]
                step_pos = step_pos[rows]
                active = [active[r] for r in keep]
            step_input = torch.tensor(next_tokens, dtype=torch.long).unsqueeze(1)
            step_mask = torch.cat([step_mask, torch.ones((len(active), 1), dtype=torch.long)], 1)
            step_pos = step_pos[:, -1:] + 1
        seconds = time.perf_counter() - start
        return [
            Generation(
                text=texts[i],
                prompt_tokens=len(encoded[i]),
                generated_tokens=len(generated[i]),
                finish_reason=finish[i],
                seconds=seconds,
                tokens=tuple(token_infos[i]),
                seed=seeds[i],
            )
            for i in range(n)
        ]

    def _choose(self, logprobs: Any, request: GenerationRequest, generator: Any) -> int:
        torch = self._torch
        if generator is None:
            return int(logprobs.argmax())
        logits = logprobs
        if request.temperature is not None:
            logits = logits / request.temperature
        if request.top_k is not None:
            kth = torch.topk(logits, min(request.top_k, logits.shape[-1])).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if request.top_p is not None:
            sorted_probs, order = torch.sort(probs, descending=True)
            cumulative = sorted_probs.cumsum(-1)
            cut = cumulative - sorted_probs > request.top_p
            sorted_probs = sorted_probs.masked_fill(cut, 0.0)
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=generator))


def _model_id(base_dir: Path) -> str:
    marker = base_dir / "radgpt-prepared.json"
    try:
        return str(json.loads(marker.read_text())["base_model"])
    except (OSError, ValueError, KeyError):
        return BASE_MODEL_ID if base_dir.name.startswith("smollm2") else base_dir.name
