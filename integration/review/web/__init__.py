"""The review web application: ``api`` (JSON routes), ``pages`` (HTML pages,
``templates/``, ``static/``) and ``rate_limit``.
"""

from __future__ import annotations

__all__: list[str] = []
