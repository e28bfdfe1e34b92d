"""FHIR R4 writers: transaction Bundles for the preliminary (AI draft) and the final report.

Each Bundle holds three entries:

* the DiagnosticReport, written with a conditional update
  ``PUT DiagnosticReport?identifier=<system>|<accession>`` so that a re-send is idempotent;
  status ``preliminary`` (draft) or ``final``; ``conclusion`` = the impression; the original
  identifiers, subject, code, category and effective time; ``meta.security`` ``AIAST``
  (v3-ObservationValue) whenever the impression was drafted by the model;
* the AI Device (model + adapter identity), conditional update on its identifier;
* a Provenance (AI Transparency IG pattern): target = the report, reason ``AIAST``, agent =
  the Device as ``author``; for the final report also the radiologist as ``verifier``.

Reports that came in as HL7 v2 work too: subject, code and identifiers are synthesised from the
canonical fields.  Every resource validates against the official FHIR R4 JSON schema (tests).
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote

from integration.errors import RenderError
from integration.report.model import Approval, Clinician, DraftProvenance, RadiologyReport
from integration.report.vocabulary import WithdrawalReason, withdrawal_notice

__all__ = [
    "ACCESSION_SYSTEM_PREFIX",
    "AIAST",
    "MODEL_SYSTEM",
    "build_final_bundle",
    "build_preliminary_bundle",
    "build_withdrawal_bundle",
    "hl7_identifier_system",
]

JsonObject = dict[str, Any]

V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
AIAST: JsonObject = {
    "system": V3_OBSERVATION_VALUE,
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
MODEL_SYSTEM = "urn:radgpt:model"
ACCESSION_SYSTEM_PREFIX = "urn:radgpt:hl7:accession:"
_AA_SYSTEM_PREFIX = "urn:radgpt:hl7:assigning-authority:"
_NAMESPACE = uuid.UUID("6f1c7a52-3c1e-4d7e-9a59-0f7b7d0e2c11")
_V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_LOINC = "http://loinc.org"
_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_HL7_CODING_SYSTEMS = {
    "LN": _LOINC,
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "RADLEX": "http://radlex.org",
    "RID": "http://radlex.org",
}
_RADIOLOGY_CATEGORY = {"system": _LOINC, "code": "LP29684-5", "display": "Radiology"}


def hl7_identifier_system(authority: str | None) -> str | None:
    """A FHIR identifier system for an HL7 assigning authority/namespace.

    An OID becomes ``urn:oid:...``, a URI stays, a plain name becomes
    ``urn:radgpt:hl7:assigning-authority:<name>``.
    """
    if not authority:
        return None
    if all(part.isdigit() for part in authority.split(".")) and "." in authority:
        return f"urn:oid:{authority}"
    if ":" in authority:
        return authority
    return _AA_SYSTEM_PREFIX + quote(authority, safe="")


def _instant(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


def _date_time(moment: datetime, local_tz: tzinfo) -> str:
    """FHIR dateTime; naive (HL7) times are read in ``local_tz``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=local_tz)
    return _instant(moment)


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, '|'.join(parts))}"


def _accession_identifier(
    report: RadiologyReport, accession_system: str | None
) -> tuple[JsonObject, list[JsonObject]]:
    """The accession identifier used for the conditional update, and all identifiers."""
    if not report.accession:
        raise RenderError("cannot write a FHIR DiagnosticReport: the report has no accession")
    identifiers = [dict(i) for i in (report.fhir.identifiers if report.fhir else [])]
    for identifier in identifiers:
        if identifier.get("value") == report.accession and identifier.get("system"):
            return identifier, identifiers
    system = accession_system or report.source_system
    if not system or report.source_format == "hl7v2":
        origin = report.hl7
        namespace = ""
        if origin is not None:
            namespace = (
                origin.sending_facility.split("^")[0] or origin.sending_application.split("^")[0]
            )
        system = accession_system or ACCESSION_SYSTEM_PREFIX + quote(
            namespace or "unknown", safe=""
        )
    identifier = {
        "type": {"coding": [{"system": _V2_0203, "code": "ACSN", "display": "Accession ID"}]},
        "system": system,
        "value": report.accession,
    }
    identifiers.append(identifier)
    return identifier, identifiers


