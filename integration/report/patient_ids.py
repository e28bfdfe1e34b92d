"""The one rule for patient ids in the audit log, and how to find one in a message.

Rule (docs/guide-compliance.md): every audit event about a report or a message carries the
patient identifier **in plain text, exactly as the report names it** -- HL7 PID-3.1 of the
``MR`` repetition (else the first; PID-2 for v2.3), FHIR ``DiagnosticReport.subject``
identifier value -- which is also what ``drafts.patient_id`` holds.  A compliance officer
therefore queries by the MRN as it appears in the RIS.  The audit log is PHI and is
protected like the database (roles, files 0600).

When a message cannot be parsed the id is taken best-effort from the raw bytes
(:func:`patient_hint`); when no id can be found the column stays empty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from integration.report.model import RadiologyReport

__all__ = ["patient_hint", "patient_of"]

_SEGMENTS = re.compile(r"[\r\n]+")


def patient_of(reports: Sequence[RadiologyReport]) -> str | None:
    """The patient of a message's reports (the first one named; messages hold one PID)."""
    for report in reports:
        if report.patient_id:
            return report.patient_id
    return None


def _hl7_hint(text: str) -> str | None:
    if not text.startswith("MSH") or len(text) < 8:
        return None
    field, component, repetition = text[3], text[4], text[5]
    for segment in _SEGMENTS.split(text):
        if not segment.startswith("PID" + field):
            continue
        fields = segment.split(field)
        reps = fields[3].split(repetition) if len(fields) > 3 else []
        chosen = next(
            (r for r in reps if len(r.split(component)) > 4 and r.split(component)[4] == "MR"),
            reps[0] if reps else "",
        )
        value = chosen.split(component)[0].strip()
        if not value and len(fields) > 2:
            value = fields[2].split(component)[0].strip()
        return value[:128] or None
    return None


def _fhir_hint(text: str) -> str | None:
    try:
        document = json.loads(text)
    except ValueError:
        return None
    resources: list[object] = [document] if isinstance(document, dict) else []
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        resources = [
            e.get("resource") for e in document.get("entry") or [] if isinstance(e, dict)
        ]
    for resource in resources:
        if not isinstance(resource, dict) or resource.get("resourceType") != "DiagnosticReport":
            continue
        subject = resource.get("subject")
        identifier = subject.get("identifier") if isinstance(subject, dict) else None
        if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
            return identifier["value"][:128] or None
    return None


def patient_hint(raw: bytes) -> str | None:
    """Best-effort patient id of a message that failed to parse (never raises)."""
    try:
        text = raw.decode("utf-8", "replace").lstrip("\ufeff\x0b \t\r\n")
    except Exception:  # pragma: no cover - decode with "replace" does not raise
        return None
    return _hl7_hint(text) if text.startswith("MSH") else _fhir_hint(text)
