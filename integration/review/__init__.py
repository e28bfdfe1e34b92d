"""Radiologists' review of drafts: ``workflow`` (approve, edit, reject, withdraw), ``auth``
(tokens, roles), ``quality`` (acceptance and edit metrics) and the web layer in
``web/``.
"""

from __future__ import annotations

__all__: list[str] = []
