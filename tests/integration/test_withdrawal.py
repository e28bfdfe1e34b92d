"""Withdrawal messages: HL7 OBR-25 ``I`` with every OBX-11 ``W``; FHIR ``entered-in-error``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from test_hl7_writer import assert_strict

from integration.codecs.fhir.reader import parse_fhir
from integration.codecs.fhir.writer import build_withdrawal_bundle
from integration.codecs.hl7.reader import Er7Message, parse_oru
from integration.codecs.hl7.writer import build_preliminary_oru, build_withdrawal_oru
from integration.report.model import Clinician, DraftProvenance, RadiologyReport

DATA = Path(__file__).resolve().parents[1] / "data"
NOW = datetime(2024, 5, 1, 14, 0, 0, tzinfo=UTC)
DRAFT = DraftProvenance(
    draft_id="drf-0042",
    model_id="HuggingFaceTB/SmolLM2-135M",
    adapter_id="radiology",
    adapter_version="v1",
    drafted_at=datetime(2024, 5, 1, 11, 59, 0, tzinfo=UTC),
)
RADIOLOGIST = Clinician(id="RAD4471", family="Okafor", given="Ngozi")
HL7_FILES = ["oru_v251_findings_only.hl7", "oru_v23_gdt_lines.hl7", "oru_v28_two_obr.hl7",
             "oru_v251_latin1.hl7", "oru_v26_escapes.hl7"]  # fmt: skip


def _hl7(name: str) -> RadiologyReport:
    return parse_oru((DATA / "hl7" / name).read_bytes())[0]


@pytest.mark.parametrize("name", HL7_FILES)
def test_hl7_withdrawal_marks_every_observation_wrong(name: str) -> None:
    report = _hl7(name)
    er7 = build_withdrawal_oru(
        report, "Small left pleural effusion.", DRAFT, reason="rejected", control_id="Wdrf0042",
        now=NOW,
    )  # fmt: skip
    assert_strict(er7)  # hl7apy STRICT for the message's own version
    message = Er7Message.parse(er7.rstrip("\r"))
    segments = {s.id: s for s in message.segments}
    assert message.msh.text(10) == "Wdrf0042"
    assert segments["OBR"].text(25) == "I"  # table 0123: no results available (not X, not C)
    obx = [s for s in message.segments if s.id == "OBX"]
    assert obx and {s.text(11) for s in obx} == {"W"}  # table 0085: posted in error
    assert "WITHDRAWN" in er7 and "rejected by the reviewing radiologist" in er7
    # The order identifiers are the inbound order's, so receivers match the report.
    assert segments["OBR"].text(3) == report.accession
    # Our own reader ignores W observations: a withdrawn report has no findings to draft.
    assert parse_oru(er7.encode()) == []
    # Identical on re-send.
    assert er7 == build_withdrawal_oru(
        report, "Small left pleural effusion.", DRAFT, reason="rejected", control_id="Wdrf0042",
        now=NOW,
    )  # fmt: skip


def test_hl7_withdrawal_keeps_what_the_preliminary_sent() -> None:
    report = _hl7("oru_v251_findings_only.hl7")
    preliminary = build_preliminary_oru(report, "Small effusion.", DRAFT, now=NOW)
    withdrawal = build_withdrawal_oru(
        report, "Small effusion.", DRAFT, reason="superseded", control_id="W1", now=NOW
    )

    def obx3(er7: str) -> list[str]:
        return [s.split("|")[3] for s in er7.split("\r") if s.startswith("OBX|")]

    assert obx3(preliminary) == obx3(withdrawal)
    assert "superseded by a newer report" in withdrawal


@pytest.fixture(scope="module")
def fhir_validate(fhir_schema_path: Path) -> Callable[[dict[str, Any]], None]:
    schema = json.loads(fhir_schema_path.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft6Validator)(
        schema
    )

    def validate(resource: dict[str, Any]) -> None:
        errors = [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(resource)]
        assert not errors, errors[:3]

    return validate


@pytest.mark.parametrize(
    "source", ["hl7/oru_v251_findings_only.hl7", "fhir/dr_basedon_accession.json"]
)
def test_fhir_withdrawal_is_entered_in_error(
    source: str, fhir_validate: Callable[[dict[str, Any]], None]
) -> None:
    raw = (DATA / source).read_bytes()
    report = parse_oru(raw)[0] if source.startswith("hl7") else parse_fhir(raw)[0]
    bundle = build_withdrawal_bundle(
        report, "Small left pleural effusion.", DRAFT, reason="rejected",
        withdrawn_by=RADIOLOGIST, now=NOW,
    )  # fmt: skip
    fhir_validate(bundle)
    assert bundle["type"] == "transaction"
    dr = bundle["entry"][0]["resource"]
    assert dr["status"] == "entered-in-error"
    assert bundle["entry"][0]["request"]["method"] == "PUT"
    assert bundle["entry"][0]["request"]["url"].startswith("DiagnosticReport?identifier=")
    provenance = bundle["entry"][1]["resource"]
    assert provenance["activity"]["coding"][0]["code"] == "NULLIFY"
    assert provenance["agent"][0]["who"]["identifier"]["value"] == "RAD4471"
    read_back = parse_fhir(bundle)
    assert read_back[0].status == "entered-in-error"
    assert read_back[0].accession == report.accession
