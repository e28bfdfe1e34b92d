"""HL7 v2 character sets (MSH-18, table 0211): one table for the reader and the writer.

The reader decodes a message in the character set its MSH-18 declares and refuses bytes that
do not decode in it (or uses a configured fallback, recorded on the report); the writer
answers in the same character set and declares it, so every value the reader accepts can be
written back.  Without MSH-18 the v2 default applies: ASCII (or the site's configured set).

Only single-byte and ASCII-compatible sets are supported (the ER7 delimiters must stay one
byte); ``UNICODE UTF-16``/``UTF-32`` and the ISO 2022 Japanese sets are refused.
"""

from __future__ import annotations

__all__ = [
    "CHARSETS",
    "UTF8_LABEL",
    "answer_charset",
    "codec_for",
    "first_charset",
    "utf8_label",
]

# MSH-18 value (upper case) -> Python codec.  Table 0211 values plus common local aliases.
CHARSETS: dict[str, str] = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "ISO IR6": "ascii",
    "ISO IR100": "latin-1",
    "ISO IR101": "iso8859-2",
    "ISO IR192": "utf-8",
    "WINDOWS-1252": "cp1252",
    "BIG-5": "big5",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
}
# The label of UTF-8 in table 0211: "UNICODE UTF-8" exists from v2.5; before it, "UNICODE".
UTF8_LABEL = "UNICODE UTF-8"
_PRE_25 = frozenset({"2.3", "2.3.1", "2.4"})


def first_charset(msh18: str | None, component: str = "^", repetition: str = "~") -> str:
    """The default character set of an MSH-18 value (first repetition, first component)."""
    if not msh18:
        return ""
    return msh18.split(repetition)[0].split(component)[0].strip()


def codec_for(label: str) -> str | None:
    """The Python codec for an MSH-18 value; None when it is not supported."""
    return CHARSETS.get(label.strip().upper())


def utf8_label(version: str) -> str:
    return "UNICODE" if version in _PRE_25 else UTF8_LABEL


def answer_charset(
    declared: str | None, text: str, *, version: str, default: str | None = None
) -> tuple[str | None, str]:
    """``(MSH-18, codec)`` for an answer carrying ``text``.

    The sender's set (``declared``), else the site's ``default`` set, else ASCII with MSH-18
    left empty (the v2 default).  When ``text`` does not fit that set, UTF-8 is declared instead
    (``UNICODE UTF-8``; ``UNICODE`` before v2.5) rather than losing characters.
    """
    label = first_charset(declared) or (default or "").strip()
    codec = codec_for(label) if label else "ascii"
    if codec is None:
        codec, label = "utf-8", utf8_label(version)
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return utf8_label(version), "utf-8"
    return (label or None), codec
