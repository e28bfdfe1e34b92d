"""One entry point for inbound messages: detect HL7 v2 vs FHIR R4 JSON and parse.

>>> from integration.codecs.codec import parse_message
>>> reports = parse_message(raw_bytes)        # list[RadiologyReport], maybe empty

Detection is by content: MLLP framing or an ``MSH`` segment means HL7 v2 (ER7); a JSON object
means FHIR R4.  Anything else raises :class:`MessageParseError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from integration.codecs.fhir.reader import parse_fhir
from integration.codecs.hl7.escape import strip_mllp
from integration.codecs.hl7.reader import DEFAULT_ACCESSION_FIELDS, parse_oru
from integration.errors import MessageParseError, MessageTooLarge
from integration.report.model import RadiologyReport

if TYPE_CHECKING:
    from integration.app.settings import PipelineSettings

__all__ = ["CodecOptions", "MessageFormat", "detect_format", "parse_message"]


@dataclass(frozen=True, slots=True)
class CodecOptions:
    """Site settings of the readers (from :class:`~integration.app.settings.PipelineSettings`)."""

    accession_systems: tuple[str, ...] = ()
    hl7_accession_fields: tuple[str, ...] = DEFAULT_ACCESSION_FIELDS
    hl7_charset_fallback: str | None = None
    max_bytes: int | None = None

    @classmethod
    def from_settings(cls, pipeline: PipelineSettings) -> CodecOptions:
        return cls(
            accession_systems=tuple(pipeline.accession_systems),
            hl7_accession_fields=tuple(pipeline.hl7_accession_fields),
            hl7_charset_fallback=pipeline.hl7_charset_fallback,
            max_bytes=pipeline.max_message_bytes,
        )


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


def parse_message(raw: bytes | str, options: CodecOptions | None = None) -> list[RadiologyReport]:
    """Parse an inbound HL7 v2 ORU^R01 or FHIR R4 DiagnosticReport/Bundle.

    Returns one report per OBR group / DiagnosticReport that carries findings (possibly none).
    Raises an :class:`~integration.errors.InputError` for bad input (never retriable):
    :class:`~integration.errors.MessageParseError` (truncated, undecodable, control
    characters), :class:`~integration.errors.UnsupportedMessageError`,
    :class:`~integration.errors.InvalidResourceError`,
    :class:`~integration.errors.MissingIdentityError` or
    :class:`~integration.errors.MessageTooLarge`.
    """
    options = options or CodecOptions()
    if options.max_bytes is not None:
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8"))
        if size > options.max_bytes:
            raise MessageTooLarge(
                f"message of {size} bytes is over the limit of {options.max_bytes} bytes "
                "(pipeline.max_message_bytes)"
            )
    if detect_format(raw) == "hl7v2":
        return parse_oru(
            raw,
            charset_fallback=options.hl7_charset_fallback,
            accession_fields=options.hl7_accession_fields,
        )
    if isinstance(raw, bytes):
        raw = raw.removeprefix(b"\xef\xbb\xbf")
    else:
        raw = raw.removeprefix("\ufeff")
    return parse_fhir(raw, accession_systems=options.accession_systems)
