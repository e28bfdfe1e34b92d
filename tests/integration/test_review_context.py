"""Patient and study context for the reviewer, read from HL7 v2 and FHIR R4 messages, and the
audit patient-id rule's best-effort look-up in messages that fail to parse."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from integration.codecs.codec import parse_message
from integration.codecs.fhir.reader import parse_fhir
from integration.codecs.hl7.reader import parse_oru
from integration.report.patient_ids import patient_hint, patient_of

DATA = Path(__file__).resolve().parents[1] / "data"


def _with_obr(raw: bytes, number: int, value: str) -> bytes:
    segments = raw.decode("utf-8").replace("\n", "\r").split("\r")
    out = []
    for segment in segments:
        if segment.startswith("OBR|"):
            fields = segment.split("|")
            fields += [""] * (number + 1 - len(fields))
            fields[number] = value
            segment = "|".join(fields)
        out.append(segment)
    return "\r".join(out).encode("utf-8")


def test_hl7_demographics_and_priority() -> None:
    raw = (DATA / "hl7" / "oru_v251_findings_only.hl7").read_bytes()
    report = parse_oru(raw)[0]
    assert report.patient is not None
    assert (report.patient.family, report.patient.given) == ("HOLLOWAY", "DENISE")
    assert report.patient.birth_date == date(1958, 3, 22) and report.patient.sex == "female"
    assert report.patient.display == "HOLLOWAY, DENISE"
    assert report.priority is None
    # OBR-27.6 (TQ priority), table 0027; OBR-5 is the deprecated fallback.
    assert parse_oru(_with_obr(raw, 27, "^^^^^S"))[0].priority == "stat"
    assert parse_oru(_with_obr(raw, 5, "A"))[0].priority == "asap"
    assert parse_oru(_with_obr(raw, 27, "1^^^^^R"))[0].priority == "routine"
    assert parse_oru(_with_obr(raw, 27, "^^^^^T"))[0].priority == "urgent"
    assert parse_oru(_with_obr(raw, 27, "^^^^^Q"))[0].priority is None  # unknown code


def test_fhir_patient_and_service_request_context() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:1f0b2a64-0d36-4d6e-9b0f-6b1e6f0b7a01",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:mrn", "value": "MRN-F1"}],
                    "name": [{"use": "official", "family": "Ferreira", "given": ["Ana", "M"]}],
                    "gender": "female",
                    "birthDate": "1985-01-30",
                },
            },
            {
                "fullUrl": "urn:uuid:1f0b2a64-0d36-4d6e-9b0f-6b1e6f0b7a02",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "active",
                    "intent": "order",
                    "priority": "stat",
                    "identifier": [{"system": "urn:acc", "value": "ACC-F1"}],
                    "subject": {"reference": "urn:uuid:1f0b2a64-0d36-4d6e-9b0f-6b1e6f0b7a01"},
                    "reasonCode": [{"text": "Sudden severe headache"}],
                    "requester": {"display": "Dr Rui Costa"},
                },
            },
            {
                "fullUrl": "urn:uuid:1f0b2a64-0d36-4d6e-9b0f-6b1e6f0b7a03",
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "status": "preliminary",
                    "code": {"text": "CT head without contrast"},
                    "subject": {"reference": "urn:uuid:1f0b2a64-0d36-4d6e-9b0f-6b1e6f0b7a01"},
                    "basedOn": [{"reference": "urn:uuid:1f0b2a64-0d36-4d6e-9b0f-6b1e6f0b7a02"}],
                    "effectiveDateTime": "2024-05-12T08:15:00Z",
                    "presentedForm": [
                        {
                            "contentType": "text/plain",
                            "data": "RklORElOR1M6IE5vIGFjdXRlIGhlbW9ycmhhZ2Uu",
                        }
                    ],
                },
            },
        ],
    }
    report = parse_fhir(json.dumps(bundle))[0]
    assert report.patient is not None and report.patient.display == "FERREIRA, Ana M"
    assert report.patient.birth_date == date(1985, 1, 30) and report.patient.sex == "female"
    assert report.priority == "stat"
    assert report.indication == "Sudden severe headache"
    assert report.ordering_provider is not None
    assert report.ordering_provider.display == "Dr Rui Costa"
    assert report.accession == "ACC-F1" and report.patient_id == "MRN-F1"


def test_context_survives_the_stored_json_round_trip() -> None:
    report = parse_oru(_with_obr((DATA / "hl7" / "oru_v24_tx_repetitions_lf.hl7").read_bytes(),
                                 27, "^^^^^S"))[0]  # fmt: skip
    again = type(report).model_validate(report.model_dump(mode="json"))
    assert again.patient == report.patient and again.priority == "stat"


@pytest.mark.parametrize(
    "name",
    ["oru_v251_findings_only.hl7", "oru_v23_gdt_lines.hl7", "oru_v28_two_obr.hl7",
     "oru_v251_mllp_utf8.hl7"],
)  # fmt: skip
def test_patient_hint_agrees_with_the_reader(name: str) -> None:
    raw = (DATA / "hl7" / name).read_bytes()
    assert patient_hint(raw) == patient_of(parse_message(raw))


def test_patient_hint_of_unparseable_messages() -> None:
    raw = (DATA / "hl7" / "oru_v251_findings_only.hl7").read_bytes()
    broken = raw.replace(b"|2.5.1", b"|9.9", 1)  # an unsupported version: dead-lettered
    assert patient_hint(broken) == patient_of(parse_message(raw))
    fhir = (DATA / "fhir" / "invalid_bogus_status.json").read_bytes()
    subject = json.loads(fhir).get("subject", {}).get("identifier", {}).get("value")
    assert patient_hint(fhir) == subject
    assert patient_hint(b"\x00garbage") is None
    assert patient_hint((DATA / "fhir" / "not_json.json").read_bytes()) is None
