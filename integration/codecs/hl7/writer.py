"""HL7 v2 writers: the preliminary (AI draft) and final ORU^R01, and the ACK.

Every message is ER7 with ``\\r`` segment separators and standard delimiters ``|^~\\&``; it
answers the sender (MSH-3/4 and MSH-5/6 swapped), keeps the patient and order identifiers by
writing the original PID/PV1/ORC/OBR back (OBR-22/25, and OBR-32 when final, changed), and
re-parses with hl7apy at STRICT validation for its version (see the tests).

Reports that came in as FHIR (no :class:`~integration.report.model.Hl7Origin`) get a PID and OBR
synthesised from the canonical fields.  The exact field mapping is in docs/hl7-fhir-mapping.md.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from integration.codecs.hl7.charsets import answer_charset, codec_for, first_charset
from integration.codecs.hl7.escape import STANDARD_ENCODING, escape
from integration.codecs.hl7.reader import Er7Message, Segment, decode_message, split_messages
from integration.errors import CharsetError, MessageParseError, RenderError, TruncatedMessageError
from integration.report.model import Approval, Clinician, DraftProvenance, RadiologyReport
from integration.report.vocabulary import WithdrawalReason, withdrawal_notice

__all__ = [
    "AI_DRAFT_NOTICE",
    "DEFAULT_APPLICATION",
    "HL7_WITHDRAWN_OBR_STATUS",
    "HL7_WITHDRAWN_OBX_STATUS",
    "PreliminaryStatus",
    "build_ack",
    "build_final_oru",
    "build_preliminary_oru",
    "build_withdrawal_oru",
    "encode_er7",
]

PreliminaryStatus = Literal["P", "R"]
AckCode = Literal["AA", "AE", "AR"]

DEFAULT_APPLICATION = "RADGPT"
DEFAULT_VERSION = "2.5.1"
AI_DRAFT_NOTICE = (
    "AI-GENERATED DRAFT IMPRESSION - NOT VERIFIED. Pending radiologist review; "
    "not for clinical decision-making until signed."
)
_FINDINGS_ID = "18782-3^Radiology Study observation (narrative)^LN"
_IMPRESSION_ID = "19005-8^Radiology Imaging study [Impression] (narrative)^LN"
#: OBR-25 and OBX-11 of a withdrawal (tables 0123 and 0085).
HL7_WITHDRAWN_OBR_STATUS = "I"
HL7_WITHDRAWN_OBX_STATUS = "W"
_METHOD_CODE = "AIDRAFT"
_METHOD_SYSTEM = "99RADGPT"
_ENC = STANDARD_ENCODING
_FHIR_SYSTEMS = {
    "http://loinc.org": "LN",
    "http://snomed.info/sct": "SCT",
    "http://www.ama-assn.org/go/cpt": "C4",
    "http://radlex.org": "RADLEX",
}
_VERSION_ORDER = [
    "2.3",
    "2.3.1",
    "2.4",
    "2.5",
    "2.5.1",
    "2.6",
    "2.7",
    "2.7.1",
    "2.8",
    "2.8.1",
    "2.8.2",
]


def _at_least(version: str, minimum: str) -> bool:
    try:
        return _VERSION_ORDER.index(version) >= _VERSION_ORDER.index(minimum)
    except ValueError:
        return True


def _ts(moment: datetime) -> str:
    """HL7 TS with seconds and UTC offset (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.strftime("%Y%m%d%H%M%S%z")


def _esc(text: str) -> str:
    return escape(text, _ENC)


def _field_list(segment: str) -> list[str]:
    return segment.split(_ENC.field)


def _set_field(fields: list[str], number: int, value: str) -> None:
    while len(fields) <= number:
        fields.append("")
    fields[number] = value


def _join(fields: list[str]) -> str:
    while len(fields) > 1 and fields[-1] == "":
        fields.pop()
    return _ENC.field.join(fields)


def _version_of(report: RadiologyReport) -> str:
    version = report.hl7_version or DEFAULT_VERSION
    return version if version in _VERSION_ORDER else DEFAULT_VERSION


def _with_charset(report: RadiologyReport, segments: list[str], default: str | None) -> str:
    """The message with MSH-18 set for its whole text (see :func:`answer_charset`)."""
    declared = report.hl7.character_set if report.hl7 else None
    body = "\r".join(segments) + "\r"
    label, _ = answer_charset(declared, body, version=_version_of(report), default=default)
    if not label:
        return body
    msh = _field_list(segments[0])
    _set_field(msh, 17, _esc(label))
    return "\r".join([_join(msh), *segments[1:]]) + "\r"


def encode_er7(er7: str) -> bytes:
    """Encode a message built here in the character set its MSH-18 declares.

    Without MSH-18 the message is ASCII (the v2 default) and is written as such; the writers
    declare UTF-8 (or the sender's set) whenever the text needs it.
    """
    msh = er7.split("\r", 1)[0].split(_ENC.field)
    label = first_charset(msh[17] if len(msh) > 17 else "")
    codec = codec_for(label) if label else "ascii"
    if codec is None:
        raise RenderError(f"cannot encode an HL7 v2 message in MSH-18 {label[:40]!r}")
    try:
        return er7.encode(codec)
    except UnicodeEncodeError as exc:
        raise RenderError(
            f"the HL7 v2 message does not fit its declared character set {label or 'ASCII'!r}"
        ) from exc


def _msh(
    report: RadiologyReport,
    *,
    control_id: str,
    now: datetime,
    version: str,
    message_type: str,
) -> str:
    origin = report.hl7
    if origin is not None:
        sending_app = origin.receiving_application or DEFAULT_APPLICATION
        sending_fac = origin.receiving_facility
        receiving_app = origin.sending_application
        receiving_fac = origin.sending_facility
        processing = origin.processing_id or "P"
    else:
        # FHIR origin: there is no HL7 sender to answer; the receiver is set by the interface.
        sending_app, sending_fac = DEFAULT_APPLICATION, ""
        receiving_app, receiving_fac, processing = "", "", "P"
    fields = [
        "MSH",
        _ENC.msh2,
        sending_app,
        sending_fac,
        receiving_app,
        receiving_fac,
        _ts(now),
        "",
        message_type,
        _esc(control_id),
        processing,
        version,
    ]
    # MSH-1 is the separator itself: "MSH" + "|" + MSH-2 ...
    return _join(fields)


def _synth_pid(report: RadiologyReport) -> str:
    if not report.patient_id:
        raise RenderError("cannot build an HL7 v2 PID: the report has no patient identifier")
    cx = f"{_esc(report.patient_id)}^^^{_hd(report.patient_id_system)}^MR"
    # PID-5 is required: the FHIR subject display if known, else name type U (unspecified).
    display = ""
    if report.fhir is not None and report.fhir.subject:
        display = str(report.fhir.subject.get("display") or "")
    name = f"{_esc(display)}^^^^^^L" if display else "^^^^^^U"
    return _join(["PID", "1", "", cx, "", name])


def _hd(system: str | None) -> str:
    """HL7 HD for an assigning authority: a namespace, or ``&universal id&type`` for URIs."""
    if not system:
        return ""
    if system.startswith("urn:oid:"):
        return f"&{_esc(system[8:])}&ISO"
    if ":" in system:
        return f"&{_esc(system)}&URI"
    return _esc(system)


def _hl7_coding_system(system: str | None) -> str:
    if not system:
        return ""
    return _FHIR_SYSTEMS.get(system, "L" if "://" in system or ":" in system else system)


def _synth_obr(report: RadiologyReport) -> str:
    if report.procedure is None or not (report.procedure.code or report.procedure.display):
        raise RenderError("cannot build an HL7 v2 OBR: the report has no procedure code")
    if not report.accession:
        raise RenderError("cannot build an HL7 v2 OBR: the report has no accession number")
    proc = report.procedure
    obr4 = "^".join(
        [_esc(proc.code or ""), _esc(proc.display or ""), _esc(_hl7_coding_system(proc.system))]
    ).rstrip("^")
    fields = ["OBR", "1", "", _esc(report.accession), obr4]
    if report.observed_at is not None:
        _set_field(fields, 7, _ts(report.observed_at))
    if report.modality:
        _set_field(fields, 24, _esc(report.modality[:3]))
    return _join(fields)


def _xcn(clinician: Clinician) -> str:
    return "^".join(
        [_esc(clinician.id or ""), _esc(clinician.family or ""), _esc(clinician.given or "")]
    ).rstrip("^")


def _ndl(clinician: Clinician) -> str:
    return "&".join(
        [_esc(clinician.id or ""), _esc(clinician.family or ""), _esc(clinician.given or "")]
    ).rstrip("&")


def _obr(
    report: RadiologyReport,
    *,
    status: str,
    now: datetime,
    interpreter: Clinician | None,
) -> str:
    """The OBR of an answer; OBR-32/33 (interpreters) are the approver on a final report and
    empty on a preliminary one: an unverified AI draft never names a human interpreter."""
    fields = _field_list(report.hl7.obr if report.hl7 else _synth_obr(report))
    _set_field(fields, 1, "1")
    _set_field(fields, 22, _ts(now))
    _set_field(fields, 25, status)
    if interpreter is not None:
        _set_field(fields, 32, _ndl(interpreter))
    else:
        for number in (32, 33):
            if len(fields) > number:
                fields[number] = ""
    if _version_of(report) == "2.3" and not (len(fields) > 27 and fields[27]):
        _set_field(fields, 27, _quantity_timing(fields))
    return _join(fields)


def _quantity_timing(obr_fields: list[str]) -> str:
    """A v2.3 TQ (OBR-27 / ORC-7 are required there): one occurrence at OBR-7, if known."""
    start = obr_fields[7].split(_ENC.component)[0] if len(obr_fields) > 7 else ""
    return f"1^^^{start}" if start else "1"


def _orc(report: RadiologyReport, obr: str) -> str | None:
    orc = report.hl7.orc if report.hl7 else None
    if orc is None or _version_of(report) != "2.3":
        return orc
    fields = _field_list(orc)
    if not (len(fields) > 7 and fields[7]):
        obr_fields = _field_list(obr)
        _set_field(fields, 7, obr_fields[27] if len(obr_fields) > 27 else "1")
    return _join(fields)


def _obx(
    set_id: int,
    identifier: str,
    text: str,
    *,
    status: str,
    observed: datetime,
    version: str,
    responsible: Clinician | None = None,
    method: str | None = None,
    equipment: str | None = None,
) -> str:
    body = escape(text.strip(), _ENC, formatted=True)
    # OBX-4 sub-ID: required by the 2.3.1 and 2.7 message models hl7apy validates against.
    fields = ["OBX", str(set_id), "FT", identifier, "1", body]
    _set_field(fields, 11, status)
    _set_field(fields, 14, _ts(observed))
    if responsible is not None:
        _set_field(fields, 16, _xcn(responsible))
    if method:
        _set_field(fields, 17, method)
    if equipment and _at_least(version, "2.4"):
        _set_field(fields, 18, equipment)
    return _join(fields)


def _identity(draft: DraftProvenance) -> str:
    version = f" version {draft.adapter_version}" if draft.adapter_version else ""
    return f"model {draft.model_id}, adapter {draft.adapter_id}{version}, draft {draft.draft_id}"


def _method(draft: DraftProvenance) -> str:
    return f"{_METHOD_CODE}^{_esc('AI draft: ' + draft.model_id)}^{_METHOD_SYSTEM}"


def _equipment(draft: DraftProvenance) -> str:
    adapter = draft.adapter_id + (f"@{draft.adapter_version}" if draft.adapter_version else "")
    return f"{_esc(adapter)}^{DEFAULT_APPLICATION}"


def _nte(set_id: int, text: str) -> str:
    return _join(["NTE", str(set_id), "L", _esc(text)])


def _message_type(version: str, event: str = "R01", structure: str = "ORU_R01") -> str:
    head = "ACK" if structure == "ACK" else "ORU"
    return f"{head}^{event}" if version == "2.3" else f"{head}^{event}^{structure}"


def _segments(report: RadiologyReport, msh: str, obr: str) -> list[str]:
    origin = report.hl7
    segments = [msh, origin.pid if origin else _synth_pid(report)]
    if origin is not None and origin.pv1:
        segments.append(origin.pv1)
    orc = _orc(report, obr)
    if orc:
        segments.append(orc)
    segments.append(obr)
    return segments


def build_preliminary_oru(
    report: RadiologyReport,
    impression: str,
    draft: DraftProvenance,
    *,
    status: PreliminaryStatus = "P",
    control_id: str | None = None,
    now: datetime | None = None,
    output_charset: str | None = None,
) -> str:
    """The preliminary ORU^R01 carrying the AI-drafted impression (ER7, ``\\r`` separators).

    OBR-25 and OBX-11 are ``status`` (``P`` by default; ``R`` "not verified" is semantically
    closer for an unreviewed draft).  The findings are re-sent (18782-3) so that receivers
    that replace a report by accession keep them; the impression is OBX 19005-8 (FT), with
    the model in OBX-17, the adapter in OBX-18 (2.4+), and NTE segments labelling it an AI
    draft pending radiologist review.  OBR-32/33 are empty (no human interpreter on an AI
    draft).  MSH-18 is the sender's character set, else ``output_charset``, else empty
    (ASCII); UTF-8 is declared when the text does not fit (:mod:`integration.codecs.hl7.charsets`).
    Encode the result with :func:`encode_er7`.
    """
    if status not in ("P", "R"):
        raise RenderError(f"preliminary status must be P or R, not {status!r}")
    if not impression.strip():
        raise RenderError("cannot write a preliminary report with an empty impression")
    now = now or datetime.now(UTC)
    notice = f"{AI_DRAFT_NOTICE} Generated by {_identity(draft)}."
    if draft.fallback_notice:
        notice = f"{notice} {draft.fallback_notice}"
    return _ai_draft_message(
        report,
        impression,
        draft,
        notice=notice,
        obr_status=status,
        obx_status=status,
        control_id=control_id or uuid.uuid4().hex[:20],
        now=now,
        equipment=True,
        closing=f"AI draft impression ({_identity(draft)}); pending review.",
        output_charset=output_charset,
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
    """The ORU^R01 withdrawing a preliminary (OBR-25 ``I``, every OBX-11 ``W``; ER7, ``\\r``).

    The ORU^R01 that withdraws a published preliminary (rejected by the radiologist, or
        superseded): the same PID/ORC/OBR as the inbound order with **OBR-25 ``I``** (table 0123:
        "no results available; procedure incomplete" -- the study still awaits its report; ``X``
        would cancel the order and ``C`` would claim a corrected *final* result) and **every OBX-11
        ``W``** (table 0085: "post original as wrong"), the withdrawn impression re-sent so
        receivers that replace by accession and OBX-3 find it, and NTE segments saying why.  MSH-10
        is ``W`` + the draft id, so a re-send is identical.
    """
    if not impression.strip():
        raise RenderError("cannot withdraw a preliminary report with an empty impression")
    return _ai_draft_message(
        report,
        impression,
        draft,
        notice=withdrawal_notice(reason, draft.draft_id),
        obr_status=HL7_WITHDRAWN_OBR_STATUS,
        obx_status=HL7_WITHDRAWN_OBX_STATUS,
        control_id=control_id,
        now=now,
        equipment=False,
        closing=f"Withdrawn ({reason}); OBX-11 W: posted in error.",
        output_charset=output_charset,
    )


def _ai_draft_message(
    report: RadiologyReport,
    impression: str,
    draft: DraftProvenance,
    *,
    notice: str,
    obr_status: str,
    obx_status: str,
    control_id: str,
    now: datetime,
    equipment: bool,
    closing: str,
    output_charset: str | None,
) -> str:
    """The ORU of an AI draft (a preliminary, or its withdrawal): the inbound order's
    segments, the notice, the findings and the impression OBX with the AI method, and a
    closing note."""
    version = _version_of(report)
    msh = _msh(
        report,
        control_id=control_id,
        now=now,
        version=version,
        message_type=_message_type(version),
    )
    obr = _obr(report, status=obr_status, now=now, interpreter=None)
    segments = _segments(report, msh, obr)
    segments.append(_nte(1, notice))
    set_id = 1
    if report.findings:
        segments.append(
            _obx(1, _FINDINGS_ID, report.findings, status=obx_status, observed=now, version=version)
        )
        set_id = 2
    segments.append(
        _obx(
            set_id,
            _IMPRESSION_ID,
            impression,
            status=obx_status,
            observed=draft.drafted_at,
            version=version,
            method=_method(draft),
            equipment=_equipment(draft) if equipment else None,
        )
    )
    segments.append(_nte(1, closing))
    return _with_charset(report, segments, output_charset)


def build_final_oru(
    report: RadiologyReport,
    impression: str,
    approval: Approval,
    *,
    draft: DraftProvenance | None = None,
    control_id: str | None = None,
    now: datetime | None = None,
    output_charset: str | None = None,
) -> str:
    """The final ORU^R01 after radiologist approval: OBR-25/OBX-11 ``F``, OBR-32 the radiologist.

    OBR-22 and OBX-14 are the approval time; OBX-16 is the radiologist.  With ``draft`` an NTE
    records that the impression was AI-drafted and verified (or edited) by the radiologist.
    """
    if not impression.strip():
        raise RenderError("cannot write a final report with an empty impression")
    now = now or datetime.now(UTC)
    version = _version_of(report)
    radiologist = approval.radiologist
    notes: list[str] = []
    if draft is not None:
        how = "edited and approved" if approval.edited else "approved without changes"
        notes.append(
            f"Impression drafted by AI ({_identity(draft)}), {how} by radiologist "
            f"{radiologist.display} on {approval.approved_at.isoformat(timespec='seconds')}."
        )
    msh = _msh(
        report,
        control_id=control_id or uuid.uuid4().hex[:20],
        now=now,
        version=version,
        message_type=_message_type(version),
    )
    obr = _obr(report, status="F", now=approval.approved_at, interpreter=radiologist)
    segments = _segments(report, msh, obr)
    segments.extend(_nte(index + 1, note) for index, note in enumerate(notes))
    set_id = 1
    if report.findings:
        segments.append(
            _obx(
                1,
                _FINDINGS_ID,
                report.findings,
                status="F",
                observed=approval.approved_at,
                version=version,
                responsible=radiologist,
            )
        )
        set_id = 2
    segments.append(
        _obx(
            set_id,
            _IMPRESSION_ID,
            impression,
            status="F",
            observed=approval.approved_at,
            version=version,
            responsible=radiologist,
            method=_method(draft) if draft is not None else None,
            equipment=_equipment(draft) if draft is not None else None,
        )
    )
    return _with_charset(report, segments, output_charset)


def _inbound_msh(inbound: bytes | str | Er7Message) -> Segment:
    if isinstance(inbound, Er7Message):
        return inbound.msh
    try:
        text, charset = decode_message(inbound)
    except (CharsetError, TruncatedMessageError):  # refused input is still acknowledged (AR)
        raw = inbound if isinstance(inbound, str) else inbound.decode("latin-1")
        text, charset = raw.strip(" \t\r\n\x00").lstrip("\x0b").split("\x1c")[0], "latin-1"
    messages = split_messages(text)
    if not messages:
        raise MessageParseError("cannot acknowledge an empty message")
    head = messages[0].split("\r", 1)[0]
    return Er7Message.parse(head, charset).msh


def build_ack(
    inbound: bytes | str | Er7Message,
    code: AckCode,
    text: str | None = None,
    *,
    control_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """An original-mode ACK for ``inbound``: MSA-1 ``code``, MSA-2 = the inbound MSH-10.

    ``text`` (for AE/AR) goes into MSA-3 (up to 2.6) or an ERR segment (2.5+: ERR-8 user
    message, HL7 error 207 "application internal error" for AE, 200 "unsupported message
    type" for AR).  The ACK keeps the inbound version and swaps the sender and receiver.
    """
    if code not in ("AA", "AE", "AR"):
        raise RenderError(f"ACK code must be AA, AE or AR, not {code!r}")
    msh_in = _inbound_msh(inbound)
    enc = msh_in.enc
    version = msh_in.text(12, 1) or DEFAULT_VERSION
    if version not in _VERSION_ORDER:
        version = DEFAULT_VERSION
    now = now or datetime.now(UTC)
    event = msh_in.text(9, 2) or "R01"

    def raw(number: int) -> str:
        return escape(msh_in.text(number), _ENC) if enc != _ENC else msh_in.field(number)

    fields = [
        "MSH",
        _ENC.msh2,
        raw(5) or DEFAULT_APPLICATION,
        raw(6),
        raw(3),
        raw(4),
        _ts(now),
        "",
        _message_type(version, _esc(event), "ACK"),
        _esc(control_id or uuid.uuid4().hex[:20]),
        msh_in.component(11) or "P",
        version,
    ]
    msh = _join(fields)
    msa = ["MSA", code, escape(msh_in.text(10), _ENC)]
    segments = [msh]
    clean = " ".join(text.split())[:80] if text else ""
    if clean and not _at_least(version, "2.7"):
        _set_field(msa, 3, _esc(clean))
    segments.append(_join(msa))
    if clean and code != "AA" and _at_least(version, "2.5"):
        err_code = (
            "200^Unsupported message type^HL70357"
            if code == "AR"
            else ("207^Application internal error^HL70357")
        )
        err = ["ERR", "", "", err_code, "E"]
        _set_field(err, 8, _esc(clean))
        segments.append(_join(err))
    return "\r".join(segments) + "\r"
