"""MSH-18 character sets: one table for reader and writer; write-backs in the declared set."""

from __future__ import annotations

from datetime import UTC, datetime

import hl7
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration.codecs.hl7.charsets import CHARSETS, answer_charset, codec_for
from integration.codecs.hl7.escape import escape
from integration.codecs.hl7.reader import Er7Message, parse_oru
from integration.codecs.hl7.writer import build_final_oru, build_preliminary_oru, encode_er7
from integration.report.model import Approval, Clinician, DraftProvenance

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DRAFT = DraftProvenance(
    draft_id="drf-cs", model_id="m", adapter_id="a", drafted_at=datetime(2024, 5, 1, tzinfo=UTC)
)


def _message(label: str, name: str, findings: str, version: str = "2.5.1") -> bytes:
    msh18 = f"||||||{label}" if label else ""
    segments = [
        f"MSH|^~\\&|RIS|HOSP|RADGPT|HOSP|20240501||ORU^R01^ORU_R01|CS1|P|{version}{msh18}",
        f"PID|1||M1^^^HOSP^MR||{escape(name)}^GIVEN",
        "OBR|1|ORD1|ACC-CS1|71046^XR CHEST^C4|||20240501100000||||||||||||||||RAD|F",
        f"OBX|1|TX|18782-3^Findings^LN||{escape(findings)}||||||F",
    ]
    return ("\r".join(segments) + "\r").encode(codec_for(label) if label else "ascii")


def test_table_covers_latin_and_unicode_sets() -> None:
    assert {"ASCII", "8859/1", "8859/2", "8859/15", "UNICODE UTF-8", "UNICODE"} <= set(CHARSETS)
    assert "UNICODE UTF-16" not in CHARSETS  # ER7 delimiters must stay single bytes


@pytest.mark.parametrize(
    ("declared", "text", "version", "default", "expected"),
    [
        ("8859/2", "Małecki", "2.5.1", None, ("8859/2", "iso8859-2")),
        ("8859/1", "Nodule ≥ 6 mm", "2.5.1", None, ("UNICODE UTF-8", "utf-8")),
        (None, "plain", "2.3", None, (None, "ascii")),  # the v2 default: ASCII, MSH-18 empty
        (None, "Müller", "2.3", None, ("UNICODE", "utf-8")),  # no UNICODE UTF-8 before 2.5
        (None, "Müller", "2.3", "8859/1", ("8859/1", "latin-1")),  # the site's setting
        ("8859/15~ISO IR87", "Cœur", "2.5", None, ("8859/15", "iso8859-15")),
    ],
)
def test_answer_charset(
    declared: str | None,
    text: str,
    version: str,
    default: str | None,
    expected: tuple[str | None, str],
) -> None:
    assert answer_charset(declared, text, version=version, default=default) == expected


@pytest.mark.parametrize(
    ("name", "label", "needle"),
    [
        ("oru_v251_8859_2.hl7", "8859/2", "MAŁECKI^ZBIGNIEW^ŁUKASZ"),
        ("oru_v251_8859_15.hl7", "8859/15", "CŒURDEROY^BÉATRICE^ŽOFIA"),
        ("oru_v251_latin1.hl7", "8859/1", "Müller"),
    ],
)
def test_write_back_in_the_declared_charset(name: str, label: str, needle: str) -> None:
    from pathlib import Path

    raw = (Path(__file__).resolve().parents[1] / "data" / "hl7" / name).read_bytes()
    (report,) = parse_oru(raw)
    er7 = build_preliminary_oru(report, "Sans particularité.", DRAFT, now=NOW)
    data = encode_er7(er7)
    codec = codec_for(label)
    assert codec is not None
    assert needle.encode(codec) in data  # the inbound set's bytes, not UTF-8
    assert Er7Message.parse(er7).msh.field(18) == label
    (back,) = parse_oru(data)
    assert back.hl7 is not None and needle in back.hl7.pid
    # python-hl7 reads the same PID-5 from the decoded bytes
    parsed = hl7.parse(data.decode(codec))
    assert needle.startswith(str(parsed.segment("PID")[5]).split("^")[0])


def test_v23_without_msh18_is_answered_in_ascii() -> None:
    (report,) = parse_oru(_message("", "DOE", "Lungs clear.", version="2.3"))
    er7 = build_preliminary_oru(report, "Normal.", DRAFT, now=NOW)
    assert Er7Message.parse(er7).msh.field(18) == ""
    assert encode_er7(er7).isascii()
    er7 = build_preliminary_oru(report, "Nodule ≥ 6 mm.", DRAFT, now=NOW)
    assert Er7Message.parse(er7).msh.field(18) == "UNICODE"
    site = build_preliminary_oru(report, "Unauffällig.", DRAFT, now=NOW, output_charset="8859/1")
    assert Er7Message.parse(site).msh.field(18) == "8859/1"
    assert "Unauffällig".encode("latin-1") in encode_er7(site)


_SETS = sorted({label for label, codec in CHARSETS.items() if label == label.upper()})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), label=st.sampled_from(_SETS))
def test_parse_of_write_back_round_trips_names(data: st.DataObject, label: str) -> None:
    """Property: in every supported set, names and text survive parse(render(parse(x)))."""
    codec = codec_for(label)
    assert codec is not None
    # Letters of the set (names, not section headings) and the ER7 delimiters.
    letters = st.characters(
        codec=codec,
        categories=("Lu", "Ll", "Lt", "Lm", "Lo", "Nd"),
        include_characters="|^&~\\-'",
        exclude_characters="\u3164",  # EUC-KR's filler does not decode back to itself
    )
    name = data.draw(st.text(letters, min_size=1, max_size=12), label="name")
    findings = "Lungs " + data.draw(st.text(letters, min_size=1, max_size=20), label="findings")
    (report,) = parse_oru(_message(label, name, findings))
    for er7 in (
        build_preliminary_oru(report, f"Impression {name}.", DRAFT, now=NOW),
        build_final_oru(
            report,
            f"Impression {name}.",
            Approval(radiologist=Clinician(id="R1", family=name), approved_at=NOW),
            now=NOW,
        ),
    ):
        (back,) = parse_oru(encode_er7(er7))
        assert back.hl7 is not None
        pid = Er7Message.parse(f"MSH|^~\\&|\r{back.hl7.pid}").segments[1]
        assert pid.text(5, 1) == name
        assert back.findings == report.findings
        assert back.impression == " ".join(f"Impression {name}.".split())
