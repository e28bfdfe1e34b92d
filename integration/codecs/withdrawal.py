"""Withdrawal messages: take back a preliminary AI report that was already sent downstream.

When a radiologist rejects a draft whose preliminary report was published, or a newer report
supersedes it, receivers that stored the preliminary must stop showing it:

* **HL7 v2**: the same ORU^R01 (same PID/ORC/OBR as the inbound order) with **OBR-25 ``I``**
  (table 0123: "no results available; procedure incomplete" -- the study still awaits its
  report; ``X`` would cancel the order and ``C`` would claim a corrected *final* result) and
  **every OBX-11 ``W``** (table 0085: "post original as wrong"), the withdrawn impression
  re-sent so receivers that replace by accession and OBX-3 find it, and NTE segments saying
  why.  MSH-10 is ``W`` + the draft id, so a re-send is identical.
* **FHIR R4**: a transaction Bundle that PUTs the DiagnosticReport (conditional update on the
  accession, as the preliminary did) with ``status`` **``entered-in-error``**, plus a
  Provenance (activity ``NULLIFY``) naming who withdrew it and why.

Pure functions; :class:`integration.pipeline.publisher.Publisher` sends them.  The writers' private
helpers are reused so the withdrawal carries exactly the segments/identifiers of the
preliminary it withdraws.
"""

from __future__ import annotations

from datetime import UTC, datetime

from integration.codecs.fhir.writer import (
    _DATA_OPERATION,
    _PARTICIPANT,
    AIAST,
    JsonObject,
    _accession_identifier,
    _bundle,
    _entry,
    _instant,
    _practitioner,
    _report_resource,
    _report_url,
    _source_entity,
    _urn,
)
from integration.codecs.hl7.writer import (
    _FINDINGS_ID,
    _IMPRESSION_ID,
    _esc,
    _message_type,
    _msh,
    _nte,
    _obr,
    _obx,
    _segments,
    _set_field,
    _version_of,
    _with_charset,
)
from integration.errors import RenderError
from integration.report.model import Clinician, DraftProvenance, RadiologyReport
from integration.report.vocabulary import WithdrawalReason

__all__ = [
    "HL7_WITHDRAWN_OBR_STATUS",
    "HL7_WITHDRAWN_OBX_STATUS",
    "WithdrawalReason",
    "build_withdrawal_bundle",
    "build_withdrawal_oru",
]

HL7_WITHDRAWN_OBR_STATUS = "I"
HL7_WITHDRAWN_OBX_STATUS = "W"


def _notice(reason: WithdrawalReason, draft: DraftProvenance) -> str:
    why = (
        "rejected by the reviewing radiologist"
        if reason == "rejected"
        else "superseded by a newer report for this accession"
    )
    return (
        f"WITHDRAWN: the preliminary AI-drafted impression (draft {draft.draft_id}) was {why}. "
        "Disregard it; the radiologist's report follows."
    )


def build_withdrawal_oru(
    report: RadiologyReport,
    impression: str,
    draft: DraftProvenance,
    *,
    reason: WithdrawalReason,
    control_id: str,
    now: datetime,
    output_charset: str | None = None,
) -> str:
    """The ORU^R01 withdrawing a preliminary (OBR-25 ``I``, every OBX-11 ``W``; ER7, ``\\r``)."""
    if not impression.strip():
        raise RenderError("cannot withdraw a preliminary report with an empty impression")
    version = _version_of(report)
    notice = _notice(reason, draft)
    msh = _msh(
        report,
        control_id=control_id,
        now=now,
        version=version,
        message_type=_message_type(version),
    )
    obr = _obr(report, status=HL7_WITHDRAWN_OBR_STATUS, now=now, interpreter=None)
    segments = _segments(report, msh, obr)
    segments.append(_nte(1, notice))
    set_id = 1
    if report.findings:
        segments.append(
            _obx(1, _FINDINGS_ID, report.findings, status="W", observed=now, version=version)
        )
        set_id = 2
    obx = _obx(
        set_id, _IMPRESSION_ID, impression, status="W", observed=draft.drafted_at, version=version
    )
    fields = obx.split("|")
    _set_field(fields, 17, f"AIDRAFT^{_esc('AI draft: ' + draft.model_id)}^99RADGPT")
    segments.append("|".join(fields))
    segments.append(_nte(1, f"Withdrawn ({reason}); OBX-11 W: posted in error."))
    return _with_charset(report, segments, output_charset)


def build_withdrawal_bundle(
    report: RadiologyReport,
    impression: str,
    draft: DraftProvenance,
    *,
    reason: WithdrawalReason,
    withdrawn_by: Clinician | None,
    now: datetime,
) -> JsonObject:
    """Transaction Bundle: the DiagnosticReport ``entered-in-error`` + a NULLIFY Provenance."""
    if not impression.strip():
        raise RenderError("cannot withdraw a preliminary report with an empty impression")
    accession, identifiers = _accession_identifier(report, None)
    report_url = _urn(
        "DiagnosticReport", accession["system"], accession["value"], draft.draft_id, "withdrawn"
    )
    notice = _notice(reason, draft)
    dr = _report_resource(
        report,
        impression,
        status="entered-in-error",
        issued=now,
        identifiers=identifiers,
        ai_labelled=True,
        notice=notice,
        interpreter=None,
        local_tz=UTC,
    )
    agents: list[JsonObject] = []
    if withdrawn_by is not None:
        agents.append(
            {
                "type": {
                    "coding": [{"system": _PARTICIPANT, "code": "author", "display": "Author"}]
                },
                "who": _practitioner(withdrawn_by),
            }
        )
    else:
        agents.append({"who": {"display": "radgpt"}})
    provenance: JsonObject = {
        "resourceType": "Provenance",
        "target": [{"reference": report_url}],
        "occurredDateTime": _instant(now),
        "recorded": _instant(now),
        "reason": [{"coding": [dict(AIAST)], "text": f"AI draft withdrawn ({reason})"}],
        "activity": {"coding": [{"system": _DATA_OPERATION, "code": "NULLIFY"}]},
        "agent": agents,
        "entity": [_source_entity(report, accession)],
    }
    return _bundle(
        [
            _entry(report_url, dr, "PUT", _report_url(accession)),
            _entry(
                _urn("Provenance", draft.draft_id, "withdrawn"), provenance, "POST", "Provenance"
            ),
        ]
    )