def _code(report: RadiologyReport) -> JsonObject:
    if report.fhir is not None:
        return dict(report.fhir.code)
    proc = report.procedure
    if proc is None or not (proc.code or proc.display):
        raise RenderError("cannot write a FHIR DiagnosticReport: the report has no procedure code")
    coding: JsonObject = {}
    if proc.system:
        coding["system"] = _HL7_CODING_SYSTEMS.get(
            proc.system.upper(), hl7_identifier_system(proc.system)
        )
    if proc.code:
        coding["code"] = proc.code
    if proc.display:
        coding["display"] = proc.display
    concept: JsonObject = {"coding": [coding]} if proc.code else {}
    if proc.display:
        concept["text"] = proc.display
    return concept


def _category(report: RadiologyReport) -> list[JsonObject]:
    if report.fhir is not None and report.fhir.category:
        return [dict(c) for c in report.fhir.category]
    section = (report.modality or "RAD").upper()
    return [{"coding": [{"system": _V2_0074, "code": section}, _RADIOLOGY_CATEGORY]}]


def _subject(report: RadiologyReport) -> JsonObject:
    if report.fhir is not None and report.fhir.subject:
        return dict(report.fhir.subject)
    if not report.patient_id:
        raise RenderError("cannot write a FHIR DiagnosticReport: the report has no patient id")
    identifier: JsonObject = {
        "type": {"coding": [{"system": _V2_0203, "code": "MR"}]},
        "value": report.patient_id,
    }
    system = hl7_identifier_system(report.patient_id_system)
    if system:
        identifier["system"] = system
    return {"type": "Patient", "identifier": identifier}


def _practitioner(clinician: Clinician) -> JsonObject:
    ref: JsonObject = {}
    if clinician.reference:
        ref["reference"] = clinician.reference
    elif clinician.id:
        ref["type"] = "Practitioner"
        ref["identifier"] = {"value": clinician.id}
    if clinician.display:
        ref["display"] = clinician.display
    if not ref.get("reference") and not ref.get("identifier"):
        raise RenderError("the radiologist needs an id or a reference")
    return ref


def _presented_form(findings: str, impression: str, notice: str | None) -> list[JsonObject]:
    parts = []
    if findings:
        parts.append(f"FINDINGS:\n{findings}")
    parts.append(f"IMPRESSION:\n{impression.strip()}")
    if notice:
        parts.append(notice)
    text = "\n\n".join(parts) + "\n"
    return [
        {
            "contentType": "text/plain; charset=utf-8",
            "language": "en",
            "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
            "title": "Radiology report",
        }
    ]


def _report_resource(
    report: RadiologyReport,
    impression: str,
    *,
    status: str,
    issued: datetime,
    identifiers: list[JsonObject],
    ai_labelled: bool,
    notice: str | None,
    interpreter: Clinician | None,
    local_tz: tzinfo,
) -> JsonObject:
    resource: JsonObject = {"resourceType": "DiagnosticReport"}
    if ai_labelled:
        resource["meta"] = {"security": [dict(AIAST)]}
    resource["identifier"] = identifiers
    origin = report.fhir
    if origin is not None and origin.based_on:
        resource["basedOn"] = [dict(b) for b in origin.based_on]
    resource["status"] = status
    resource["category"] = _category(report)
    resource["code"] = _code(report)
    resource["subject"] = _subject(report)
    if origin is not None and origin.encounter:
        resource["encounter"] = dict(origin.encounter)
    if origin is not None and origin.effective:
        resource.update(origin.effective)
    elif report.observed_at is not None:
        resource["effectiveDateTime"] = _date_time(report.observed_at, local_tz)
    resource["issued"] = _instant(issued)
    if origin is not None and origin.performer:
        resource["performer"] = [dict(p) for p in origin.performer]
    if interpreter is not None:
        resource["resultsInterpreter"] = [_practitioner(interpreter)]
    resource["conclusion"] = impression.strip()
    resource["presentedForm"] = _presented_form(report.findings, impression, notice)
    return resource


