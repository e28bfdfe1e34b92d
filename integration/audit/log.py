"""The append-only, hash-chained audit log.

Every row stores ``prev_hash`` (the ``row_hash`` of the row before it, 64 zeros for the first)
and ``row_hash = sha256(canonical JSON of the row's fields + prev_hash)``.  Deleting, editing
or reordering rows breaks the chain, which :func:`verify_chain` reports with the first broken
row.  Appends are serialised across replicas so the chain stays linear: PostgreSQL takes a
transaction-scoped advisory lock, SQLite takes the database write lock before reading the
chain head.  On PostgreSQL a trigger also rejects UPDATE/DELETE/TRUNCATE on ``audit_log``.

``details`` carries ids, hashes, counts and short reasons -- never report text or names.
Appends join the caller's transaction: an event is recorded exactly when the change it
describes is committed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, cast

from sqlalchemy import Select, Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from integration.storage.db import AuditEntry, utcnow

__all__ = [
    "AUDIT_ACTIONS",
    "GENESIS_HASH",
    "AuditEvent",
    "AuditFilters",
    "AuditPage",
    "ChainReport",
    "DraftRef",
    "PageRequest",
    "append_draft_event",
    "append_event",
    "append_events",
    "compute_row_hash",
    "query_events",
    "record_verification",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
AUDIT_ACTIONS = frozenset(
    {
        "received", "parsed", "skipped", "drafted", "published", "dead_lettered", "duplicate",
        "viewed", "listed", "approved", "edited", "rejected", "ris_final", "queried",
        "exported", "verified", "denied", "unauthenticated", "withdrawn", "communicated",
    }
)  # fmt: skip
Outcome = Literal["success", "failure", "denied"]
_PG_LOCK_KEY = 0x72616467  # "radg": the advisory lock serialising appends
_FORBIDDEN_DETAIL_KEYS = frozenset(
    {"findings", "impression", "draft", "draft_text", "final_text", "text", "report", "name"}
)
_MAX_DETAIL_STRING = 512


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def compute_row_hash(
    *,
    recorded_at: datetime,
    actor: str,
    actor_role: str,
    action: str,
    entity_type: str,
    entity_id: str,
    accession: str | None,
    patient_id: str | None,
    outcome: str,
    details: dict[str, Any],
    prev_hash: str,
) -> str:
    """The SHA-256 of one row's canonical JSON and the previous row's hash."""
    body = _canonical(
        {
            "recorded_at": _timestamp(recorded_at),
            "actor": actor,
            "actor_role": actor_role,
            "action": action,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "accession": accession,
            "patient_id": patient_id,
            "outcome": outcome,
            "details": details,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _entry_hash(entry: AuditEntry) -> str:
    return compute_row_hash(
        recorded_at=entry.recorded_at,
        actor=entry.actor,
        actor_role=entry.actor_role,
        action=entry.action,
        entity_type=entry.entity_type,
        entity_id=entry.entity_id,
        accession=entry.accession,
        patient_id=entry.patient_id,
        outcome=entry.outcome,
        details=entry.details or {},
        prev_hash=entry.prev_hash,
    )


def _check_details(details: dict[str, Any]) -> dict[str, Any]:
    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if str(key).lower() in _FORBIDDEN_DETAIL_KEYS:
                    raise ValueError(f"audit details must not carry report text ({path}{key})")
                walk(item, f"{path}{key}.")
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, path)
        elif isinstance(value, str) and len(value) > _MAX_DETAIL_STRING:
            raise ValueError(f"audit detail {path.rstrip('.')} is too long for an id or reason")

    walk(details, "")
    # A JSON round trip so that what is hashed is exactly what the database gives back.
    normal: dict[str, Any] = json.loads(_canonical(details))
    return normal


async def _lock_chain(session: AsyncSession) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    elif dialect == "sqlite":
        # A no-op write takes SQLite's RESERVED lock (waiting out busy_timeout), so no other
        # connection can append between reading the chain head and inserting.
        await session.execute(text("UPDATE audit_log SET id = id WHERE 0"))


@dataclass(frozen=True)
class AuditEvent:
    """One event to append with :func:`append_events` (same fields as :func:`append_event`)."""

    actor: str
    actor_role: str
    action: str
    entity_type: str
    entity_id: str
    accession: str | None = None
    patient_id: str | None = None
    outcome: Outcome = "success"
    details: dict[str, Any] | None = None


async def append_events(session: AsyncSession, events: Sequence[AuditEvent]) -> int:
    """Append several events in order under one chain lock (the caller commits).

    Call it last in a transaction: the chain lock is held from here until the commit, so
    doing the transaction's other work first keeps concurrent appenders waiting less.  The
    rows go in with one multi-row INSERT (ids ascend in event order); returns their number.
    """
    if not events:
        return 0
    for event in events:
        if event.action not in AUDIT_ACTIONS:
            raise ValueError(f"unknown audit action {event.action!r}")
        if event.outcome not in ("success", "failure", "denied"):
            raise ValueError(f"unknown audit outcome {event.outcome!r}")
    cleaned = [_check_details(event.details or {}) for event in events]
    await _lock_chain(session)
    head = await session.execute(
        select(AuditEntry.row_hash).order_by(AuditEntry.id.desc()).limit(1)
    )
    prev_hash = head.scalar_one_or_none() or GENESIS_HASH
    rows: list[dict[str, Any]] = []
    for event, details in zip(events, cleaned, strict=True):
        row: dict[str, Any] = {
            "recorded_at": utcnow(),
            "actor": event.actor,
            "actor_role": event.actor_role,
            "action": event.action,
            "entity_type": event.entity_type,
            "entity_id": event.entity_id,
            "accession": event.accession,
            "patient_id": event.patient_id,
            "outcome": event.outcome,
            "details": details,
            "prev_hash": prev_hash,
        }
        row["row_hash"] = prev_hash = compute_row_hash(**row)
        rows.append(row)
    await session.flush()  # the ORM's pending rows first, so they are ordered before these
    await session.execute(insert(cast(Table, AuditEntry.__table__)), rows)
    return len(rows)


async def append_event(
    session: AsyncSession,
    *,
    actor: str,
    actor_role: str,
    action: str,
    entity_type: str,
    entity_id: str,
    accession: str | None = None,
    patient_id: str | None = None,
    outcome: Outcome = "success",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one event in the caller's transaction (the caller commits)."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if outcome not in ("success", "failure", "denied"):
        raise ValueError(f"unknown audit outcome {outcome!r}")
    clean = _check_details(details or {})
    await _lock_chain(session)
    head = await session.execute(
        select(AuditEntry.row_hash).order_by(AuditEntry.id.desc()).limit(1)
    )
    prev_hash = head.scalar_one_or_none() or GENESIS_HASH
    recorded_at = utcnow()
    entry = AuditEntry(
        recorded_at=recorded_at,
        actor=actor,
        actor_role=actor_role,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        accession=accession,
        patient_id=patient_id,
        outcome=outcome,
        details=clean,
        prev_hash=prev_hash,
    )
    entry.row_hash = _entry_hash(entry)
    session.add(entry)
    await session.flush()
    return entry


class DraftRef(Protocol):
    """What an audit event about a draft names: the draft, its study and its patient."""

    @property
    def id(self) -> str: ...
    @property
    def accession(self) -> str | None: ...
    @property
    def patient_id(self) -> str | None: ...


async def append_draft_event(
    session: AsyncSession,
    draft: DraftRef,
    *,
    actor: str,
    actor_role: str,
    action: str,
    outcome: Outcome = "success",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one event about ``draft`` (entity, accession and patient from the draft)."""
    return await append_event(
        session,
        actor=actor,
        actor_role=actor_role,
        action=action,
        entity_type="draft",
        entity_id=draft.id,
        accession=draft.accession,
        patient_id=draft.patient_id,
        outcome=outcome,
        details=details,
    )


