"""Wire formats in and out: HL7 v2 (``hl7/``: reader, writer, escaping, charsets) and FHIR
R4 (``fhir/``: reader, writer), format detection and options (``codec``), input hygiene
(``hygiene``).  The writers build preliminaries, finals and their withdrawals.  Pure
functions: bytes in, typed models out.
"""

from __future__ import annotations

__all__: list[str] = []