def _device(draft: DraftProvenance) -> tuple[JsonObject, str]:
    adapter = draft.adapter_id + (f"@{draft.adapter_version}" if draft.adapter_version else "")
    value = f"{draft.model_id}|{adapter}"
    versions: list[JsonObject] = [{"type": {"text": "base model"}, "value": draft.model_id}]
    if adapter:  # FHIR strings are never empty: a draft of the base model has no adapter entry
        versions.append({"type": {"text": "LoRA adapter"}, "value": adapter})
    device: JsonObject = {
        "resourceType": "Device",
        "identifier": [{"system": MODEL_SYSTEM, "value": value}],
        "status": "active",
        "deviceName": [
            {"name": draft.model_id, "type": "model-name"},
            {
                "name": f"radgpt impression drafter ({adapter or 'base model'})",
                "type": "user-friendly-name",
            },
        ],
        "modelNumber": draft.model_id,
        "type": {"text": "Artificial-Intelligence"},
        "version": versions,
    }
    query = quote(f"{MODEL_SYSTEM}|{value}", safe=":|/@.-_%")
    return device, f"Device?identifier={query}"


def _entry(full_url: str, resource: JsonObject, method: str, url: str) -> JsonObject:
    return {"fullUrl": full_url, "resource": resource, "request": {"method": method, "url": url}}


def _report_url(identifier: JsonObject) -> str:
    query = quote(f"{identifier['system']}|{identifier['value']}", safe=":|/@.-_%")
    return f"DiagnosticReport?identifier={query}"


