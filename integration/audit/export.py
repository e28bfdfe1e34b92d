"""Audit log export for compliance officers: CSV and a FHIR R4 Bundle of AuditEvents.

The FHIR export follows the IHE Basic Audit Log Patterns (BALP): every row becomes an R4
``AuditEvent`` with ``type``/``subtype``/``action``/``recorded``/``outcome``, the acting user as
the ``requestor`` agent, this service as the ``source`` and destination agent, and entities
for the object acted on (draft, message, audit log query), the patient and the accession.  The
row's ``prev_hash``/``row_hash`` travel as entity details so an exported trail stays checkable.

Both builders are pure: rows in, text or a JSON-ready ``dict`` out.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CSV_COLUMNS",
    "AuditRow",
    "ExportFormat",
    "to_csv",
    "to_fhir_audit_event",
    "to_fhir_bundle",
]

ExportFormat = Literal["csv", "fhir"]

CSV_COLUMNS = (
    "id",
    "recorded_at",
    "actor",
    "actor_role",
    "action",
    "outcome",
    "entity_type",
    "entity_id",
    "accession",
    "patient_id",
    "details",
    "prev_hash",
    "row_hash",
)

_AUDIT_NS = uuid.UUID("6f1f5a34-5d0f-4c0e-9f38-8d4b51c1a9a2")
_RADGPT_ACTION_SYSTEM = "urn:radgpt:audit-action"
_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_REST = "http://hl7.org/fhir/restful-interaction"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_EXTRA_ROLE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


class AuditRow(BaseModel):
    """One audit log row as exported and returned by the API (never holds report text)."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    recorded_at: datetime
    actor: str
    actor_role: str
    action: str
    entity_type: str
    entity_id: str
    accession: str | None = None
    patient_id: str | None = None
    outcome: str = "success"
    details: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    row_hash: str


# --- CSV ------------------------------------------------------------------------------------


def _csv_safe(value: str) -> str:
    """Defuse spreadsheet formula injection (OWASP): a leading = + - @ tab/CR is quoted."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def to_csv(rows: Iterable[AuditRow]) -> str:
    """RFC 4180 CSV with a header row; timestamps ISO 8601 UTC, ``details`` as JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                str(row.id),
                _instant(row.recorded_at),
                _csv_safe(row.actor),
                _csv_safe(row.actor_role),
                row.action,
                row.outcome,
                _csv_safe(row.entity_type),
                _csv_safe(row.entity_id),
                _csv_safe(row.accession or ""),
                _csv_safe(row.patient_id or ""),
                json.dumps(row.details, sort_keys=True, separators=(",", ":"), default=str),
                row.prev_hash,
                row.row_hash,
            ]
        )
    return buffer.getvalue()


# --- FHIR R4 AuditEvent (IHE BALP) ----------------------------------------------------------


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


_REST_TYPE = _coding(_EVENT_TYPE, "rest", "Restful Operation")
_IMPORT = _coding(_DCM, "110107", "Import")
_EXPORT = _coding(_DCM, "110106", "Export")
_APP_ACTIVITY = _coding(_DCM, "110100", "Application Activity")
_SECURITY_ALERT = _coding(_DCM, "110113", "Security Alert")
_USER_AUTH = _coding(_DCM, "110114", "User Authentication")

# action -> (AuditEvent.type, RESTful interaction subtype or None, AuditEvent.action)
_ACTION_MAP: dict[str, tuple[dict[str, str], str | None, str]] = {
    "received": (_IMPORT, None, "C"),
    "parsed": (_APP_ACTIVITY, None, "E"),
    "skipped": (_IMPORT, None, "E"),
    "duplicate": (_IMPORT, None, "E"),
    "dead_lettered": (_IMPORT, None, "E"),
    "drafted": (_REST_TYPE, "create", "C"),
    "published": (_EXPORT, None, "R"),
    "viewed": (_REST_TYPE, "read", "R"),
    "listed": (_REST_TYPE, "search-type", "E"),
    "approved": (_REST_TYPE, "update", "U"),
    "edited": (_REST_TYPE, "update", "U"),
    "rejected": (_REST_TYPE, "update", "U"),
    "ris_final": (_IMPORT, None, "U"),
    "withdrawn": (_EXPORT, None, "D"),
    "communicated": (_APP_ACTIVITY, None, "C"),
    "queried": (_REST_TYPE, "search-type", "E"),
    "exported": (_EXPORT, None, "R"),
    "verified": (_APP_ACTIVITY, None, "E"),
    "denied": (_SECURITY_ALERT, None, "E"),
    "unauthenticated": (_USER_AUTH, None, "E"),
}
_REST_DISPLAY = {
    "create": "create",
    "read": "read",
    "update": "update",
    "search-type": "search type",
}
_OUTCOME = {"success": "0", "denied": "4", "failure": "8"}
_QUERY_ACTIONS = {"listed", "queried", "exported", "verified"}
_SYSTEM_ROLES = {"system", "service", "pipeline", "worker"}


