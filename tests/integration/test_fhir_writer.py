"""FHIR R4 writers: every resource validates against the official FHIR R4 JSON schema."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fhir.resources.R4B.bundle import Bundle

from integration.codecs.fhir.reader import parse_fhir
from integration.codecs.fhir.writer import (
    AIAST,
    build_final_bundle,
    build_preliminary_bundle,
    hl7_identifier_system,
)
from integration.codecs.hl7.reader import parse_oru
from integration.errors import RenderError
from integration.report.model import Approval, Clinician, DraftProvenance, RadiologyReport

DATA = Path(__file__).resolve().parents[1] / "data"
FHIR_FILES = [
    n for n, r in json.loads((DATA / "fhir" / "expected.json").read_text("utf-8")).items() if r
]
HL7_FILES = [
    n for n, r in json.loads((DATA / "hl7" / "expected.json").read_text("utf-8")).items() if r
]
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
DRAFT = DraftProvenance(
    draft_id="drf-0001",
    model_id="HuggingFaceTB/SmolLM2-135M",
    adapter_id="radiology-impression",
    adapter_version="2024.05.1",
    drafted_at=datetime(2024, 5, 1, 11, 59, 0, tzinfo=UTC),
)
APPROVAL = Approval(
    radiologist=Clinician(id="RAD4471", family="Okafor", given="Ngozi"),
    approved_at=datetime(2024, 5, 1, 13, 30, 0, tzinfo=UTC),
    draft_id="drf-0001",
)
IMPRESSION = "1. No acute cardiopulmonary abnormality.\n2. Stable 4 mm nodule (≥ prior)."

Validate = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="session")
def fhir_validate(fhir_schema_path: Path) -> Validate:
    """The official FHIR R4 JSON schema validator, built once (it is large)."""
    schema = json.loads(fhir_schema_path.read_text(encoding="utf-8"))
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft6Validator)
    validator = validator_cls(schema)

    def validate(resource: dict[str, Any]) -> None:
        errors = sorted(validator.iter_errors(resource), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors[:3]]

    return validate


def _reports() -> list[tuple[str, RadiologyReport]]:
    out = []
    for name in FHIR_FILES:
        out += [(name, r) for r in parse_fhir((DATA / "fhir" / name).read_bytes())]
    for name in HL7_FILES:
        out += [(name, r) for r in parse_oru((DATA / "hl7" / name).read_bytes())]
    return out


REPORTS = _reports()


def _check_bundle(bundle: dict[str, Any], validate: Validate) -> None:
    validate(bundle)
    for entry in bundle["entry"]:
        validate(entry["resource"])
    Bundle.model_validate(bundle)  # and the fhir.resources R4B models


def test_schema_validator_can_fail(fhir_validate: Validate) -> None:
    with pytest.raises(AssertionError):
        fhir_validate({"resourceType": "DiagnosticReport", "status": "final"})  # code missing
    with pytest.raises(AssertionError):
        fhir_validate(
            {"resourceType": "DiagnosticReport", "status": "bogus", "code": {"text": "x"}}
        )


@pytest.mark.parametrize(
    ("name", "report"), REPORTS, ids=[f"{n}-{r.accession}" for n, r in REPORTS]
)
def test_preliminary_bundle_validates(
    name: str, report: RadiologyReport, fhir_validate: Validate
) -> None:
    bundle = build_preliminary_bundle(report, IMPRESSION, DRAFT, now=NOW)
    _check_bundle(bundle, fhir_validate)
    dr, device, provenance = (e["resource"] for e in bundle["entry"])
    assert dr["status"] == "preliminary"
    assert dr["conclusion"] == IMPRESSION
    assert dr["meta"]["security"] == [AIAST]
    assert provenance["target"] == [{"reference": bundle["entry"][0]["fullUrl"]}]
    assert provenance["agent"][0]["who"]["reference"] == bundle["entry"][1]["fullUrl"]
    assert provenance["reason"][0]["coding"][0]["code"] == "AIAST"
    assert device["identifier"][0]["value"] == (
        "HuggingFaceTB/SmolLM2-135M|radiology-impression@2024.05.1"
    )
    # The report we write reads back as the same report with the drafted impression.
    (back,) = parse_fhir(bundle)
    assert back.findings == report.findings
    assert back.impression == " ".join(IMPRESSION.split())
    assert back.accession == report.accession
    assert back.patient_id == report.patient_id


@pytest.mark.parametrize(
    ("name", "report"), REPORTS, ids=[f"{n}-{r.accession}" for n, r in REPORTS]
)
def test_final_bundle_validates(
    name: str, report: RadiologyReport, fhir_validate: Validate
) -> None:
    bundle = build_final_bundle(report, "Normal.", APPROVAL, draft=DRAFT, now=NOW)
    _check_bundle(bundle, fhir_validate)
    dr = bundle["entry"][0]["resource"]
    assert dr["status"] == "final"
    assert dr["resultsInterpreter"] == [
        {"type": "Practitioner", "identifier": {"value": "RAD4471"}, "display": "Ngozi Okafor"}
    ]
    provenance = bundle["entry"][-1]["resource"]
    roles = [a["type"]["coding"][0]["code"] for a in provenance["agent"]]
    assert roles == ["author", "verifier"]


def test_final_without_draft_has_no_ai_label(fhir_validate: Validate) -> None:
    _, report = REPORTS[0]
    bundle = build_final_bundle(report, "Normal.", APPROVAL, now=NOW)
    _check_bundle(bundle, fhir_validate)
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == [
        "DiagnosticReport",
        "Provenance",
    ]
    assert "meta" not in bundle["entry"][0]["resource"]
    assert "reason" not in bundle["entry"][1]["resource"]


def test_conditional_update_is_idempotent() -> None:
    (report,) = parse_fhir((DATA / "fhir" / "dr_presentedform_text.json").read_bytes())
    first = build_preliminary_bundle(report, IMPRESSION, DRAFT, now=NOW)
    again = build_preliminary_bundle(report, IMPRESSION, DRAFT, now=NOW)
    assert first == again
    request = first["entry"][0]["request"]
    assert request == {
        "method": "PUT",
        "url": "DiagnosticReport?identifier=http://hospital.example.org/accession|ACC-2024-005521",
    }
    assert first["entry"][1]["request"]["method"] == "PUT"
    assert first["entry"][1]["request"]["url"].startswith("Device?identifier=urn:radgpt:model|")


def test_fhir_origin_keeps_identifiers_subject_and_code() -> None:
    (report,) = parse_fhir((DATA / "fhir" / "dr_basedon_accession.json").read_bytes())
    dr = build_preliminary_bundle(report, "x", DRAFT, now=NOW)["entry"][0]["resource"]
    source = json.loads((DATA / "fhir" / "dr_basedon_accession.json").read_text("utf-8"))
    assert dr["subject"] == source["subject"]
    assert dr["code"] == source["code"]
    assert dr["category"] == source["category"]
    assert dr["basedOn"] == source["basedOn"]
    assert source["identifier"][0] in dr["identifier"]
    assert {
        "system": "http://hospital.example.org/accession",
        "value": "MR-BR-2024-0088",
    }.items() <= dr["identifier"][-1].items()


def test_hl7_origin_synthesises_subject_code_and_accession() -> None:
    (report,) = parse_oru((DATA / "hl7" / "oru_v25_loinc_crlf_zsegments.hl7").read_bytes())
    bundle = build_preliminary_bundle(report, "x", DRAFT, now=NOW)
    dr = bundle["entry"][0]["resource"]
    assert dr["subject"]["identifier"]["value"] == "RV00981273"
    assert dr["subject"]["identifier"]["system"] == "urn:radgpt:hl7:assigning-authority:RIVERSIDE"
    assert dr["code"]["coding"][0] == {
        "system": "http://www.ama-assn.org/go/cpt",
        "code": "71046",
        "display": "XR CHEST 2 VIEWS",
    }
    assert dr["effectiveDateTime"] == "2023-08-21T16:10:00-05:00"
    assert bundle["entry"][0]["request"]["url"] == (
        "DiagnosticReport?identifier=urn:radgpt:hl7:accession:RIVERSIDE%20RAD|RV-ACC-9912034"
    )
    text = base64.b64decode(dr["presentedForm"][0]["data"]).decode()
    assert text.startswith("FINDINGS:\nThere is stable marked cardiomegaly")
    assert "AI-generated draft impression pending radiologist review" in text
    custom = build_preliminary_bundle(report, "x", DRAFT, accession_system="urn:oid:1.2.3", now=NOW)
    assert custom["entry"][0]["request"]["url"].endswith("=urn:oid:1.2.3|RV-ACC-9912034")


def test_render_errors() -> None:
    _, report = REPORTS[0]
    with pytest.raises(RenderError, match="accession"):
        build_preliminary_bundle(report.model_copy(update={"accession": None}), "x", DRAFT)
    with pytest.raises(RenderError, match="empty"):
        build_preliminary_bundle(report, " ", DRAFT)
    nobody = Approval(radiologist=Clinician(), approved_at=NOW)
    with pytest.raises(RenderError, match="radiologist"):
        build_final_bundle(report, "x", nobody)


@pytest.mark.parametrize(
    ("authority", "system"),
    [
        ("1.2.840.113619", "urn:oid:1.2.840.113619"),
        ("http://x.org/mrn", "http://x.org/mrn"),
        ("ST MARY", "urn:radgpt:hl7:assigning-authority:ST%20MARY"),
        (None, None),
    ],
)
def test_hl7_identifier_system(authority: str | None, system: str | None) -> None:
    assert hl7_identifier_system(authority) == system


def test_one_provenance_per_report_in_a_multi_report_bundle(fhir_validate: Validate) -> None:
    first, second = parse_fhir((DATA / "fhir" / "bundle_collection_two_reports.json").read_bytes())
    bundles = [build_preliminary_bundle(r, IMPRESSION, DRAFT, now=NOW) for r in (first, second)]
    provenances = [e for b in bundles for e in b["entry"] if e["request"]["url"] == "Provenance"]
    assert len({e["fullUrl"] for e in provenances}) == 2  # was one uuid for the draft id alone
    merged = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    for bundle in bundles:  # what a client merging both (radgpt render used to) gets
        urls = {e["fullUrl"] for e in merged["entry"]}
        merged["entry"].extend(e for e in bundle["entry"] if e["fullUrl"] not in urls)
    _check_bundle(merged, fhir_validate)
    kinds = [e["resource"]["resourceType"] for e in merged["entry"]]
    assert kinds.count("Provenance") == kinds.count("DiagnosticReport") == 2
    assert kinds.count("Device") == 1  # the one AI device is shared
    reports = [
        e["fullUrl"]
        for e, kind in zip(merged["entry"], kinds, strict=True)
        if kind == "DiagnosticReport"
    ]
    targets = [
        e["resource"]["target"][0]["reference"]
        for e, kind in zip(merged["entry"], kinds, strict=True)
        if kind == "Provenance"
    ]
    assert sorted(targets) == sorted(reports)
    finals = [
        build_final_bundle(r, "Normal.", APPROVAL, draft=DRAFT, now=NOW) for r in (first, second)
    ]
    assert finals[0]["entry"][-1]["fullUrl"] != finals[1]["entry"][-1]["fullUrl"]


def test_preliminary_has_no_results_interpreter(fhir_validate: Validate) -> None:
    name = "dr_presentedform_only_plain_identifier.json"
    source = json.loads((DATA / "fhir" / name).read_text("utf-8"))
    assert source["resultsInterpreter"]  # the RIS names a radiologist
    (report,) = parse_fhir(source)
    bundle = build_preliminary_bundle(report, IMPRESSION, DRAFT, now=NOW)
    _check_bundle(bundle, fhir_validate)
    dr = bundle["entry"][0]["resource"]
    assert "resultsInterpreter" not in dr
    assert "Zielinski" not in json.dumps(bundle)


def test_the_writer_refuses_a_bundle_it_cannot_validate() -> None:
    """What the writer builds is validated with the R4B models; a broken one never leaves."""
    from integration.codecs.fhir import writer
    from integration.errors import RenderError

    broken = {"fullUrl": "urn:uuid:x", "resource": {"resourceType": "DiagnosticReport"}}
    with pytest.raises(RenderError, match="not valid R4"):
        writer._bundle([broken])  # no status, no code: not a DiagnosticReport
    ok = writer._bundle([])
    assert ok == {"resourceType": "Bundle", "type": "transaction", "entry": []}


def test_a_draft_of_the_base_model_alone_still_makes_a_valid_bundle() -> None:
    """No adapter (an empty adapter id): no empty FHIR string, the Bundle validates."""
    from datetime import UTC, datetime

    from integration.codecs.fhir.writer import build_preliminary_bundle
    from integration.report.model import DraftProvenance, RadiologyReport

    report = RadiologyReport(
        source_format="hl7v2", message_id="M1", accession="ACC-BASE", patient_id="MRN1",
        modality="CR", findings="Small right pleural effusion.",
        procedure={"code": "71046", "display": "XR chest 2 views", "system": "http://www.ama-assn.org/go/cpt"},
    )  # fmt: skip
    draft = DraftProvenance(
        draft_id="D1", model_id="instant-extractive", adapter_id="",
        drafted_at=datetime(2026, 12, 1, tzinfo=UTC),
    )  # fmt: skip
    bundle = build_preliminary_bundle(report, "Right effusion.", draft)
    device = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Device"
    )
    assert device["version"] == [{"type": {"text": "base model"}, "value": "instant-extractive"}]
    assert device["deviceName"][1]["name"] == "radgpt impression drafter (base model)"
