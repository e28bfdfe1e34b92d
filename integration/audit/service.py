"""The audit queries compliance officers run, each recorded in the audit log itself.

One implementation for both edges: ``radgpt audit search|export`` and the review API's
``/api/audit`` routes call these functions with the caller's identity; neither commits (the
CLI commits once the export file is written, the API when the response is ready).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from integration.audit.export import AuditRow, ExportFormat
from integration.audit.log import AuditFilters, AuditPage, PageRequest, append_event, query_events

__all__ = ["EXPORT_LIMIT", "describe_filters", "export_events", "export_rows", "search_events"]

#: The most rows one export may hold (narrow the time range beyond).
EXPORT_LIMIT = 100_000


def describe_filters(filters: AuditFilters) -> dict[str, Any]:
    """The non-empty filters of an audit query, JSON-ready (recorded with the query)."""
    out: dict[str, Any] = {}
    for key, value in vars(filters).items():
        if value is not None:
            out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out


async def export_rows(
    session: AsyncSession, filters: AuditFilters, *, limit: int = EXPORT_LIMIT
) -> list[AuditRow]:
    """All rows matching ``filters``, oldest first (chain order); more than ``limit`` is refused."""
    rows: list[AuditRow] = []
    offset = 0
    while True:
        page = await query_events(
            session,
            filters,
            PageRequest(limit=1000, offset=offset, newest_first=False),
        )
        if page.total > limit:
            raise ValueError(
                f"{page.total} audit rows match; export at most {limit} at a time "
                "(narrow the time range)"
            )
        rows.extend(AuditRow.model_validate(e) for e in page.items)
        if page.next_offset is None:
            break
        offset = page.next_offset
    return rows


async def search_events(
    session: AsyncSession,
    filters: AuditFilters,
    page: PageRequest,
    *,
    actor: str,
    actor_role: str,
    details: Mapping[str, Any] | None = None,
) -> AuditPage:
    """One page of matching events; the query itself is appended as a ``queried`` event."""
    result = await query_events(session, filters, page)
    await append_event(
        session,
        actor=actor,
        actor_role=actor_role,
        action="queried",
        entity_type="audit_log",
        entity_id="audit_log",
        details={
            "filters": describe_filters(filters),
            "page": page.offset // page.limit + 1,
            "page_size": page.limit,
            "total": result.total,
            **(details or {}),
        },
    )
    return result


async def export_events(
    session: AsyncSession,
    filters: AuditFilters,
    *,
    format: ExportFormat,
    actor: str,
    actor_role: str,
    details: Mapping[str, Any] | None = None,
) -> list[AuditRow]:
    """All matching rows for an export; the export is appended as an ``exported`` event."""
    rows = await export_rows(session, filters)
    await append_event(
        session,
        actor=actor,
        actor_role=actor_role,
        action="exported",
        entity_type="audit_log",
        entity_id="audit_log",
        details={
            "format": format,
            "filters": describe_filters(filters),
            "count": len(rows),
            **(details or {}),
        },
    )
    return rows
