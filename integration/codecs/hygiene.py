"""Input hygiene shared by the HL7 v2 and FHIR readers: one rule for control characters.

The rule (docs/hl7-fhir-mapping.md, "Input hygiene"): text may contain TAB, LF and CR and no
other C0 control character (U+0000-U+001F) nor DEL (U+007F).  A message that contains one
anywhere in its decoded text, or whose escape sequences (HL7 ``\\X00\\``, JSON ``\\u0000``)
decode to one, is **rejected** with :class:`~integration.errors.ControlCharacterError`, so it is
dead-lettered with its original bytes and never stored or drafted.  NUL padding around an MLLP
frame is framing, not text, and is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel

from integration.errors import ControlCharacterError

__all__ = ["CONTROL_CHARACTERS", "check_report_text", "check_text", "find_control"]

CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def find_control(text: str) -> re.Match[str] | None:
    """The first forbidden control character of ``text``, or None."""
    return CONTROL_CHARACTERS.search(text)


def check_text(text: str, where: str) -> None:
    """Raise :class:`ControlCharacterError` if ``text`` holds a forbidden control character.

    ``where`` names the place (a segment number, a JSON path); the text itself is never quoted.
    """
    match = find_control(text)
    if match is not None:
        raise ControlCharacterError(
            f"control character U+{ord(match.group()):04X} in {where}: refused (see "
            "docs/hl7-fhir-mapping.md, input hygiene)"
        )


def _strings(value: object, path: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _strings(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def check_report_text(value: object, where: str) -> None:
    """Check every string of a report (or JSON document) with :func:`check_text`."""
    for path, text in _strings(value, ""):
        check_text(text, f"{where} ({path})" if path else where)
