"""Radiologist review of AI drafts: approve (as is or edited), reject, and RIS-final matching.

State machine of a draft (``drafts.status``)::

    pending_review ──approve──▶ approved      (final text == draft)
                   ──approve──▶ edited        (final text != draft)
                   ──reject───▶ rejected
                   ──RIS final─▶ approved / edited / rejected   (review_source = "ris")
                   ──newer report for the accession─▶ superseded (pipeline)

Every transition starts by claiming the row: ``UPDATE drafts SET version = version + 1 WHERE
id = :id AND status = 'pending_review'``; when two reviewers race, exactly one claim matches
and the other gets :class:`~integration.errors.ConflictError` (HTTP 409).  An approval
publishes the final report (HL7 ORU with OBR-25 ``F`` and the radiologist in OBR-32; FHIR
DiagnosticReport ``final`` with a Provenance naming the radiologist as verifier) inside the
same transaction: if Kafka refuses it the transaction rolls back and the draft stays pending,
so "approved" always means "sent".

Edits are measured with a word-level Levenshtein distance (:func:`word_edit_distance`), kept
on the draft with the text before and after, for quality metrics and future training.  Audit
events carry ids, hashes and counts, never report text.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, get_args

from sqlalchemy import Text, case, cast, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from integration.audit.log import append_draft_event
from integration.errors import ConflictError, NotFoundError, PublishError, RenderError, StorageError
from integration.report.model import (
    Approval,
    Clinician,
    DraftProvenance,
    Priority,
    RadiologyReport,
)
from integration.report.vocabulary import (
    RIS_CANCELLED,
    WithdrawalReason,
    normalise_whitespace,
)
from integration.storage.db import AuditEntry, DraftRecord, utcnow
from integration.storage.repository import provenance_of, report_of

__all__ = [
    "ATTESTATION",
    "COMMUNICATION_METHODS",
    "REJECT_CATEGORIES",
    "Communication",
    "DraftFilters",
    "DraftListPage",
    "ExternalFinalResult",
    "FinalPublisher",
    "RejectCategory",
    "ReviewOutcome",
    "Reviewer",
    "Withdrawer",
    "approve_draft",
    "classify_external_final",
    "critical_flag_indexes",
    "draft_history",
    "get_draft",
    "list_drafts",
    "normalise_text",
    "prior_drafts",
    "record_communication",
    "record_external_final",
    "reject_draft",
    "text_sha256",
    "withdraw_published",
    "word_edit_distance",
]

log = logging.getLogger(__name__)

RejectCategory = Literal[
    "inaccurate", "omission", "addition", "laterality", "wrong_patient_or_study", "other"
]
REJECT_CATEGORIES: tuple[str, ...] = get_args(RejectCategory)
CommunicationMethod = Literal["telephone", "in_person", "secure_message", "page", "other"]
COMMUNICATION_METHODS: tuple[str, ...] = get_args(CommunicationMethod)
FlagFilter = Literal["critical", "any", "none"]
# What the reviewer attests by approving (shown next to Approve, recorded with the approval).
ATTESTATION = (
    "I have reviewed this study's findings and the impression, and I take responsibility "
    "for the signed report."
)
_PRIORITY_RANK = {"stat": 0, "asap": 1, "urgent": 2, "routine": 3}


# --- pure functions -----------------------------------------------------------------------


#: Whitespace-normalised text: what "identical" means when comparing impressions.
normalise_text = normalise_whitespace


def text_sha256(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def word_edit_distance(before: str, after: str) -> int:
    """Word-level Levenshtein distance: insertions, deletions and substitutions of words.

    Words are whitespace-separated tokens compared exactly (case and punctuation count), so
    reflowing lines is free but changing "left" to "right" costs one.

    >>> word_edit_distance("No acute disease.", "No acute cardiopulmonary disease.")
    1
    """
    a, b = before.split(), after.split()
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, word_a in enumerate(a, start=1):
        current = [i]
        for j, word_b in enumerate(b, start=1):
            cost = 0 if word_a == word_b else 1
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost))
        previous = current
    return previous[-1]


def classify_external_final(
    draft_text: str, final_text: str | None, ris_status: str | None
) -> Literal["approved", "edited", "rejected"]:
    """How a RIS-finalised report relates to our draft.

    A cancelled / entered-in-error report (HL7 OBR-25 ``X``/``W``, FHIR ``cancelled`` /
    ``entered-in-error``) or one without an impression rejects the draft; otherwise an
    identical impression (whitespace aside) accepts it and a different one counts as edited.
    """
    if (ris_status or "").strip().lower() in RIS_CANCELLED or not (final_text or "").strip():
        return "rejected"
    return (
        "approved" if normalise_text(draft_text) == normalise_text(final_text or "") else "edited"
    )


def critical_flag_indexes(flags: Sequence[Any] | None) -> list[int]:
    """Positions of the critical safety flags of a draft (what must be acknowledged)."""
    return [
        index
        for index, flag in enumerate(flags or [])
        if isinstance(flag, dict) and str(flag.get("severity") or "") == "critical"
    ]


def communication_statement(communications: Sequence[Communication]) -> str:
    """The sentence(s) appended to a final report's impression (ACR critical results)."""
    lines = []
    for c in communications:
        when = c.communicated_at.astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
        how = c.method.replace("_", " ")
        lines.append(
            f"Critical result communicated to {c.recipient} by {how} on {when} by {c.by}."
        )
    return "\n".join(lines)


