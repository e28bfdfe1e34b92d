"""HL7 v2 escape sequences, FT formatting and MLLP framing.

hl7apy neither decodes escape sequences on parse nor keeps FT formatting commands on output,
so the codecs use these functions on every text value they read or write.

Decoding (:func:`unescape`) understands the delimiter escapes ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``
(and ``\\P\\`` for the 2.7+ truncation character), hex data ``\\Xhh..\\`` (bytes in the message
character set), highlighting ``\\H\\ \\N\\`` and the FT formatting commands (``\\.br\\``,
``\\.sp n\\``, ``\\.in``, ``\\.ti``, ``\\.sk``, ``\\.ce``, ``\\.fi``, ``\\.nf``).  Character-set
switches (``\\C..\\ \\M..\\``) and local escapes (``\\Z..\\``) carry no text and are dropped.
An unterminated escape is kept literally: a reader must not lose report text.

Encoding (:func:`escape`) escapes the five delimiters and, for FT, writes line breaks as
``\\.br\\``; other control characters become ``\\Xhh\\``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "STANDARD_ENCODING",
    "EncodingChars",
    "escape",
    "strip_mllp",
    "unescape",
]

_MLLP_START = "\x0b"
_MLLP_END = "\x1c"


@dataclass(frozen=True, slots=True)
class EncodingChars:
    """The delimiters of one message: MSH-1 and the characters of MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str | None = None  # 2.7+: optional fifth MSH-2 character

    @classmethod
    def from_msh(cls, field_sep: str, msh2: str) -> EncodingChars:
        """Build from MSH-1 and MSH-2; missing MSH-2 characters take their standard values."""
        std = "^~\\&"
        chars = [msh2[i] if i < len(msh2) else std[i] for i in range(4)]
        truncation = msh2[4] if len(msh2) > 4 else None
        return cls(field_sep, chars[0], chars[1], chars[2], chars[3], truncation)

    @property
    def msh2(self) -> str:
        return (
            self.component
            + self.repetition
            + self.escape
            + self.subcomponent
            + (self.truncation or "")
        )

    @property
    def delimiters(self) -> str:
        return self.field + self.msh2


STANDARD_ENCODING = EncodingChars()

_FORMAT_RE = re.compile(r"^\.(br|sp|in|ti|sk|ce|fi|nf)\s*([+-]?\d*)$", re.IGNORECASE)
_HEX_RE = re.compile(r"^X([0-9A-Fa-f]{2})+$")


def _decode_hex(hexdigits: str, charset: str) -> str:
    data = bytes.fromhex(hexdigits)
    try:
        text = data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode_one(body: str, enc: EncodingChars, charset: str, formatting: bool) -> str | None:
    """The text for one escape body (between the escape characters); None if not an escape."""
    simple = {
        "F": enc.field,
        "S": enc.component,
        "T": enc.subcomponent,
        "R": enc.repetition,
        "E": enc.escape,
    }
    if body in simple:
        return simple[body]
    if body == "P" and enc.truncation:
        return enc.truncation
    if body in ("H", "N"):
        return ""
    if _HEX_RE.match(body):
        return _decode_hex(body[1:], charset)
    if body[:1] in ("Z", "C", "M") and len(body) > 1:
        return ""
    match = _FORMAT_RE.match(body)
    if match:
        if not formatting:
            return ""
        command, arg = match.group(1).lower(), match.group(2)
        if command == "br":
            return "\n"
        if command == "sp":
            count = int(arg) if arg.lstrip("+").isdigit() else 1
            return "\n" * max(count, 1)
        if command == "sk":
            count = int(arg) if arg.lstrip("+").isdigit() else 1
            return " " * max(count, 1)
        return ""  # .in .ti .ce .fi .nf: layout only
    return None


def unescape(
    text: str,
    encoding_chars: EncodingChars = STANDARD_ENCODING,
    *,
    charset: str = "utf-8",
    formatting: bool = True,
) -> str:
    """Decode the escape sequences of one HL7 v2 value (field, component or subcomponent).

    ``charset`` decodes ``\\Xhh\\`` bytes; ``formatting`` turns FT commands into line breaks
    (``\\.br\\`` -> newline).  Unknown or unterminated escapes are kept as they are.
    """
    esc = encoding_chars.escape
    if esc not in text:
        return text
    out: list[str] = []
    pos = 0
    length = len(text)
    while pos < length:
        start = text.find(esc, pos)
        if start < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:start])
        end = text.find(esc, start + 1)
        if end < 0:  # unterminated: literal
            out.append(text[start:])
            break
        decoded = _decode_one(text[start + 1 : end], encoding_chars, charset, formatting)
        if decoded is None:  # not an escape we know: keep the opening character literally
            out.append(esc)
            pos = start + 1
            continue
        out.append(decoded)
        pos = end + 1
    return "".join(out)


def escape(
    text: str,
    encoding_chars: EncodingChars = STANDARD_ENCODING,
    *,
    formatted: bool = False,
) -> str:
    """Escape ``text`` for an HL7 v2 value.

    The delimiters become ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``.  With ``formatted`` (FT) a line
    break becomes ``\\.br\\``; otherwise line breaks and other control characters are written as
    ``\\Xhh\\`` so that no raw CR/LF ever appears inside a field.
    """
    if formatted:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    pattern, table = _escape_plan(encoding_chars, formatted)
    if pattern.search(text) is None:  # the common case: nothing to escape
        return text
    esc = encoding_chars.escape

    def replace(match: re.Match[str]) -> str:
        char = match.group()
        mapped = table.get(char)
        return mapped if mapped is not None else f"{esc}X{ord(char):02X}{esc}"

    return pattern.sub(replace, text)


@lru_cache(maxsize=32)
def _escape_plan(enc: EncodingChars, formatted: bool) -> tuple[re.Pattern[str], dict[str, str]]:
    """The characters :func:`escape` replaces (one regex) and their fixed replacements."""
    table = {
        enc.escape: f"{enc.escape}E{enc.escape}",
        enc.field: f"{enc.escape}F{enc.escape}",
        enc.component: f"{enc.escape}S{enc.escape}",
        enc.subcomponent: f"{enc.escape}T{enc.escape}",
        enc.repetition: f"{enc.escape}R{enc.escape}",
    }
    if enc.truncation:
        table[enc.truncation] = f"{enc.escape}P{enc.escape}"
    if formatted:
        table["\n"] = f"{enc.escape}.br{enc.escape}"
    specials = "".join(re.escape(c) for c in table)
    return re.compile("[" + specials + r"\x00-\x1f\x7f]"), table


def strip_mllp(raw: bytes | str) -> bytes | str:
    """Remove MLLP framing (``<VT>`` ... ``<FS><CR>``) and surrounding blank space.

    Returns the same type it was given.  Unframed input is returned without the blank space.
    """
    if isinstance(raw, bytes):
        data = raw.strip(b" \t\r\n\x00")
        if data.startswith(b"\x0b"):
            data = data[1:]
        end = data.rfind(b"\x1c")
        if end >= 0:
            data = data[:end]
        return data.strip(b" \t\r\n\x00")
    text = raw.strip(" \t\r\n\x00")
    if text.startswith(_MLLP_START):
        text = text[1:]
    end_at = text.rfind(_MLLP_END)
    if end_at >= 0:
        text = text[:end_at]
    return text.strip(" \t\r\n\x00")
