"""Heading-based sections of free-text reports."""

from __future__ import annotations

from integration.report.sections import (
    findings_from_text,
    impression_from_text,
    normalize_text,
    split_sections,
)

REPORT = """EXAM: XR CHEST 2 VIEWS
CLINICAL HISTORY: Cough.
COMPARISON: None.

FINDINGS:
The heart is normal in size.
The lungs are clear.

IMPRESSION:
1. No acute disease.
2. Stable.
"""


def test_split_sections_by_headings() -> None:
    sections = split_sections(REPORT)
    assert sections["technique"] == "XR CHEST 2 VIEWS"
    assert sections["history"] == "Cough."
    assert sections["comparison"] == "None."
    assert sections["findings"] == "The heart is normal in size.\nThe lungs are clear."
    assert sections["impression"] == "1. No acute disease.\n2. Stable."


def test_findings_and_impression_normalised() -> None:
    assert findings_from_text(REPORT) == "The heart is normal in size. The lungs are clear."
    assert impression_from_text(REPORT) == "1. No acute disease. 2. Stable."


def test_flattened_one_line_report() -> None:
    text = "Findings: Heart normal. Lungs clear. Impression: Normal chest."
    assert findings_from_text(text) == "Heart normal. Lungs clear."
    assert impression_from_text(text) == "Normal chest."


def test_headings_are_case_insensitive_and_may_stand_alone() -> None:
    text = "findings\nNo fracture.\nconclusion\nNormal."
    assert findings_from_text(text) == "No fracture."
    assert impression_from_text(text) == "Normal."


def test_text_without_headings_is_all_findings() -> None:
    text = "No acute fracture.\nThe findings are stable compared with prior exam."
    assert findings_from_text(text) == normalize_text(text)
    assert impression_from_text(text) is None


def test_heading_words_inside_sentences_are_not_headings() -> None:
    text = "FINDINGS: No impression of the trachea. The exam is limited.\nIMPRESSION: Normal."
    assert findings_from_text(text) == "No impression of the trachea. The exam is limited."
    assert impression_from_text(text) == "Normal."


def test_preamble_is_findings_when_no_findings_heading() -> None:
    text = "Lungs are clear.\nIMPRESSION: Normal."
    assert findings_from_text(text) == "Lungs are clear."


def test_only_other_sections_gives_no_findings() -> None:
    assert findings_from_text("IMPRESSION: Normal.") == ""


def test_sign_off_and_communication_lines_stay_out_of_the_sections() -> None:
    from integration.report.sections import sign_off_lines

    text = (
        "FINDINGS: Small right effusion. Critical result communicated to Dr Lee at 10:42.\n"
        "IMPRESSION:\nRight pleural effusion.\n"
        "The findings were discussed with Dr. Amara Nwosu at 14:10.\n"
        "Attending attestation: I have reviewed the images and agree.\n"
        "Electronically signed by: Jane Doe, MD on 2024-01-01\n"
        "Dictated by: JD  Transcribed by: KL\n"
    )
    assert findings_from_text(text) == "Small right effusion."
    assert impression_from_text(text) == "Right pleural effusion."
    assert sign_off_lines(text) == [
        "Critical result communicated to Dr Lee at 10:42.",
        "The findings were discussed with Dr. Amara Nwosu at 14:10.",
        "Attending attestation: I have reviewed the images and agree.",
        "Electronically signed by: Jane Doe, MD on 2024-01-01",
        "Dictated by: JD Transcribed by: KL",
    ]


def test_sign_off_words_inside_findings_sentences_are_kept() -> None:
    text = "FINDINGS: The prior report signed by Dr Z is reviewed. Dictation artifact absent."
    assert findings_from_text(text) == (
        "The prior report signed by Dr Z is reviewed. Dictation artifact absent."
    )
