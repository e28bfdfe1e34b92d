"""radgpt integration package: canonical report model, HL7 v2 / FHIR R4 codecs, pipeline."""

from .codec import detect_format, parse_message
from .fhir_writer import build_final_bundle, build_preliminary_bundle
from .hl7_writer import build_ack, build_final_oru, build_preliminary_oru
from .report import Approval, Clinician, Coded, DraftProvenance, RadiologyReport

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
