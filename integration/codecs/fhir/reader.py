"""FHIR R4 reader: DiagnosticReport, or a Bundle holding DiagnosticReports.

Resources are validated with the ``fhir.resources.R4B`` models (the R4B DiagnosticReport and
Observation equal R4's); fhir.resources does not check code values, so ``status`` is checked
against the R4 value sets here.  Anything invalid raises :class:`InvalidResourceError`.

Where the text comes from, in order of preference (see docs/hl7-fhir-mapping.md):

* findings: ``result`` Observations coded LOINC ``18782-3`` / ``59776-5`` (``valueString``),
  resolved as contained ``#id``, Bundle ``urn:uuid:`` fullUrl or relative ``Observation/x``;
  then ``presentedForm`` (text/plain, text/html, application/xhtml; base64), FINDINGS section
  when the text has headings; then the ``text`` narrative;
* impression: ``conclusion``, then a ``19005-8`` Observation, then the IMPRESSION heading;
* indication: the INDICATION / CLINICAL HISTORY heading of the report text;
* accession, in order: an ``identifier`` typed ``ACSN`` (v2-0203); an ``identifier`` whose
  ``system`` is one of the site's accession systems; the ``basedOn`` ServiceRequest's
  identifier typed ACSN, then FILL (filler), then PLAC (placer), then its sole identifier
  (contained, in the Bundle, or the logical ``basedOn.identifier``); finally the
  DiagnosticReport's sole business identifier.  Where it came from is
  ``RadiologyReport.accession_source``.

A DiagnosticReport without findings text yields no report (``[]``), not an error; one with
findings but no accession raises :class:`MissingIdentityError` (dead-lettered).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from html.parser import HTMLParser
from typing import Any

from pydantic import ValidationError

from integration.codecs.hygiene import check_report_text
from integration.errors import (
    InvalidResourceError,
    MessageParseError,
    MessageTooLarge,
    MissingIdentityError,
)
from integration.report.model import (
    Clinician,
    Coded,
    FhirOrigin,
    ParseWarning,
    PatientDemographics,
    RadiologyReport,
)
from integration.report.sections import (
    findings_from_text,
    impression_from_text,
    normalize_text,
    sign_off_lines,
    split_sections,
    strip_sign_off,
)
from integration.report.vocabulary import FINDINGS_CODES, IMPRESSION_CODES

__all__ = [
    "DIAGNOSTIC_REPORT_STATUSES",
    "html_to_text",
    "load_json",
    "parse_fhir",
]

JsonObject = dict[str, Any]

DIAGNOSTIC_REPORT_STATUSES = frozenset(
    {
        "registered",
        "partial",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "appended",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
_OBSERVATION_STATUSES = frozenset(
    {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
_BUNDLE_TYPES = frozenset(
    {
        "document",
        "message",
        "transaction",
        "transaction-response",
        "batch",
        "batch-response",
        "history",
        "searchset",
        "collection",
    }
)
_LOINC = "http://loinc.org"
_V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_TEXT_TYPES = ("text/plain", "text/html", "application/xhtml", "application/xhtml+xml")


# --------------------------------------------------------------------------- text helpers


class _TextExtractor(HTMLParser):
    _BLOCK = frozenset(
        {
            "p",
            "div",
            "br",
            "li",
            "tr",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "table",
            "ul",
            "ol",
            "section",
            "pre",
            "blockquote",
            "hr",
            "dt",
            "dd",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title"):
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title"):
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Visible text of an HTML/XHTML fragment, block elements as line breaks."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


def _attachment_text(attachment: Mapping[str, Any]) -> str | None:
    content_type = str(attachment.get("contentType") or "text/plain")
    media = content_type.split(";")[0].strip().lower()
    if media not in _TEXT_TYPES:
        return None
    data = attachment.get("data")
    if not isinstance(data, str):
        return None
    match = re.search(r"charset=([\w.-]+)", content_type, re.IGNORECASE)
    charset = match.group(1) if match else "utf-8"
    try:
        raw = base64.b64decode(data, validate=False)
        text = raw.decode(charset)
    except (binascii.Error, ValueError, LookupError) as exc:
        raise InvalidResourceError(
            "DiagnosticReport.presentedForm.data is not base64 text in the declared charset"
        ) from exc
    return html_to_text(text) if media != "text/plain" else text


# --------------------------------------------------------------------------- validation


def load_json(raw: bytes | str | Mapping[str, Any]) -> JsonObject:
    """Decode FHIR JSON (bytes/str) or accept a mapping; MessageParseError if not JSON."""
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MessageParseError(
            f"not valid FHIR JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise MessageParseError(
            f"not valid FHIR JSON: not UTF-8 (byte 0x{exc.object[exc.start]:02X} at offset "
            f"{exc.start})"
        ) from exc
    except ValueError as exc:
        raise MessageParseError(f"not valid FHIR JSON: {exc.__class__.__name__}") from exc
    if not isinstance(data, dict):
        raise MessageParseError("not a FHIR resource: the JSON document is not an object")
    return data


def _validation_message(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid"
    first = errors[0]
    location = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__")
    message = first.get("msg", "invalid")
    extra = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{location}: {message}{extra}" if location else f"{message}{extra}"


def _validate(resource: JsonObject, resource_type: str, where: str) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    model = get_fhir_model_class(resource_type)
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        raise InvalidResourceError(
            f"invalid {resource_type} {where}: {_validation_message(exc)}"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise InvalidResourceError(f"invalid {resource_type} {where}: {exc}") from exc


def _check_report(resource: JsonObject, where: str) -> None:
    for required in ("status", "code"):
        if not resource.get(required):
            raise InvalidResourceError(
                f"invalid DiagnosticReport {where}: missing required element '{required}'"
            )
    status = resource["status"]
    if status not in DIAGNOSTIC_REPORT_STATUSES:
        raise InvalidResourceError(
            f"invalid DiagnosticReport {where}: status {str(status)[:40]!r} is not in the R4 "
            "value set (registered|partial|preliminary|final|amended|corrected|appended|"
            "cancelled|entered-in-error|unknown)"
        )
    _validate(resource, "DiagnosticReport", where)


def _check_observation(resource: JsonObject, where: str) -> None:
    status = resource.get("status")
    if status not in _OBSERVATION_STATUSES:
        raise InvalidResourceError(
            f"invalid Observation {where}: status {str(status)[:40]!r} is not in the R4 value set"
        )
    _validate(resource, "Observation", where)


# --------------------------------------------------------------------------- references


class _Context:
    """Resolves references inside one document: contained resources and Bundle entries."""

    def __init__(self, entries: list[tuple[str | None, JsonObject]]) -> None:
        self.by_url: dict[str, JsonObject] = {}
        for full_url, resource in entries:
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if full_url:
                self.by_url[full_url] = resource
            if rtype and rid:
                self.by_url.setdefault(f"{rtype}/{rid}", resource)

    def resolve(self, ref: Mapping[str, Any] | None, owner: JsonObject) -> JsonObject | None:
        if not ref:
            return None
        target = ref.get("reference")
        if not isinstance(target, str) or not target:
            return None
        if target.startswith("#"):
            for contained in owner.get("contained") or []:
                if isinstance(contained, dict) and contained.get("id") == target[1:]:
                    return contained
            return None
        if target in self.by_url:
            return self.by_url[target]
        # absolute URL whose tail is Type/id
        parts = target.rstrip("/").split("/")
        if len(parts) >= 2:
            return self.by_url.get("/".join(parts[-2:]).split("/_history")[0])
        return None


def _codes(concept: Mapping[str, Any] | None) -> set[str]:
    if not concept:
        return set()
    return {
        str(coding.get("code"))
        for coding in concept.get("coding") or []
        if isinstance(coding, dict) and coding.get("code")
    }


def _observation_text(obs: JsonObject) -> str:
    if isinstance(obs.get("valueString"), str):
        return str(obs["valueString"])
    concept = obs.get("valueCodeableConcept")
    if isinstance(concept, dict):
        return str(concept.get("text") or "")
    return ""


def _first_coding(concept: Mapping[str, Any] | None) -> Coded | None:
    if not concept:
        return None
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    loinc = [c for c in codings if c.get("system") == _LOINC]
    coding = (loinc or codings or [{}])[0]
    code, display = coding.get("code"), coding.get("display") or concept.get("text")
    if not (code or display):
        return None
    return Coded(code=code, display=display, system=coding.get("system"))


def _identifier_value(identifier: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    if not identifier:
        return None, None
    return identifier.get("value"), identifier.get("system")


def _is_accession(identifier: Mapping[str, Any]) -> bool:
    return "ACSN" in _codes(identifier.get("type"))


def _typed(identifiers: list[JsonObject], code: str) -> JsonObject | None:
    for identifier in identifiers:
        if code in _codes(identifier.get("type")) and identifier.get("value"):
            return identifier
    return None


def _find_accession(
    identifiers: list[JsonObject],
    requests: list[tuple[JsonObject | None, JsonObject]],
    accession_systems: tuple[str, ...],
) -> tuple[str | None, str | None, str | None]:
    """``(value, system, source)`` of the accession, by the documented order."""
    found = _typed(identifiers, "ACSN")
    if found is not None:
        return found.get("value"), found.get("system"), "identifier:ACSN"
    for identifier in identifiers:
        if identifier.get("system") in accession_systems and identifier.get("value"):
            return identifier["value"], identifier["system"], "identifier:system"
    for request, ref in requests:
        candidates = [i for i in (request or {}).get("identifier") or [] if isinstance(i, dict)]
        if request is None and isinstance(ref.get("identifier"), dict):
            candidates = [ref["identifier"]]
        for code in ("ACSN", "FILL", "PLAC"):
            found = _typed(candidates, code)
            if found is not None:
                return found.get("value"), found.get("system"), f"basedOn:{code}"
        for identifier in candidates:
            if identifier.get("system") in accession_systems and identifier.get("value"):
                return identifier["value"], identifier["system"], "basedOn:system"
        valued = [i for i in candidates if i.get("value")]
        if len(valued) == 1:
            return valued[0]["value"], valued[0].get("system"), "basedOn:identifier"
    valued = [i for i in identifiers if i.get("value")]
    if len(valued) == 1:
        return valued[0]["value"], valued[0].get("system"), "identifier:sole"
    return None, None, None


def _logical(resource: JsonObject | None, ref: Mapping[str, Any]) -> JsonObject:
    """A reference usable outside this document: urn/contained ones become identifier refs."""
    target = ref.get("reference")
    if isinstance(target, str) and target and not target.startswith(("urn:", "#")):
        return {k: v for k, v in ref.items() if k in ("reference", "display", "type")}
    out: JsonObject = {}
    if resource is not None:
        identifiers = [i for i in resource.get("identifier") or [] if isinstance(i, dict)]
        preferred = [i for i in identifiers if "MR" in _codes(i.get("type"))] or identifiers
        if preferred:
            out["identifier"] = {
                k: v for k, v in preferred[0].items() if k in ("system", "value", "type")
            }
        if resource.get("resourceType"):
            out["type"] = resource["resourceType"]
    elif isinstance(ref.get("identifier"), dict):
        out["identifier"] = ref["identifier"]
        if isinstance(ref.get("type"), str):
            out["type"] = ref["type"]
    if ref.get("display"):
        out["display"] = ref["display"]
    return out


# --------------------------------------------------------------------------- reports


def _parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _report(
    resource: JsonObject,
    ctx: _Context,
    *,
    message_id: str,
    bundle_type: str | None,
    where: str,
    accession_systems: tuple[str, ...] = (),
) -> RadiologyReport | None:
    _check_report(resource, where)

    findings_parts: list[str] = []
    impression_parts: list[str] = []
    for index, ref in enumerate(resource.get("result") or []):
        obs = ctx.resolve(ref, resource)
        if obs is None or obs.get("resourceType") != "Observation":
            continue
        codes = _codes(obs.get("code"))
        if codes & (FINDINGS_CODES | IMPRESSION_CODES):
            _check_observation(obs, f"{where} result[{index}]")
            text = _observation_text(obs)
            (findings_parts if codes & FINDINGS_CODES else impression_parts).append(text)

    full_text = ""
    for attachment in resource.get("presentedForm") or []:
        decoded = _attachment_text(attachment) if isinstance(attachment, dict) else None
        if decoded and decoded.strip():
            full_text = decoded
            break
    if not full_text:
        div = (resource.get("text") or {}).get("div")
        if isinstance(div, str):
            full_text = html_to_text(div)

    findings = normalize_text("\n".join(findings_parts))
    if findings:
        sections = split_sections("\n".join(findings_parts))
        findings = normalize_text(
            strip_sign_off(sections.get("findings", sections.get("", findings)))
        )
    if not findings and full_text:
        findings = findings_from_text(full_text)
    if not findings:
        return None

    conclusion = str(resource.get("conclusion") or "")
    impression: str | None = normalize_text(strip_sign_off(conclusion)) or None
    if impression is None and impression_parts:
        impression = impression_from_text("\n".join(impression_parts)) or (
            normalize_text(strip_sign_off("\n".join(impression_parts))) or None
        )
    if impression is None and full_text:
        impression = impression_from_text(full_text)
    indication = None
    if full_text:
        sections = split_sections(full_text)
        indication = normalize_text(sections.get("indication") or sections.get("history") or "")
    sign_off = [
        line
        for text in ("\n".join(findings_parts), "\n".join(impression_parts), conclusion, full_text)
        for line in sign_off_lines(text)
    ]
    sign_off = list(dict.fromkeys(sign_off))

    identifiers = [i for i in resource.get("identifier") or [] if isinstance(i, dict)]
    based_on: list[JsonObject] = []
    requests: list[tuple[JsonObject | None, JsonObject]] = []
    for ref in resource.get("basedOn") or []:
        if not isinstance(ref, dict):
            continue
        request = ctx.resolve(ref, resource)
        based_on.append(_logical(request, ref))
        requests.append((request, ref))
    accession, accession_system, accession_source = _find_accession(
        identifiers, requests, accession_systems
    )
    if accession is None:
        raise MissingIdentityError(
            f"DiagnosticReport {where} has findings but no accession: no identifier typed "
            "ACSN or in a configured accession system, no basedOn ServiceRequest identifier, "
            "and not exactly one business identifier"
        )

    subject_ref = resource.get("subject") if isinstance(resource.get("subject"), dict) else None
    patient = ctx.resolve(subject_ref, resource) if subject_ref else None
    subject = _logical(patient, subject_ref) if subject_ref else None
    patient_id, patient_system = None, None
    if subject is not None:
        if isinstance(subject.get("identifier"), dict):
            patient_id, patient_system = _identifier_value(subject["identifier"])
        elif isinstance(subject.get("reference"), str):
            patient_id = subject["reference"].rstrip("/").split("/")[-1]
    if patient is not None and patient_id is None:
        patient_id = patient.get("id")

    encounter_ref = resource.get("encounter")
    encounter = (
        _logical(ctx.resolve(encounter_ref, resource), encounter_ref)
        if isinstance(encounter_ref, dict)
        else None
    )
    performer = [
        _logical(ctx.resolve(ref, resource), ref)
        for ref in resource.get("performer") or []
        if isinstance(ref, dict)
    ]
    interpreter: Clinician | None = None
    for ref in resource.get("resultsInterpreter") or []:
        if isinstance(ref, dict):
            target = ref.get("reference")
            interpreter = Clinician(
                id=(ref.get("identifier") or {}).get("value"),
                family=ref.get("display"),
                reference=target if isinstance(target, str) else None,
            )
            break

    category = [c for c in resource.get("category") or [] if isinstance(c, dict)]
    modality = None
    for concept in category:
        for coding in concept.get("coding") or []:
            if isinstance(coding, dict) and coding.get("system") == _V2_0074:
                modality = coding.get("code")
    effective: JsonObject = {}
    observed_at = None
    warnings: list[ParseWarning] = []
    observed_raw: Any = None
    if "effectiveDateTime" in resource:
        effective = {"effectiveDateTime": resource["effectiveDateTime"]}
        observed_raw = resource["effectiveDateTime"]
    elif isinstance(resource.get("effectivePeriod"), dict):
        effective = {"effectivePeriod": resource["effectivePeriod"]}
        observed_raw = resource["effectivePeriod"].get("start")
    observed_at = _parse_datetime(observed_raw)
    if observed_raw and observed_at is None:
        warnings.append(
            ParseWarning(
                code="observed_at_invalid",
                detail="DiagnosticReport.effective[x] is not a date/time with a day; "
                "observed_at left empty",
            )
        )
    reported_at = _parse_datetime(resource.get("issued"))
    if resource.get("issued") and reported_at is None:
        warnings.append(
            ParseWarning(
                code="reported_at_invalid",
                detail="DiagnosticReport.issued is not an instant; reported_at left empty",
            )
        )

    context = _review_context(resource, ctx, patient)
    # The report's own INDICATION / CLINICAL HISTORY first, else the order's reasonCode.
    order_indication = context.pop("indication", None)
    report = RadiologyReport(
        source_format="fhir-r4",
        message_id=message_id,
        source_system=accession_system or "",
        accession=accession,
        accession_source=accession_source,
        patient_id=patient_id,
        patient_id_system=patient_system,
        procedure=_first_coding(resource.get("code")),
        modality=modality,
        status=resource.get("status"),
        findings=findings,
        impression=impression,
        indication=indication or order_indication or None,
        interpreter=interpreter,
        observed_at=observed_at,
        reported_at=reported_at,
        sign_off=sign_off,
        warnings=warnings,
        **context,
        fhir=FhirOrigin(
            resource_id=resource.get("id"),
            identifiers=identifiers,
            based_on=based_on,
            subject=subject,
            encounter=encounter,
            category=category,
            code=resource["code"],
            effective=effective,
            performer=performer,
            bundle_type=bundle_type,
        ),
    )
    check_report_text(report, f"DiagnosticReport {where}")
    return report


# --------------------------------------------------------------------------- review context

_PRIORITIES = frozenset({"stat", "asap", "urgent", "routine"})
_GENDERS = frozenset({"male", "female", "other", "unknown"})


def _concept_text(concept: Any) -> str | None:
    if not isinstance(concept, dict):
        return None
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and coding.get("display"):
            return str(coding["display"])
    return None


def _review_context(
    resource: JsonObject, ctx: _Context, patient: JsonObject | None
) -> dict[str, Any]:
    """Patient demographics (Patient name/birthDate/gender) and, from the ServiceRequest in
    ``basedOn``, priority, indication (reasonCode) and ordering provider (requester)."""
    out: dict[str, Any] = {}
    if patient is not None and patient.get("resourceType") == "Patient":
        names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
        name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
        given = " ".join(str(g) for g in name.get("given") or [] if g) or None
        born = None
        if isinstance(patient.get("birthDate"), str) and len(patient["birthDate"]) == 10:
            try:
                born = date.fromisoformat(patient["birthDate"])
            except ValueError:
                born = None
        gender = patient.get("gender") if patient.get("gender") in _GENDERS else None
        if name or born or gender:
            out["patient"] = PatientDemographics(
                family=name.get("family") or None, given=given, birth_date=born, sex=gender
            )
    for ref in resource.get("basedOn") or []:
        request = ctx.resolve(ref, resource) if isinstance(ref, dict) else None
        if request is None or request.get("resourceType") != "ServiceRequest":
            continue
        if request.get("priority") in _PRIORITIES:
            out["priority"] = request["priority"]
        reasons = [_concept_text(c) for c in request.get("reasonCode") or []]
        indication = "; ".join(r for r in reasons if r)
        if indication:
            out["indication"] = normalize_text(indication)
        requester = request.get("requester")
        if isinstance(requester, dict) and (requester.get("display") or requester.get("reference")):
            target = requester.get("reference")
            out["ordering_provider"] = Clinician(
                id=(requester.get("identifier") or {}).get("value"),
                family=requester.get("display"),
                reference=target if isinstance(target, str) else None,
            )
        break
    return out


def _document_id(document: JsonObject, raw_text: str) -> str:
    if isinstance(document.get("id"), str) and document["id"]:
        return str(document["id"])
    identifier = document.get("identifier")
    if isinstance(identifier, dict) and identifier.get("value"):
        return str(identifier["value"])
    return "sha256:" + hashlib.sha256(raw_text.encode("utf-8")).hexdigest()[:32]


def parse_fhir(
    raw: bytes | str | Mapping[str, Any],
    *,
    accession_systems: tuple[str, ...] = (),
    max_bytes: int | None = None,
) -> list[RadiologyReport]:
    """Parse a FHIR R4 DiagnosticReport or Bundle (JSON) into radiology reports.

    Raises :class:`MessageParseError` if the input is not JSON and
    :class:`InvalidResourceError` for a resource that is not a valid R4 DiagnosticReport or
    Bundle (wrong ``resourceType``, missing required elements, status outside the value set).
    ``accession_systems`` are the site's identifier systems of accession numbers; over
    ``max_bytes`` raises :class:`MessageTooLarge`.  Control characters anywhere in the
    document raise :class:`~integration.errors.ControlCharacterError`.
    """
    if max_bytes is not None and not isinstance(raw, Mapping):
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8"))
        if size > max_bytes:
            raise MessageTooLarge(
                f"FHIR document of {size} bytes is over the limit of {max_bytes} bytes"
            )
    document = load_json(raw)
    check_report_text(document, "FHIR JSON")
    resource_type = document.get("resourceType")
    raw_text = (
        raw
        if isinstance(raw, str)
        else (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else json.dumps(document))
    )
    message_id = _document_id(document, raw_text)
    if resource_type == "DiagnosticReport":
        ctx = _Context([(None, document)])
        report = _report(
            document,
            ctx,
            message_id=message_id,
            bundle_type=None,
            where=f"'{document.get('id') or ''}'".replace("''", "(no id)"),
            accession_systems=accession_systems,
        )
        return [report] if report is not None else []
    if resource_type != "Bundle":
        shown = str(resource_type)[:40] if resource_type else "(missing)"
        raise InvalidResourceError(
            f"unsupported resourceType {shown}: expected DiagnosticReport or Bundle"
        )
    bundle_type = document.get("type")
    if bundle_type not in _BUNDLE_TYPES:
        raise InvalidResourceError(f"invalid Bundle: type {str(bundle_type)[:40]!r} is not valid")
    entries: list[tuple[str | None, JsonObject]] = []
    for index, entry in enumerate(document.get("entry") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            continue
        resource = entry["resource"]
        if not isinstance(resource.get("resourceType"), str):
            raise InvalidResourceError(f"invalid Bundle: entry[{index}] has no resourceType")
        full_url = entry.get("fullUrl")
        entries.append((full_url if isinstance(full_url, str) else None, resource))
    ctx = _Context(entries)
    reports: list[RadiologyReport] = []
    for index, (_, resource) in enumerate(entries):
        if resource.get("resourceType") != "DiagnosticReport":
            continue
        where = f"in Bundle entry[{index}]"
        report = _report(
            resource,
            ctx,
            message_id=message_id,
            bundle_type=bundle_type,
            where=where,
            accession_systems=accession_systems,
        )
        if report is not None:
            reports.append(report)
    return reports
