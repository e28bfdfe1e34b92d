"""HL7 v2 ORU^R01 reader: one :class:`RadiologyReport` per OBR group that carries findings.

The hot path uses a small ER7 tokenizer (:class:`Er7Message`) instead of hl7apy's full parse
(about 10 ms a message); hl7apy is used to validate what we *write* and, in the tests, as an
oracle for the field values read here.

What is recognised as report text in an OBR group (see docs/hl7-fhir-mapping.md):

* findings: OBX-3 LOINC ``18782-3`` / ``59776-5`` (or DICOM ``121071``, or the text
  ``FINDINGS``);
* impression: OBX-3 LOINC ``19005-8``, a ``&IMP`` suffix, DICOM ``121073``, or the text
  ``IMPRESSION``;
* whole-report text with headings: a ``&GDT`` suffix, LOINC ``18748-4`` / ``11528-7``,
  ``SR Text``, or any TX/FT/ST OBX of an imaging OBR; FINDINGS/IMPRESSION are then taken
  from the headings (:mod:`integration.report.sections`);
* indication: LOINC ``11329-0`` / ``18785-6`` / ``55115-0`` OBX, or OBR-31.

Text values are decoded with :func:`integration.codecs.hl7.escape.unescape`; TX repetitions and
consecutive OBX segments are joined line by line.  A group without findings yields no report,
so a laboratory ORU gives ``[]``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from integration.codecs.hl7.charsets import codec_for, first_charset
from integration.codecs.hl7.escape import (
    STANDARD_ENCODING,
    EncodingChars,
    escape,
    strip_mllp,
    unescape,
)
from integration.codecs.hygiene import check_report_text, check_text
from integration.errors import (
    CharsetError,
    MessageParseError,
    MessageTooLarge,
    MissingIdentityError,
    TruncatedMessageError,
    UnsupportedMessageError,
)
from integration.report.model import (
    Clinician,
    Coded,
    Hl7Origin,
    ParseWarning,
    PatientDemographics,
    Priority,
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
    "DEFAULT_ACCESSION_FIELDS",
    "SUPPORTED_VERSIONS",
    "Er7Message",
    "Segment",
    "decode_message",
    "parse_hl7_datetime",
    "parse_oru",
    "reencode_segment",
    "split_messages",
]

SUPPORTED_VERSIONS = frozenset(
    {"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"}
)

_REPORT_CODES = frozenset({"18748-4", "11528-7", "SR TEXT"})
_INDICATION_CODES = frozenset({"11329-0", "18785-6", "55115-0", "121109"})
_OTHER_SECTION_CODES = frozenset(
    {"18783-1", "55107-7", "55110-1", "18834-2", "55111-9", "121075", "121077"}
)
_TEXT_TYPES = frozenset({"TX", "FT", "ST"})
# Table 0074 radiology sections (plus common local ones).
_IMAGING_SECTIONS = frozenset(
    {
        "RAD",
        "CT",
        "NMR",
        "MR",
        "MRI",
        "NMS",
        "RUS",
        "OUS",
        "VUS",
        "CUS",
        "RX",
        "XRC",
        "IMG",
        "US",
        "NM",
        "XR",
        "CR",
        "DX",
        "MG",
        "PT",
        "PET",
        "IR",
        "FL",
        "RF",
    }
)

# Where the accession is looked for, in order (docs/hl7-fhir-mapping.md, "Identity").
DEFAULT_ACCESSION_FIELDS: tuple[str, ...] = (
    "OBR-3",
    "ORC-3",
    "OBR-2",
    "ORC-2",
    "OBR-18",
    "OBR-19",
    "OBR-20",
)
_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")


# --------------------------------------------------------------------------- tokenizer


@dataclass(slots=True)
class Segment:
    """One ER7 segment, split into fields lazily by the message's field separator.

    ``fields[0]`` is the segment id; for MSH, ``fields[1]`` is MSH-1 (the field separator) and
    ``fields[2]`` MSH-2, so ``field(n)`` is HL7's numbering for every segment.
    """

    raw: str
    fields: list[str]
    enc: EncodingChars

    @property
    def id(self) -> str:
        return self.fields[0]

    def field(self, number: int) -> str:
        """The raw (still escaped) field ``number`` (1-based), '' when absent."""
        return self.fields[number] if number < len(self.fields) else ""

    def repetitions(self, number: int) -> list[str]:
        value = self.field(number)
        return value.split(self.enc.repetition) if value else []

    def component(self, number: int, comp: int = 1, sub: int = 1, rep: int = 0) -> str:
        """Raw component ``comp`` (subcomponent ``sub``) of repetition ``rep`` of a field."""
        value = self.field(number)
        if not value:
            return ""
        if self.enc.repetition in value and not (self.id == "MSH" and number == 2):
            reps = value.split(self.enc.repetition)
            if rep >= len(reps):
                return ""
            value = reps[rep]
        elif rep:
            return ""
        return _component(value, comp, sub, self.enc)

    def text(self, number: int, comp: int = 1, sub: int = 1, rep: int = 0) -> str:
        """Like :meth:`component`, with escape sequences decoded."""
        return unescape(self.component(number, comp, sub, rep), self.enc, formatting=False)


def _component(value: str, comp: int, sub: int, enc: EncodingChars) -> str:
    parts = value.split(enc.component)
    if comp > len(parts):
        return ""
    value = parts[comp - 1]
    subs = value.split(enc.subcomponent)
    return subs[sub - 1] if sub <= len(subs) else ""


@dataclass(slots=True)
class Er7Message:
    """A tokenized ER7 message: its segments and delimiters; nothing interpreted yet."""

    segments: list[Segment]
    enc: EncodingChars
    charset: str

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @classmethod
    def parse(cls, text: str, charset: str = "utf-8") -> Er7Message:
        """Tokenize decoded ER7 text (one message, MLLP framing already removed)."""
        text = text.lstrip("\ufeff \t\r\n")
        if not text.startswith("MSH") or len(text) < 8:
            raise MessageParseError("not an HL7 v2 message: it does not start with an MSH segment")
        field_sep = text[3]
        if field_sep.isalnum() or field_sep.isspace():
            raise MessageParseError("not an HL7 v2 message: invalid field separator in MSH-1")
        end = text.find(field_sep, 4)
        msh2 = text[4:end] if end >= 0 else ""
        if not 2 <= len(msh2) <= 5 or any(c.isalnum() or c.isspace() for c in msh2):
            raise MessageParseError("not an HL7 v2 message: invalid encoding characters in MSH-2")
        if len(set(field_sep + msh2)) != len(field_sep + msh2):
            raise MessageParseError("not an HL7 v2 message: MSH-2 repeats a delimiter")
        enc = EncodingChars.from_msh(field_sep, msh2)
        segments: list[Segment] = []
        for line in _SEGMENT_SPLIT.split(text):
            if not line.strip():
                continue
            parts = line.split(field_sep)
            seg_id = parts[0]
            if not _SEGMENT_ID.match(seg_id):
                raise MessageParseError(
                    f"malformed HL7 v2 segment {len(segments) + 1}: invalid segment id"
                )
            if seg_id == "MSH":
                parts = ["MSH", field_sep, *parts[1:]]
            segments.append(Segment(line, parts, enc))
        return cls(segments, enc, charset)


def _declared_charset(head: str) -> str:
    """The MSH-18 value (default set) of the first segment of ``head`` (ASCII-decoded MSH)."""
    if len(head) < 8 or not head.startswith("MSH"):
        return ""
    fields = _SEGMENT_SPLIT.split(head, maxsplit=1)[0].split(head[3])
    if len(fields) < 18:
        return ""
    component = head[4] if len(head) > 4 else "^"
    repetition = head[5] if len(head) > 5 else "~"
    return first_charset(fields[17], component, repetition)


@dataclass(frozen=True, slots=True)
class _Decoded:
    text: str
    codec: str
    terminated: bool  # framed completely, or ends with a segment terminator
    warnings: tuple[ParseWarning, ...] = ()


def _unframe(raw: bytes | str) -> tuple[bytes | str, bool]:
    """MLLP framing removed; refuses a start block without an end block (cut off)."""
    if isinstance(raw, bytes):
        head, start, end, terms = raw.lstrip(b" \t\r\n\x00"), b"\x0b", b"\x1c", (b"\r", b"\n")
        framed = head.startswith(start)
        complete = end in head
        tail_ok = raw.rstrip(b" \t\x00").endswith(terms)
    else:
        text = raw.lstrip(" \t\r\n\x00\ufeff")
        framed = text.startswith("\x0b")
        complete = "\x1c" in text
        tail_ok = raw.rstrip(" \t\x00").endswith(("\r", "\n"))
    if framed and not complete:
        raise TruncatedMessageError(
            "truncated HL7 v2 message: MLLP start block (VT) without end block (FS)"
        )
    return strip_mllp(raw), (framed and complete) or tail_ok


def _decode(raw: bytes | str, charset_fallback: str | None = None) -> _Decoded:
    stripped, terminated = _unframe(raw)
    if isinstance(stripped, str):
        label = _declared_charset(stripped)
        return _Decoded(stripped, (codec_for(label) if label else None) or "utf-8", terminated)
    head = stripped[:2048].decode("latin-1")
    label = _declared_charset(head)
    if not label:  # the v2 default is ASCII; UTF-8, then Windows-1252, in practice
        for guess in ("utf-8", "cp1252"):
            try:
                return _Decoded(stripped.decode(guess), guess, terminated)
            except UnicodeDecodeError:
                continue
        return _Decoded(stripped.decode("latin-1"), "latin-1", terminated)
    codec = codec_for(label)
    if codec is None:
        raise CharsetError(f"unsupported HL7 v2 character set in MSH-18: {label[:40]!r}")
    try:
        return _Decoded(stripped.decode(codec), codec, terminated)
    except UnicodeDecodeError as exc:
        reason = (
            f"HL7 v2 message does not decode as its declared MSH-18 character set {label!r}: "
            f"byte 0x{stripped[exc.start]:02X} at offset {exc.start}"
        )
        fallback = codec_for(charset_fallback) if charset_fallback else None
        if charset_fallback and fallback is None:
            fallback = charset_fallback  # a Python codec name
        if not fallback:
            raise CharsetError(reason) from exc
        try:
            text = stripped.decode(fallback)
        except (UnicodeDecodeError, LookupError) as second:
            raise CharsetError(f"{reason}; nor as the fallback {charset_fallback!r}") from second
        warning = ParseWarning(
            code="charset_fallback",
            detail=f"{reason}; decoded as the configured fallback {charset_fallback!r}",
        )
        return _Decoded(text, fallback, terminated, (warning,))


def decode_message(raw: bytes | str, *, charset_fallback: str | None = None) -> tuple[str, str]:
    """Strip MLLP framing and decode bytes by MSH-18; returns ``(text, python_codec)``.

    A declared character set must decode (else :class:`CharsetError`, or ``charset_fallback``
    is used); without MSH-18, UTF-8 is tried first and Windows-1252 used if the bytes are not
    UTF-8.  MLLP framing that starts without ending raises :class:`TruncatedMessageError`.
    """
    decoded = _decode(raw, charset_fallback)
    return decoded.text, decoded.codec


def split_messages(text: str) -> list[str]:
    """Split decoded ER7 text into messages; batch envelopes (FHS/BHS/BTS/FTS) are dropped."""
    messages: list[list[str]] = []
    for line in _SEGMENT_SPLIT.split(text.lstrip("\ufeff \t\r\n")):
        if not line.strip():
            continue
        head = line[:3]
        if head in ("FHS", "BHS", "BTS", "FTS"):
            continue
        if head == "MSH" or not messages:
            messages.append([])
        messages[-1].append(line)
    return ["\r".join(lines) for lines in messages]


def reencode_segment(segment: Segment, target: EncodingChars = STANDARD_ENCODING) -> str:
    """The segment written with ``target`` delimiters (values re-escaped as needed)."""
    src = segment.enc
    if src == target:
        return segment.raw

    def convert(value: str) -> str:
        return escape(unescape(value, src, formatting=False), target)

    out_fields: list[str] = [segment.id]
    start = 1
    if segment.id == "MSH":
        out_fields = ["MSH" + target.field + target.msh2]
        start = 3
    for value in segment.fields[start:]:
        reps = []
        for rep in value.split(src.repetition):
            comps = [
                target.subcomponent.join(convert(sub) for sub in comp.split(src.subcomponent))
                for comp in rep.split(src.component)
            ]
            reps.append(target.component.join(comps))
        out_fields.append(target.repetition.join(reps))
    return target.field.join(out_fields)


# --------------------------------------------------------------------------- values


_TS_RE = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?\d*([+-]\d{4})?$"
)


def parse_hl7_datetime(value: str) -> datetime | None:
    """Parse an HL7 TS/DTM (``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]``); None if empty/invalid.

    Without an offset the time is returned naive (local time of the sender).
    """
    value = value.strip()
    if not value:
        return None
    match = _TS_RE.match(value)
    if not match:
        return None
    year, month, day, hour, minute, second, frac, offset = match.groups()
    tz: timezone | None = None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
        if tz.utcoffset(None) == timedelta(0):
            tz = UTC
    try:
        return datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((frac or "0").ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError:
        return None


def _clinician(seg: Segment, number: int, *, ndl: bool = False) -> Clinician | None:
    """XCN (``id^family^given``) or NDL (``id&family&given`` in component 1)."""
    if ndl:
        ident, family, given = (seg.text(number, 1, s) for s in (1, 2, 3))
    else:
        ident, family, given = (seg.text(number, c) for c in (1, 2, 3))
    if not (ident or family or given):
        return None
    return Clinician(id=ident or None, family=family or None, given=given or None)


def _coded(seg: Segment, number: int) -> Coded | None:
    code, display, system = (seg.text(number, c) for c in (1, 2, 3))
    if not (code or display):
        return None
    return Coded(code=code or None, display=display or None, system=system or None)


# --------------------------------------------------------------------------- groups


@dataclass(slots=True)
class _Group:
    pid: Segment | None
    pv1: Segment | None
    orc: Segment | None
    obr: Segment
    index: int
    obx: list[Segment] = field(default_factory=list)


def _groups(message: Er7Message) -> Iterator[_Group]:
    pid: Segment | None = None
    pv1: Segment | None = None
    orc: Segment | None = None
    current: _Group | None = None
    index = 0
    for seg in message.segments[1:]:
        sid = seg.id
        if sid == "PID":
            if current is not None:
                yield current
                current = None
            pid, pv1, orc = seg, None, None
        elif sid == "PV1":
            pv1 = seg
        elif sid == "ORC":
            if current is not None:
                yield current
                current = None
            orc = seg
        elif sid == "OBR":
            if current is not None:
                yield current
            current = _Group(pid, pv1, orc, seg, index)
            index += 1
            orc = None
        elif sid == "OBX" and current is not None:
            current.obx.append(seg)
    if current is not None:
        yield current


def _obx_kind(obx: Segment, imaging: bool) -> str | None:
    """'findings', 'impression', 'report', 'indication' or None for one OBX."""
    value_type = obx.component(2).upper()
    ident = obx.component(3, 1, 1).strip().upper()
    suffix = obx.component(3, 1, 2).strip().upper()
    text = obx.text(3, 2).strip().upper()
    alt = obx.component(3, 4).strip().upper()
    codes = {ident, alt}
    if value_type not in _TEXT_TYPES and value_type not in ("CE", "CWE", ""):
        return None
    if codes & FINDINGS_CODES or text in ("FINDINGS", "FINDING"):
        return "findings"
    if codes & IMPRESSION_CODES or suffix == "IMP" or text in ("IMPRESSION", "IMPRESSIONS"):
        return "impression"
    if codes & _INDICATION_CODES or suffix in ("HX", "IND"):
        return "indication"
    if codes & _OTHER_SECTION_CODES or suffix in ("REC", "ANT", "ADT"):
        return None
    if value_type not in _TEXT_TYPES:
        return None
    if suffix == "GDT" or codes & _REPORT_CODES or text == "SR TEXT":
        return "report"
    return "report" if imaging else None


def _obx_text(obx: Segment, charset: str) -> str:
    """OBX-5 as plain text: FT formatting decoded, TX repetitions as lines, CE text."""
    value_type = obx.component(2).upper()
    enc = obx.enc
    raw = obx.field(5)
    if value_type in ("CE", "CWE"):
        parts = []
        for rep in raw.split(enc.repetition) if raw else []:
            text = _component(rep, 2, 1, enc) or _component(rep, 1, 1, enc)
            parts.append(unescape(text, enc, charset=charset, formatting=False))
        return "\n".join(parts)
    # FT formatting commands; TX/ST senders use \.br\ too: a line break, never a join.
    formatting = value_type in _TEXT_TYPES
    lines = raw.split(enc.repetition) if raw else [""]
    return "\n".join(unescape(line, enc, charset=charset, formatting=formatting) for line in lines)


def _join(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n")


def _strip_heading(text: str, section: str) -> str:
    """Section text from an OBX that may repeat its own heading (``FINDINGS: ...``)."""
    sections = split_sections(text)
    if section in sections:
        return sections[section]
    return sections.get("", text)


def _timestamp(
    seg: Segment, number: int, name: str, warnings: list[ParseWarning]
) -> datetime | None:
    value = seg.component(number).strip()
    parsed = parse_hl7_datetime(value)
    if value and parsed is None:
        warnings.append(
            ParseWarning(
                code=f"{name}_invalid",
                detail=f"{seg.id}-{number} is not an HL7 date/time ({len(value)} characters); "
                f"{name} left empty",
            )
        )
    return parsed


def _accession(group: _Group, fields: tuple[str, ...]) -> tuple[str | None, str | None]:
    """The first non-empty of ``fields`` (``"OBR-3"``, ``"ORC-2"``...): (value, field)."""
    for name in fields:
        seg_id, _, number = name.upper().partition("-")
        seg = group.obr if seg_id == "OBR" else group.orc if seg_id == "ORC" else None
        if seg is None or not number.isdigit():
            continue
        value = seg.text(int(number)).strip()
        if value:
            return value, name.upper()
    return None, None


def _report_for(
    message: Er7Message,
    group: _Group,
    version: str,
    *,
    accession_fields: tuple[str, ...],
    warnings: tuple[ParseWarning, ...],
) -> RadiologyReport | None:
    obr = group.obr
    modality = obr.text(24).upper()
    imaging = modality in _IMAGING_SECTIONS or not modality
    collected: dict[str, list[str]] = {
        "findings": [],
        "impression": [],
        "report": [],
        "indication": [],
    }
    for obx in group.obx:
        if obx.component(11).upper() in ("D", "W"):  # deleted / wrong: not part of the report
            continue
        kind = _obx_kind(obx, imaging)
        if kind is not None:
            collected[kind].append(_obx_text(obx, message.charset))

    findings_raw = _join(collected["findings"])
    report_text = _join(collected["report"])
    if findings_raw:
        findings = normalize_text(strip_sign_off(_strip_heading(findings_raw, "findings")))
    elif report_text:
        findings = findings_from_text(report_text)
    else:
        findings = ""
    if not findings:
        return None

    impression_raw = _join(collected["impression"])
    impression: str | None
    if impression_raw:
        impression = (
            normalize_text(strip_sign_off(_strip_heading(impression_raw, "impression"))) or None
        )
    else:
        impression = impression_from_text(report_text) if report_text else None
        if impression is None and findings_raw:
            impression = impression_from_text(findings_raw)
            if impression is not None:
                findings = normalize_text(
                    strip_sign_off(split_sections(findings_raw).get("findings", findings))
                )

    indication_raw = _join(collected["indication"])
    indication = normalize_text(indication_raw) if indication_raw else None
    if not indication and report_text:
        sections = split_sections(report_text)
        indication = normalize_text(sections.get("indication") or sections.get("history") or "")
    if not indication:
        indication = obr.text(31, 2) or obr.text(31, 1) or None
    sign_off = [
        line
        for text in (findings_raw, impression_raw, report_text)
        for line in sign_off_lines(text)
    ]

    msh = message.msh
    pid = group.pid
    patient_id, patient_system = _patient_id(pid) if pid is not None else (None, None)
    accession, accession_source = _accession(group, accession_fields)
    if pid is None:
        raise MessageParseError("ORU^R01 message has an OBR group without a PID segment")
    if accession is None:
        raise MissingIdentityError(
            f"HL7 v2 report {group.index + 1} has findings but no accession "
            f"(looked in {', '.join(accession_fields)})"
        )
    notes = list(warnings)
    observed_at = _timestamp(obr, 7, "observed_at", notes)
    reported_at = _timestamp(obr, 22, "reported_at", notes)
    standard = STANDARD_ENCODING
    origin = Hl7Origin(
        sending_application=reencode_field(msh, 3, standard),
        sending_facility=reencode_field(msh, 4, standard),
        receiving_application=reencode_field(msh, 5, standard),
        receiving_facility=reencode_field(msh, 6, standard),
        processing_id=msh.component(11) or "P",
        character_set=msh.field(18) or None,
        pid=reencode_segment(pid, standard),
        pv1=reencode_segment(group.pv1, standard) if group.pv1 is not None else None,
        orc=reencode_segment(group.orc, standard) if group.orc is not None else None,
        obr=reencode_segment(obr, standard),
        obr_index=group.index,
    )
    source = "^".join(p for p in (msh.text(3), msh.text(4)) if p)
    report = RadiologyReport(
        source_format="hl7v2",
        message_id=msh.text(10),
        hl7_version=version,
        source_system=source,
        accession=accession,
        accession_source=accession_source,
        patient_id=patient_id,
        patient_id_system=patient_system,
        procedure=_coded(obr, 4),
        modality=modality or None,
        status=obr.text(25) or None,
        findings=findings,
        impression=impression,
        indication=indication or None,
        ordering_provider=_clinician(obr, 16)
        or (_clinician(group.orc, 12) if group.orc is not None else None),
        interpreter=_clinician(obr, 32, ndl=True),
        observed_at=observed_at,
        reported_at=reported_at,
        sign_off=sign_off,
        warnings=notes,
        hl7=origin,
        **_review_context(pid, obr, group.orc),
    )
    check_report_text(report, f"HL7 v2 report {group.index + 1}")
    return report


# --------------------------------------------------------------------------- review context

_PRIORITY_0027: dict[str, Priority] = {
    "S": "stat", "A": "asap", "T": "urgent", "C": "urgent", "P": "urgent", "R": "routine",
}  # fmt: skip
_SEX_0001 = {"F": "female", "M": "male", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}


def _review_context(pid: Segment, obr: Segment, orc: Segment | None) -> dict[str, Any]:
    """Patient demographics (PID-5/7/8) and priority for the reviewer.

    Priority: OBR-27.6 (TQ priority), else ORC-7.6, else OBR-5 (deprecated), mapped from
    table 0027 (``S`` stat, ``A`` asap, ``T``/``C``/``P`` urgent, ``R`` routine).
    """
    born = pid.text(7, 1)[:8]
    birth_date = None
    if len(born) == 8 and born.isdigit():
        with contextlib.suppress(ValueError):
            birth_date = date(int(born[:4]), int(born[4:6]), int(born[6:8]))
    family, given = pid.text(5, 1), pid.text(5, 2)
    sex = _SEX_0001.get(pid.text(8, 1).upper())
    patient = (
        PatientDemographics(
            family=family or None, given=given or None, birth_date=birth_date, sex=sex
        )
        if family or given or birth_date or sex
        else None
    )
    code = (
        obr.text(27, 6) or (orc.text(7, 6) if orc is not None else "") or obr.text(5)
    ).upper()
    return {"patient": patient, "priority": _PRIORITY_0027.get(code)}


def reencode_field(seg: Segment, number: int, target: EncodingChars) -> str:
    """One field of ``seg`` re-written with ``target`` delimiters."""
    value = seg.field(number)
    if seg.enc == target or not value:
        return value
    fake = Segment(seg.fields[0] + seg.enc.field + value, ["ZZZ", value], seg.enc)
    return reencode_segment(fake, target).split(target.field, 1)[1]


def _patient_id(pid: Segment) -> tuple[str | None, str | None]:
    """PID-3 (the MR-typed repetition if any, else the first); PID-2 as a v2.3 fallback."""
    reps = pid.repetitions(3)
    chosen = 0
    for index, rep in enumerate(reps):
        if _component(rep, 5, 1, pid.enc).upper() == "MR":
            chosen = index
            break
    ident = pid.text(3, 1, rep=chosen) if reps else ""
    system = ""
    if reps:  # CX.4 assigning authority: HD.1 namespace, else HD.2 universal id
        system = pid.text(3, 4, 1, rep=chosen) or pid.text(3, 4, 2, rep=chosen)
    if not ident:
        ident, system = pid.text(2, 1), pid.text(2, 4)
    return ident or None, system or None


def _check_header(message: Er7Message) -> str:
    msh = message.msh
    msg_type = msh.text(9, 1).upper()
    event = msh.text(9, 2).upper()
    version = msh.text(12, 1).strip()
    if not msg_type:
        raise MessageParseError("HL7 v2 message has no message type in MSH-9")
    if msg_type != "ORU" or event not in ("R01", ""):
        label = f"{msg_type}^{event}" if event else msg_type
        raise UnsupportedMessageError(f"unsupported HL7 v2 message type {label}: expected ORU^R01")
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedMessageError(
            f"unsupported HL7 v2 version {version or '(empty)'}: expected 2.3 to 2.8"
        )
    if not msh.text(10):
        raise MessageParseError("HL7 v2 message has no control id in MSH-10")
    return version


def _check_complete(message: Er7Message, terminated: bool) -> None:
    """Refuse a message cut off in its last segment, or one without any OBR."""
    if not any(seg.id == "OBR" for seg in message.segments):
        raise TruncatedMessageError(
            "truncated or incomplete ORU^R01 message: no OBR segment after MSH"
        )
    last = message.segments[-1]
    required = {"OBX": 11, "OBR": 4}.get(last.id)
    if not terminated and required is not None and len(last.fields) <= required:
        raise TruncatedMessageError(
            f"truncated HL7 v2 message: the last segment ({last.id}, segment "
            f"{len(message.segments)}) ends before {last.id}-{required} and has no terminator"
        )


def parse_oru(
    raw: bytes | str,
    *,
    charset_fallback: str | None = None,
    accession_fields: tuple[str, ...] = DEFAULT_ACCESSION_FIELDS,
    max_bytes: int | None = None,
) -> list[RadiologyReport]:
    """Parse one HL7 v2 ORU^R01 message (or a batch) into its radiology reports.

    Raises :class:`MessageParseError` (and its :class:`TruncatedMessageError`,
    :class:`CharsetError`, :class:`ControlCharacterError`) for input that is not complete,
    decodable ER7, :class:`UnsupportedMessageError` for other message types or versions,
    :class:`MissingIdentityError` for a report without accession and
    :class:`MessageTooLarge` above ``max_bytes``.
    """
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8"))
    if max_bytes is not None and size > max_bytes:
        raise MessageTooLarge(
            f"HL7 v2 message of {size} bytes is over the limit of {max_bytes} bytes"
        )
    decoded = _decode(raw, charset_fallback)
    text = decoded.text
    if not text:
        raise MessageParseError("empty HL7 v2 message")
    messages = split_messages(text)
    reports: list[RadiologyReport] = []
    for number, message_text in enumerate(messages, start=1):
        for index, line in enumerate(message_text.split("\r"), start=1):
            seg_id = f" ({line[:3]})" if _SEGMENT_ID.match(line[:3]) else ""
            check_text(line, f"HL7 v2 message {number} segment {index}{seg_id}")
        message = Er7Message.parse(message_text, decoded.codec)
        version = _check_header(message)
        _check_complete(message, decoded.terminated or number < len(messages))
        for group in _groups(message):
            report = _report_for(
                message,
                group,
                version,
                accession_fields=accession_fields,
                warnings=decoded.warnings,
            )
            if report is not None:
                reports.append(report)
    return reports
