"""Heading-based sections of a free-text radiology report.

Legacy HL7 report text (``&GDT`` OBX lines), FHIR ``presentedForm`` attachments and narratives
carry the whole report with headings inside the text (``FINDINGS: ... IMPRESSION: ...``).
The HL7 and FHIR readers and the training data loaders all use these functions, so the same
text always yields the same findings.

Recognised headings (case-insensitive, at the start of a line or after a sentence end, followed
by a colon or a line break) map to canonical section names:
``history``, ``indication``, ``technique``, ``comparison``, ``findings``, ``impression``,
``recommendation``, ``addendum``.

Sign-off, dictation and communication lines ("Electronically signed by ...", "Dictated by
...", "Transcribed by ...", "Critical result communicated to / discussed with ...",
"Attending attestation ...") are not report content: :func:`findings_from_text` and
:func:`impression_from_text` leave them out (from where the phrase starts to the end of its
line) and :func:`sign_off_lines` returns them so that the readers keep them as metadata.
"""

from __future__ import annotations

import re

from integration.report.vocabulary import normalise_whitespace

__all__ = [
    "SECTION_HEADINGS",
    "findings_from_text",
    "impression_from_text",
    "normalize_text",
    "sign_off_lines",
    "split_sections",
    "strip_sign_off",
]

SECTION_HEADINGS: dict[str, tuple[str, ...]] = {
    "history": ("clinical history", "history", "clinical information", "clinical data"),
    "indication": ("indication", "indications", "reason for exam", "reason for study"),
    "technique": ("technique", "procedure", "exam", "examination"),
    "comparison": ("comparison", "comparisons", "prior"),
    "findings": ("findings", "finding", "report", "observations"),
    "impression": ("impression", "impressions", "conclusion", "conclusions", "summary"),
    "recommendation": ("recommendation", "recommendations"),
    "addendum": ("addendum",),
}

_ALIASES = {alias: name for name, aliases in SECTION_HEADINGS.items() for alias in aliases}
_ALTERNATION = "|".join(sorted((re.escape(a) for a in _ALIASES), key=len, reverse=True))
# A heading: at line start (optionally after list/markup noise) and ended by ':' or end of line;
# or anywhere after a sentence end when followed by ':' (flattened one-line reports).
_HEADING_RE = re.compile(
    rf"(?:(?<=\n)|^|(?<=[.!?]\s)|(?<=[.!?]))[ \t]*(?P<name>{_ALTERNATION})[ \t]*"
    rf"(?::|(?=[ \t]*(?:\n|$)))",
    re.IGNORECASE,
)


_SIGN_OFF_RE = re.compile(
    r"(?:(?<=\n)|^|(?<=[.!?;])\s*)[ \t]*(?P<line>(?:"
    r"electronically\s+(?:signed|verified|approved)|e-?signed\s+by|signed\s+electronically"
    r"|(?:report\s+)?(?:signed|verified|approved|finali[sz]ed)\s+by\s*:?"
    r"|dictated\s*(?:by|:)|dictating\s+(?:physician|radiologist)|transcribed\s*(?:by|:)"
    r"|transcriptionist\s*:"
    r"|critical\s+(?:results?|findings?|values?)\b[^\n]*?"
    r"\b(?:communicated|discussed|called|conveyed|reported|notified)"
    r"|(?:these|the|this|above)?\s*(?:results?|findings?|impression)\s+(?:were|was|has\s+been|"
    r"have\s+been)\s+(?:communicated|discussed|called|conveyed)\s+(?:to|with)"
    r"|attending\s+(?:radiologist\s+|physician\s+)?attestation"
    r")[^\n]*)",
    re.IGNORECASE,
)


def strip_sign_off(text: str) -> str:
    """``text`` without its sign-off, dictation and communication lines."""
    if not text:
        return text
    return _SIGN_OFF_RE.sub("", text)


def sign_off_lines(text: str) -> list[str]:
    """The sign-off, dictation and communication lines of ``text`` (whitespace-normalised)."""
    if not text:
        return []
    return [normalize_text(m.group("line")) for m in _SIGN_OFF_RE.finditer(text)]


#: Collapse all whitespace (line breaks included) to single spaces.
normalize_text = normalise_whitespace


def split_sections(text: str) -> dict[str, str]:
    """Split report text into ``{section: text}`` by its headings.

    Text before the first heading is returned under ``""`` (the preamble) when not blank.
    A repeated section is concatenated.  Section texts keep their line breaks, stripped.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    sections: dict[str, str] = {}
    matches = list(_HEADING_RE.finditer(text))
    # A bare heading word (no colon) counts only when it stands alone on its line.
    kept = []
    for match in matches:
        if text[match.end() - 1 : match.end()] != ":":
            line_start = text.rfind("\n", 0, match.start()) + 1
            line_end = text.find("\n", match.end())
            line = text[line_start : line_end if line_end >= 0 else len(text)]
            if line.strip().lower() != match.group("name").lower():
                continue
        kept.append(match)
    preamble = text[: kept[0].start()] if kept else text
    if preamble.strip():
        sections[""] = preamble.strip()
    for index, match in enumerate(kept):
        name = _ALIASES[match.group("name").lower()]
        end = kept[index + 1].start() if index + 1 < len(kept) else len(text)
        body = text[match.end() : end].strip()
        if not body:
            continue
        sections[name] = f"{sections[name]}\n{body}" if name in sections else body
    return sections


def findings_from_text(text: str) -> str:
    """The findings of a report text, whitespace-normalised, headings removed.

    With a FINDINGS heading: that section.  Without headings: the whole text.  With other
    headings but no FINDINGS heading: the preamble, or else everything except the impression,
    recommendation, history/indication, technique and comparison sections.
    """
    sections = split_sections(text)
    if "findings" in sections:
        return normalize_text(strip_sign_off(sections["findings"]))
    if set(sections) <= {""}:
        return normalize_text(strip_sign_off(text))
    if "" in sections:
        return normalize_text(strip_sign_off(sections[""]))
    return ""


def impression_from_text(text: str) -> str | None:
    """The IMPRESSION (or CONCLUSION) section of a report text, normalised; None if absent."""
    sections = split_sections(text)
    found = sections.get("impression")
    if not found:
        return None
    return normalize_text(strip_sign_off(found)) or None
