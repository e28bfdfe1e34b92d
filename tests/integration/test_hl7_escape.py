"""HL7 v2 escape sequences, FT formatting and MLLP framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integration.codecs.hl7.escape import (
    STANDARD_ENCODING,
    EncodingChars,
    escape,
    strip_mllp,
    unescape,
)

# Any text a model or a radiologist might type, including the HL7 delimiters and control chars.
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"),
    max_size=200,
)


@pytest.mark.parametrize(
    ("escaped", "plain"),
    [
        (r"a\F\b", "a|b"),
        (r"a\S\b", "a^b"),
        (r"a\T\b", "a&b"),
        (r"a\R\b", "a~b"),
        (r"C:\E\dir", "C:\\dir"),
        (r"line1\.br\line2", "line1\nline2"),
        ("\\X4F4B\\", "OK"),
        ("\\X0D0A\\", "\n"),
        ("\\XC3BC\\", "ü"),
        (r"\H\bold\N\ text", "bold text"),
        (r"\.in+4\\.ti-4\ 1. item", " 1. item"),
        (r"a\.sp 2\b", "a\n\nb"),
        (r"a\.sk 3\b", "a   b"),
        (r"\Zlocal\kept", "kept"),
        (r"\C2842\x", "x"),
    ],
)
def test_unescape_known_sequences(escaped: str, plain: str) -> None:
    assert unescape(escaped) == plain


def test_unescape_keeps_unknown_and_unterminated_escapes() -> None:
    assert unescape(r"path C:\temp\file") == r"path C:\temp\file"
    assert unescape("dangling \\F") == "dangling \\F"


def test_unescape_hex_uses_message_charset() -> None:
    assert unescape("\\XFC\\", charset="latin-1") == "ü"
    # Invalid UTF-8 bytes fall back to Latin-1 instead of failing.
    assert unescape("\\XFC\\", charset="utf-8") == "ü"


def test_formatting_can_be_disabled_for_non_ft_values() -> None:
    assert unescape(r"a\.br\b", formatting=False) == "ab"


def test_escape_delimiters_and_line_breaks() -> None:
    text = "A|B^C&D~E\\F\nG"
    assert escape(text) == r"A\F\B\S\C\T\D\R\E\E\F\X0A\G"
    assert escape(text, formatted=True) == r"A\F\B\S\C\T\D\R\E\E\F\.br\G"


def test_escape_never_leaves_a_delimiter_or_cr() -> None:
    out = escape("x|y^z&w~v\\u\r\n", formatted=True)
    assert not set("|^&~\r\n") & set(out.replace("\\", ""))


@given(_TEXT)
def test_round_trip_plain(text: str) -> None:
    assert unescape(escape(text), formatting=False) == text


@given(_TEXT)
def test_round_trip_formatted(text: str) -> None:
    assert unescape(escape(text, formatted=True)) == text


@given(_TEXT)
def test_round_trip_custom_encoding_chars(text: str) -> None:
    enc = EncodingChars.from_msh("#", "$%!@*")
    escaped = escape(text, enc, formatted=True)
    assert not set("#$%@*") & set(escaped.replace("!", "").replace("E", "").replace("P", ""))
    assert unescape(escaped, enc) == text


def test_encoding_chars_from_msh() -> None:
    enc = EncodingChars.from_msh("|", "^~\\&#")
    assert enc.truncation == "#"
    assert enc.msh2 == "^~\\&#"
    assert EncodingChars.from_msh("|", "^~\\&") == STANDARD_ENCODING
    assert unescape(r"a\P\b", enc) == "a#b"


@pytest.mark.parametrize(
    "framed",
    [
        b"\x0bMSH|^~\\&|A\rPID|1\r\x1c\r",
        b"\x0bMSH|^~\\&|A\rPID|1\x1c\r",
        b"  \r\nMSH|^~\\&|A\rPID|1\r\n",
    ],
)
def test_strip_mllp_bytes(framed: bytes) -> None:
    assert strip_mllp(framed) == b"MSH|^~\\&|A\rPID|1"


def test_strip_mllp_str() -> None:
    assert strip_mllp("\x0bMSH|^~\\&|A\r\x1c\r") == "MSH|^~\\&|A"
