"""The application edge: ``settings`` (read once at start), ``service`` (composition of the
running service), the ``cli`` and its command modules, and the ``demo``.
"""

from __future__ import annotations

__all__: list[str] = []
