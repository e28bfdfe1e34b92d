"""Inbound, draft and publish state: reads, and the one write path (:class:`Writes`).

Every write of that state goes through a :class:`Writes` of the transaction: rows and
changes are queued on it and written by :meth:`Writes.flush` with one statement per kind
(the superseding of older pending drafts is implemented there and nowhere else).  The group
committer makes one per transaction, hands it to every unit with the session and flushes it
before the audit append; code that reads inside a transaction flushes first, explicitly.
:func:`record_inbound`, :func:`insert_draft` and :func:`mark_published` are the same
path for one change (queue, flush; test set-ups and one-off scripts use them).  Nothing is
kept on the session; nothing here commits.  Database driver errors are translated to
:class:`~integration.errors.StorageError` by :func:`storage_errors` at the transaction
boundary (the worker retries those).
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
    "Writes",
    "drafts_for_inbound",
    "find_draft",
    "find_inbound",
    "insert_draft",
    "latest_draft_for_accession",
    "lookup",
    "mark_published",
    "provenance_of",
    "record_inbound",
    "report_of",
    "storage_errors",
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
    .where(
        _DRAFTS.c.accession.in_(bindparam("accessions", expanding=True)),
        _DRAFTS.c.status == "pending_review",
    )
    .values(status="superseded", updated_at=bindparam("now"), version=_DRAFTS.c.version + 1)
    .returning(_DRAFTS.c.id, _DRAFTS.c.accession)
)
_UPDATE_INBOUND = (
    update(_INBOUND)
    .where(_INBOUND.c.id == bindparam("row_id"))
    .values(
        topic=bindparam("topic"),
        partition=bindparam("partition"),
        offset=bindparam("offset"),
        source_format=bindparam("source_format"),
        raw_sha256=bindparam("raw_sha256"),
        received_at=bindparam("received_at"),
        outcome=bindparam("outcome"),
        error=bindparam("error"),
    )
)
_SET_OUTCOME = (
    update(_INBOUND)
    .where(_INBOUND.c.id == bindparam("row_id"))
    .values(outcome=bindparam("outcome"))
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


@dataclass
class _NewDraft:
    values: dict[str, Any]
    row: DraftRecord
    superseded: list[str]


@dataclass
class Writes:
    """The inbound, draft and publish writes of one transaction, written together.

    Queue rows and changes with the ``add_*``/``set_*``/``mark_*`` methods; :meth:`flush`
    writes them with one statement per kind (inbound rows, replayed inbound rows, the
    superseding of older pending drafts, new drafts, ``published_at``, outcomes), in the
    order a one-by-one run would have produced:

    * new drafts supersede the accession's pending drafts stored before the flush, and a
      later new draft for the same accession supersedes an earlier one of the same flush
      (which is then stored as ``superseded``); each new draft's ``superseded`` list -- the
      very list object passed in, so audit details that hold it see the result -- gets the
      ids it superseded;
    * nothing is visible to queries before the flush: code that reads inside the
      transaction calls :meth:`flush` first.
    """

    inbound: list[dict[str, Any]] = field(default_factory=list)
    replayed: list[dict[str, Any]] = field(default_factory=list)
    drafts: list[_NewDraft] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.inbound or self.replayed or self.drafts or self.published or self.outcomes)

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
        error: str | None = None,
        existing: InboundMessage | None = None,
    ) -> InboundMessage:
        """A new inbound row, or ``existing`` (a replayed dead letter) taking these values.

        The returned object carries the row's values; it is not attached to a session.
        """
        values = _inbound_values(
            source_key=source_key, topic=topic, partition=partition, offset=offset,
            source_format=source_format, raw_sha256=raw_sha256, outcome=outcome, error=error,
        )  # fmt: skip
        if existing is None:
            self.inbound.append(values)
        else:
            values.update(id=existing.id, source_key=existing.source_key)
            self.replayed.append(values)
        return InboundMessage(**values)

    def set_outcome(self, inbound: InboundMessage, outcome: str) -> None:
        """Change the recorded outcome of ``inbound`` (queued here or already stored)."""
        for values in (*self.inbound, *self.replayed):
            if values["id"] == inbound.id:
                values["outcome"] = outcome
                break
        else:
            self.outcomes[inbound.id] = outcome
        inbound.outcome = outcome

    def add_draft(
        self,
        *,
        inbound_id: str,
        report_key: str,
        report: RadiologyReport,
        draft: Draft,
        adapter_version: str | None,
        superseded: list[str] | None = None,
        draft_id: str | None = None,
    ) -> DraftRecord:
        """One AI draft of ``report`` (``pending_review``); ``superseded`` receives the ids
        of the drafts it supersedes when the writes are flushed."""
        values = _draft_values(
            inbound_id=inbound_id, report_key=report_key, report=report, draft=draft,
            adapter_version=adapter_version, draft_id=draft_id,
        )  # fmt: skip
        row = DraftRecord(**values)
        self.drafts.append(_NewDraft(values, row, superseded if superseded is not None else []))
        return row

    def mark_published(self, draft_ids: Sequence[str]) -> None:
        """Kafka acknowledged the preliminary outputs of these drafts."""
        self.published.extend(draft_ids)

    async def flush(self, session: AsyncSession) -> None:
        """Write everything queued in ``session``'s transaction, then start empty again."""
        if not self:
            return
        inbound, replayed, drafts = self.inbound, self.replayed, self.drafts
        published, outcomes = self.published, self.outcomes
        self.inbound, self.replayed, self.drafts, self.published, self.outcomes = [], [], [], [], {}
        now = utcnow()
        if inbound:
            await session.execute(_INSERT_INBOUND, inbound)
        for values in replayed:
            await session.execute(
                _UPDATE_INBOUND,
                {**{k: v for k, v in values.items() if k not in ("id", "source_key")},
                 "row_id": values["id"]},
            )  # fmt: skip
        if drafts:
            await _insert_drafts(session, drafts, now)
        if published:
            await session.execute(_MARK_PUBLISHED, {"ids": sorted(set(published)), "now": now})
        for row_id, outcome in outcomes.items():
            await session.execute(_SET_OUTCOME, {"row_id": row_id, "outcome": outcome})