_SIDE_WORDS = re.compile(r"\b(left|right|bilateral|both)\b", re.IGNORECASE)


def flag_evidence(text: str, phrase: str | None) -> list[tuple[int, int]]:
    """Character spans of ``text`` behind a flag: the lexicon mentions of the flagged concept
    (:func:`inference.safety.find_mentions`), else case-insensitive occurrences of the phrase;
    then the same without side words, so a laterality conflict shows the finding on the side
    the text does give."""
    if not phrase or not text:
        return []
    from inference.safety import find_mentions

    mentions = find_mentions(text)
    lowered = text.lower()
    for wanted in dict.fromkeys(
        (phrase.strip().lower(), " ".join(_SIDE_WORDS.sub(" ", phrase).split()).lower())
    ):
        if not wanted:
            continue
        spans = [
            (m.start, m.start + len(m.text))
            for m in mentions
            if m.concept.lower() == wanted and text[m.start : m.start + len(m.text)] == m.text
        ]
        if not spans:
            start = 0
            while (found := lowered.find(wanted, start)) >= 0:
                spans.append((found, found + len(wanted)))
                start = found + len(wanted)
        if spans:
            return spans
    return []


# --- types --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Communication:
    """A recorded communication of a critical finding (to whom, how, when, by whom)."""

    recipient: str
    method: str
    communicated_at: datetime
    by: str


@dataclass(frozen=True)
class Reviewer:
    """The radiologist acting (from the bearer token)."""

    subject: str
    role: str
    given_name: str | None = None
    family_name: str | None = None

    def clinician(self) -> Clinician:
        return Clinician(id=self.subject, given=self.given_name, family=self.family_name)


class Withdrawer(Protocol):
    """What withdrawing a published preliminary needs from :mod:`integration.pipeline.publisher`."""

    async def publish_withdrawal(
        self,
        report: RadiologyReport,
        impression: str,
        draft: DraftProvenance,
        *,
        reason: WithdrawalReason,
        withdrawn_at: datetime,
        withdrawn_by: Clinician | None = None,
    ) -> Any: ...


class FinalPublisher(Protocol):
    """What approval needs from :mod:`integration.pipeline.publisher`."""

    async def publish_final(
        self,
        report: RadiologyReport,
        impression: str,
        approval: Approval,
        draft: DraftProvenance,
    ) -> Any: ...


@dataclass(frozen=True)
class ReviewOutcome:
    draft_id: str
    status: str
    final_text: str | None
    edit_distance: int | None
    reviewer: str
    reviewed_at: datetime
    published: bool
    version: int


@dataclass(frozen=True)
class ExternalFinalResult:
    """What :func:`record_external_final` did with a RIS-final report."""

    matched: bool
    draft_id: str | None = None
    status: str | None = None
    edit_distance: int | None = None


