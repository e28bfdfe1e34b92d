"""Training data: load findings/impression pairs, clean them, split them, build records.

Sources:

* the Open-i benchmark split (``train/validate/test.jsonl``: ``{"idx", "inputs", "target"}``);
* a hospital's free-text reports, split into FINDINGS and IMPRESSION sections by their
  headings (MIMIC-CXR style: ``FINDINGS:``, ``IMPRESSION:``, ``CONCLUSION:`` ...), from a
  directory of ``.txt`` files or a JSONL file of ``{"id", "patient_id", "text"}``;
* HL7 v2 ORU / FHIR R4 messages, parsed by the project's codec.

Records for the trainer are built with the shared :class:`~inference.drafting.prompter.Prompter`
(prompt) and its ``completion`` (target), optionally with the impressions of similar
training reports (retrieval augmentation, :class:`~inference.drafting.retrieval.ExemplarIndex`).
All functions here are pure except the loaders, which only read files.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from inference.drafting.prompter import Prompter, normalise_text
from inference.drafting.retrieval import Exemplar, ExemplarIndex

__all__ = [
    "OPENI_SPLITS",
    "Example",
    "Record",
    "build_records",
    "clean_examples",
    "deduplicate",
    "exemplar_index",
    "load_jsonl_pairs",
    "load_messages",
    "load_openi",
    "load_text_reports",
    "patient_split",
    "split_sections",
    "write_jsonl_pairs",
]

OPENI_SPLITS = ("train", "validate", "test")


@dataclass(frozen=True, slots=True)
class Example:
    """One report reduced to what the model learns from."""

    id: str
    findings: str
    impression: str
    patient_id: str | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """A training/evaluation record: the exact prompt and the target completion."""

    id: str
    prompt: str
    completion: str
    examples: tuple[str, ...] = ()


# --------------------------------------------------------------------------- loaders


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            rows.append(row)
    return rows


def load_jsonl_pairs(path: Path, *, prefix: str = "") -> list[Example]:
    """Read ``{"idx", "inputs", "target"}`` lines (the Open-i / evaluation format)."""
    examples: list[Example] = []
    for n, row in enumerate(_read_jsonl(path)):
        findings, target = row.get("inputs"), row.get("target")
        if not isinstance(findings, str) or not isinstance(target, str):
            raise ValueError(f"{path}: line {n + 1} needs string 'inputs' and 'target'")
        idx = row.get("idx", n)
        patient = row.get("patient_id")
        examples.append(
            Example(
                id=f"{prefix}{idx}",
                findings=findings,
                impression=target,
                patient_id=str(patient) if patient is not None else None,
            )
        )
    return examples


def load_openi(data_dir: Path, split: str) -> list[Example]:
    """One split of the Open-i benchmark; ids are ``openi-<split>-<idx>``."""
    if split not in OPENI_SPLITS:
        raise ValueError(f"unknown split {split!r} (choose from {', '.join(OPENI_SPLITS)})")
    path = data_dir / f"{split}.jsonl"
    if not path.is_file():
        raise ValueError(f"no Open-i file {path}")
    return load_jsonl_pairs(path, prefix=f"openi-{split}-")


def write_jsonl_pairs(path: Path, examples: Iterable[Example]) -> int:
    """Write examples as ``{"idx", "inputs", "target", "patient_id"}`` lines; return count."""
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for ex in examples:
            row = {"idx": ex.id, "inputs": ex.findings, "target": ex.impression}
            if ex.patient_id is not None:
                row["patient_id"] = ex.patient_id
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def split_sections(text: str) -> tuple[str, str]:
    """``(findings, impression)`` of a free-text report; a missing section is ``""``.

    Uses the heading rules of :mod:`integration.report.sections` (``FINDINGS:``, ``IMPRESSION:``,
    ``CONCLUSION:``... MIMIC-CXR style), the same ones the HL7 and FHIR readers apply.  A
    report without an impression heading yields ``("", "")``: its findings cannot be told
    apart from the rest of the text.
    """
    from integration.report.sections import findings_from_text, impression_from_text

    impression = impression_from_text(text) or ""
    if not impression:
        return "", ""
    return findings_from_text(text), impression


def load_text_reports(path: Path) -> list[Example]:
    """Free-text reports: a directory of ``.txt`` files or a JSONL of ``{"id","text"}``.

    In a directory, the report id is the file name without suffix and the patient id is
    the name of the parent directory (MIMIC-CXR layout ``p10/p10000032/s50414267.txt``)
    unless files lie directly in ``path``.  Reports without both sections are skipped.
    """
    examples: list[Example] = []
    if path.is_dir():
        for file in sorted(path.rglob("*.txt")):
            findings, impression = split_sections(file.read_text(encoding="utf-8"))
            if findings and impression:
                patient = file.parent.name if file.parent != path else None
                examples.append(Example(file.stem, findings, impression, patient))
        return examples
    if not path.is_file():
        raise ValueError(f"no report file or directory {path}")
    for n, row in enumerate(_read_jsonl(path)):
        text = row.get("text")
        if not isinstance(text, str):
            raise ValueError(f"{path}: line {n + 1} needs a string 'text'")
        findings, impression = split_sections(text)
        if findings and impression:
            owner = row.get("patient_id")
            examples.append(
                Example(
                    str(row.get("id", n)),
                    findings,
                    impression,
                    str(owner) if owner is not None else None,
                )
            )
    return examples


def load_messages(paths: Sequence[Path]) -> list[Example]:
    """Final HL7 v2 / FHIR R4 reports (files of one message each) parsed by the codec.

    Reports without both findings and an impression are skipped; a file that is not a
    parseable message raises the codec's typed error.
    """
    from integration.codecs.codec import parse_message  # written by the integration package

    examples: list[Example] = []
    for path in paths:
        for n, report in enumerate(parse_message(path.read_bytes())):
            if not report.findings or not report.impression:
                continue
            ident = report.accession or f"{report.message_id}-{n}"
            examples.append(
                Example(str(ident), report.findings, report.impression, report.patient_id)
            )
    return examples


# --------------------------------------------------------------------------- cleaning


def clean_examples(
    examples: Iterable[Example],
    *,
    min_findings_words: int = 3,
    min_impression_words: int = 1,
    max_findings_words: int = 400,
) -> list[Example]:
    """Normalise whitespace and drop empty, too short or too long sections."""
    kept: list[Example] = []
    for ex in examples:
        findings, impression = normalise_text(ex.findings), normalise_text(ex.impression)
        n_find, n_imp = len(findings.split()), len(impression.split())
        if n_find < min_findings_words or n_find > max_findings_words:
            continue
        if n_imp < min_impression_words:
            continue
        kept.append(Example(ex.id, findings, impression, ex.patient_id))
    return kept


def _key(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def deduplicate(examples: Iterable[Example]) -> list[Example]:
    """Drop repeated copies of the same report (re-sent messages, exported twice).

    Two examples are the same report when they belong to the same patient and have the same
    findings and impression (case/punctuation-insensitive); without a patient id, the report
    id stands in for it.  Different patients' reports with the same template text are kept:
    they are separate observations of how often a template is used.
    """
    seen: set[tuple[str, str, str]] = set()
    kept: list[Example] = []
    for ex in examples:
        key = (ex.patient_id or f"report:{ex.id}", _key(ex.findings), _key(ex.impression))
        if key in seen:
            continue
        seen.add(key)
        kept.append(ex)
    return kept


def patient_split(
    examples: Sequence[Example],
    *,
    validate: float = 0.1,
    test: float = 0.1,
    salt: str = "radgpt",
) -> dict[str, list[Example]]:
    """Split by patient (all reports of one patient land in one split), deterministically.

    The split of a patient is a function of a hash of its id (or of the report id when the
    patient is unknown), so adding reports never moves existing patients between splits.
    """
    if validate < 0 or test < 0 or validate + test >= 1:
        raise ValueError("validate and test fractions must be >= 0 and sum to less than 1")
    out: dict[str, list[Example]] = {"train": [], "validate": [], "test": []}
    for ex in examples:
        owner = ex.patient_id or f"report:{ex.id}"
        digest = hashlib.sha256(f"{salt}:{owner}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        split = "test" if u < test else "validate" if u < test + validate else "train"
        out[split].append(ex)
    return out


# --------------------------------------------------------------------------- records


def exemplar_index(examples: Iterable[Example]) -> ExemplarIndex:
    """A retrieval index over training examples (never index validate/test reports)."""
    return ExemplarIndex.build(Exemplar(ex.id, ex.findings, ex.impression) for ex in examples)


def build_records(
    examples: Sequence[Example],
    prompter: Prompter,
    *,
    index: ExemplarIndex | None = None,
    k: int = 0,
) -> list[Record]:
    """Prompt/target records; with an index, each prompt carries the impressions of the
    ``k`` most similar indexed reports, excluding the example itself.

    Other reports with the same findings text stay eligible: template findings recur in
    practice (27% of the Open-i test reports have an exact twin among the training reports),
    so training prompts should contain exact twins as often as real ones do.
    """
    records: list[Record] = []
    for ex in examples:
        shots: tuple[str, ...] = ()
        if index is not None and k > 0:
            shots = tuple(index.top_k(ex.findings, k, exclude=(ex.id,)))
        records.append(
            Record(
                id=ex.id,
                prompt=prompter.build(ex.findings, examples=shots),
                completion=prompter.completion(ex.impression),
                examples=shots,
            )
        )
    return records