async def _insert_drafts(session: AsyncSession, drafts: list[_NewDraft], now: Any) -> None:
    """Supersede the older pending drafts of these accessions, then insert the new ones."""
    accessions = sorted({d.values["accession"] for d in drafts if d.values["accession"]})
    older: dict[str, list[str]] = {}
    if accessions:
        result = await session.execute(_SUPERSEDE, {"accessions": accessions, "now": now})
        for draft_id, accession in result.all():
            older.setdefault(str(accession), []).append(str(draft_id))
    latest: dict[str, _NewDraft] = {}
    for new in drafts:
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
    await session.execute(_INSERT_DRAFT, [d.values for d in drafts])


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
    """:meth:`Writes.add_inbound` of one row, flushed at once."""
    writes = Writes()
    row = writes.add_inbound(
        source_key=source_key, topic=topic, partition=partition, offset=offset,
        source_format=source_format, raw_sha256=raw_sha256, outcome=outcome, error=error,
        existing=existing,
    )  # fmt: skip
    await writes.flush(session)
    return row


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
    """:meth:`Writes.add_draft` of one draft (superseding the accession's pending ones),
    flushed at once."""
    writes = Writes()
    row = writes.add_draft(
        inbound_id=inbound_id, report_key=report_key, report=report, draft=draft,
        adapter_version=adapter_version, draft_id=draft_id,
    )  # fmt: skip
    await writes.flush(session)
    return row


async def mark_published(session: AsyncSession, *, draft_ids: Sequence[str]) -> None:
    """:meth:`Writes.mark_published`, flushed at once."""
    writes = Writes()
    writes.mark_published(draft_ids)
    await writes.flush(session)


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
