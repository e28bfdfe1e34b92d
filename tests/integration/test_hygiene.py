"""One rule for control characters in both readers (docs/hl7-fhir-mapping.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integration.codecs.codec import parse_message
from integration.codecs.hygiene import check_report_text, check_text
from integration.errors import ControlCharacterError

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x07", "\x0b", "\x0c", "\x1b", "\x1c", "\x7f"])
def test_forbidden_control_characters(char: str) -> None:
    with pytest.raises(ControlCharacterError, match=f"U\\+{ord(char):04X} in findings"):
        check_text(f"Lungs{char} clear", "findings")


def test_tab_and_line_breaks_are_text() -> None:
    check_text("Lungs\tclear.\r\nNo effusion.\n", "findings")


def test_nested_documents_name_the_path_not_the_text() -> None:
    document = {"entry": [{"resource": {"conclusion": "Patient Secret\x00Name"}}]}
    with pytest.raises(ControlCharacterError) as info:
        check_report_text(document, "FHIR JSON")
    assert "entry[0].resource.conclusion" in str(info.value)
    assert "Secret" not in str(info.value)


def test_both_readers_apply_the_rule() -> None:
    hl7 = (DATA / "hl7" / "oru_v27_no_pv1_orc.hl7").read_bytes()
    with pytest.raises(ControlCharacterError):
        parse_message(hl7.replace(b"OBX|1|", b"OBX|1\x01|", 1))
    fhir = json.loads((DATA / "fhir" / "dr_presentedform_text.json").read_text("utf-8"))
    fhir["subject"]["display"] = "Jane\u001bWhitfield"
    with pytest.raises(ControlCharacterError, match=r"subject\.display"):
        parse_message(json.dumps(fhir))
    # base64 attachment text is checked after decoding
    import base64

    fhir = json.loads((DATA / "fhir" / "dr_presentedform_text.json").read_text("utf-8"))
    fhir["presentedForm"][0]["data"] = base64.b64encode(b"FINDINGS: Clear\x00 lungs.").decode()
    with pytest.raises(ControlCharacterError, match="findings"):
        parse_message(json.dumps(fhir))


def test_nul_padding_around_an_mllp_frame_is_framing() -> None:
    hl7 = (DATA / "hl7" / "oru_v27_no_pv1_orc.hl7").read_bytes()
    assert parse_message(b"\x00\x0b" + hl7 + b"\x1c\r\x00")
