"""Repository functions for inbound messages and drafts (keyword-only, caller's session).

The functions add, find and change rows inside the caller's transaction; they never commit.
The pipeline's hot path may instead queue its rows in :func:`pending_writes`; the group
committer writes them with one statement per kind (:func:`flush_writes`).
Database driver errors are translated to :class:`~integration.errors.StorageError` by
:func:`storage_errors` at the transaction boundary (the worker retries those).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from inference.types import Draft
from integration.errors import DuplicateKeyError
from integration.pipeline.faults import db_errors
from integration.report.model import DraftProvenance, RadiologyReport
from integration.storage.db import DraftRecord, InboundMessage, new_id, utcnow

__all__ = [
    "DuplicateKeyError",
    "PendingWrites",
    "drafts_for_inbound",
    "find_draft",
    "find_inbound",
    "flush_writes",
    "insert_draft",
    "latest_draft_for_accession",
    "lookup",
    "mark_published",
    "pending_writes",
    "provenance_of",
    "record_inbound",
    "report_of",
    "set_inbound_outcome",
    "storage_errors",
    "supersede_pending",
]


# The pipeline's hot-path statements, built once: SQLAlchemy caches a statement's compiled form
# by its structure, but building the statement and its cache key on every call cost more than
# running it (Core, not the ORM's unit of work: each row is written when the call returns, so
# later statements of the transaction see it).
_INBOUND: Table = InboundMessage.__table__  # type: ignore[assignment]
_DRAFTS: Table = DraftRecord.__table__  # type: ignore[assignment]
_INSERT_INBOUND = insert(_INBOUND)
_INSERT_DRAFT = insert(_DRAFTS)
_SUPERSEDE = (
    update(_DRAFTS)
    .where(_DRAFTS.c.accession == bindparam("acc"), _DRAFTS.c.status == "pending_review")
    .values(status="superseded", updated_at=bindparam("now"), version=_DRAFTS.c.version + 1)
    .returning(_DRAFTS.c.id)
)
_SUPERSEDE_KEEP = (
    update(_DRAFTS)
    .where(
        _DRAFTS.c.accession == bindparam("acc"),
        _DRAFTS.c.status == "pending_review",
        _DRAFTS.c.id != bindparam("keep"),
    )
    .values(status="superseded", updated_at=bindparam("now"), version=_DRAFTS.c.version + 1)
    .returning(_DRAFTS.c.id)
)
_MARK_PUBLISHED = (
    update(_DRAFTS)
    .where(
        _DRAFTS.c.id.in_(bindparam("ids", expanding=True)),
        _DRAFTS.c.published_at.is_(None),
    )
    .values(published_at=bindparam("now"))
)
_INBOUND_BY_KEYS = select(InboundMessage).where(
    InboundMessage.source_key.in_(bindparam("keys", expanding=True))
)
_DRAFTS_BY_ACCESSIONS = select(DraftRecord).where(
    DraftRecord.accession.in_(bindparam("accessions", expanding=True))
)


@contextlib.asynccontextmanager
async def storage_errors() -> AsyncIterator[None]:
    """Translate SQLAlchemy/driver errors into :class:`StorageError` (no SQL, no values).

    The classification (infrastructure, data rejected, duplicate key) is
    :func:`integration.pipeline.faults.translate_db`; put this *outside* the session so that errors
    raised while connecting or closing are translated too.
    """
    async with db_errors():
        yield


def _inbound_values(
    *,
    source_key: str,
    topic: str,
    partition: int,
    offset: int,
    source_format: str | None,
    raw_sha256: str,
    outcome: str,
    error: str | None,
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "source_key": source_key,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "source_format": source_format,
        "raw_sha256": raw_sha256,
        "received_at": utcnow(),
        "outcome": outcome,
        "error": (error or None) and error[:512],
    }


def _draft_values(
    *,
    inbound_id: str,
    report_key: str,
    report: RadiologyReport,
    draft: Draft,
    adapter_version: str | None,
    draft_id: str | None,
) -> dict[str, Any]:
    now = utcnow()
    flags: list[Any] = list(draft.to_dict()["safety_flags"])
    return {
        "id": draft_id or new_id(),
        "inbound_id": inbound_id,
        "report_key": report_key,
        "accession": report.accession,
        "patient_id": report.patient_id,
        "modality": report.modality,
        "procedure_code": report.procedure.code if report.procedure else None,
        "procedure_display": report.procedure.display if report.procedure else None,
        "findings": report.findings,
        "findings_hash": report.findings_hash,
        "report_json": report.model_dump(mode="json"),
        "draft_text": draft.text,
        "safety_flags": flags,
        "model_id": draft.model_id,
        "adapter_id": draft.adapter_id,
        "adapter_version": adapter_version,
        "prompt_tokens": draft.prompt_tokens,
        "generated_tokens": draft.generated_tokens,
        "latency_ms": round(draft.latency_s * 1000),
        "finish_reason": draft.finish_reason,
        "draft_method": draft.method,
        "status": "pending_review",
        "final_text": None,
        "edit_distance": None,
        "reviewer": None,
        "reviewed_at": None,
        "reject_reason": None,
        "review_source": None,
        "created_at": now,
        "updated_at": now,
        "published_at": None,
        "version": 1,
    }


async def find_inbound(session: AsyncSession, *, source_key: str) -> InboundMessage | None:
    result = await session.execute(
        select(InboundMessage).where(InboundMessage.source_key == source_key)
    )
    return result.scalar_one_or_none()


async def record_inbound(
    session: AsyncSession,
    *,
    source_key: str,
    topic: str,
    partition: int,
    offset: int,
    source_format: str | None,
    raw_sha256: str,
    outcome: str,
    error: str | None = None,
    existing: InboundMessage | None = None,
) -> InboundMessage:
    """Insert the inbound row, or update ``existing`` (a replayed dead letter).

    A new row is inserted at once (a Core INSERT); the returned object carries its values
    but is not attached to ``session``: change the row with UPDATE statements, not through it.
    """
    if existing is not None:
        row = existing
        row.topic, row.partition, row.offset = topic, partition, offset
        row.source_format, row.raw_sha256 = source_format, raw_sha256
        row.outcome, row.error = outcome, (error or None) and error[:512]
        row.received_at = utcnow()
        await session.flush()
        return row
    values = _inbound_values(
        source_key=source_key, topic=topic, partition=partition, offset=offset,
        source_format=source_format, raw_sha256=raw_sha256, outcome=outcome, error=error,
    )  # fmt: skip
    await session.execute(_INSERT_INBOUND, values)
    return InboundMessage(**values)


async def set_inbound_outcome(session: AsyncSession, *, inbound_id: str, outcome: str) -> None:
    """Change the recorded outcome of an inbound message (in the caller's transaction)."""
    await session.execute(
        update(_INBOUND).where(_INBOUND.c.id == inbound_id).values(outcome=outcome)
    )


async def lookup(
    session: AsyncSession, *, source_keys: Sequence[str], accessions: Sequence[str]
) -> tuple[list[InboundMessage], list[DraftRecord]]:
    """The inbound rows with these source keys and the drafts of these accessions (one query
    each: what the pipeline's idempotency checks need for a batch of messages)."""
    inbound: list[InboundMessage] = []
    drafts: list[DraftRecord] = []
    if source_keys:
        rows = await session.execute(_INBOUND_BY_KEYS, {"keys": list(source_keys)})
        inbound = list(rows.scalars().all())
    if accessions:
        found = await session.execute(_DRAFTS_BY_ACCESSIONS, {"accessions": list(accessions)})
        drafts = list(found.scalars().all())
    return inbound, drafts


async def drafts_for_inbound(session: AsyncSession, *, inbound_id: str) -> Sequence[DraftRecord]:
    result = await session.execute(
        select(DraftRecord)
        .where(DraftRecord.inbound_id == inbound_id)
        .order_by(DraftRecord.report_key)
    )
    return result.scalars().all()


async def find_draft(session: AsyncSession, *, draft_id: str) -> DraftRecord | None:
    return await session.get(DraftRecord, draft_id)


async def latest_draft_for_accession(
    session: AsyncSession, *, accession: str
) -> DraftRecord | None:
    """The newest draft for an accession (what a RIS-final report is matched to)."""
    result = await session.execute(
        select(DraftRecord)
        .where(DraftRecord.accession == accession)
        .order_by(DraftRecord.created_at.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def supersede_pending(
    session: AsyncSession, *, accession: str | None, keep_id: str | None = None
) -> list[str]:
    """Mark the accession's pending drafts ``superseded`` (a newer report arrived)."""
    if accession is None:
        return []
    params: dict[str, Any] = {"acc": accession, "now": utcnow()}
    if keep_id is None:
        result = await session.execute(_SUPERSEDE, params)
    else:
        result = await session.execute(_SUPERSEDE_KEEP, {**params, "keep": keep_id})
    return sorted(str(i) for i in result.scalars().all())


async def insert_draft(
    session: AsyncSession,
    *,
    inbound_id: str,
    report_key: str,
    report: RadiologyReport,
    draft: Draft,
    adapter_version: str | None,
    draft_id: str | None = None,
) -> DraftRecord:
    """Store one AI draft of ``report`` (status ``pending_review``).

    The row is inserted at once (a Core INSERT); the returned object carries its values but is
    not attached to ``session``.
    """
    values = _draft_values(
        inbound_id=inbound_id, report_key=report_key, report=report, draft=draft,
        adapter_version=adapter_version, draft_id=draft_id,
    )  # fmt: skip
    await session.execute(_INSERT_DRAFT, values)
    return DraftRecord(**values)


async def mark_published(session: AsyncSession, *, draft_ids: Sequence[str]) -> None:
    """Record that the preliminary outputs of these drafts were acknowledged by Kafka."""
    if draft_ids:
        await session.execute(_MARK_PUBLISHED, {"ids": list(draft_ids), "now": utcnow()})


_WRITES_KEY = "radgpt.pending_writes"
_SUPERSEDE_MANY = (
    update(_DRAFTS)
    .where(
        _DRAFTS.c.accession.in_(bindparam("accessions", expanding=True)),
        _DRAFTS.c.status == "pending_review",
    )
    .values(status="superseded", updated_at=bindparam("now"), version=_DRAFTS.c.version + 1)
    .returning(_DRAFTS.c.id, _DRAFTS.c.accession)
)


@dataclass
class _NewDraft:
    values: dict[str, Any]
    row: DraftRecord
    superseded: list[str]


@dataclass
class PendingWrites:
    """The pipeline's inserts and updates of one transaction, written together.

    Units of a group commit queue their rows here instead of writing them one statement at a
    time; :func:`flush_writes` writes them with one statement per kind (inbound rows, the
    superseding of older pending drafts, new drafts, ``published_at``), in the order a
    one-by-one run would have produced:

    * new drafts supersede the accession's pending drafts stored before this transaction, and
      a later new draft for the same accession supersedes an earlier one of this transaction
      (which is then stored as ``superseded``); each new draft's ``superseded`` list -- the
      very list object passed in, so audit details that hold it see the result -- gets the
      ids it superseded;
    * nothing is visible to queries before the flush: code that reads inside the
      transaction calls :func:`flush_writes` first.
    """

    inbound: list[dict[str, Any]] = field(default_factory=list)
    drafts: list[_NewDraft] = field(default_factory=list)
    published: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.inbound or self.drafts or self.published)

    def add_inbound(
        self,
        *,
        source_key: str,
        topic: str,
        partition: int,
        offset: int,
        source_format: str | None,
        raw_sha256: str,
        outcome: str,
    ) -> InboundMessage:
        values = _inbound_values(
            source_key=source_key, topic=topic, partition=partition, offset=offset,
            source_format=source_format, raw_sha256=raw_sha256, outcome=outcome, error=None,
        )  # fmt: skip
        self.inbound.append(values)
        return InboundMessage(**values)

    def add_draft(
        self,
        *,
        inbound_id: str,
        report_key: str,
        report: RadiologyReport,
        draft: Draft,
        adapter_version: str | None,
        superseded: list[str],
    ) -> DraftRecord:
        values = _draft_values(
            inbound_id=inbound_id, report_key=report_key, report=report, draft=draft,
            adapter_version=adapter_version, draft_id=None,
        )  # fmt: skip
        row = DraftRecord(**values)
        self.drafts.append(_NewDraft(values, row, superseded))
        return row

    def mark_published(self, draft_ids: Sequence[str]) -> None:
        self.published.extend(draft_ids)


def pending_writes(session: AsyncSession) -> PendingWrites:
    """The :class:`PendingWrites` of ``session``'s transaction (created on first use)."""
    writes = session.info.get(_WRITES_KEY)
    if writes is None:
        writes = session.info[_WRITES_KEY] = PendingWrites()
    assert isinstance(writes, PendingWrites)
    return writes


async def flush_writes(session: AsyncSession) -> None:
    """Write what :func:`pending_writes` holds for ``session`` (no-op when nothing)."""
    writes = session.info.pop(_WRITES_KEY, None)
    if not writes:
        return
    assert isinstance(writes, PendingWrites)
    now = utcnow()
    if writes.inbound:
        await session.execute(_INSERT_INBOUND, writes.inbound)
    if writes.drafts:
        accessions = sorted({d.values["accession"] for d in writes.drafts if d.values["accession"]})
        older: dict[str, list[str]] = {}
        if accessions:
            result = await session.execute(_SUPERSEDE_MANY, {"accessions": accessions, "now": now})
            for draft_id, accession in result.all():
                older.setdefault(str(accession), []).append(str(draft_id))
        latest: dict[str, _NewDraft] = {}
        for new in writes.drafts:
            accession = new.values["accession"]
            if accession is None:
                continue
            previous = latest.get(accession)
            if previous is None:
                new.superseded[:] = sorted(older.get(accession, []))
            else:
                previous.values.update(status="superseded", version=2)
                previous.row.status, previous.row.version = "superseded", 2
                new.superseded[:] = [previous.values["id"]]
            latest[accession] = new
        await session.execute(_INSERT_DRAFT, [d.values for d in writes.drafts])
    if writes.published:
        await session.execute(_MARK_PUBLISHED, {"ids": sorted(set(writes.published)), "now": now})


def report_of(draft: DraftRecord) -> RadiologyReport:
    """The canonical report a draft was made from (to write preliminary/final answers)."""
    return RadiologyReport.model_validate(draft.report_json)


def provenance_of(draft: DraftRecord) -> DraftProvenance:
    """The provenance written into every answer for this draft."""
    return DraftProvenance(
        draft_id=draft.id,
        model_id=draft.model_id,
        adapter_id=draft.adapter_id or "",
        adapter_version=draft.adapter_version,
        drafted_at=draft.created_at,
        method="extractive-fallback" if draft.draft_method == "extractive-fallback" else "model",
    )