def _instant(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_id(row: AuditRow) -> str:
    return str(uuid.uuid5(_AUDIT_NS, f"{row.id}|{row.row_hash}"))


def _agents(row: AuditRow, site: str) -> list[dict[str, Any]]:
    is_system = row.actor_role in _SYSTEM_ROLES
    actor: dict[str, Any] = {
        "type": {
            "coding": [
                _coding(_DCM, "110150", "Application")
                if is_system
                else _coding(_EXTRA_ROLE, "humanuser", "human user")
            ]
        },
        "role": [{"text": row.actor_role}],
        "who": {"identifier": {"system": f"urn:{site}:actor", "value": row.actor}},
        "name": row.actor,
        "requestor": True,
    }
    server: dict[str, Any] = {
        "type": {"coding": [_coding(_DCM, "110152", "Destination Role ID")]},
        "who": {"display": site},
        "requestor": False,
    }
    return [actor, server]


def _entities(row: AuditRow, site: str) -> list[dict[str, Any]]:
    is_query = row.action in _QUERY_ACTIONS
    hashes = [
        {"type": "prev_hash", "valueString": row.prev_hash},
        {"type": "row_hash", "valueString": row.row_hash},
    ]
    if row.details:
        details = json.dumps(row.details, sort_keys=True, separators=(",", ":"), default=str)
        hashes.append({"type": "details", "valueString": details})
    data: dict[str, Any] = {
        "what": {"identifier": {"system": f"urn:{site}:{row.entity_type}", "value": row.entity_id}},
        "type": _coding(_ENTITY_TYPE, "2", "System Object"),
        "role": (
            _coding(_OBJECT_ROLE, "24", "Query")
            if is_query
            else _coding(_OBJECT_ROLE, "3", "Report")
            if row.entity_type == "draft"
            else _coding(_OBJECT_ROLE, "4", "Domain Resource")
        ),
        "name": row.entity_type,
        "detail": hashes,
    }
    if is_query and row.details:
        query = json.dumps(row.details, sort_keys=True, separators=(",", ":"), default=str)
        data["query"] = base64.b64encode(query.encode("utf-8")).decode("ascii")
    entities = [data]
    if row.patient_id:
        entities.append(
            {
                "what": {"identifier": {"value": row.patient_id}},
                "type": _coding(_ENTITY_TYPE, "1", "Person"),
                "role": _coding(_OBJECT_ROLE, "1", "Patient"),
            }
        )
    if row.accession:
        entities.append(
            {
                "what": {
                    "identifier": {
                        "type": {"coding": [_coding(_V2_0203, "ACSN", "Accession ID")]},
                        "value": row.accession,
                    }
                },
                "type": _coding(_ENTITY_TYPE, "2", "System Object"),
                "role": _coding(_OBJECT_ROLE, "3", "Report"),
            }
        )
    return entities


def to_fhir_audit_event(row: AuditRow, *, site: str = "radgpt") -> dict[str, Any]:
    """One row as an R4 AuditEvent resource (JSON-ready)."""
    event_type, rest, action = _ACTION_MAP.get(row.action, (_APP_ACTIVITY, None, "E"))
    subtype = [_coding(_RADGPT_ACTION_SYSTEM, row.action, row.action.replace("_", " "))]
    if rest is not None:
        subtype.insert(0, _coding(_REST, rest, _REST_DISPLAY[rest]))
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": _event_id(row),
        "type": event_type,
        "subtype": subtype,
        "action": action,
        "recorded": _instant(row.recorded_at),
        "outcome": _OUTCOME.get(row.outcome, "8"),
    }
    reason = row.details.get("reason")
    if row.outcome != "success" and isinstance(reason, str):
        event["outcomeDesc"] = reason
    event["agent"] = _agents(row, site)
    event["source"] = {
        "site": site,
        "observer": {"display": site},
        "type": [_coding(_SOURCE_TYPE, "4", "Application Server")],
    }
    event["entity"] = _entities(row, site)
    return event


def to_fhir_bundle(
    rows: Sequence[AuditRow], *, site: str = "radgpt", now: datetime | None = None
) -> dict[str, Any]:
    """A FHIR R4 ``collection`` Bundle holding one AuditEvent per row."""
    stamp = now or datetime.now(UTC)
    entries = []
    for row in rows:
        event = to_fhir_audit_event(row, site=site)
        entries.append({"fullUrl": f"urn:uuid:{event['id']}", "resource": event})
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": _instant(stamp)},
        "type": "collection",
        "timestamp": _instant(stamp),
        "entry": entries,
    }
