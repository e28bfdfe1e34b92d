"""The service's database: ``db`` (engine, schema, migrations in ``migrations/``),
``repository`` (inbound, draft and publish state), ``group_commit`` and ``lookups``
(batching of writes and reads, over ``batch_queue``).
"""

from __future__ import annotations

__all__: list[str] = []
