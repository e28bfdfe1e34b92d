"""The canonical radiology report: one typed picture of a report, whatever format it came in.

A :class:`RadiologyReport` is produced by the HL7 v2 and FHIR R4 readers and consumed by the
pipeline, the writers and the training data loaders.  Besides the clinical content it keeps
what the writers need to answer in kind (:class:`Hl7Origin` / :class:`FhirOrigin`): the
original identifiers, so a preliminary or final report written back matches the order.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from integration.report.vocabulary import FINAL_STATUSES, normalise_whitespace

__all__ = [
    "Approval",
    "Clinician",
    "Coded",
    "DraftProvenance",
    "FhirOrigin",
    "Hl7Origin",
    "ParseWarning",
    "PatientDemographics",
    "Priority",
    "RadiologyReport",
    "SourceFormat",
]

SourceFormat = Literal["hl7v2", "fhir-r4"]
# FHIR ServiceRequest.priority codes; HL7 v2 table 0027 maps onto them (see the readers).
Priority = Literal["stat", "asap", "urgent", "routine"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Coded(_Frozen):
    """A code with its display text (HL7 CE/CWE, FHIR Coding)."""

    code: str | None = None
    display: str | None = None
    system: str | None = None


class Clinician(_Frozen):
    """An ordering or interpreting clinician (HL7 XCN, FHIR Reference to Practitioner)."""

    id: str | None = None
    family: str | None = None
    given: str | None = None
    reference: str | None = None  # FHIR reference, e.g. "Practitioner/123"

    @property
    def display(self) -> str:
        name = " ".join(p for p in (self.given, self.family) if p)
        return name or self.id or self.reference or ""


class PatientDemographics(_Frozen):
    """Who the report is about, as the message names them (HL7 PID-5/7/8, FHIR Patient).

    Shown to the radiologist for the wrong-patient check; never logged or audited.
    """

    family: str | None = None
    given: str | None = None
    birth_date: date | None = None
    sex: str | None = Field(default=None, description="FHIR gender code: male/female/other/unknown")

    @property
    def display(self) -> str:
        family = (self.family or "").upper()
        return ", ".join(p for p in (family, self.given) if p)


class ParseWarning(_Frozen):
    """Something a reader accepted but could not take at face value (kept on the report).

    ``code`` is stable (``observed_at_invalid``, ``reported_at_invalid``,
    ``charset_fallback``, ...); ``detail`` names the field, never its patient data.
    """

    code: str
    detail: str


class Hl7Origin(_Frozen):
    """What an HL7 v2 answer needs from the inbound message."""

    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"
    character_set: str | None = None
    # Original segments (ER7, escaped as received) that are written back unchanged.
    pid: str
    pv1: str | None = None
    orc: str | None = None
    obr: str
    obr_index: int = 0  # position of the OBR group within the message


class FhirOrigin(_Frozen):
    """What a FHIR R4 answer needs from the inbound DiagnosticReport."""

    resource_id: str | None = None
    identifiers: list[dict[str, Any]] = Field(default_factory=list)
    based_on: list[dict[str, Any]] = Field(default_factory=list)
    subject: dict[str, Any] | None = None
    encounter: dict[str, Any] | None = None
    category: list[dict[str, Any]] = Field(default_factory=list)
    code: dict[str, Any]
    effective: dict[str, Any] = Field(default_factory=dict)  # {"effectiveDateTime": ...}
    performer: list[dict[str, Any]] = Field(default_factory=list)
    bundle_type: str | None = None


class RadiologyReport(_Frozen):
    """One radiology report (one OBR group or one DiagnosticReport)."""

    source_format: SourceFormat
    message_id: str = Field(description="MSH-10, or the FHIR Bundle/resource id")
    hl7_version: str | None = Field(default=None, description="MSH-12 when HL7 v2")
    source_system: str = Field(default="", description="MSH-3^MSH-4, or the FHIR identifier system")
    accession: str | None = None
    accession_source: str | None = Field(
        default=None,
        description="where the accession was found, e.g. 'OBR-3', 'identifier:ACSN', "
        "'basedOn:FILL' (see docs/hl7-fhir-mapping.md)",
    )
    patient_id: str | None = None
    patient_id_system: str | None = None
    procedure: Coded | None = None
    modality: str | None = Field(default=None, description="OBR-24 / FHIR category (e.g. RAD, CT)")
    status: str | None = Field(default=None, description="OBR-25 or DiagnosticReport.status")
    findings: str = ""
    impression: str | None = None
    indication: str | None = None
    # Study context for the reviewer (filled by the readers' ``_review_context`` helpers).
    patient: PatientDemographics | None = None
    priority: Priority | None = Field(
        default=None, description="OBR-27.6 / OBR-5 (table 0027) or ServiceRequest.priority"
    )
    ordering_provider: Clinician | None = None
    interpreter: Clinician | None = None
    observed_at: datetime | None = None
    reported_at: datetime | None = None
    sign_off: list[str] = Field(
        default_factory=list,
        description="sign-off, dictation and communication lines kept out of the sections",
    )
    warnings: list[ParseWarning] = Field(default_factory=list)
    hl7: Hl7Origin | None = None
    fhir: FhirOrigin | None = None

    @property
    def is_final(self) -> bool:
        return (self.status or "").lower() in FINAL_STATUSES

    @property
    def findings_hash(self) -> str:
        """SHA-256 of the findings text (whitespace-normalised); used for idempotency."""
        normal = normalise_whitespace(self.findings)
        return hashlib.sha256(normal.encode("utf-8")).hexdigest()

    def summary(self) -> dict[str, Any]:
        """The stable JSON shape printed by ``radgpt parse`` (see docs/hl7-fhir-mapping.md)."""
        return {
            "source_format": self.source_format,
            "message_id": self.message_id,
            "hl7_version": self.hl7_version,
            "source_system": self.source_system,
            "accession": self.accession,
            "accession_source": self.accession_source,
            "patient_id": self.patient_id,
            "procedure": self.procedure.model_dump() if self.procedure else None,
            "modality": self.modality,
            "status": self.status,
            "findings": self.findings,
            "impression": self.impression,
            "indication": self.indication,
            "ordering_provider": self.ordering_provider.display if self.ordering_provider else None,
            "interpreter": self.interpreter.display if self.interpreter else None,
            "observed_at": self.observed_at.isoformat() if self.observed_at else None,
            "reported_at": self.reported_at.isoformat() if self.reported_at else None,
            "sign_off": list(self.sign_off),
            "warnings": [w.model_dump() for w in self.warnings],
        }


class DraftProvenance(_Frozen):
    """Which model produced an AI draft; written into every preliminary report."""

    draft_id: str
    model_id: str
    adapter_id: str
    adapter_version: str | None = None
    drafted_at: datetime
    # "extractive-fallback": no model candidate passed the consistency checks; the
    # impression lists the report's own positive findings (inference.drafting.drafter).
    method: Literal["model", "extractive-fallback"] = "model"

    @property
    def fallback_notice(self) -> str:
        """The sentence every write-back of a fallback draft carries ("" for model drafts)."""
        if self.method != "extractive-fallback":
            return ""
        return (
            "Extractive fallback: no model draft passed the consistency checks; the impression "
            "lists the report's own positive findings."
        )


class Approval(_Frozen):
    """A radiologist's sign-off of a draft (as is or edited); written into the final report."""

    radiologist: Clinician
    approved_at: datetime
    edited: bool = False
    draft_id: str | None = None
