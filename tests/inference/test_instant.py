"""Unit tests of the instant (extractive) engine."""

from __future__ import annotations

from inference.drafting.prompter import Prompter
from inference.serving.instant import InstantEngine, extract_impression
from inference.types import GenerationRequest


def test_extracts_the_first_sentence_of_the_findings() -> None:
    prompt = Prompter.load().build("Heart is normal.  Lungs are clear.", examples=["Old."])
    assert extract_impression(prompt) == "Heart is normal."


def test_prompt_without_markers_uses_the_last_paragraph() -> None:
    assert extract_impression("intro\n\nNo effusion. Clear lungs") == "No effusion."


def test_findings_without_a_full_stop_are_returned_whole() -> None:
    assert extract_impression("### Findings:\nno acute disease") == "no acute disease"


async def test_generation_respects_max_new_tokens() -> None:
    engine = InstantEngine(adapters=["radiology"])
    prompt = "### Findings:\nA large right pleural effusion is seen today."
    full = await engine.generate(GenerationRequest(prompt=prompt, max_new_tokens=50))
    cut = await engine.generate(GenerationRequest(prompt=prompt, max_new_tokens=3))
    assert (full.text, full.finish_reason) == (
        "A large right pleural effusion is seen today.",
        "eos_token",
    )
    assert (cut.text, cut.finish_reason, cut.generated_tokens) == ("A large right", "length", 3)
    assert engine.adapters == frozenset({"radiology"})
