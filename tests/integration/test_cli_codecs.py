"""``radgpt parse`` / ``radgpt render`` through a real subprocess (the scripted contract)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from integration.codecs.hl7.reader import parse_oru

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


def radgpt(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "integration", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _reports(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    reports: list[dict[str, Any]] = json.loads(result.stdout)["reports"]
    return reports


def test_parse_hl7_mllp() -> None:
    (report,) = _reports(radgpt("parse", DATA / "hl7" / "oru_v251_mllp_utf8.hl7"))
    assert report["source_format"] == "hl7v2"
    assert report["message_id"] == "HC-2023-0910-0001"
    assert report["hl7_version"] == "2.5.1"
    assert report["accession"] == "HCG-AC-2023-55871"
    assert report["patient_id"] == "CH-7731002"
    assert report["procedure"]["code"] == "RX-THX"
    assert report["status"] == "F"
    assert report["findings"].startswith("Pas d'épanchement pleural.")
    assert report["impression"].startswith("Pas d'anomalie cardio-pulmonaire aiguë.")


def test_parse_fhir_bundle_and_detect_by_content(tmp_path: Path) -> None:
    source = DATA / "fhir" / "bundle_collection_two_reports.json"
    renamed = tmp_path / "export.txt"  # no .json extension: detected by content
    renamed.write_bytes(source.read_bytes())
    reports = _reports(radgpt("parse", renamed))
    assert [r["accession"] for r in reports] == ["LS-55001", "KN-55002"]
    assert all(r["source_format"] == "fhir-r4" and r["hl7_version"] is None for r in reports)


def test_parse_headings_removed_and_lines_joined() -> None:
    (report,) = _reports(radgpt("parse", DATA / "hl7" / "oru_v23_gdt_lines.hl7"))
    assert report["findings"] == (
        "Heart size within normal limits. No focal alveolar consolidation, no definite pleural "
        "effusion seen. No typical findings of pulmonary edema."
    )


def test_parse_lab_message_prints_no_reports() -> None:
    assert _reports(radgpt("parse", DATA / "hl7" / "oru_v251_lab_numeric.hl7")) == []


def test_render_hl7_preliminary() -> None:
    result = radgpt(
        "render",
        DATA / "hl7" / "oru_v28_two_obr.hl7",
        "--impression",
        "No PE. A|B^C",
        "--model-id",
        "m1",
        "--adapter-id",
        "a1",
        "--adapter-version",
        "7",
    )
    assert result.returncode == 0, result.stderr
    messages = result.stdout.strip().split("\n\n")
    assert len(messages) == 2  # one preliminary ORU per OBR group
    for message, accession in zip(messages, ["UH-ACC-100231", "UH-ACC-100232"], strict=True):
        lines = message.split("\n")
        assert lines[0].startswith("MSH|^~\\&|RADGPT|UH|RIS|UNIVERSITY HOSP|")
        (report,) = parse_oru("\r".join(lines))
        assert report.accession == accession
        assert report.impression == "No PE. A|B^C"
        assert report.status == "P"
        assert "a1@7^RADGPT" in message and "model m1" in message


def test_render_hl7_final_and_status_r() -> None:
    path = DATA / "hl7" / "oru_v27_no_pv1_orc.hl7"
    result = radgpt(
        "render",
        path,
        "--impression",
        "Normal.",
        "--final",
        "--radiologist",
        "RAD9",
        "--radiologist-name",
        "House^Gregory",
    )
    assert result.returncode == 0, result.stderr
    (report,) = parse_oru(result.stdout.replace("\n", "\r"))
    assert report.status == "F"
    assert report.interpreter is not None and report.interpreter.display == "Gregory House"
    result = radgpt("render", path, "--impression", "Normal.", "--status", "R")
    assert parse_oru(result.stdout.replace("\n", "\r"))[0].status == "R"


def test_render_fhir_preliminary_and_final() -> None:
    path = DATA / "fhir" / "bundle_transaction_urn.json"
    result = radgpt("render", path, "--impression", "COPD. No acute process.")
    assert result.returncode == 0, result.stderr
    bundle = json.loads(result.stdout)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    dr = bundle["entry"][0]["resource"]
    assert (dr["status"], dr["conclusion"]) == ("preliminary", "COPD. No acute process.")
    result = radgpt("render", path, "--impression", "COPD.", "--final", "--radiologist", "R1")
    final = json.loads(result.stdout)["entry"][0]["resource"]
    assert final["status"] == "final"
    assert final["resultsInterpreter"][0]["identifier"] == {"value": "R1"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("parse", DATA / "hl7" / "garbage.hl7"), "error: not an HL7 v2 message"),
        (("parse", DATA / "hl7" / "adt_a01.hl7"), "error: unsupported HL7 v2 message type"),
        (("parse", DATA / "fhir" / "invalid_bogus_status.json"), "error: invalid DiagnosticRe"),
        (
            ("parse", DATA / "fhir" / "invalid_wrong_resource_type.json"),
            "error: unsupported resourceType Patient",
        ),
        (("parse", DATA / "fhir" / "not_json.json"), "error: not valid FHIR JSON"),
        (("parse", DATA / "does-not-exist.hl7"), "error: no such file"),
        (("parse", DATA), "error: is a directory"),
        (
            ("render", DATA / "hl7" / "oru_v251_lab_numeric.hl7", "--impression", "x"),
            "error: no radiology report",
        ),
        (
            ("render", DATA / "hl7" / "oru_v27_no_pv1_orc.hl7", "--impression", "x", "--final"),
            "error: --final needs --radiologist",
        ),
        (
            (
                "render",
                DATA / "hl7" / "oru_v27_no_pv1_orc.hl7",
                "--impression",
                "x",
                "--status",
                "F",
            ),
            "error: --status must be P or R",
        ),
        (("render", DATA / "hl7" / "oru_v27_no_pv1_orc.hl7"), "error: "),
    ],
)
def test_bad_input_exits_2_with_one_line(args: tuple[str | Path, ...], message: str) -> None:
    result = radgpt(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(message), lines[0]
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- issue 12


def radgpt_bytes(*args: str | Path, **env: str) -> subprocess.CompletedProcess[bytes]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "integration", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


AT = "2024-05-01T11:59:00+00:00"


def _pipeline_payloads(path: Path, impression: str, draft_id: str) -> list[bytes]:
    """What the pipeline publishes for ``path`` (the Publisher's own payload builder)."""
    from datetime import datetime

    from integration.app.settings import PipelineSettings
    from integration.codecs.codec import parse_message
    from integration.pipeline.publisher import formats_for, preliminary_answer
    from integration.report.model import DraftProvenance

    draft = DraftProvenance(
        draft_id=draft_id,
        model_id="HuggingFaceTB/SmolLM2-135M",
        adapter_id="radiology",
        drafted_at=datetime.fromisoformat(AT),
    )
    out = []
    for report in parse_message(path.read_bytes()):
        formats = formats_for(report, output_formats=["hl7", "fhir"], answer_in_kind=True)
        answer = preliminary_answer(
            report, impression, draft, pipeline=PipelineSettings(), formats=formats
        )
        out += [value for _, value in answer.payloads()]
    return out


@pytest.mark.parametrize(
    "name",
    ["hl7/oru_v251_8859_2.hl7", "hl7/oru_v23_gdt_lines.hl7", "fhir/bundle_transaction_urn.json"],
)
def test_render_prints_exactly_the_pipeline_bytes(name: str) -> None:
    path = DATA / name
    result = radgpt_bytes(
        "render", path, "--impression", "Sans anomalie.", "--draft-id", "d-42", "--at", AT
    )
    assert result.returncode == 0, result.stderr
    (expected,) = _pipeline_payloads(path, "Sans anomalie.", "d-42")
    if name.endswith(".hl7"):
        assert result.stdout == expected
        assert b"\n" not in result.stdout and result.stdout.endswith(b"\r")
    else:
        assert result.stdout == expected + b"\n"


@pytest.mark.parametrize(
    ("name", "codec", "provider"),
    [
        ("oru_v251_8859_2.hl7", "iso8859-2", "AGNIESZKA WÓJCIK"),
        ("oru_v251_8859_15.hl7", "iso8859-15", "ŒDIPE LEFÈVRE"),
        ("oru_v251_latin1.hl7", "latin-1", None),
    ],
)
def test_parse_of_render_round_trips_diacritics(
    tmp_path: Path, name: str, codec: str, provider: str | None
) -> None:
    source = _reports(radgpt("parse", DATA / "hl7" / name))[0]
    result = radgpt_bytes("render", DATA / "hl7" / name, "--impression", "Żółć: œdème, ß.")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "answer.hl7"
    out.write_bytes(result.stdout)
    # the bytes are in the declared set: UTF-8 would not decode as 8859-x the same way
    assert result.stdout.decode(codec).startswith("MSH|")
    (back,) = _reports(radgpt("parse", out))
    assert back["ordering_provider"] == source["ordering_provider"]
    if provider:
        assert back["ordering_provider"] == provider
    assert back["findings"] == source["findings"]
    assert back["impression"] == "Żółć: œdème, ß."


def test_render_two_reports_gives_one_bundle_and_provenance_each() -> None:
    path = DATA / "fhir" / "bundle_collection_two_reports.json"
    result = radgpt("render", path, "--impression", "Degenerative change.")
    assert result.returncode == 0, result.stderr
    bundles = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(bundles) == 2
    provenances = [
        e for b in bundles for e in b["entry"] if e["resource"]["resourceType"] == "Provenance"
    ]
    assert len(provenances) == 2
    assert len({p["fullUrl"] for p in provenances}) == 2
    for bundle, provenance in zip(bundles, provenances, strict=True):
        assert provenance["resource"]["target"] == [{"reference": bundle["entry"][0]["fullUrl"]}]


def test_render_out_dir_writes_one_file_per_answer(tmp_path: Path) -> None:
    path = DATA / "hl7" / "oru_v28_two_obr.hl7"
    result = radgpt_bytes(
        "render", path, "--impression", "No PE.", "--draft-id", "d7", "--at", AT,
        "--out-dir", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["01-UH-ACC-100231.hl7", "02-UH-ACC-100232.hl7"]
    assert [f.read_bytes() for f in files] == _pipeline_payloads(path, "No PE.", "d7")


def test_oversize_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.hl7"
    source = (DATA / "hl7" / "oru_v27_no_pv1_orc.hl7").read_bytes()
    big.write_bytes(source + b"OBX|9|TX|18782-3^F^LN||" + b"x" * 2048 + b"||||||F\r")
    for command in (("parse", big), ("render", big, "--impression", "x")):
        result = radgpt_bytes(*command, RADGPT_PIPELINE__MAX_MESSAGE_BYTES="2048")
        assert result.returncode == 2
        assert result.stderr.decode().strip() == (
            "error: big.hl7 is larger than the message size limit of 2048 bytes "
            "(pipeline.max_message_bytes; set RADGPT_PIPELINE__MAX_MESSAGE_BYTES)"
        )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("hl7/bad_truncated_obx.hl7", "error: truncated HL7 v2 message: the last segment (OBX"),
        ("hl7/bad_truncated_mllp.hl7", "error: truncated HL7 v2 message: MLLP start block"),
        ("hl7/bad_declared_ascii_utf8.hl7", "error: HL7 v2 message does not decode as its"),
        ("hl7/bad_nul_in_findings.hl7", "error: control character U+0000"),
        ("hl7/bad_no_accession.hl7", "error: HL7 v2 report 1 has findings but no accession"),
        ("fhir/bad_no_identity.json", "error: DiagnosticReport 'noid-1' has findings but no acc"),
        ("fhir/bad_nul_in_conclusion.json", "error: control character U+0000 in FHIR JSON"),
        (
            "fhir/bad_truncated.json",
            "error: not valid FHIR JSON: Unterminated string starting at (line 4, column 20)",
        ),
    ],
)
def test_refused_input_exits_2(name: str, message: str) -> None:
    commands: tuple[tuple[str, ...], ...] = (("parse",),)
    if name.endswith("truncated_obx.hl7"):  # never a draft of partial text ("Saffronqu")
        commands += (("render", "--impression", "x"),)
    for command in commands:
        result = radgpt(command[0], DATA / name, *command[1:])
        assert result.returncode == 2, result.stdout
        assert result.stdout == ""
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(message), line


def test_configured_accession_system_is_used(tmp_path: Path) -> None:
    path = DATA / "fhir" / "dr_two_plain_identifiers.json"
    assert radgpt("parse", path).returncode == 2  # two untyped identifiers: which one?
    import os

    result = subprocess.run(
        [sys.executable, "-m", "integration", "parse", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "RADGPT_PIPELINE__ACCESSION_SYSTEMS": '["https://ris.lakeside.example.org/accession"]',
        },
    )
    (report,) = _reports(result)
    assert (report["accession"], report["accession_source"]) == ("LK-US-9912", "identifier:system")


def test_version_flag_and_plain_help() -> None:
    from importlib.metadata import version

    result = radgpt("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"radgpt {version('radgpt')}")
    help_text = radgpt("render", "--help").stdout
    assert "<bool>" not in help_text
    # full option help on one line even when not printed to a terminal (was cut at 80 columns)
    assert any(
        line.strip().startswith("--final") and line.rstrip().endswith("report instead.")
        for line in help_text.splitlines()
    ), help_text
    assert "--version" in radgpt("--help").stdout
