"""Repository functions for inbound messages and drafts (keyword-only, caller's session).

The functions add, find and change rows inside the caller's transaction; they never commit.
Database driver errors are translated to :class:`~integration.errors.StorageError` by
:func:`storage_errors` at the transaction boundary (the worker retries those).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from inference.types import Draft

from .db import DraftRecord, InboundMessage, utcnow
from .errors import StorageError
from .report import DraftProvenance, RadiologyReport

__all__ = [
    "DuplicateKeyError",
    "drafts_for_inbound",
    "find_draft",
    "find_draft_by_findings",
    "find_inbound",
    "insert_draft",
    "latest_draft_for_accession",
    "mark_published",
    "provenance_of",
    "record_inbound",
    "report_of",
    "storage_errors",
    "supersede_pending",
]


class DuplicateKeyError(StorageError):
    """An idempotency key was taken concurrently; processing again finds the stored row."""


@contextlib.asynccontextmanager
async def storage_errors() -> AsyncIterator[None]:
    """Translate SQLAlchemy/driver errors into :class:`StorageError` (no SQL, no values)."""
    try:
        yield
    except StorageError:
        raise
    except IntegrityError as exc:
        raise DuplicateKeyError("idempotency key already stored") from exc
    except (SQLAlchemyError, OSError, ConnectionError) as exc:
        raise StorageError(f"database error: {type(exc).__name__}") from exc


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
    """Insert the inbound row, or update ``existing`` (a replayed dead letter)."""
    row = existing or InboundMessage(source_key=source_key)
    row.topic, row.partition, row.offset = topic, partition, offset
    row.source_format, row.raw_sha256 = source_format, raw_sha256
    row.outcome, row.error = outcome, (error or None) and error[:512]
    row.received_at = utcnow()
    if existing is None:
        session.add(row)
    await session.flush()
    return row


async def drafts_for_inbound(session: AsyncSession, *, inbound_id: str) -> Sequence[DraftRecord]:
    result = await session.execute(
        select(DraftRecord)
        .where(DraftRecord.inbound_id == inbound_id)
        .order_by(DraftRecord.report_key)
    )
    return result.scalars().all()


async def find_draft(session: AsyncSession, *, draft_id: str) -> DraftRecord | None:
    return await session.get(DraftRecord, draft_id)


async def find_draft_by_findings(
    session: AsyncSession, *, accession: str | None, findings_hash: str
) -> DraftRecord | None:
    """The draft with the second idempotency key (accession, findings hash), if any."""
    if accession is None:
        return None
    result = await session.execute(
        select(DraftRecord).where(
            DraftRecord.accession == accession, DraftRecord.findings_hash == findings_hash
        )
    )
    return result.scalar_one_or_none()


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
    query = select(DraftRecord.id).where(
        DraftRecord.accession == accession, DraftRecord.status == "pending_review"
    )
    if keep_id is not None:
        query = query.where(DraftRecord.id != keep_id)
    ids = list((await session.execute(query)).scalars().all())
    if ids:
        await session.execute(
            update(DraftRecord)
            .where(DraftRecord.id.in_(ids), DraftRecord.status == "pending_review")
            .values(status="superseded", updated_at=utcnow(), version=DraftRecord.version + 1)
        )
    return ids


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
    """Store one AI draft of ``report`` (status ``pending_review``)."""
    now = utcnow()
    flags: list[Any] = list(draft.to_dict()["safety_flags"])
    row = DraftRecord(
        inbound_id=inbound_id,
        report_key=report_key,
        accession=report.accession,
        patient_id=report.patient_id,
        modality=report.modality,
        procedure_code=report.procedure.code if report.procedure else None,
        procedure_display=report.procedure.display if report.procedure else None,
        findings=report.findings,
        findings_hash=report.findings_hash,
        report_json=report.model_dump(mode="json"),
        draft_text=draft.text,
        safety_flags=flags,
        model_id=draft.model_id,
        adapter_id=draft.adapter_id,
        adapter_version=adapter_version,
        prompt_tokens=draft.prompt_tokens,
        generated_tokens=draft.generated_tokens,
        latency_ms=round(draft.latency_s * 1000),
        finish_reason=draft.finish_reason,
        status="pending_review",
        created_at=now,
        updated_at=now,
        version=1,
    )
    if draft_id is not None:
        row.id = draft_id
    session.add(row)
    await session.flush()
    return row


async def mark_published(session: AsyncSession, *, draft_ids: Sequence[str]) -> None:
    """Record that the preliminary outputs of these drafts were acknowledged by Kafka."""
    if draft_ids:
        await session.execute(
            update(DraftRecord)
            .where(DraftRecord.id.in_(list(draft_ids)), DraftRecord.published_at.is_(None))
            .values(published_at=utcnow())
        )


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
    )
