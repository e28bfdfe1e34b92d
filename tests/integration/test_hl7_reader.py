"""HL7 v2 ORU^R01 reader: the corpus under tests/data/hl7, hl7apy as an oracle, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hl7apy.parser import parse_message as hl7apy_parse

from integration.codecs.hl7.escape import EncodingChars
from integration.codecs.hl7.reader import (
    Er7Message,
    decode_message,
    parse_hl7_datetime,
    parse_oru,
    reencode_segment,
    split_messages,
)
from integration.errors import MessageParseError, UnsupportedMessageError

HL7 = Path(__file__).resolve().parents[1] / "data" / "hl7"
EXPECTED: dict[str, list[dict[str, Any]]] = json.loads(
    (HL7 / "expected.json").read_text(encoding="utf-8")
)
ORU_FILES = sorted(EXPECTED)


def test_corpus_covers_every_version() -> None:
    versions = {
        report.hl7_version for name in ORU_FILES for report in parse_oru((HL7 / name).read_bytes())
    }
    assert {"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"} <= versions


@pytest.mark.parametrize("name", ORU_FILES)
def test_corpus_reports(name: str) -> None:
    reports = parse_oru((HL7 / name).read_bytes())
    expected = EXPECTED[name]
    assert len(reports) == len(expected)
    for report, want in zip(reports, expected, strict=True):
        summary = report.summary()
        for key, value in want.items():
            assert summary[key] == value, key
        assert report.source_format == "hl7v2"
        assert report.hl7 is not None
        assert report.hl7.pid.startswith("PID|")
        assert report.hl7.obr.startswith("OBR|")


def _normalise(value: str) -> str:
    # hl7apy re-escapes every escape it does not know (\.br\ -> \E\.br\E\): undo on both sides.
    return value.replace("\\E\\", "\\")


@pytest.mark.parametrize("name", ORU_FILES)
def test_tokenizer_agrees_with_hl7apy(name: str) -> None:
    """Every field of every segment, as read by our tokenizer and by hl7apy's full parser."""
    text, charset = decode_message((HL7 / name).read_bytes())
    ours = Er7Message.parse(split_messages(text)[0], charset)
    theirs = hl7apy_parse(text.replace("\r\n", "\r").replace("\n", "\r"), find_groups=False)
    assert [s.name for s in theirs.children] == [s.id for s in ours.segments]
    compared = 0
    for their_seg, our_seg in zip(theirs.children, ours.segments, strict=True):
        fields: dict[int, list[str]] = {}
        for their_field in their_seg.children:  # repetitions are separate children
            number = int(their_field.name.split("_")[1])
            fields.setdefault(number, []).append(their_field.to_er7())
        for number, repetitions in fields.items():
            if their_seg.name == "MSH" and number <= 2:
                continue
            assert _normalise("~".join(repetitions)) == _normalise(our_seg.field(number)), (
                f"{their_seg.name}-{number}"
            )
            compared += 1
    assert compared > 20


def test_mllp_crlf_lf_and_cr_give_the_same_reports() -> None:
    base = (HL7 / "oru_v27_no_pv1_orc.hl7").read_bytes()
    variants = [
        base,
        base.replace(b"\r", b"\n"),
        base.replace(b"\r", b"\r\n"),
        b"\x0b" + base + b"\x1c\r",
        base.decode("utf-8"),
    ]
    summaries = [[r.summary() for r in parse_oru(v)] for v in variants]
    assert all(s == summaries[0] for s in summaries)


def test_latin1_and_utf8_decode_by_msh18() -> None:
    latin = (HL7 / "oru_v251_latin1.hl7").read_bytes()
    assert "Müller".encode("latin-1") in latin
    assert decode_message(latin)[1] == "latin-1"
    utf8 = (HL7 / "oru_v251_mllp_utf8.hl7").read_bytes()
    assert decode_message(utf8)[1] == "utf-8"
    assert "Müller^Hans-Jörg" in parse_oru(utf8)[0].hl7.pid  # type: ignore[union-attr]


def test_undeclared_charset_falls_back_from_utf8_to_cp1252() -> None:
    raw = (
        (HL7 / "oru_v27_no_pv1_orc.hl7").read_bytes().replace(b"TANAKA", "TÄNAKA".encode("cp1252"))
    )
    assert "TÄNAKA" in parse_oru(raw)[0].hl7.pid  # type: ignore[union-attr]


