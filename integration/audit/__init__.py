"""The append-only audit log: ``log`` (events), ``export`` (filters, CSV/JSON export) and
``checkpoint`` (signed checkpoints).
"""

from __future__ import annotations

__all__: list[str] = []
