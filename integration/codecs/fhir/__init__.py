"""FHIR R4 DiagnosticReport: ``reader`` (resource or Bundle -> report) and ``writer``
(preliminary/final Bundles with Provenance).
"""

from __future__ import annotations

__all__: list[str] = []
