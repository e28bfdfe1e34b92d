"""radgpt integration package: canonical report model, HL7 v2 / FHIR R4 codecs, pipeline."""

from .codecs.codec import detect_format, parse_message
from .codecs.fhir.writer import build_final_bundle, build_preliminary_bundle
from .codecs.hl7.writer import build_ack, build_final_oru, build_preliminary_oru
from .report.model import Approval, Clinician, Coded, DraftProvenance, RadiologyReport

__all__ = [
    "Approval",
    "Clinician",
    "Coded",
    "DraftProvenance",
    "RadiologyReport",
    "build_ack",
    "build_final_bundle",
    "build_final_oru",
    "build_preliminary_bundle",
    "build_preliminary_oru",
    "detect_format",
    "parse_message",
]