def test_two_obr_groups_keep_their_own_order_segments() -> None:
    first, second = parse_oru((HL7 / "oru_v28_two_obr.hl7").read_bytes())
    assert first.hl7 is not None and second.hl7 is not None
    assert first.hl7.orc is not None and "UH-ACC-100231" in first.hl7.orc
    assert second.hl7.orc is not None and "UH-ACC-100232" in second.hl7.orc
    assert (first.hl7.obr_index, second.hl7.obr_index) == (0, 1)
    assert first.patient_id == second.patient_id == "UH-5501234"


def test_missing_pv1_and_orc_are_none() -> None:
    (report,) = parse_oru((HL7 / "oru_v27_no_pv1_orc.hl7").read_bytes())
    assert report.hl7 is not None
    assert report.hl7.pv1 is None and report.hl7.orc is None


def test_origin_keeps_routing_fields() -> None:
    (report,) = parse_oru((HL7 / "oru_v25_loinc_crlf_zsegments.hl7").read_bytes())
    origin = report.hl7
    assert origin is not None
    assert (origin.sending_application, origin.sending_facility) == ("POWERSCRIBE", "RIVERSIDE RAD")
    assert (origin.receiving_application, origin.receiving_facility) == ("RADGPT", "RIVERSIDE")
    assert report.source_system == "POWERSCRIBE^RIVERSIDE RAD"
    assert report.reported_at == datetime(2023, 8, 21, 17, 3, tzinfo=timezone(timedelta(hours=-5)))


def test_custom_encoding_characters_are_reencoded_for_write_back() -> None:
    raw = (
        "MSH#$%!@#RIS#H#RADGPT#H#20240101000000##ORU$R01#X1#P#2.5\r"
        "PID#1##M1$$$AA$MR##DOE$JANE\r"
        "OBR#1##ACC1#71020$XR CHEST$C4#######################RAD#F\r"
        "OBX#1#TX#18782-3$Findings$LN##Heart & lungs normal. Pipe | kept.%Second line.######F\r"
    )
    (report,) = parse_oru(raw)
    assert report.findings == "Heart & lungs normal. Pipe | kept. Second line."
    assert report.accession == "ACC1"
    assert report.hl7 is not None
    assert report.hl7.pid == "PID|1||M1^^^AA^MR||DOE^JANE"
    assert report.hl7.obr.startswith("OBR|1||ACC1|71020^XR CHEST^C4|")


def test_reencode_segment_escapes_standard_delimiters() -> None:
    raw = "PID#1##M|1$$$AA##A^B"
    message = Er7Message.parse("MSH#$%!@#X\r" + raw)
    assert message.enc == EncodingChars.from_msh("#", "$%!@")
    assert reencode_segment(message.segments[1]) == "PID|1||M\\F\\1^^^AA||A\\S\\B"


def test_batch_with_two_messages() -> None:
    one = (HL7 / "oru_v27_no_pv1_orc.hl7").read_text(encoding="utf-8")
    two = one.replace("MH-77120045", "MH-77120046").replace("MH-F-88120", "MH-F-88121")
    batch = f"BHS|^~\\&|EPICRAD\r{one}{two}BTS|2\r"
    reports = parse_oru(batch)
    assert [r.message_id for r in reports] == ["MH-77120045", "MH-77120046"]
    assert [r.accession for r in reports] == ["MH-F-88120", "MH-F-88121"]


def test_lab_oru_yields_no_reports() -> None:
    assert parse_oru((HL7 / "oru_v251_lab_numeric.hl7").read_bytes()) == []


def test_adt_is_unsupported() -> None:
    with pytest.raises(UnsupportedMessageError, match="ADT\\^A01"):
        parse_oru((HL7 / "adt_a01.hl7").read_bytes())


