"""HL7 v2 ORU^R01: ``reader`` (message -> report), ``writer`` (preliminary/final ORU, ACK),
``escape`` and ``charsets`` (MSH-18).
"""

from __future__ import annotations

__all__: list[str] = []