def _bundle(entries: list[JsonObject]) -> JsonObject:
    """The transaction Bundle of ``entries``, validated with the ``fhir.resources`` R4B
    models the reader uses (about a millisecond): a Bundle the writer cannot vouch for is a
    :class:`~integration.errors.RenderError`, never a message sent downstream."""
    bundle: JsonObject = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:  # where and what only: the input values may hold PHI
        errors = exc.errors()
        first: dict[str, Any] = dict(errors[0]) if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise RenderError(
            f"the FHIR Bundle built is not valid R4: {where}: {first.get('msg', 'invalid')}"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise RenderError(f"the FHIR Bundle built is not valid R4 ({type(exc).__name__})") from exc
    return bundle


def _source_entity(report: RadiologyReport, accession: JsonObject) -> JsonObject:
    what: JsonObject = {
        "type": "DiagnosticReport",
        "identifier": {k: v for k, v in accession.items() if k in ("system", "value")},
        "display": "findings of the source radiology report",
    }
    return {"role": "source", "what": what}


def build_preliminary_bundle(
    report: RadiologyReport,
    impression: str,
    draft: DraftProvenance,
    *,
    accession_system: str | None = None,
    now: datetime | None = None,
    local_tz: tzinfo = UTC,
) -> JsonObject:
    """Transaction Bundle: preliminary DiagnosticReport (AIAST) + AI Device + Provenance.

    ``accession_system`` names the identifier system for HL7-origin accessions (default
    ``urn:radgpt:hl7:accession:<sending facility>``); naive HL7 times are read in ``local_tz``.
    Full URLs are deterministic (uuid5 of accession and draft id), so a re-send is identical.
    """
    if not impression.strip():
        raise RenderError("cannot write a preliminary report with an empty impression")
    now = now or datetime.now(UTC)
    accession, identifiers = _accession_identifier(report, accession_system)
    report_url = _urn("DiagnosticReport", accession["system"], accession["value"], draft.draft_id)
    device, device_query = _device(draft)
    device_url = _urn("Device", device["identifier"][0]["value"])
    # One Provenance per report: a Bundle with several reports keeps every one of them.
    provenance_url = _urn("Provenance", accession["system"], accession["value"], draft.draft_id)
    notice = (
        "AI-generated draft impression pending radiologist review "
        f"(model {draft.model_id}, adapter {draft.adapter_id}"
        + (f" {draft.adapter_version}" if draft.adapter_version else "")
        + f", draft {draft.draft_id})."
    )
    dr = _report_resource(
        report,
        impression,
        status="preliminary",
        issued=now,
        identifiers=identifiers,
        ai_labelled=True,
        notice=notice,
        interpreter=None,
        local_tz=local_tz,
    )
    provenance: JsonObject = {
        "resourceType": "Provenance",
        "target": [{"reference": report_url}],
        "occurredDateTime": _instant(draft.drafted_at),
        "recorded": _instant(now),
        "reason": [
            {
                "coding": [dict(AIAST)],
                "text": (
                    f"AI-drafted impression. {draft.fallback_notice}"
                    if draft.fallback_notice
                    else "AI-drafted impression"
                ),
            }
        ],
        "activity": {"coding": [{"system": _DATA_OPERATION, "code": "CREATE"}]},
        "agent": [
            {
                "type": {
                    "coding": [{"system": _PARTICIPANT, "code": "author", "display": "Author"}]
                },
                "who": {"reference": device_url, "display": device["deviceName"][1]["name"]},
            }
        ],
        "entity": [_source_entity(report, accession)],
    }
    return _bundle(
        [
            _entry(report_url, dr, "PUT", _report_url(accession)),
            _entry(device_url, device, "PUT", device_query),
            _entry(provenance_url, provenance, "POST", "Provenance"),
        ]
    )


def build_final_bundle(
    report: RadiologyReport,
    impression: str,
    approval: Approval,
    *,
    draft: DraftProvenance | None = None,
    accession_system: str | None = None,
    now: datetime | None = None,
    local_tz: tzinfo = UTC,
) -> JsonObject:
    """Transaction Bundle: final DiagnosticReport with ``resultsInterpreter`` + Provenance.

    The Provenance has the radiologist as ``verifier``; with ``draft`` the AI Device is also
    an ``author`` agent, the Device entry is included and the report keeps the AIAST label.
    """
    if not impression.strip():
        raise RenderError("cannot write a final report with an empty impression")
    now = now or datetime.now(UTC)
    accession, identifiers = _accession_identifier(report, accession_system)
    key = approval.draft_id or (draft.draft_id if draft else "") or _instant(approval.approved_at)
    report_url = _urn("DiagnosticReport", accession["system"], accession["value"], key, "final")
    dr = _report_resource(
        report,
        impression,
        status="final",
        issued=approval.approved_at,
        identifiers=identifiers,
        ai_labelled=draft is not None,
        notice=None,
        interpreter=approval.radiologist,
        local_tz=local_tz,
    )
    entries = [_entry(report_url, dr, "PUT", _report_url(accession))]
    agents: list[JsonObject] = []
    if draft is not None:
        device, device_query = _device(draft)
        device_url = _urn("Device", device["identifier"][0]["value"])
        entries.append(_entry(device_url, device, "PUT", device_query))
        agents.append(
            {
                "type": {
                    "coding": [{"system": _PARTICIPANT, "code": "author", "display": "Author"}]
                },
                "who": {"reference": device_url, "display": device["deviceName"][1]["name"]},
            }
        )
    agents.append(
        {
            "type": {
                "coding": [{"system": _PARTICIPANT, "code": "verifier", "display": "Verifier"}]
            },
            "who": _practitioner(approval.radiologist),
        }
    )
    provenance: JsonObject = {
        "resourceType": "Provenance",
        "target": [{"reference": report_url}],
        "occurredDateTime": _instant(approval.approved_at),
        "recorded": _instant(now),
        "activity": {"coding": [{"system": _DATA_OPERATION, "code": "UPDATE"}]},
        "agent": agents,
        "entity": [_source_entity(report, accession)],
    }
    if draft is not None:
        text = (
            "AI-drafted impression, edited and verified by a radiologist"
            if approval.edited
            else "AI-drafted impression verified by a radiologist"
        )
        provenance["reason"] = [{"coding": [dict(AIAST)], "text": text}]
    provenance_url = _urn("Provenance", accession["system"], accession["value"], key, "final")
    entries.append(_entry(provenance_url, provenance, "POST", "Provenance"))
    return _bundle(entries)


def build_withdrawal_bundle(
    report: RadiologyReport,
    impression: str,
    draft: DraftProvenance,
    *,
    reason: WithdrawalReason,
    withdrawn_by: Clinician | None,
    now: datetime,
) -> JsonObject:
    """The transaction Bundle withdrawing a preliminary: it PUTs the DiagnosticReport
    (conditional update on the accession, as the preliminary did) with ``status``
    ``entered-in-error``, plus a Provenance (activity ``NULLIFY``) naming who withdrew it
    and why."""
    if not impression.strip():
        raise RenderError("cannot withdraw a preliminary report with an empty impression")
    accession, identifiers = _accession_identifier(report, None)
    report_url = _urn(
        "DiagnosticReport", accession["system"], accession["value"], draft.draft_id, "withdrawn"
    )
    notice = withdrawal_notice(reason, draft.draft_id)
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
