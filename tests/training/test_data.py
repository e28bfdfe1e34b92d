"""Data preparation: loaders, section splitting, cleaning, patient-level splits, records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.drafting.prompter import Prompter
from training.data import (
    Example,
    build_records,
    clean_examples,
    deduplicate,
    exemplar_index,
    load_jsonl_pairs,
    load_messages,
    load_openi,
    load_text_reports,
    patient_split,
    split_sections,
    write_jsonl_pairs,
)
from training.pipeline import load_splits

OPENI_SIZES = {"train": 2735, "validate": 341, "test": 343}


@pytest.fixture(scope="module")
def openi_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "openi"


@pytest.mark.parametrize("split", sorted(OPENI_SIZES))
def test_load_openi(openi_dir: Path, split: str) -> None:
    examples = load_openi(openi_dir, split)
    assert len(examples) == OPENI_SIZES[split]
    assert all(e.id.startswith(f"openi-{split}-") for e in examples)
    assert len({e.id for e in examples}) == len(examples)
    assert all(e.findings and e.impression for e in examples)


def test_load_openi_rejects_unknown_split(openi_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown split"):
        load_openi(openi_dir, "dev")


def test_openi_splits_are_the_benchmark_files(openi_dir: Path) -> None:
    splits = load_splits(openi_dir, "openi")
    # Open-i reports are distinct observations: cleaning drops one report whose findings
    # are too short, de-duplication drops none (no two share a report id).
    assert len(splits.train) == OPENI_SIZES["train"] - 1
    assert (len(splits.validate), len(splits.test)) == (341, 343)
    assert not {e.id for e in splits.train} & {e.id for e in splits.test}


def test_jsonl_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    n = write_jsonl_pairs(path, [Example("7", "Lungs clear.", "Normal.", "p9")])
    assert n == 1
    assert load_jsonl_pairs(path) == [Example("7", "Lungs clear.", "Normal.", "p9")]
    path.write_text('{"idx": 1, "inputs": 3}\n')
    with pytest.raises(ValueError, match="needs string"):
        load_jsonl_pairs(path)
    path.write_text("{broken\n")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_jsonl_pairs(path)


def test_split_sections_mimic_style(data_dir: Path) -> None:
    text = (data_dir / "training/reports/p10/p10000032/s50414267.txt").read_text()
    findings, impression = split_sections(text)
    assert findings.startswith("There is no focal consolidation, pleural effusion")
    assert findings.endswith("sixth and seventh ribs are noted.")
    assert "INDICATION" not in findings and "\n" not in findings
    assert impression == "No acute cardiopulmonary process."
    assert split_sections("FINDINGS: Lungs clear.") == ("", "")
    assert split_sections("Findings: clear lungs.\nConclusion: normal.") == (
        "clear lungs.",
        "normal.",
    )


def test_load_text_reports_directory(data_dir: Path) -> None:
    examples = load_text_reports(data_dir / "training/reports")
    # the wet read without an IMPRESSION is skipped
    assert [(e.id, e.patient_id) for e in examples] == [
        ("s50414267", "p10000032"),
        ("s53189527", "p10000032"),
        ("s57375967", "p10000764"),
    ]
    assert examples[2].impression == "Moderate right pleural effusion. Mild cardiomegaly."


def test_load_text_reports_jsonl(data_dir: Path, tmp_path: Path) -> None:
    examples = load_text_reports(data_dir / "training/reports.jsonl")
    assert [(e.id, e.patient_id, e.impression) for e in examples] == [
        ("r1", "p1", "Normal chest."),
        ("r2", "p1", "Right lower lobe pneumonia."),
    ]
    with pytest.raises(ValueError, match="no report file"):
        load_text_reports(tmp_path / "missing.jsonl")


def test_clean_examples_filters_and_normalises() -> None:
    kept = clean_examples(
        [
            Example("1", "  Lungs   are\nclear today. ", " No acute disease. "),
            Example("2", "Clear.", "Normal."),  # findings too short
            Example("3", "Lungs are clear today.", "   "),  # empty impression
            Example("4", "word " * 500, "Long."),  # findings too long
        ]
    )
    assert kept == [Example("1", "Lungs are clear today.", "No acute disease.")]


def test_deduplicate_drops_copies_of_the_same_report_only() -> None:
    a = Example("1", "Lungs are clear.", "Normal.", "p1")
    resent = Example("2", "lungs are clear", "normal", "p1")
    other_patient = Example("3", "Lungs are clear.", "Normal.", "p2")
    other_impression = Example("4", "Lungs are clear.", "No acute disease.", "p1")
    no_patient = Example("5", "Lungs are clear.", "Normal.")
    same_report_again = Example("5", "Lungs are clear.", "Normal.")
    assert deduplicate(
        [a, resent, other_patient, other_impression, no_patient, same_report_again]
    ) == [
        a,
        other_patient,
        other_impression,
        no_patient,
    ]


def test_patient_split_keeps_patients_together_and_is_stable() -> None:
    examples = [Example(f"r{i}", "Lungs clear.", "Normal.", f"p{i // 3}") for i in range(600)]
    parts = patient_split(examples, validate=0.1, test=0.1)
    owners = {s: {e.patient_id for e in part} for s, part in parts.items()}
    assert not owners["train"] & owners["validate"]
    assert not owners["train"] & owners["test"]
    assert not owners["validate"] & owners["test"]
    assert sum(len(p) for p in parts.values()) == 600
    assert 0.05 < len(parts["test"]) / 600 < 0.2
    # adding reports never moves existing patients
    again = patient_split([*examples, Example("new", "x y z", "w", "p-new")])
    assert {e.id for e in parts["test"]} <= {e.id for e in again["test"]}
    with pytest.raises(ValueError, match="fractions"):
        patient_split(examples, validate=0.6, test=0.5)


def test_build_records_with_retrieval_excludes_only_the_example_itself() -> None:
    train = [
        Example("a", "Large right pleural effusion.", "Right effusion."),
        Example("b", "Large right pleural effusion.", "Large right effusion."),  # twin of a
        Example("c", "Small right pleural effusion.", "Small effusion."),
        Example("d", "Lungs are clear.", "Normal."),
    ]
    prompter = Prompter.load("radiology")
    records = build_records(train, prompter, index=exemplar_index(train), k=2)
    assert records[0].examples == ("Large right effusion.", "Small effusion.")
    assert records[1].examples == ("Right effusion.", "Small effusion.")
    assert records[0].prompt == prompter.build(train[0].findings, examples=records[0].examples)
    assert records[0].completion == "Right effusion."
    plain = build_records(train, prompter)
    assert plain[3].examples == ()
    assert "similar reports" not in plain[3].prompt


def test_load_splits_hospital_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "hospital.jsonl"
    rows = [
        {
            "idx": i,
            "inputs": f"Finding number {i} in the lungs.",
            "target": "Impression.",
            "patient_id": f"p{i % 50}",
        }
        for i in range(200)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    splits = load_splits(path, "jsonl")
    assert len(splits.train) + len(splits.validate) + len(splits.test) == 200
    assert splits.validate and splits.test
    with pytest.raises(ValueError, match="no usable training examples"):
        empty = tmp_path / "empty.jsonl"
        empty.write_text("")
        load_splits(empty, "jsonl")


def test_load_messages_hl7_and_fhir(data_dir: Path) -> None:
    pytest.importorskip("integration.codecs.codec")
    files = [
        data_dir / "hl7/oru_v28_two_obr.hl7",
        data_dir / "hl7/oru_v251_findings_only.hl7",  # no impression: skipped
        data_dir / "fhir/bundle_collection_two_reports.json",
    ]
    examples = load_messages(files)
    assert [e.id for e in examples] == ["UH-ACC-100231", "UH-ACC-100232", "LS-55001", "KN-55002"]
    assert {e.patient_id for e in examples} == {"UH-5501234", "p-1002"}
    assert all(e.findings and e.impression for e in examples)