@dataclass(frozen=True)
class ChainReport:
    """The result of :func:`verify_chain`: OK, or the first broken link."""

    ok: bool
    checked: int
    head_hash: str
    first_broken_id: int | None = None
    reason: str | None = None


async def record_verification(
    session: AsyncSession,
    report: ChainReport,
    *,
    actor: str,
    actor_role: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Append the ``verified`` event for a :func:`verify_chain` run (the caller commits)."""
    await append_event(
        session,
        actor=actor,
        actor_role=actor_role,
        action="verified",
        entity_type="audit_log",
        entity_id="audit_log",
        outcome="success" if report.ok else "failure",
        details={
            "ok": report.ok,
            "checked": report.checked,
            "first_broken_id": report.first_broken_id,
            **(extra or {}),
        },
    )


async def verify_chain(session: AsyncSession, *, batch_size: int = 1000) -> ChainReport:
    """Recompute every row hash in id order and check each link to the previous row."""
    expected_prev = GENESIS_HASH
    checked = 0
    last_id: int | None = None
    while True:
        query = select(AuditEntry).order_by(AuditEntry.id).limit(batch_size)
        if last_id is not None:
            query = query.where(AuditEntry.id > last_id)
        rows = (await session.execute(query)).scalars().all()
        if not rows:
            return ChainReport(ok=True, checked=checked, head_hash=expected_prev)
        for row in rows:
            if row.prev_hash != expected_prev:
                return ChainReport(
                    ok=False,
                    checked=checked,
                    head_hash=expected_prev,
                    first_broken_id=row.id,
                    reason="prev_hash does not match the previous row (row deleted or reordered)",
                )
            if _entry_hash(row) != row.row_hash:
                return ChainReport(
                    ok=False,
                    checked=checked,
                    head_hash=expected_prev,
                    first_broken_id=row.id,
                    reason="row_hash does not match the row's content (row modified)",
                )
            expected_prev = row.row_hash
            checked += 1
            last_id = row.id
        session.expunge_all()


@dataclass(frozen=True)
class AuditFilters:
    """Optional filters for :func:`query_events`; all given ones must match."""

    actor: str | None = None
    actor_role: str | None = None
    action: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    accession: str | None = None
    patient_id: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class PageRequest:
    limit: int = 50
    offset: int = 0
    newest_first: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= 10_000:
            raise ValueError("page limit must be between 1 and 10000")
        if self.offset < 0:
            raise ValueError("page offset must not be negative")


@dataclass(frozen=True)
class AuditPage:
    items: Sequence[AuditEntry]
    total: int
    limit: int
    offset: int

    @property
    def next_offset(self) -> int | None:
        following = self.offset + len(self.items)
        return following if following < self.total else None


def _filtered(query: Select[Any], filters: AuditFilters) -> Select[Any]:
    for column, value in (
        (AuditEntry.actor, filters.actor),
        (AuditEntry.actor_role, filters.actor_role),
        (AuditEntry.action, filters.action),
        (AuditEntry.entity_type, filters.entity_type),
        (AuditEntry.entity_id, filters.entity_id),
        (AuditEntry.accession, filters.accession),
        (AuditEntry.patient_id, filters.patient_id),
        (AuditEntry.outcome, filters.outcome),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.since is not None:
        query = query.where(AuditEntry.recorded_at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEntry.recorded_at < filters.until)
    return query


async def query_events(
    session: AsyncSession, filters: AuditFilters | None = None, page: PageRequest | None = None
) -> AuditPage:
    """One page of audit events matching ``filters`` and the total count."""
    filters = filters or AuditFilters()
    page = page or PageRequest()
    total = (
        await session.execute(_filtered(select(func.count(AuditEntry.id)), filters))
    ).scalar_one()
    order = AuditEntry.id.desc() if page.newest_first else AuditEntry.id.asc()
    query = _filtered(select(AuditEntry), filters).order_by(order)
    rows = (await session.execute(query.limit(page.limit).offset(page.offset))).scalars().all()
    return AuditPage(items=rows, total=int(total), limit=page.limit, offset=page.offset)