@dataclass(frozen=True)
class DraftFilters:
    status: str | None = None
    modality: str | None = None
    accession: str | None = None
    max_age_hours: float | None = None
    priority: Priority | None = None
    flag: FlagFilter | None = None


@dataclass(frozen=True)
class DraftListPage:
    items: Sequence[DraftRecord]
    total: int
    page: int
    page_size: int


# --- queries ------------------------------------------------------------------------------


async def get_draft(session: AsyncSession, draft_id: str) -> DraftRecord:
    try:
        draft = await session.get(DraftRecord, draft_id)
    except SQLAlchemyError as exc:
        raise StorageError(f"draft lookup failed: {type(exc).__name__}") from exc
    if draft is None:
        raise NotFoundError(f"draft {draft_id} not found")
    return draft


def _critical_expr() -> Any:
    # Portable across SQLite (JSON text) and PostgreSQL (jsonb::text): both render a flag
    # as {"kind": ..., "severity": "critical", ...} with ": " after keys.
    return cast(DraftRecord.safety_flags, Text).like('%"severity": "critical"%')


def _priority_expr() -> Any:
    return DraftRecord.report_json["priority"].as_string()


async def list_drafts(
    session: AsyncSession,
    filters: DraftFilters,
    *,
    page: int = 1,
    page_size: int = 25,
    now: datetime | None = None,
) -> DraftListPage:
    """Drafts matching ``filters`` as a work queue, paginated: drafts with a critical safety
    flag first, then by priority (stat, asap, urgent, routine/none), then oldest first."""
    if page < 1 or not 1 <= page_size <= 200:
        raise ValueError("page must be >= 1 and page_size between 1 and 200")
    conditions: list[Any] = []
    if filters.status:
        conditions.append(DraftRecord.status == filters.status)
    if filters.modality:
        conditions.append(DraftRecord.modality == filters.modality)
    if filters.accession:
        conditions.append(DraftRecord.accession == filters.accession)
    if filters.max_age_hours is not None:
        cutoff = (now or utcnow()) - timedelta(hours=filters.max_age_hours)
        conditions.append(DraftRecord.created_at >= cutoff)
    if filters.priority:
        conditions.append(_priority_expr() == filters.priority)
    if filters.flag == "critical":
        conditions.append(_critical_expr())
    elif filters.flag == "any":
        conditions.append(cast(DraftRecord.safety_flags, Text).like("%severity%"))
    elif filters.flag == "none":
        conditions.append(cast(DraftRecord.safety_flags, Text).not_like("%severity%"))
    priority = _priority_expr()
    order = (
        case((_critical_expr(), 0), else_=1),
        case(*((priority == name, rank) for name, rank in _PRIORITY_RANK.items()), else_=3),
        DraftRecord.created_at.asc(),
        DraftRecord.id.asc(),
    )
    try:
        total = (
            await session.execute(select(func.count(DraftRecord.id)).where(*conditions))
        ).scalar_one()
        rows = (
            (
                await session.execute(
                    select(DraftRecord)
                    .where(*conditions)
                    .order_by(*order)
                    .limit(page_size)
                    .offset((page - 1) * page_size)
                )
            )
            .scalars()
            .all()
        )
    except SQLAlchemyError as exc:
        raise StorageError(f"draft listing failed: {type(exc).__name__}") from exc
    return DraftListPage(items=rows, total=int(total), page=page, page_size=page_size)


# --- transitions --------------------------------------------------------------------------


