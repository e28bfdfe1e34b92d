"""``radgpt parse`` / ``radgpt render`` through a real subprocess (the scripted contract)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from integration.hl7_reader import parse_oru

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
