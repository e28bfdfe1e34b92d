"""HL7 v2 writers: every output re-parses with hl7apy at STRICT validation for its version."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import MaxChildLimitReached, OperationNotAllowed
from hl7apy.parser import parse_message as hl7apy_parse
from hl7apy.parser import parse_segment

from integration.codecs.fhir.reader import parse_fhir
from integration.codecs.hl7.reader import Er7Message, parse_oru
from integration.codecs.hl7.writer import (
    AI_DRAFT_NOTICE,
    build_ack,
    build_final_oru,
    build_preliminary_oru,
    encode_er7,
)
from integration.errors import MessageParseError, RenderError
from integration.report.model import Approval, Clinician, DraftProvenance, RadiologyReport

DATA = Path(__file__).resolve().parents[1] / "data"
HL7 = DATA / "hl7"
ORU_FILES = [n for n, r in json.loads((HL7 / "expected.json").read_text("utf-8")).items() if r]
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
DRAFT = DraftProvenance(
    draft_id="drf-0001",
    model_id="HuggingFaceTB/SmolLM2-135M",
    adapter_id="radiology-impression",
    adapter_version="2024.05.1",
    drafted_at=datetime(2024, 5, 1, 11, 59, 0, tzinfo=UTC),
)
APPROVAL = Approval(
    radiologist=Clinician(id="RAD4471", family="Okafor", given="Ngozi"),
    approved_at=datetime(2024, 5, 1, 13, 30, 0, tzinfo=UTC),
    draft_id="drf-0001",
)
TRICKY = (
    "1. No acute | ^ & ~ \\ disease.\n2. Stable 4 mm nodule (≥ prior).\n\n3. Épanchement: none."
)
STRICT = VALIDATION_LEVEL.STRICT


def _strict_by_hand(er7: str, version: str) -> None:
    """Build the hl7apy message group by group (hl7apy cannot find 2.8 ORU / 2.3 ACK groups)."""
    segments = [s for s in er7.split("\r") if s]

    def seg(text: str) -> object:
        return parse_segment(text, version=version, validation_level=STRICT)

    if segments[0].split("|")[8].startswith("ACK"):
        msg = Message("ACK", version=version, validation_level=STRICT)
        msg.msh = seg(segments[0])
        for text in segments[1:]:
            msg.add(seg(text))
        msg.validate()
        return
    msg = Message("ORU_R01", version=version, validation_level=STRICT)
    msg.msh = seg(segments[0])
    result = msg.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    order = None
    observation = None
    for text in segments[1:]:
        sid = text[:3]
        if sid == "PID":
            patient.add(seg(text))
        elif sid == "PV1":
            patient.add_group("ORU_R01_VISIT").add(seg(text))
        elif sid == "ORC":
            order = result.add_group("ORU_R01_ORDER_OBSERVATION")
            order.add_group("ORU_R01_COMMON_ORDER").add(seg(text))
        elif sid == "OBR":
            order = order or result.add_group("ORU_R01_ORDER_OBSERVATION")
            order.add(seg(text))
        elif sid == "OBX":
            assert order is not None
            observation = order.add_group("ORU_R01_OBSERVATION")
            observation.add(seg(text))
        elif sid == "NTE":
            (observation or order).add(seg(text))  # type: ignore[union-attr]
    msg.validate()


def assert_strict(er7: str) -> None:
    """hl7apy STRICT parse + validation of ``er7`` for the version in its MSH-12."""
    assert "\n" not in er7 and er7.endswith("\r")
    version = er7.split("\r")[0].split("|")[11]
    try:
        hl7apy_parse(er7, validation_level=STRICT, force_validation=True)
    except (MaxChildLimitReached, OperationNotAllowed):
        # hl7apy 1.3.5 model limits, not ours: 2.8 ORU (ORDER_DOCUMENT ambiguity) and 2.3 ACK.
        assert version in ("2.8", "2.3")
        _strict_by_hand(er7, version)


def _report(name: str, index: int = 0) -> RadiologyReport:
    return parse_oru((HL7 / name).read_bytes())[index]


@pytest.mark.parametrize("version", ["2.8", "2.5"])
def test_strict_helper_rejects_invalid_messages(version: str) -> None:
    """The check can fail: a missing required OBX-11 is refused by both validation paths."""
    good = build_preliminary_oru(_report("oru_v28_two_obr.hl7"), "Normal.", DRAFT, now=NOW)
    good = good.replace("|2.8\r", f"|{version}\r", 1)
    assert_strict(good)
    lines = good.split("\r")
    bad = [
        line if not line.startswith("OBX|2|") else "OBX|2|FT|19005-8^Impr^LN|1|x" for line in lines
    ]
    with pytest.raises(Exception):  # noqa: B017 - any hl7apy validation error
        assert_strict("\r".join(bad))


@pytest.mark.parametrize("name", ORU_FILES)
def test_preliminary_is_strict_valid_and_round_trips(name: str) -> None:
    for index, report in enumerate(parse_oru((HL7 / name).read_bytes())):
        er7 = build_preliminary_oru(report, TRICKY, DRAFT, control_id=f"OUT{index}", now=NOW)
        assert_strict(er7)
        (back,) = parse_oru(er7)
        assert back.impression == " ".join(TRICKY.split())
        assert back.findings == report.findings
        assert back.accession == report.accession
        assert back.patient_id == report.patient_id
        assert back.status == "P"
        assert back.message_id == f"OUT{index}"
        assert back.hl7_version == report.hl7_version


@pytest.mark.parametrize("name", ORU_FILES)
def test_final_and_ack_are_strict_valid(name: str) -> None:
    raw = (HL7 / name).read_bytes()
    report = parse_oru(raw)[0]
    er7 = build_final_oru(report, "No acute disease.", APPROVAL, draft=DRAFT, now=NOW)
    assert_strict(er7)
    for code in ("AA", "AE", "AR"):
        assert_strict(build_ack(raw, code, "processing failed" if code != "AA" else None))


def test_preliminary_fields() -> None:
    report = _report("oru_v25_loinc_crlf_zsegments.hl7")
    er7 = build_preliminary_oru(report, TRICKY, DRAFT, control_id="CTL1", now=NOW)
    message = Er7Message.parse(er7)
    msh, *rest = message.segments
    by_id: dict[str, list[object]] = {}
    for seg in rest:
        by_id.setdefault(seg.id, []).append(seg)
    # We answer the sender: MSH-3/4 and MSH-5/6 swapped, new control id, same version.
    assert [msh.field(n) for n in (3, 4, 5, 6)] == [
        "RADGPT",
        "RIVERSIDE",
        "POWERSCRIBE",
        "RIVERSIDE RAD",
    ]
    assert msh.field(9) == "ORU^R01^ORU_R01"
    assert (msh.field(10), msh.field(12)) == ("CTL1", "2.5")
    assert report.hl7 is not None
    # Patient and order segments written back; only OBR-22/25 change (and set id), and
    # OBR-32/33 are emptied (issue 12: an unverified AI draft names no human interpreter;
    # this test used to require the inbound OBR-32 to be copied).
    assert rest[0].raw == report.hl7.pid
    assert rest[1].raw == report.hl7.pv1
    assert rest[2].raw == report.hl7.orc
    obr = rest[3]
    original = Er7Message.parse("MSH|^~\\&|\r" + report.hl7.obr).segments[1]
    assert original.field(32) == "3321&LINDQVIST&ERIK"
    for number in range(2, 33):
        if number not in (22, 25, 32):
            assert obr.field(number) == original.field(number), number
    assert (obr.field(22), obr.field(25)) == ("20240501120000+0000", "P")
    assert obr.field(32) == obr.field(33) == ""
    nte = rest[4]
    assert nte.id == "NTE" and AI_DRAFT_NOTICE in nte.text(3)
    assert DRAFT.model_id in nte.text(3) and DRAFT.adapter_id in nte.text(3)
    findings, impression = rest[5], rest[6]
    assert findings.field(3).startswith("18782-3^")
    assert impression.field(3).startswith("19005-8^")
    assert (impression.field(2), impression.field(11)) == ("FT", "P")
    assert "\\.br\\" in impression.field(5) and "\\F\\" in impression.field(5)
    assert DRAFT.model_id in impression.text(17, 2)
    assert impression.text(18, 1) == "radiology-impression@2024.05.1"
    assert impression.field(14) == "20240501115900+0000"
    assert rest[7].id == "NTE"


def test_status_r_is_allowed_and_others_refused() -> None:
    report = _report("oru_v27_no_pv1_orc.hl7")
    er7 = build_preliminary_oru(report, "Normal.", DRAFT, status="R", now=NOW)
    assert_strict(er7)
    (back,) = parse_oru(er7)
    assert back.status == "R"
    assert next(s for s in er7.split("\r") if s.startswith("OBR|")).endswith("|R")
    with pytest.raises(RenderError):
        build_preliminary_oru(report, "Normal.", DRAFT, status="F", now=NOW)  # type: ignore[arg-type]
    with pytest.raises(RenderError):
        build_preliminary_oru(report, "  ", DRAFT, now=NOW)


def test_final_fields() -> None:
    report = _report("oru_v251_findings_only.hl7")
    er7 = build_final_oru(report, "Normal chest.", APPROVAL, draft=DRAFT, control_id="F1", now=NOW)
    message = Er7Message.parse(er7)
    obr = next(s for s in message.segments if s.id == "OBR")
    assert obr.field(25) == "F"
    assert obr.field(32) == "RAD4471&Okafor&Ngozi"
    assert obr.field(22) == "20240501133000+0000"
    obx = [s for s in message.segments if s.id == "OBX"]
    assert all(s.field(11) == "F" for s in obx)
    assert obx[-1].field(16) == "RAD4471^Okafor^Ngozi"
    nte = next(s for s in message.segments if s.id == "NTE")
    assert "approved without changes by radiologist Ngozi Okafor" in nte.text(3)
    (back,) = parse_oru(er7)
    assert back.is_final and back.impression == "Normal chest."
    assert back.interpreter == Clinician(id="RAD4471", family="Okafor", given="Ngozi")


def test_final_without_draft_has_no_ai_note() -> None:
    er7 = build_final_oru(_report("oru_v24_tx_repetitions_lf.hl7"), "Normal.", APPROVAL, now=NOW)
    assert_strict(er7)
    assert "NTE|" not in er7 and "AIDRAFT" not in er7


def test_character_set_follows_the_sender_when_possible() -> None:
    latin = _report("oru_v251_latin1.hl7")
    er7 = build_preliminary_oru(latin, "Unauffällig.", DRAFT, now=NOW)
    assert er7.split("\r")[0].endswith("|8859/1")
    assert "Unauffällig".encode("latin-1") in encode_er7(er7)
    # A character 8859/1 cannot carry switches the answer to UTF-8 instead of losing it.
    er7 = build_preliminary_oru(latin, "Nodule ≥ 6 mm.", DRAFT, now=NOW)
    assert er7.split("\r")[0].endswith("|UNICODE UTF-8")
    assert "≥".encode() in encode_er7(er7)
    assert parse_oru(encode_er7(er7))[0].impression == "Nodule ≥ 6 mm."


def test_writer_accepts_fhir_origin_reports() -> None:
    (report,) = parse_fhir((DATA / "fhir" / "dr_contained_observations.json").read_bytes())
    er7 = build_preliminary_oru(report, "No acute intracranial abnormality.", DRAFT, now=NOW)
    assert_strict(er7)
    (back,) = parse_oru(er7)
    assert back.accession == "CT-HD-000221"
    assert back.patient_id == "p-4410"
    assert back.procedure is not None and back.procedure.code == "30799-1"
    assert back.procedure.system == "LN"
    assert back.findings == report.findings
    final = build_final_oru(report, "Normal.", APPROVAL, now=NOW)
    assert_strict(final)


def test_fhir_origin_without_patient_cannot_render() -> None:
    (report,) = parse_fhir((DATA / "fhir" / "dr_contained_observations.json").read_bytes())
    with pytest.raises(RenderError, match="patient"):
        build_preliminary_oru(report.model_copy(update={"patient_id": None}), "x", DRAFT)


def test_ack_fields() -> None:
    raw = (HL7 / "oru_v231_gdt_ft.hl7").read_bytes()
    ack = build_ack(raw, "AE", "model backend unavailable", control_id="ACK1", now=NOW)
    msh, msa = Er7Message.parse(ack).segments[:2]
    assert [msh.field(n) for n in (3, 4, 5, 6)] == [
        "RADGPT",
        "NORTHWIND HOSP",
        "RIS",
        "NORTHWIND HOSP",
    ]
    assert msh.field(9) == "ACK^R01^ACK" and msh.field(12) == "2.3.1"
    assert (msa.field(1), msa.field(2), msa.field(3)) == (
        "AE",
        "NW20230602-7781",
        "model backend unavailable",
    )
    ack28 = build_ack((HL7 / "oru_v28_two_obr.hl7").read_bytes(), "AR", "unsupported")
    err = Er7Message.parse(ack28).segments[2]
    assert err.id == "ERR" and err.field(3).startswith("200^") and err.field(8) == "unsupported"


def test_ack_of_garbage_raises() -> None:
    with pytest.raises(MessageParseError):
        build_ack(b"not hl7", "AR")


def test_preliminary_names_no_human_interpreter_final_names_the_approver() -> None:
    report = _report("oru_v251_epic_single_tx.hl7")
    assert report.interpreter is not None and report.interpreter.family == "NAKAMURA"
    er7 = build_preliminary_oru(report, "No acute abnormality.", DRAFT, now=NOW)
    assert_strict(er7)
    obr = next(s for s in Er7Message.parse(er7).segments if s.id == "OBR")
    assert obr.field(32) == "" and "NAKAMURA" not in er7
    (back,) = parse_oru(er7)
    assert back.interpreter is None
    final = build_final_oru(report, "No acute abnormality.", APPROVAL, draft=DRAFT, now=NOW)
    obr = next(s for s in Er7Message.parse(final).segments if s.id == "OBR")
    assert obr.field(32) == "RAD4471&Okafor&Ngozi"


@pytest.mark.parametrize("name", ORU_FILES)
def test_write_backs_reparse_with_python_hl7(name: str) -> None:
    import hl7

    for report in parse_oru((HL7 / name).read_bytes()):
        for er7 in (
            build_preliminary_oru(report, TRICKY, DRAFT, now=NOW),
            build_final_oru(report, TRICKY, APPROVAL, draft=DRAFT, now=NOW),
        ):
            message = hl7.parse(er7)
            ours = Er7Message.parse(er7)
            assert [str(s[0]) for s in message] == [s.id for s in ours.segments]
            their_obx = message.segments("OBX")[-1]
            our_obx = [s for s in ours.segments if s.id == "OBX"][-1]
            assert str(their_obx[3]).startswith("19005-8^")
            assert str(their_obx[5]) == our_obx.field(5)
            assert str(message.segment("PID")[3]) == ours.segments[1].field(3)


@pytest.mark.parametrize("name", ["bad_declared_ascii_utf8.hl7", "bad_truncated_mllp.hl7"])
def test_refused_input_can_still_be_acknowledged(name: str) -> None:
    ack = build_ack((HL7 / name).read_bytes(), "AR", "refused", control_id="A1", now=NOW)
    assert_strict(ack)
    msa = Er7Message.parse(ack).segments[1]
    assert (msa.field(1), msa.field(2)) == ("AR", "TR-0001")


def test_an_extractive_fallback_draft_says_so_in_the_preliminary() -> None:
    from datetime import UTC, datetime

    from integration.codecs.codec import parse_message
    from integration.codecs.fhir.writer import build_preliminary_bundle
    from integration.codecs.hl7.writer import build_preliminary_oru
    from integration.report.model import DraftProvenance

    raw = (DATA / "hl7" / "oru_v251_findings_only.hl7").read_bytes()
    report = parse_message(raw)[0]
    at = datetime(2025, 1, 2, 3, 4, tzinfo=UTC)
    fallback = DraftProvenance(
        draft_id="d-1", model_id="m", adapter_id="radiology", drafted_at=at,
        method="extractive-fallback",
    )  # fmt: skip
    model = fallback.model_copy(update={"method": "model"})
    er7 = build_preliminary_oru(report, "Small right pleural effusion.", fallback, now=at)
    assert "Extractive fallback: no model draft passed the consistency checks" in er7
    plain = build_preliminary_oru(report, "Small right pleural effusion.", model, now=at)
    assert "Extractive fallback" not in plain
    bundle = build_preliminary_bundle(report, "Small right pleural effusion.", fallback, now=at)
    reasons = [
        r["text"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Provenance"
        for r in e["resource"]["reason"]
    ]
    assert reasons and all("Extractive fallback" in t for t in reasons)