async def _claim(
    session: AsyncSession, draft_id: str, expected_version: int | None = None
) -> DraftRecord:
    """Take a pending draft for one transition, or raise Conflict/NotFound.

    The claim is the first statement of the transaction and a write: ``UPDATE drafts SET
    version = version + 1 WHERE id = :id AND status = 'pending_review' [AND version = :v]``.
    PostgreSQL then holds the row lock and SQLite the database write lock until commit, so of
    two concurrent reviewers exactly one claim matches a row; the other sees 0 rows after the
    winner commits and gets :class:`ConflictError`.
    """
    conditions = [DraftRecord.id == draft_id, DraftRecord.status == "pending_review"]
    if expected_version is not None:
        conditions.append(DraftRecord.version == expected_version)
    result = await session.execute(
        update(DraftRecord)
        .where(*conditions)
        .values(version=DraftRecord.version + 1)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        current = await session.get(DraftRecord, draft_id, populate_existing=True)
        status = current.status if current is not None else None
        await session.rollback()
        if status is None:
            raise NotFoundError(f"draft {draft_id} not found")
        if status != "pending_review":
            raise ConflictError(f"draft {draft_id} is {status}, not pending review")
        raise ConflictError(f"draft {draft_id} changed since it was loaded")
    draft = await session.get(DraftRecord, draft_id, populate_existing=True)
    if draft is None:  # pragma: no cover - the row was just updated in this transaction
        raise NotFoundError(f"draft {draft_id} not found")
    return draft


async def _apply(session: AsyncSession, draft_id: str, values: dict[str, Any]) -> None:
    await session.execute(
        update(DraftRecord)
        .where(DraftRecord.id == draft_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _output_ids(sent: Any) -> list[dict[str, Any]]:
    """Topic/partition/offset/message id of each published output (for the audit row)."""
    ids: list[dict[str, Any]] = []
    for output in sent if isinstance(sent, list | tuple) else ():
        ids.append(
            {
                name: getattr(output, name)
                for name in ("format", "topic", "partition", "offset", "message_id")
                if hasattr(output, name)
            }
        )
    return ids


async def approve_draft(
    session: AsyncSession,
    *,
    draft_id: str,
    reviewer: Reviewer,
    impression: str | None = None,
    expected_version: int | None = None,
    publisher: FinalPublisher | None,
    clock: Callable[[], datetime] = utcnow,
    acknowledged_flags: Sequence[int] = (),
    attested: bool = False,
    draft_sha256: str | None = None,
    impression_sha256: str | None = None,
) -> ReviewOutcome:
    """Approve a pending draft, as is or with an edited impression, and publish it final.

    A draft with critical safety flags needs every one acknowledged (``acknowledged_flags``:
    their positions in ``safety_flags``).  ``draft_sha256`` (the AI draft the reviewer saw)
    and ``impression_sha256`` (the text the reviewer saw when approving) make the approval
    refuse, with :class:`ConflictError`, text other than what was reviewed.  Critical-result
    communications recorded for the draft are appended to the published impression.

    Commits on success; on :class:`ConflictError` (lost race) or a publish failure the
    transaction rolls back and nothing changes.
    """
    try:
        draft = await _claim(session, draft_id, expected_version)
        final_text = draft.draft_text if impression is None else impression.strip()
        if not final_text:
            raise ValueError("the approved impression must not be empty")
        critical = critical_flag_indexes(draft.safety_flags)
        missing = sorted(set(critical) - set(acknowledged_flags))
        if missing:
            raise ValueError(
                f"acknowledge every critical safety flag before approving (flags {missing})"
            )
        if draft_sha256 is not None and draft_sha256 != text_sha256(draft.draft_text):
            raise ConflictError(f"draft {draft_id}: the AI draft is not the one you reviewed")
        if impression_sha256 is not None and impression_sha256 != text_sha256(final_text):
            raise ConflictError(
                f"draft {draft_id}: the text sent is not the text you reviewed; reload it"
            )
        communications = await _communications(session, draft.id)
        distance = word_edit_distance(draft.draft_text, final_text)
        status = (
            "approved"
            if normalise_text(final_text) == normalise_text(draft.draft_text)
            else ("edited")
        )
        now = clock()
        published_at = now if publisher is not None else None
        outputs: list[dict[str, Any]] = []
        await _apply(
            session,
            draft.id,
            {
                "status": status,
                "final_text": final_text,
                "edit_distance": distance,
                "reviewer": reviewer.subject,
                "reviewed_at": now,
                "review_source": "ui",
                "published_at": published_at,
                "updated_at": now,
            },
        )
        if publisher is not None:
            approval = Approval(
                radiologist=reviewer.clinician(),
                approved_at=now,
                edited=status == "edited",
                draft_id=draft.id,
            )
            report = report_of(draft)
            published_text = final_text
            if communications:
                published_text += "\n\n" + communication_statement(communications)
            sent = await publisher.publish_final(
                report, published_text, approval, provenance_of(draft)
            )
            outputs = _output_ids(sent)
        await append_draft_event(
            session,
            draft,
            actor=reviewer.subject,
            actor_role=reviewer.role,
            action=status,
            details={
                "edit_distance": distance,
                "draft_sha256": text_sha256(draft.draft_text),
                "final_sha256": text_sha256(final_text),
                "adapter_id": draft.adapter_id,
                "model_id": draft.model_id,
                "published": publisher is not None,
                "outputs": outputs,
                "version": draft.version,
                "acknowledged_flags": [
                    {"index": i, "kind": str(draft.safety_flags[i].get("kind"))} for i in critical
                ],
                "attestation": ATTESTATION if attested else None,
                "reviewed_sha256": impression_sha256,
                "communications": len(communications),
            },
        )
        await session.commit()
    except (ConflictError, NotFoundError, PublishError, RenderError, ValueError):
        await session.rollback()
        raise
    except SQLAlchemyError as exc:
        await session.rollback()
        raise StorageError(f"approval failed: {type(exc).__name__}") from exc
    log.info("draft %s %s by %s (edit distance %d)", draft_id, status, reviewer.subject, distance)
    return ReviewOutcome(
        draft_id=draft_id,
        status=status,
        final_text=final_text,
        edit_distance=distance,
        reviewer=reviewer.subject,
        reviewed_at=now,
        published=publisher is not None,
        version=draft.version,
    )


async def withdraw_published(
    session: AsyncSession,
    draft: DraftRecord,
    *,
    reason: WithdrawalReason,
    withdrawer: Withdrawer,
    actor: str,
    actor_role: str,
    now: datetime,
    withdrawn_by: Clinician | None = None,
) -> list[dict[str, Any]]:
    """Send the withdrawal of a draft's published preliminary and audit it (``withdrawn``).

    Joins the caller's transaction; a Kafka refusal raises :class:`PublishError` (the caller
    rolls back).  Drafts whose preliminary was never published need nothing: returns ``[]``.
    """
    if draft.published_at is None:
        return []
    sent = await withdrawer.publish_withdrawal(
        report_of(draft),
        draft.draft_text,
        provenance_of(draft),
        reason=reason,
        withdrawn_at=now,
        withdrawn_by=withdrawn_by,
    )
    outputs = _output_ids(sent)
    await append_draft_event(
        session,
        draft,
        actor=actor,
        actor_role=actor_role,
        action="withdrawn",
        details={
            "reason": reason,
            "outputs": outputs,
            "draft_sha256": text_sha256(draft.draft_text),
        },
    )
    log.info("withdrew the preliminary of draft %s (%s)", draft.id, reason)
    return outputs


async def reject_draft(
    session: AsyncSession,
    *,
    draft_id: str,
    reviewer: Reviewer,
    reason: str,
    category: RejectCategory = "other",
    expected_version: int | None = None,
    clock: Callable[[], datetime] = utcnow,
    withdrawer: Withdrawer | None = None,
) -> ReviewOutcome:
    """Reject a pending draft; the reason stays on the draft, the audit row gets the category.

    With ``withdrawer``, a preliminary already published for the draft is withdrawn
    downstream in the same transaction (HL7 OBX-11 ``W``, FHIR ``entered-in-error``; see
    ``build_withdrawal_oru`` / ``build_withdrawal_bundle`` in :mod:`integration.codecs`): if
    Kafka refuses, nothing changes and the draft stays pending.  The radiologist then
    reports the study in the RIS as usual.
    """
    reason = reason.strip()
    if not reason:
        raise ValueError("a rejection needs a reason")
    if category not in REJECT_CATEGORIES:
        raise ValueError(f"unknown rejection category {category!r}")
    withdrew = False
    try:
        draft = await _claim(session, draft_id, expected_version)
        now = clock()
        await _apply(
            session,
            draft.id,
            {
                "status": "rejected",
                "reject_reason": reason,
                "reviewer": reviewer.subject,
                "reviewed_at": now,
                "review_source": "ui",
                "updated_at": now,
            },
        )
        await append_draft_event(
            session,
            draft,
            actor=reviewer.subject,
            actor_role=reviewer.role,
            action="rejected",
            details={
                "category": category,
                "reason_sha256": text_sha256(reason),
                "adapter_id": draft.adapter_id,
                "version": draft.version,
                "withdraw": withdrawer is not None and draft.published_at is not None,
            },
        )
        if withdrawer is not None and draft.published_at is not None:
            withdrew = True
            await withdraw_published(
                session,
                draft,
                reason="rejected",
                withdrawer=withdrawer,
                actor=reviewer.subject,
                actor_role=reviewer.role,
                now=now,
                withdrawn_by=reviewer.clinician(),
            )
        await session.commit()
    except (ConflictError, NotFoundError, PublishError, RenderError, ValueError):
        await session.rollback()
        raise
    except SQLAlchemyError as exc:
        await session.rollback()
        raise StorageError(f"rejection failed: {type(exc).__name__}") from exc
    log.info("draft %s rejected by %s (%s)", draft_id, reviewer.subject, category)
    return ReviewOutcome(
        draft_id=draft_id,
        status="rejected",
        final_text=None,
        edit_distance=None,
        reviewer=reviewer.subject,
        reviewed_at=now,
        published=withdrew,
        version=draft.version,
    )


async def record_communication(
    session: AsyncSession,
    *,
    draft_id: str,
    reviewer: Reviewer,
    recipient: str,
    method: CommunicationMethod,
    communicated_at: datetime,
) -> Communication:
    """Record that a critical finding of a pending draft was communicated (ACR practice
    parameter): audited ``communicated``; the approval appends it to the final report."""
    recipient = " ".join(recipient.split())
    if not recipient:
        raise ValueError("say to whom the critical result was communicated")
    if len(recipient) > 200:
        raise ValueError("the recipient is at most 200 characters")
    if method not in COMMUNICATION_METHODS:
        raise ValueError(f"unknown communication method {method!r}")
    if communicated_at.tzinfo is None:
        raise ValueError("the communication time needs a time zone")
    try:
        draft = await get_draft(session, draft_id)
        if draft.status != "pending_review":
            raise ConflictError(
                f"draft {draft_id} is {draft.status}: record the communication in the RIS"
            )
        await append_draft_event(
            session,
            draft,
            actor=reviewer.subject,
            actor_role=reviewer.role,
            action="communicated",
            details={
                "recipient": recipient,
                "method": method,
                "communicated_at": communicated_at.isoformat(),
                "critical_flags": [
                    str(draft.safety_flags[i].get("kind"))
                    for i in critical_flag_indexes(draft.safety_flags)
                ],
            },
        )
        await session.commit()
    except (ConflictError, NotFoundError, ValueError):
        await session.rollback()
        raise
    except SQLAlchemyError as exc:
        await session.rollback()
        raise StorageError(f"recording the communication failed: {type(exc).__name__}") from exc
    return Communication(recipient, method, communicated_at, reviewer.subject)


async def _communications(session: AsyncSession, draft_id: str) -> list[Communication]:
    rows = (
        (
            await session.execute(
                select(AuditEntry)
                .where(
                    AuditEntry.entity_type == "draft",
                    AuditEntry.entity_id == draft_id,
                    AuditEntry.action == "communicated",
                    AuditEntry.outcome == "success",
                )
                .order_by(AuditEntry.id)
            )
        )
        .scalars()
        .all()
    )
    out = []
    for row in rows:
        details = row.details or {}
        out.append(
            Communication(
                recipient=str(details.get("recipient")),
                method=str(details.get("method")),
                communicated_at=datetime.fromisoformat(str(details.get("communicated_at"))),
                by=row.actor,
            )
        )
    return out


async def draft_history(session: AsyncSession, draft_id: str) -> list[AuditEntry]:
    """The audit events of a draft, oldest first, without views (the review history)."""
    try:
        result = await session.execute(
            select(AuditEntry)
            .where(
                AuditEntry.entity_type == "draft",
                AuditEntry.entity_id == draft_id,
                AuditEntry.action != "viewed",
            )
            .order_by(AuditEntry.id)
            .limit(200)
        )
    except SQLAlchemyError as exc:
        raise StorageError(f"history lookup failed: {type(exc).__name__}") from exc
    return list(result.scalars().all())


async def prior_drafts(
    session: AsyncSession, draft: DraftRecord, *, limit: int = 10
) -> list[DraftRecord]:
    """Other stored reports of the same patient, newest first (for comparison)."""
    if not draft.patient_id:
        return []
    try:
        result = await session.execute(
            select(DraftRecord)
            .where(DraftRecord.patient_id == draft.patient_id, DraftRecord.id != draft.id)
            .order_by(DraftRecord.created_at.desc())
            .limit(limit)
        )
    except SQLAlchemyError as exc:
        raise StorageError(f"prior report lookup failed: {type(exc).__name__}") from exc
    return list(result.scalars().all())


async def record_external_final(
    session: AsyncSession,
    report: RadiologyReport,
    *,
    actor: str = "ris",
    actor_role: str = "system",
    clock: Callable[[], datetime] = utcnow,
) -> ExternalFinalResult:
    """Match a report finalised in the RIS to our pending draft (by accession) and record it.

    Joins the caller's transaction (the pipeline worker commits together with its own
    bookkeeping).  Returns ``matched=False`` when there is no pending draft for the accession.
    """
    if not report.accession:
        return ExternalFinalResult(matched=False)
    try:
        pending = (
            (
                await session.execute(
                    select(DraftRecord)
                    .where(
                        DraftRecord.accession == report.accession,
                        DraftRecord.status == "pending_review",
                    )
                    .order_by(DraftRecord.created_at.desc())
                    .limit(1)
                )
            )
            .scalars()
            .first()
        )
        if pending is None:
            return ExternalFinalResult(matched=False)
        decision = classify_external_final(pending.draft_text, report.impression, report.status)
        final_text = (report.impression or "").strip() or None
        distance = (
            word_edit_distance(pending.draft_text, final_text)
            if decision != "rejected" and final_text
            else None
        )
        interpreter = report.interpreter
        reviewer = (interpreter.id or interpreter.display) if interpreter else None
        now = clock()
        # The RIS signing time when it carries a zone; HL7 DTMs are usually local and naive.
        reported = report.reported_at
        signed_at = reported if reported is not None and reported.tzinfo is not None else now
        claim = await session.execute(
            update(DraftRecord)
            .where(
                DraftRecord.id == pending.id,
                DraftRecord.status == "pending_review",
                DraftRecord.version == pending.version,
            )
            .values(
                status=decision,
                final_text=final_text if decision != "rejected" else None,
                edit_distance=distance,
                reviewer=reviewer or actor,
                reviewed_at=signed_at,
                review_source="ris",
                reject_reason="cancelled in the RIS" if decision == "rejected" else None,
                updated_at=now,
                version=DraftRecord.version + 1,
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(claim, "rowcount", 0) != 1:  # a radiologist reviewed it a moment ago
            log.info("RIS final for draft %s arrived after its review", pending.id)
            return ExternalFinalResult(matched=False, draft_id=pending.id)
        await append_draft_event(
            session,
            pending,
            actor=actor,
            actor_role=actor_role,
            action="ris_final",
            details={
                "decision": decision,
                "edit_distance": distance,
                "ris_status": report.status,
                "message_id": report.message_id,
                "interpreter_id": interpreter.id if interpreter else None,
                "final_sha256": text_sha256(final_text) if final_text else None,
                "adapter_id": pending.adapter_id,
            },
        )
    except SQLAlchemyError as exc:
        raise StorageError(f"RIS-final matching failed: {type(exc).__name__}") from exc
    return ExternalFinalResult(
        matched=True, draft_id=pending.id, status=decision, edit_distance=distance
    )