def test_unsupported_version() -> None:
    raw = (HL7 / "oru_v27_no_pv1_orc.hl7").read_bytes().replace(b"|2.7", b"|2.2", 1)
    with pytest.raises(UnsupportedMessageError, match=r"version 2\.2"):
        parse_oru(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ((HL7 / "garbage.hl7").read_bytes(), "does not start with an MSH"),
        (b"", "empty"),
        (b"MSH|", "not an HL7 v2 message"),
        (b"MSHA^~\\&|X", "field separator"),
        (b"MSH|^^\\&|A|B|C|D|2024||ORU^R01|1|P|2.5", "repeats a delimiter"),
        (b"MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5\rP I D|1", "invalid segment id"),
        (b"MSH|^~\\&|A|B|C|D|2024||ORU^R01||P|2.5\rPID|1", "control id"),
        (b"MSH|^~\\&|A|B|C|D|2024|||1|P|2.5\rPID|1", "message type"),
    ],
)
def test_garbage_raises_parse_error(raw: bytes, message: str) -> None:
    with pytest.raises(MessageParseError, match=message):
        parse_oru(raw)


def test_error_messages_carry_no_report_text() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5\rOBX|1|TX|x||Secret Patient Name\rP I D|1"
    with pytest.raises(MessageParseError) as info:
        parse_oru(raw)
    assert "Secret" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20240301", datetime(2024, 3, 1)),
        ("202403011015", datetime(2024, 3, 1, 10, 15)),
        ("20240301101530.25", datetime(2024, 3, 1, 10, 15, 30, 250000)),
        ("20240301101530+0000", datetime(2024, 3, 1, 10, 15, 30, tzinfo=UTC)),
        (
            "20240301101530-0500",
            datetime(2024, 3, 1, 10, 15, 30, tzinfo=timezone(timedelta(hours=-5))),
        ),
        ("", None),
        ("yesterday", None),
        ("20241301", None),
    ],
)
def test_parse_hl7_datetime(value: str, expected: datetime | None) -> None:
    assert parse_hl7_datetime(value) == expected


# --------------------------------------------------------------------------- issue 12 / 16


def test_python_hl7_agrees_on_every_field() -> None:
    """A second, independent parser (python-hl7) reads the same raw fields as our tokenizer."""
    import hl7

    for name in ORU_FILES:
        text, charset = decode_message((HL7 / name).read_bytes())
        ours = Er7Message.parse(split_messages(text)[0], charset)
        theirs = hl7.parse(text.replace("\r\n", "\r").replace("\n", "\r").strip("\r"))
        assert [str(s[0]) for s in theirs] == [s.id for s in ours.segments], name
        for their_seg, our_seg in zip(theirs, ours.segments, strict=True):
            first = 3 if our_seg.id == "MSH" else 1
            for number in range(first, len(their_seg)):
                assert str(their_seg[number]) == our_seg.field(number), (name, our_seg.id, number)


def test_line_break_inside_a_repetition_separates_words() -> None:
    (report,) = parse_oru((HL7 / "oru_v251_epic_single_tx.hl7").read_bytes())
    assert "convexity. There is no midline shift." in report.findings
    assert "convexity.There" not in report.findings


def test_sign_off_lines_are_metadata_not_sections() -> None:
    (report,) = parse_oru((HL7 / "oru_v251_epic_single_tx.hl7").read_bytes())
    assert report.impression == (
        "No acute intracranial abnormality. Chronic left frontal subdural hygroma."
    )
    assert report.sign_off == [
        "Critical result communicated to Dr Okonjo by phone at 09:25 on 06/11/2024.",
        "Electronically signed by: KENJI NAKAMURA, MD on 06/11/2024 09:30",
    ]
    (cerner,) = parse_oru((HL7 / "oru_v23_cerner_impression_first.hl7").read_bytes())
    assert "Dictated" not in cerner.findings and "Transcribed" not in cerner.findings
    assert [line.split(":")[0] for line in cerner.sign_off] == ["Dictated by", "Transcribed by"]


def test_malformed_obr7_is_a_recorded_warning() -> None:
    (report,) = parse_oru((HL7 / "oru_v23_cerner_impression_first.hl7").read_bytes())
    assert report.observed_at is None
    assert [w.code for w in report.warnings] == ["observed_at_invalid"]
    assert "OBR-7" in report.warnings[0].detail
    assert "2023-09-19" not in report.warnings[0].detail  # names the field, not its value


