"""CSV and FHIR R4 AuditEvent export (integration.audit.export), validated against the schema."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from integration.audit.export import (
    CSV_COLUMNS,
    AuditRow,
    to_csv,
    to_fhir_audit_event,
    to_fhir_bundle,
)
from integration.audit.log import AUDIT_ACTIONS

T0 = datetime(2025, 3, 4, 10, 15, 30, 123000, tzinfo=UTC)

ALL_ACTIONS = sorted(AUDIT_ACTIONS)  # every action the log knows


def _row(i: int, action: str, **kw: Any) -> AuditRow:
    base: dict[str, Any] = {
        "id": i,
        "recorded_at": T0 + timedelta(seconds=i),
        "actor": "dr-house",
        "actor_role": "radiologist",
        "action": action,
        "entity_type": "draft",
        "entity_id": f"d-{i}",
        "accession": "ACC123",
        "patient_id": "MRN0042",
        "outcome": "success",
        "details": {"draft_id": f"d-{i}"},
        "prev_hash": f"{i - 1:064d}",
        "row_hash": f"{i:064x}",
    }
    base.update(kw)
    return AuditRow(**base)


def _rows() -> list[AuditRow]:
    rows = [_row(i + 1, action) for i, action in enumerate(ALL_ACTIONS)]
    rows.append(
        _row(
            100,
            "denied",
            actor="officer",
            actor_role="compliance",
            outcome="denied",
            entity_type="api",
            entity_id="POST /api/drafts/{id}/approve",
            accession=None,
            patient_id=None,
            details={"reason": "role lacks 'review'"},
        )
    )
    rows.append(_row(101, "received", actor="radgpt-worker", actor_role="system", details={}))
    rows.append(_row(102, "queried", details={"filters": {"actor": "dr-house"}, "count": 3}))
    return rows


@pytest.fixture(scope="module")
def fhir_validator(fhir_schema_path: Path) -> jsonschema.protocols.Validator:
    schema = json.loads(fhir_schema_path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def test_bundle_validates_against_official_r4_schema(
    fhir_validator: jsonschema.protocols.Validator,
) -> None:
    bundle = to_fhir_bundle(_rows(), now=T0)
    errors = sorted(fhir_validator.iter_errors(bundle), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]]
    assert bundle["type"] == "collection"
    assert len(bundle["entry"]) == len(_rows())
    assert all(e["resource"]["resourceType"] == "AuditEvent" for e in bundle["entry"])


def test_schema_validation_can_fail(fhir_validator: jsonschema.protocols.Validator) -> None:
    """The validator really checks AuditEvents (guards against a vacuous schema check)."""
    broken = to_fhir_bundle([_row(1, "approved")], now=T0)
    del broken["entry"][0]["resource"]["recorded"]
    broken["entry"][0]["resource"]["action"] = "X"
    assert list(fhir_validator.iter_errors(broken))


def test_audit_event_follows_balp_shape() -> None:
    event = to_fhir_audit_event(_row(7, "approved"))
    assert event["type"]["code"] == "rest"
    assert event["subtype"][0] == {
        "system": "http://hl7.org/fhir/restful-interaction",
        "code": "update",
        "display": "update",
    }
    assert event["subtype"][1]["code"] == "approved"
    assert event["action"] == "U"
    assert event["outcome"] == "0"
    assert event["recorded"] == "2025-03-04T10:15:37.123Z"
    user, server = event["agent"]
    assert user["requestor"] is True and user["who"]["identifier"]["value"] == "dr-house"
    assert user["type"]["coding"][0]["code"] == "humanuser"
    assert server["requestor"] is False and server["type"]["coding"][0]["code"] == "110152"
    assert event["source"]["type"][0]["code"] == "4"
    data, patient, accession = event["entity"]
    assert data["what"]["identifier"]["value"] == "d-7"
    assert {d["type"]: d["valueString"] for d in data["detail"]}["row_hash"] == f"{7:064x}"
    assert patient["role"]["code"] == "1" and patient["what"]["identifier"]["value"] == "MRN0042"
    assert accession["what"]["identifier"]["type"]["coding"][0]["code"] == "ACSN"


def test_read_query_denied_and_system_rows() -> None:
    rows = {(r.id): r for r in _rows()}
    viewed = to_fhir_audit_event(_row(1, "viewed"))
    assert (viewed["action"], viewed["subtype"][0]["code"]) == ("R", "read")
    denied = to_fhir_audit_event(rows[100])
    assert denied["outcome"] == "4"
    assert denied["outcomeDesc"] == "role lacks 'review'"
    assert denied["type"]["code"] == "110113"
    assert len(denied["entity"]) == 1  # no patient, no accession
    system = to_fhir_audit_event(rows[101])
    assert system["agent"][0]["type"]["coding"][0]["code"] == "110150"
    query = to_fhir_audit_event(rows[102])
    assert query["entity"][0]["role"]["code"] == "24"
    decoded = json.loads(base64.b64decode(query["entity"][0]["query"]))
    assert decoded["filters"] == {"actor": "dr-house"}
    failed = to_fhir_audit_event(_row(5, "published", outcome="failure"))
    assert failed["outcome"] == "8"


def test_event_ids_are_stable() -> None:
    row = _row(3, "viewed")
    assert to_fhir_audit_event(row)["id"] == to_fhir_audit_event(row)["id"]
    assert to_fhir_audit_event(row)["id"] != to_fhir_audit_event(_row(4, "viewed"))["id"]


def test_csv_round_trip_and_injection_guard() -> None:
    rows = [*_rows(), _row(200, "viewed", actor='=HYPERLINK("x")', patient_id="-5")]
    text = to_csv(rows)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert tuple(parsed[0].keys()) == CSV_COLUMNS
    assert len(parsed) == len(rows)
    first = parsed[0]
    assert first["recorded_at"] == "2025-03-04T10:15:31.123Z"
    assert json.loads(first["details"]) == {"draft_id": "d-1"}
    assert first["row_hash"] == f"{1:064x}"
    assert parsed[-1]["actor"].startswith("'=")
    assert parsed[-1]["patient_id"] == "'-5"
    denied = next(p for p in parsed if p["id"] == "100")
    assert denied["accession"] == "" and denied["outcome"] == "denied"


def test_empty_exports() -> None:
    assert to_csv([]).strip() == ",".join(CSV_COLUMNS)
    assert to_fhir_bundle([], now=T0)["entry"] == []


def test_bundle_parses_as_fhir_resources_r4b() -> None:
    from fhir.resources.R4B.bundle import Bundle

    bundle = Bundle.model_validate(to_fhir_bundle(_rows(), now=T0))
    assert bundle.entry is not None
    events = [entry.resource for entry in bundle.entry]
    assert {type(e).__name__ for e in events} == {"AuditEvent"}
    assert all(e.agent[0].requestor is True for e in events)
