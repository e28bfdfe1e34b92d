"""FHIR R4 reader: the corpus under tests/data/fhir and invalid resources."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from integration.codecs.fhir.reader import html_to_text, parse_fhir
from integration.errors import InvalidResourceError, MessageParseError

FHIR = Path(__file__).resolve().parents[1] / "data" / "fhir"
EXPECTED: dict[str, list[dict[str, Any]]] = json.loads(
    (FHIR / "expected.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_reports(name: str) -> None:
    raw = (FHIR / name).read_bytes()
    reports = parse_fhir(raw)
    assert len(reports) == len(EXPECTED[name])
    for report, want in zip(reports, EXPECTED[name], strict=True):
        summary = report.summary()
        for key, value in want.items():
            assert summary[key] == value, key
        assert report.source_format == "fhir-r4" and report.fhir is not None
    # str, bytes and an already-decoded dict give the same result
    as_dict = parse_fhir(json.loads(raw))
    assert [r.summary() for r in as_dict] == [r.summary() for r in reports]


def test_transaction_bundle_references_become_logical() -> None:
    (report,) = parse_fhir((FHIR / "bundle_transaction_urn.json").read_bytes())
    assert report.fhir is not None
    # urn:uuid references do not survive outside the bundle: use the Patient identifier.
    assert report.fhir.subject == {
        "identifier": {
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                ]
            },
            "system": "http://hospital.example.org/mrn",
            "value": "MRN-0045521",
        },
        "type": "Patient",
    }
    assert report.patient_id_system == "http://hospital.example.org/mrn"
    assert report.fhir.bundle_type == "transaction"
    assert report.fhir.effective == {
        "effectivePeriod": {"start": "2024-04-12T07:30:00Z", "end": "2024-04-12T07:40:00Z"}
    }


def test_relative_reference_is_kept() -> None:
    (report,) = parse_fhir((FHIR / "dr_presentedform_text.json").read_bytes())
    assert report.fhir is not None
    assert report.fhir.subject == {"reference": "Patient/pat-88120", "display": "Jane Whitfield"}
    assert report.fhir.resource_id == "cxr-5521"
    # issue 12: presentedForm gets the HL7 section handling, INDICATION included (was None).
    assert report.indication == "Cough for three weeks."


def test_html_to_text_blocks_become_lines() -> None:
    html = "<div><h3>Findings:</h3><p>A &amp; B.</p><script>x()</script><br/>C</div>"
    assert html_to_text(html) == "Findings:\nA & B.\nC"


def _dr(**extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        # a report with findings needs an identity (issue 12): a sole business identifier
        "identifier": [{"system": "http://hospital.example.org/accession", "value": "ACC-T1"}],
        "status": "final",
        "code": {"text": "XR Chest"},
        "presentedForm": [
            {
                "contentType": "text/plain",
                "data": base64.b64encode(b"FINDINGS: Clear lungs. IMPRESSION: Normal.").decode(),
            }
        ],
    }
    resource.update(extra)
    return resource


def test_latin1_attachment_charset() -> None:
    data = base64.b64encode("FINDINGS: Herz normal groß.".encode("latin-1")).decode()
    (report,) = parse_fhir(
        _dr(presentedForm=[{"contentType": "text/plain; charset=iso-8859-1", "data": data}])
    )
    assert report.findings == "Herz normal groß."


def test_binary_attachment_only_yields_nothing() -> None:
    pdf = [{"contentType": "application/pdf", "data": base64.b64encode(b"%PDF-1.4").decode()}]
    assert parse_fhir(_dr(presentedForm=pdf)) == []


def test_bundle_without_reports_yields_nothing() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "id": "x"}}],
    }
    assert parse_fhir(bundle) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("invalid_wrong_resource_type.json", "unsupported resourceType Patient"),
        ("invalid_missing_status.json", "missing required element 'status'"),
        ("invalid_missing_code.json", "missing required element 'code'"),
        ("invalid_bogus_status.json", "status 'signed-off' is not in the R4 value set"),
        ("invalid_bad_element.json", "effectiveDateTime"),
    ],
)
def test_invalid_resources(name: str, message: str) -> None:
    with pytest.raises(InvalidResourceError, match=message):
        parse_fhir((FHIR / name).read_bytes())


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"resourceType": "Bundle", "type": "bogus", "entry": []}, "type 'bogus'"),
        (
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"id": "x"}}]},
            "no resourceType",
        ),
        ({"status": "final"}, "resourceType \\(missing\\)"),
        (_dr(presentedForm=[{"contentType": "text/plain", "data": "!!notbase64"}]), "base64"),
        (
            _dr(
                contained=[
                    {
                        "resourceType": "Observation",
                        "id": "o",
                        "status": "done",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "18782-3"}]},
                        "valueString": "x",
                    }
                ],
                result=[{"reference": "#o"}],
            ),
            "Observation .*status 'done'",
        ),
    ],
)
def test_invalid_documents(document: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidResourceError, match=message):
        parse_fhir(document)


def test_bogus_status_inside_a_bundle_names_the_entry() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": _dr(status="done")}],
    }
    with pytest.raises(InvalidResourceError, match="entry\\[0\\]"):
        parse_fhir(bundle)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", (FHIR / "not_json.json").read_bytes()])
def test_not_json(raw: bytes) -> None:
    with pytest.raises(MessageParseError):
        parse_fhir(raw)


def test_findings_and_impression_codes_are_those_of_the_hl7_reader() -> None:
    """One vocabulary: a DICOM-coded Finding Observation is findings in FHIR as in HL7."""
    from integration.codecs.fhir.reader import parse_fhir
    from integration.report.vocabulary import FINDINGS_CODES, IMPRESSION_CODES

    assert {"18782-3", "59776-5", "121071"} <= FINDINGS_CODES
    assert {"19005-8", "121073"} <= IMPRESSION_CODES
    resource = {
        "resourceType": "DiagnosticReport",
        "id": "dcm-coded",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "36643-5"}]},
        "identifier": [{"system": "urn:oid:1.2.3", "value": "ACC-DCM-1"}],
        "contained": [
            {
                "resourceType": "Observation",
                "id": "f",
                "status": "final",
                "code": {
                    "coding": [
                        {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "121071"}
                    ]
                },
                "valueString": "Small left pleural effusion.",
            },
            {
                "resourceType": "Observation",
                "id": "i",
                "status": "final",
                "code": {
                    "coding": [
                        {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "121073"}
                    ]
                },
                "valueString": "Left effusion.",
            },
        ],
        "result": [{"reference": "#f"}, {"reference": "#i"}],
    }
    [report] = parse_fhir(json.dumps(resource).encode())
    assert report.findings == "Small left pleural effusion."
    assert report.impression == "Left effusion."