def test_accession_order_and_source() -> None:
    (report,) = parse_oru((HL7 / "oru_v23_cerner_impression_first.hl7").read_bytes())
    assert (report.accession, report.accession_source) == ("MC-XR-230919-117", "OBR-18")
    raw = (HL7 / "oru_v25_loinc_crlf_zsegments.hl7").read_bytes()
    assert parse_oru(raw)[0].accession_source == "OBR-3"
    # a dcm4chee-style site looks at OBR-18 first; OBR-2 (placer) when nothing else is set
    (placer,) = parse_oru(raw, accession_fields=("OBR-18", "OBR-2"))
    assert (placer.accession, placer.accession_source) == ("RV-ORD-33012", "OBR-2")


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("bad_truncated_obx.hl7", "TruncatedMessageError", "ends before OBX-11"),
        ("bad_truncated_mllp.hl7", "TruncatedMessageError", "MLLP start block"),
        ("bad_declared_ascii_utf8.hl7", "CharsetError", "declared MSH-18 character set 'ASCII'"),
        (
            "bad_nul_in_findings.hl7",
            "ControlCharacterError",
            r"U\+0000 in HL7 v2 message 1 segment 4 \(OBX\)",
        ),
        ("bad_no_accession.hl7", "MissingIdentityError", "no accession"),
    ],
)
def test_refused_input_is_typed_and_not_retriable(name: str, error: str, message: str) -> None:
    from integration.errors import InputError

    with pytest.raises(InputError, match=message) as info:
        parse_oru((HL7 / name).read_bytes())
    assert type(info.value).__name__ == error
    assert info.value.retriable is False
    assert "Saffronqu" not in str(info.value) and "MÜLLER" not in str(info.value)


def test_an_oru_without_obr_is_refused_as_incomplete() -> None:
    from integration.errors import TruncatedMessageError

    raw = b"MSH|^~\\&|RIS|H|RADGPT|H|20240601||ORU^R01|T2|P|2.5\rPID|1||M1^^^H^MR||DOE^J\r"
    with pytest.raises(TruncatedMessageError, match="no OBR segment"):
        parse_oru(raw)


def test_charset_fallback_is_explicit_and_recorded() -> None:
    raw = (HL7 / "bad_declared_ascii_utf8.hl7").read_bytes()
    (report,) = parse_oru(raw, charset_fallback="UNICODE UTF-8")
    assert report.hl7 is not None and "MÜLLER^JÖRG" in report.hl7.pid
    (warning,) = report.warnings
    assert warning.code == "charset_fallback" and "'UNICODE UTF-8'" in warning.detail


def test_unsupported_declared_charset_is_refused() -> None:
    from integration.errors import CharsetError

    raw = (HL7 / "oru_v251_8859_2.hl7").read_bytes().replace(b"8859/2", b"ISO IR87")
    with pytest.raises(CharsetError, match="unsupported HL7 v2 character set"):
        parse_oru(raw)


def test_declared_8859_2_decodes_polish_names() -> None:
    (report,) = parse_oru((HL7 / "oru_v251_8859_2.hl7").read_bytes())
    assert report.hl7 is not None and "MAŁECKI^ZBIGNIEW^ŁUKASZ" in report.hl7.pid
    assert report.hl7.character_set == "8859/2"


def test_escaped_control_character_is_refused() -> None:
    from integration.errors import ControlCharacterError

    raw = (HL7 / "oru_v27_no_pv1_orc.hl7").read_bytes().replace(b"|F\r", b"|F\r", 1)
    lines = raw.split(b"\r")
    index = next(i for i, line in enumerate(lines) if line.startswith(b"OBX"))
    fields = lines[index].split(b"|")
    fields[5] = fields[5] + b"\\X07\\"
    lines[index] = b"|".join(fields)
    with pytest.raises(ControlCharacterError, match="U\\+0007"):
        parse_oru(b"\r".join(lines))


def test_size_limit() -> None:
    from integration.errors import MessageTooLarge

    raw = (HL7 / "oru_v27_no_pv1_orc.hl7").read_bytes()
    assert parse_oru(raw, max_bytes=len(raw))
    with pytest.raises(MessageTooLarge, match="over the limit"):
        parse_oru(raw, max_bytes=len(raw) - 1)
