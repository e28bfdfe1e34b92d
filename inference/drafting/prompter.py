"""Prompts as data: one template shared by training and inference.

The template (``inference/templates/<name>.json``) holds the instruction of Radiology-GPT
("Derive the impression from findings in the radiology report"), the layout of the prompt
and the markers used to cut the model's answer.  :class:`Prompter` builds prompts from
findings (optionally with context such as modality/indication and with the impressions of
similar reports, retrieval-augmented) and parses raw model output into a clean impression.
Both are pure functions of their inputs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from inference.drafting.findings import finding_hints

__all__ = ["PromptTemplate", "Prompter", "normalise_text"]

_WS = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Collapse all runs of whitespace (newlines included) to single spaces."""
    return _WS.sub(" ", text).strip()


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A prompt layout loaded from a JSON template file."""

    name: str
    instruction: str
    prompt: str
    examples_block: str
    example_line: str
    context_block: str
    context_line: str
    response_split: str
    stop: tuple[str, ...]
    #: Optional hint block listing the positive findings (``{lines}``), and what it says
    #: when there are none; a template without ``{positives}`` in its prompt has no block.
    positives_block: str = ""
    positive_line: str = "- {finding}"
    no_positives: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> PromptTemplate:
        try:
            stop = data["stop"]
            if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
                raise ValueError("'stop' must be a list of strings")
            fields = {
                k: data[k]
                for k in (
                    "name",
                    "instruction",
                    "prompt",
                    "examples_block",
                    "example_line",
                    "context_block",
                    "context_line",
                    "response_split",
                )
            }
        except KeyError as exc:
            raise ValueError(f"prompt template is missing key {exc.args[0]!r}") from exc
        for key in ("positives_block", "positive_line", "no_positives"):
            if key in data:
                fields[key] = data[key]
        for key, value in fields.items():
            if not isinstance(value, str):
                raise ValueError(f"prompt template key {key!r} must be a string")
        if "{positives}" in str(fields["prompt"]) and not fields.get("positives_block"):
            raise ValueError("prompt template uses {positives} but has no 'positives_block'")
        return cls(stop=tuple(stop), **fields)  # type: ignore[arg-type]


# Numbered list items written "1)" or "(1)" -> "1."
_NUMBERING = re.compile(r"(?:(?<=\s)|^)\(?(\d{1,2})\)\s+")
_SENTENCE_END = (".", "!", "?")


class Prompter:
    """Builds prompts and parses responses for one template (alpaca-lora's Prompter)."""

    __slots__ = ("template",)

    def __init__(self, template: PromptTemplate) -> None:
        self.template = template

    @classmethod
    def load(cls, name_or_path: str | Path = "radiology") -> Prompter:
        """Load a bundled template by name, or a template file by path."""
        path = Path(name_or_path)
        if path.suffix == ".json":
            text = path.read_text(encoding="utf-8")
        else:
            res = resources.files("inference").joinpath("templates", f"{name_or_path}.json")
            if not res.is_file():
                raise ValueError(f"unknown prompt template {str(name_or_path)!r}")
            text = res.read_text(encoding="utf-8")
        return cls(PromptTemplate.from_json(json.loads(text)))

    @property
    def stop(self) -> tuple[str, ...]:
        return self.template.stop

    def build(
        self,
        findings: str,
        *,
        context: Mapping[str, str] | None = None,
        examples: Sequence[str] = (),
    ) -> str:
        """The prompt for ``findings``; ``examples`` are impressions of similar reports."""
        t = self.template
        findings_text = normalise_text(findings)
        if not findings_text:
            raise ValueError("findings are empty")
        examples_text = ""
        if examples:
            lines = "\n".join(t.example_line.format(impression=normalise_text(e)) for e in examples)
            examples_text = t.examples_block.format(lines=lines)
        context_text = ""
        if context:
            items = [(k, normalise_text(v)) for k, v in context.items() if v and v.strip()]
            if items:
                lines = "\n".join(t.context_line.format(key=k, value=v) for k, v in items)
                context_text = t.context_block.format(lines=lines)
        fields = {
            "instruction": t.instruction,
            "examples": examples_text,
            "context": context_text,
            "findings": findings_text,
        }
        if "{positives}" in t.prompt:
            fields["positives"] = self.positives(findings_text)
        return t.prompt.format(**fields)

    def positives(self, findings: str) -> str:
        """The template's hint block: this report's positive findings, one per line
        (:func:`inference.drafting.findings.finding_hints`), or ``no_positives`` when none."""
        t = self.template
        if not t.positives_block:
            return ""
        hints = finding_hints(findings)
        if not hints:
            return t.no_positives
        lines = "\n".join(t.positive_line.format(finding=h) for h in hints)
        return t.positives_block.format(lines=lines)

    def completion(self, impression: str) -> str:
        """The training target that follows the prompt (the trainer appends the EOS token)."""
        return normalise_text(impression)

    def parse(self, output: str, *, truncated: bool = False) -> str:
        """Turn raw model output into a clean impression.

        Strips an echoed prompt (everything up to the last response marker), cuts at the
        first stop marker, normalises numbering ("1)" -> "1."), collapses whitespace and,
        when the generation was cut by the token limit (``truncated``), drops a trailing
        sentence fragment.
        """
        text = output
        marker = self.template.response_split
        if marker in text:
            text = text.rsplit(marker, 1)[1]
        text = text.lstrip("\n ")
        cut = len(text)
        for stop in self.template.stop:
            idx = text.find(stop)
            if idx != -1:
                cut = min(cut, idx)
        text = normalise_text(text[:cut])
        text = _NUMBERING.sub(lambda m: f"{m.group(1)}. ", text)
        text = normalise_text(text)
        if truncated and text and not text.endswith(_SENTENCE_END):
            last = max(text.rfind(p) for p in _SENTENCE_END)
            if last > 0:
                text = text[: last + 1]
        return text
