"""Format detection and the single parse entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

import integration
from integration.codecs.codec import detect_format, parse_message
from integration.errors import InvalidResourceError, MessageParseError, UnsupportedMessageError

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize(
    ("raw", "fmt"),
    [
        (b"MSH|^~\\&|A", "hl7v2"),
        (b"\x0bMSH|^~\\&|A\r\x1c\r", "hl7v2"),
        (b"\r\nMSH|^~\\&|A", "hl7v2"),
        (b"BHS|^~\\&|A\rMSH|^~\\&|B", "hl7v2"),
        ("MSH|^~\\&|A", "hl7v2"),
        (b'{"resourceType": "Bundle"}', "fhir-r4"),
        (b'\xef\xbb\xbf  {"resourceType": "DiagnosticReport"}', "fhir-r4"),
    ],
)
def test_detect_format(raw: bytes | str, fmt: str) -> None:
    assert detect_format(raw) == fmt


@pytest.mark.parametrize("raw", [b"", b"   ", b"hello", b"<xml/>", b"[1]"])
def test_detect_format_rejects_other_content(raw: bytes) -> None:
    with pytest.raises(MessageParseError):
        detect_format(raw)


def test_parse_message_dispatches_by_content_not_extension() -> None:
    hl7 = parse_message((DATA / "hl7" / "oru_v24_tx_repetitions_lf.hl7").read_bytes())
    fhir = parse_message((DATA / "fhir" / "dr_presentedform_text.json").read_text("utf-8"))
    assert [r.source_format for r in hl7 + fhir] == ["hl7v2", "fhir-r4"]
    bom = b"\xef\xbb\xbf" + (DATA / "fhir" / "dr_presentedform_text.json").read_bytes()
    assert parse_message(bom)[0].accession == "ACC-2024-005521"


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("hl7/garbage.hl7", MessageParseError),
        ("hl7/adt_a01.hl7", UnsupportedMessageError),
        ("fhir/invalid_bogus_status.json", InvalidResourceError),
        ("fhir/not_json.json", MessageParseError),
    ],
)
def test_parse_message_errors(path: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_message((DATA / path).read_bytes())


def test_package_surface() -> None:
    assert {
        "RadiologyReport",
        "parse_message",
        "detect_format",
        "build_preliminary_oru",
        "build_final_oru",
        "build_ack",
        "build_preliminary_bundle",
        "build_final_bundle",
    } <= set(integration.__all__)
    for name in integration.__all__:
        assert getattr(integration, name) is not None


def test_codec_options_reach_both_readers() -> None:
    from integration.app.settings import PipelineSettings
    from integration.codecs.codec import CodecOptions
    from integration.errors import MessageTooLarge, MissingIdentityError

    fhir = (DATA / "fhir" / "dr_two_plain_identifiers.json").read_bytes()
    with pytest.raises(MissingIdentityError):
        parse_message(fhir)
    pipeline = PipelineSettings(
        accession_systems=["https://ris.lakeside.example.org/accession"],
        hl7_accession_fields=["OBR-2"],
        hl7_charset_fallback="UNICODE UTF-8",
        max_message_bytes=4096,
    )
    options = CodecOptions.from_settings(pipeline)
    assert parse_message(fhir, options)[0].accession == "LK-US-9912"
    hl7 = (DATA / "hl7" / "bad_declared_ascii_utf8.hl7").read_bytes()
    (report,) = parse_message(hl7, options)
    assert (report.accession, report.accession_source) == ("ORD-1", "OBR-2")
    assert report.warnings[0].code == "charset_fallback"
    big = (DATA / "hl7" / "oru_v27_no_pv1_orc.hl7").read_bytes() + b"Z" * 4096
    with pytest.raises(MessageTooLarge, match=r"pipeline\.max_message_bytes"):
        parse_message(big, options)
