"""One entry point for inbound messages: detect HL7 v2 vs FHIR R4 JSON and parse.

>>> from integration.codec import parse_message
>>> reports = parse_message(raw_bytes)        # list[RadiologyReport], maybe empty

Detection is by content: MLLP framing or an ``MSH`` segment means HL7 v2 (ER7); a JSON object
means FHIR R4.  Anything else raises :class:`MessageParseError`.
"""

from __future__ import annotations

from typing import Literal

from .errors import MessageParseError
from .fhir_reader import parse_fhir
from .hl7_escape import strip_mllp
from .hl7_reader import parse_oru
from .report import RadiologyReport

__all__ = ["MessageFormat", "detect_format", "parse_message"]

MessageFormat = Literal["hl7v2", "fhir-r4"]

_HL7_STARTS = (b"MSH", b"FHS", b"BHS")


def detect_format(raw: bytes | str) -> MessageFormat:
    """``"hl7v2"`` or ``"fhir-r4"`` from the first meaningful bytes of ``raw``."""
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n\x00")
    stripped = strip_mllp(head) if head.startswith(b"\x0b") else head
    if isinstance(stripped, bytes) and stripped.startswith(_HL7_STARTS):
        return "hl7v2"
    if head.startswith(b"{"):
        return "fhir-r4"
    if not head:
        raise MessageParseError("empty message")
    raise MessageParseError("not an HL7 v2 message (no MSH segment) nor FHIR JSON (no '{')")


def parse_message(raw: bytes | str) -> list[RadiologyReport]:
    """Parse an inbound HL7 v2 ORU^R01 or FHIR R4 DiagnosticReport/Bundle.

    Returns one report per OBR group / DiagnosticReport that carries findings (possibly none).
    Raises :class:`~integration.errors.MessageParseError`,
    :class:`~integration.errors.UnsupportedMessageError` or
    :class:`~integration.errors.InvalidResourceError` for bad input.
    """
    if detect_format(raw) == "hl7v2":
        return parse_oru(raw)
    if isinstance(raw, bytes):
        raw = raw.removeprefix(b"\xef\xbb\xbf")
    else:
        raw = raw.removeprefix("\ufeff")
    return parse_fhir(raw)
