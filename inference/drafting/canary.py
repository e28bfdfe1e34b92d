"""Fail closed on the wrong adapter: a known-answer check before the first draft.

TGI answers a request for an unknown ``adapter_id`` with the base model and no error, and a
misconfigured vLLM can do the same.  The adapter's metadata therefore carries a canary: a
fixed prompt, the adapter's greedy output for it and the base model's.  :func:`verify_adapter`
sends the canary through the configured backend and raises :class:`AdapterError` unless the
answer matches the adapter's output (after normalisation) and differs from the base model's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from inference.backends.base import DraftBackend
from inference.drafting.adapters import AdapterInfo, Canary
from inference.drafting.prompter import Prompter, normalise_text
from inference.errors import AdapterError
from inference.types import GenerationRequest

__all__ = ["CanaryResult", "chat_canary", "matches", "verify_adapter"]

log = logging.getLogger(__name__)


def _norm(text: str) -> str:
    return normalise_text(text).casefold().rstrip(".")


def matches(output: str, expected: str) -> bool:
    """Equal after collapsing whitespace, ignoring case and a final full stop."""
    return _norm(output) == _norm(expected)


@dataclass(frozen=True, slots=True)
class CanaryResult:
    output: str
    expected: str
    base_output: str
    model_id: str
    adapter_id: str | None


async def verify_adapter(
    backend: DraftBackend, info: AdapterInfo, prompter: Prompter
) -> CanaryResult:
    """Run the canary of ``info`` through ``backend``; raise :class:`AdapterError` on mismatch."""
    canary = info.canary
    rebuilt = prompter.build(canary.findings, examples=canary.examples)
    if rebuilt != canary.prompt:
        raise AdapterError(
            f"adapter {info.name!r} {info.version}: the prompt template differs from the one "
            "the adapter was trained with; refusing to draft"
        )
    if backend.prompt_format == "chat":
        if canary.expected_chat is None or canary.base_output_chat is None:
            raise AdapterError(
                f"adapter {info.name!r} {info.version} has no chat canary for the "
                f"{backend.name} backend: run `radgpt model canary --adapter-path DIR` "
                "or disable adapter verification explicitly"
            )
        expected, base_output = canary.expected_chat, canary.base_output_chat
    else:
        expected, base_output = canary.expected, canary.base_output
    if matches(expected, base_output):
        raise AdapterError(
            f"adapter {info.name!r} {info.version}: its canary cannot tell the adapter from "
            "the base model; regenerate the adapter metadata"
        )
    completion = await backend.generate(
        canary.prompt,
        max_new_tokens=canary.max_new_tokens or info.max_new_tokens,
        stop=prompter.stop,
    )
    output = prompter.parse(completion.text, truncated=completion.finish_reason == "length")
    where = f"{backend.name} backend, adapter {backend.adapter_id!r}"
    if matches(output, base_output):
        raise AdapterError(
            f"the model server answers the canary of adapter {info.name!r} {info.version} like "
            f"the base model ({where}): the adapter is not loaded or its name is wrong"
        )
    if not matches(output, expected):
        raise AdapterError(
            f"the model server's answer to the canary of adapter {info.name!r} {info.version} "
            f"does not match the adapter's known answer ({where}): wrong adapter or version"
        )
    log.info("adapter %s %s verified (%s)", info.name, info.version, where)
    return CanaryResult(
        output=output,
        expected=expected,
        base_output=base_output,
        model_id=completion.model_id,
        adapter_id=completion.adapter_id,
    )


def chat_canary(
    model: Any, prompter: Prompter, canary: Canary, *, adapter: str, max_new_tokens: int
) -> dict[str, str]:
    """Greedy chat-template outputs for the canary (``expected_chat``/``base_output_chat``).

    ``model`` is an :class:`inference.serving.model.LocalModel` with ``adapter`` loaded.
    """
    prompt = model.apply_chat_template([{"role": "user", "content": canary.prompt}])
    outputs: list[str] = []
    for name in (adapter, None):
        request = GenerationRequest(
            prompt=prompt,
            max_new_tokens=canary.max_new_tokens or max_new_tokens,
            stop=tuple(prompter.stop),
            adapter_id=name,
        )
        generation = model.generate_batch([request])[0]
        outputs.append(
            prompter.parse(generation.text, truncated=generation.finish_reason == "length")
        )
    return {"expected_chat": outputs[0], "base_output_chat": outputs[1]}
