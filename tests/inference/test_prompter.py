"""Unit tests of the prompt template: building prompts and parsing model output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.drafting.prompter import Prompter, PromptTemplate, normalise_text

FINDINGS = "Heart size normal.  Lungs are clear.\nNo pleural effusion."


@pytest.fixture(scope="module")
def prompter() -> Prompter:
    return Prompter.load()


def test_build_is_byte_identical_to_the_training_format(prompter: Prompter) -> None:
    assert prompter.build(FINDINGS) == (
        "### Instruction:\nDerive the impression from findings in the radiology report.\n\n"
        "### Findings:\nHeart size normal. Lungs are clear. No pleural effusion.\n\n"
        "### Impression:\n"
    )


def test_build_with_examples_and_context_blocks(prompter: Prompter) -> None:
    prompt = prompter.build(
        FINDINGS,
        context={"modality": "CR", "indication": " chest\npain ", "empty": "  "},
        examples=["No acute disease.", "Normal  chest."],
    )
    assert (
        "### Impressions of similar reports:\n- No acute disease.\n- Normal chest.\n\n"
        "### Context:\nmodality: CR\nindication: chest pain\n\n### Findings:\n"
    ) in prompt
    assert "empty" not in prompt
    assert prompt.endswith("### Impression:\n")


def test_context_with_only_blank_values_adds_no_block(prompter: Prompter) -> None:
    assert "### Context" not in prompter.build(FINDINGS, context={"modality": " "})


@pytest.mark.parametrize("findings", ["", "   ", "\n\t"])
def test_empty_findings_are_an_error(prompter: Prompter, findings: str) -> None:
    with pytest.raises(ValueError, match="findings are empty"):
        prompter.build(findings)


def test_parse_strips_an_echoed_prompt(prompter: Prompter) -> None:
    echoed = prompter.build(FINDINGS) + "No acute cardiopulmonary process."
    assert prompter.parse(echoed) == "No acute cardiopulmonary process."


def test_parse_cuts_at_the_first_stop_marker(prompter: Prompter) -> None:
    assert prompter.parse("Normal chest.\n\nThe patient was told.") == "Normal chest."
    assert prompter.parse("Normal chest. ### Findings: more") == "Normal chest."


def test_parse_normalises_numbering(prompter: Prompter) -> None:
    assert prompter.parse("1) No acute disease. 2) Stable nodule.") == (
        "1. No acute disease. 2. Stable nodule."
    )
    assert prompter.parse("(1) Cardiomegaly.\n(2) Small effusion.") == (
        "1. Cardiomegaly. 2. Small effusion."
    )


def test_parse_keeps_numbers_that_are_not_list_items(prompter: Prompter) -> None:
    assert prompter.parse("Nodule measures 5 mm (series 2).") == (
        "Nodule measures 5 mm (series 2)."
    )


def test_parse_drops_a_truncated_trailing_fragment(prompter: Prompter) -> None:
    text = "No acute disease. Stable 4 mm nodule in the right"
    assert prompter.parse(text, truncated=True) == "No acute disease."
    assert prompter.parse(text, truncated=False) == text


def test_parse_keeps_a_truncated_single_fragment(prompter: Prompter) -> None:
    assert prompter.parse("Stable appearance of the", truncated=True) == (
        "Stable appearance of the"
    )


def test_parse_of_empty_output_is_empty(prompter: Prompter) -> None:
    assert prompter.parse("\n\n") == ""


def test_stop_markers_come_from_the_template(prompter: Prompter) -> None:
    assert prompter.stop == ("###", "\n\n")


def test_completion_is_the_normalised_impression(prompter: Prompter) -> None:
    assert prompter.completion(" 1. Normal\n chest. ") == "1. Normal chest."


def test_normalise_text_collapses_whitespace() -> None:
    assert normalise_text(" a\n\tb  c ") == "a b c"


def test_load_unknown_template_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown prompt template"):
        Prompter.load("no-such-template")


def test_load_template_file_by_path(tmp_path: Path) -> None:
    data = json.loads(Path("inference/templates/radiology.json").read_text())
    data["instruction"] = "Summarise."
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(data))
    assert Prompter.load(path).build("x").startswith("### Instruction:\nSummarise.\n")


def test_template_missing_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="missing key 'instruction'"):
        PromptTemplate.from_json({"name": "x", "stop": []})


def test_template_stop_must_be_strings() -> None:
    with pytest.raises(ValueError, match="'stop' must be a list of strings"):
        PromptTemplate.from_json({"stop": [1]})


def test_v2_lists_the_positive_findings_before_the_exemplars() -> None:
    v2 = Prompter.load("radiology-v2")
    findings = "Heart size normal. Moderate right pleural effusion. No pneumothorax."
    prompt = v2.build(findings, examples=["No acute disease."])
    assert prompt == (
        "### Instruction:\nDerive the impression from findings in the radiology report.\n\n"
        "### Positive findings of this report:\n- Moderate right pleural effusion.\n\n"
        "### Impressions of similar reports:\n- No acute disease.\n\n"
        "### Findings:\nHeart size normal. Moderate right pleural effusion. No pneumothorax."
        "\n\n### Impression:\n"
    )


def test_v2_says_none_when_nothing_is_asserted() -> None:
    v2 = Prompter.load("radiology-v2")
    prompt = v2.build("Lungs are clear. No pleural effusion or pneumothorax.")
    assert "### Positive findings of this report:\n- none\n\n### Findings:" in prompt


def test_v1_prompt_has_no_hint_block(prompter: Prompter) -> None:
    assert "Positive findings" not in prompter.build("Moderate right pleural effusion.")


def test_template_using_positives_needs_the_block() -> None:
    data = json.loads(
        (Path(__file__).parents[2] / "inference/templates/radiology-v2.json").read_text()
    )
    del data["positives_block"]
    with pytest.raises(ValueError, match="positives_block"):
        PromptTemplate.from_json(data)
