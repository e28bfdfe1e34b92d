"""``serve-model --engine instant``: a deterministic, torch-free extractive "model".

It answers with the first sentence of the findings in the prompt (the text after the last
``### Findings:`` marker, or the last paragraph of a prompt without one), after an optional
fixed delay.  There are no weights: adapter names are validated exactly like the model
engine does, but they do not change the answer.  Use it to benchmark the pipeline, to test
timeouts and retries, and to smoke-test a deployment without a model.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Mapping, Sequence

from inference.types import FinishReason, Generation, GenerationRequest

__all__ = ["INSTANT_MODEL_ID", "InstantEngine", "extract_impression"]

INSTANT_MODEL_ID = "radgpt/instant-extractive"
_FINDINGS_MARKER = "### Findings:"
_WORD = re.compile(r"\S+")
_SENTENCE = re.compile(r"(.+?[.!?])(?:\s|$)", re.DOTALL)


def _findings(prompt: str) -> str:
    if _FINDINGS_MARKER in prompt:
        tail = prompt.rsplit(_FINDINGS_MARKER, 1)[1]
        return tail.split("###", 1)[0].strip()
    paragraphs = [p.strip() for p in prompt.split("\n\n") if p.strip()]
    return paragraphs[-1] if paragraphs else ""


def extract_impression(prompt: str) -> str:
    """The first sentence of the findings in ``prompt`` (whitespace collapsed)."""
    findings = " ".join(_findings(prompt).split())
    match = _SENTENCE.match(findings)
    return match.group(1) if match else findings


class InstantEngine:
    """Extractive engine with an optional per-request delay (concurrent, not serialised)."""

    def __init__(self, *, adapters: Iterable[str] = (), delay_s: float = 0.0) -> None:
        if delay_s < 0:
            raise ValueError("delay must not be negative")
        self._adapters = frozenset(adapters)
        self.delay_s = delay_s

    @property
    def model_id(self) -> str:
        return INSTANT_MODEL_ID

    @property
    def adapters(self) -> frozenset[str]:
        return self._adapters

    @property
    def kind(self) -> str:
        return "instant"

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text))

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]]) -> str:
        return "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages) + "<|assistant|>\n"

    async def generate(self, request: GenerationRequest) -> Generation:
        start = time.perf_counter()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        words = _WORD.findall(extract_impression(request.prompt))
        finish: FinishReason = "eos_token"
        if len(words) > request.max_new_tokens:
            words = words[: request.max_new_tokens]
            finish = "length"
        return Generation(
            text=" ".join(words),
            prompt_tokens=self.count_tokens(request.prompt),
            generated_tokens=len(words),
            finish_reason=finish,
            seconds=time.perf_counter() - start,
        )

    async def aclose(self) -> None:
        return None
