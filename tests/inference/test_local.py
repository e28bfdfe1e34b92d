"""The embedded model: batched decoding equals one-at-a-time decoding; stopping rules."""

from __future__ import annotations

import pytest

from inference.drafting.prompter import Prompter
from inference.errors import AdapterError
from inference.serving.model import LocalModel
from inference.types import GenerationRequest

FINDINGS = [
    "Heart size is normal. The lungs are clear.",
    "There is a large right pleural effusion with adjacent atelectasis. No pneumothorax.",
    "Mild cardiomegaly.",
]


def test_batched_greedy_equals_single_greedy(local_model: LocalModel) -> None:
    prompter = Prompter.load()
    prompts = [prompter.build(f) for f in FINDINGS]
    budgets = [6, 3, 5]
    singles = [
        local_model.generate(p, max_new_tokens=n, adapter="radiology")
        for p, n in zip(prompts, budgets, strict=True)
    ]
    batch = local_model.generate_batch(
        [
            GenerationRequest(prompt=p, max_new_tokens=n, adapter_id="radiology")
            for p, n in zip(prompts, budgets, strict=True)
        ]
    )
    assert [g.text for g in batch] == [g.text for g in singles]
    assert [g.generated_tokens for g in batch] == [g.generated_tokens for g in singles]
    assert all(g.generated_tokens <= n for g, n in zip(batch, budgets, strict=True))
    assert [g.prompt_tokens for g in batch] == [local_model.count_tokens(p) for p in prompts]
    assert all(len(g.tokens) == g.generated_tokens for g in batch)
    assert all(t.logprob <= 0.0 for g in batch for t in g.tokens)


def test_stop_sequence_ends_only_its_row(local_model: LocalModel) -> None:
    prompt = Prompter.load().build(FINDINGS[0])
    free = local_model.generate(prompt, max_new_tokens=6, use_adapter=False)
    assert free.generated_tokens == 6 and free.finish_reason == "length"
    stop_word = free.tokens[1].text.strip() or free.tokens[2].text.strip()
    stopped, unstopped = local_model.generate_batch(
        [
            GenerationRequest(prompt=prompt, max_new_tokens=6, stop=(stop_word,)),
            GenerationRequest(prompt=prompt, max_new_tokens=6),
        ]
    )
    assert stopped.finish_reason == "stop_sequence"
    assert stop_word in stopped.text and stopped.generated_tokens < 6
    assert unstopped.text == free.text


def test_seeded_sampling_is_reproducible(local_model: LocalModel) -> None:
    prompt = Prompter.load().build(FINDINGS[2])
    request = GenerationRequest(
        prompt=prompt, max_new_tokens=4, do_sample=True, temperature=1.5, top_p=0.9, seed=42
    )
    first, second = local_model.generate_batch([request, request])
    assert first.text == second.text and first.seed == 42


def test_unknown_adapter_is_an_error(local_model: LocalModel) -> None:
    with pytest.raises(AdapterError, match="unknown adapter 'nope'"):
        local_model.generate("x", max_new_tokens=1, adapter="nope")


def test_a_batch_has_one_adapter(local_model: LocalModel) -> None:
    with pytest.raises(ValueError, match="single adapter"):
        local_model.generate_batch(
            [
                GenerationRequest(prompt="a", max_new_tokens=1, adapter_id="radiology"),
                GenerationRequest(prompt="a", max_new_tokens=1, adapter_id=None),
            ]
        )


def test_chat_template_wraps_the_prompt(local_model: LocalModel) -> None:
    text = local_model.apply_chat_template([{"role": "user", "content": "Findings here"}])
    assert "Findings here" in text and text.endswith("assistant\n")
