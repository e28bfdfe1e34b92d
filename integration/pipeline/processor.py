"""What happens to one inbound Kafka message: parse, dedupe, draft, persist, publish, audit.

:meth:`Processor.process` is idempotent per message, which is what makes at-least-once
delivery safe:

1. The raw bytes are parsed (:func:`integration.codecs.codec.parse_message`).  Bad input is
   dead-lettered with the original bytes and reason headers.
2. The source key (``<source system>|<MSH-10 / resource id>``) is looked up.  A message seen
   before is *not* drafted again: stored drafts whose outputs were never acknowledged are
   re-published (identical bytes, same MSH-10), everything else is only audited.
3. Each report is classified: RIS-final (handed to
   :func:`integration.review.workflow.record_external_final`), no findings (skipped),
   already drafted
   for the same accession and findings (duplicate), or to draft.
4. Drafts are made concurrently (the model server batches), then the inbound row, the drafts
   and their audit events are committed in one transaction; a newer report for an accession
   supersedes its older pending draft.
5. The preliminary answers are published and acknowledged; then ``published_at`` and the
   ``published`` event are committed.

Each write (steps 4 and 5, dead letters, re-deliveries) is a unit of work for the
:class:`~integration.storage.group_commit.GroupCommitter`: messages finishing together share one
transaction, and each step continues only after the transaction holding its unit committed.

Retriable failures (database, Kafka, model server) propagate to the worker, which pauses on
a dependency that is down or retries the message a bounded number of times
(:mod:`integration.pipeline.faults`); every step above is safe to repeat.  A message over
``max_message_bytes`` is dead-lettered unparsed, and data the database refuses (SQLSTATE
class 22, e.g. a NUL character) dead-letters the message at once.  Logs carry ids and hashes,
never report text or patient identifiers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inference.drafting.scope import ScopeDecision
from inference.errors import InferenceError
from inference.types import Draft
from integration.audit.log import AuditEvent
from integration.codecs.codec import CodecOptions, parse_message
from integration.errors import (
    DataRejected,
    InputError,
    MessageTooLarge,
    RadgptError,
    RetriesExhausted,
)
from integration.pipeline.faults import Fault, classify
from integration.pipeline.metrics import PipelineMetrics
from integration.pipeline.publisher import PublishedOutput, Publisher
from integration.report.model import RadiologyReport
from integration.report.patient_ids import patient_hint, patient_of
from integration.report.vocabulary import RIS_CANCELLED
from integration.review.workflow import record_external_final
from integration.storage import repository as store
from integration.storage.db import AuditEntry, Database, DraftRecord, InboundMessage, utcnow
from integration.storage.group_commit import GroupCommitter
from integration.storage.lookups import Known, LookupBatcher

__all__ = [
    "ACTOR",
    "ImpressionDrafter",
    "InboundRecord",
    "ProcessResult",
    "Processor",
    "is_retriable",
    "source_key_of",
]

log = logging.getLogger(__name__)

ACTOR = "radgpt-pipeline"
_ROLE = "system"
Outcome = Literal["drafted", "skipped", "dead_lettered", "final_matched", "duplicate"]


class ImpressionDrafter(Protocol):
    """What the pipeline needs from :class:`inference.drafting.drafter.Drafter`."""

    def check_scope(
        self,
        findings: str,
        *,
        procedure_code: str | None = None,
        procedure_text: str | None = None,
        modality: str | None = None,
    ) -> ScopeDecision: ...

    async def draft(
        self,
        findings: str,
        *,
        context: Mapping[str, str] | None = None,
        scope: ScopeDecision | None = None,
    ) -> Draft: ...


@dataclass(frozen=True)
class InboundRecord:
    """One consumed Kafka record (what the processor needs of it)."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class ProcessResult:
    outcome: Outcome
    drafts: int = 0
    published: int = 0
    redelivered: bool = False
    reason: str | None = None


@dataclass
class _Plan:
    index: int
    report: RadiologyReport
    action: Literal["draft", "duplicate", "skip", "final"]
    reason: str | None = None
    scope: ScopeDecision | None = None
    existing: DraftRecord | None = None
    draft: Draft | None = None
    row: DraftRecord | None = None
    superseded: list[str] = field(default_factory=list)


def is_retriable(exc: BaseException) -> bool:
    """True unless the failure is the message's own (:func:`integration.pipeline.faults.classify`
    of the error's ``retriable`` / ``infrastructure`` flags): transient faults are retried,
    infrastructure ones (a wrong adapter included) wait for the dependency, and neither is
    dead-lettered."""
    return classify(exc).fault is not Fault.MESSAGE


def source_key_of(reports: Sequence[RadiologyReport], raw_sha256: str) -> str:
    """The message's idempotency key: sending system + message control id / resource id."""
    if not reports:
        return f"raw|{raw_sha256}"
    first = reports[0]
    return f"{first.source_system or first.source_format}|{first.message_id}"[:512]


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


class Processor:
    """Processes inbound records against one database, drafter and publisher."""

    def __init__(
        self,
        *,
        database: Database,
        drafter: ImpressionDrafter,
        publisher: Publisher,
        metrics: PipelineMetrics | None = None,
        adapter_version: str | None = None,
        actor: str = ACTOR,
        committer: GroupCommitter | None = None,
        lookups: LookupBatcher | None = None,
        read_concurrency: int = 4,
        max_message_bytes: int | None = None,
    ) -> None:
        if read_concurrency < 1:
            raise ValueError("read_concurrency must be at least 1")
        self.max_message_bytes = max_message_bytes
        self.database = database
        self.committer = committer or GroupCommitter(database)
        self.lookups = lookups or LookupBatcher(database)
        # Bounds the short read sessions of re-deliveries to what the connection pool keeps
        # open: beyond it every read would open and close an overflow connection.
        self._reads = asyncio.Semaphore(read_concurrency)
        self.drafter = drafter
        self.publisher = publisher
        # The site's reader settings (accession systems, HL7 accession fields, charset fallback).
        self.codec_options = CodecOptions.from_settings(publisher.pipeline)
        self.metrics = metrics or PipelineMetrics()
        self.adapter_version = adapter_version
        self.actor = actor

    # --- entry points --------------------------------------------------------------------

    async def process(self, record: InboundRecord) -> ProcessResult:
        """Process one record; raises only retriable errors (the worker retries them)."""
        if self.max_message_bytes is not None and len(record.value) > self.max_message_bytes:
            # Not parsed, not decoded: straight to the dead-letter topic.
            too_large = MessageTooLarge(
                f"message of {len(record.value)} bytes is over the limit of "
                f"{self.max_message_bytes} bytes (pipeline.max_message_bytes)"
            )
            return await self.dead_letter(record, too_large)
        raw_sha = hashlib.sha256(record.value).hexdigest()
        try:
            reports = parse_message(record.value, self.codec_options)
        except InputError as exc:
            return await self.dead_letter(
                record, exc, source_key=f"raw|{raw_sha}", patient_id=patient_hint(record.value)
            )
        source_key = source_key_of(reports, raw_sha)
        source_format = reports[0].source_format if reports else None
        plans: list[_Plan] = []
        accessions = sorted({r.accession for r in reports if r.accession is not None})
        known = await self.lookups.lookup(source_key, accessions)
        existing = known.inbound
        if existing is None or existing.outcome == "dead_lettered":
            plans = self._plan(reports, known)
        if existing is not None:
            same_delivery = (existing.topic, existing.partition, existing.offset) == (
                record.topic, record.partition, record.offset,
            )  # fmt: skip
            if existing.outcome != "dead_lettered":
                return await self._redelivered(existing, record, same_delivery)
            if same_delivery:  # dead-lettered already; the offset commit was lost
                return ProcessResult("dead_lettered", redelivered=True)
        try:
            await self._draft_all(plans)
        except InferenceError as exc:
            if is_retriable(exc):
                raise
            return await self.dead_letter(
                record, exc, source_key=source_key, source_format=source_format, existing=existing,
                patient_id=patient_of(reports),
            )  # fmt: skip
        try:
            rows = await self._store(record, plans, source_key, source_format, raw_sha, existing)
        except DataRejected as exc:  # e.g. a NUL character PostgreSQL cannot store
            return await self.dead_letter(
                record, exc, source_key=source_key, source_format=source_format, existing=None,
                patient_id=patient_of(reports),
            )  # fmt: skip
        to_publish = [p.row for p in plans if p.action == "draft" and p.row is not None]
        to_publish += [
            p.existing
            for p in plans
            if p.action == "duplicate"
            and p.existing is not None
            and p.existing.published_at is None
            and p.existing.status == "pending_review"
        ]
        published = await self._publish(to_publish, record)
        await self._withdraw_superseded(plans)
        drafted = sum(p.action == "draft" for p in plans)
        return ProcessResult(rows, drafts=drafted, published=published)

    async def dead_letter(
        self,
        record: InboundRecord,
        exc: BaseException,
        *,
        source_key: str | None = None,
        source_format: str | None = None,
        existing: InboundMessage | None = None,
        patient_id: str | None = None,
    ) -> ProcessResult:
        """Send the original bytes to the dead-letter topic, then record and audit that."""
        raw_sha = hashlib.sha256(record.value).hexdigest()
        source_key = source_key or f"raw|{raw_sha}"
        error_class = type(exc).__name__
        reason = _short(exc) if isinstance(exc, RadgptError) else error_class
        headers = {
            "dlq-error-class": error_class,
            "dlq-source-topic": record.topic,
            "dlq-source-partition": str(record.partition),
            "dlq-source-offset": str(record.offset),
            "dlq-timestamp": utcnow().isoformat(timespec="milliseconds"),
            "dlq-raw-sha256": raw_sha,
        }
        if isinstance(exc, RetriesExhausted):
            headers["dlq-attempts"] = str(exc.attempts)
            headers["dlq-retry-history"] = ",".join(exc.history)[:500]
        await self.publisher.dead_letter(record.value, reason, headers, key=record.key)

        async def work(
            session: AsyncSession, writes: store.Writes
        ) -> tuple[None, list[AuditEvent]]:
            await writes.flush(session)  # earlier units' rows, before reading
            row = existing
            if row is None:
                row = await store.find_inbound(session, source_key=source_key)
            inbound = writes.add_inbound(
                source_key=source_key,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                source_format=source_format,
                raw_sha256=raw_sha,
                outcome="dead_lettered",
                error=f"{error_class}: {reason}",
                existing=row,
            )
            event = self._event(
                "dead_lettered",
                "message",
                inbound.id,
                patient_id=patient_id,
                outcome="failure",
                details={**headers, "reason": reason[:200]},
            )
            return None, [event]

        await self.committer.run(work)
        self.metrics.dead_letters.labels(error_class).inc()
        log.warning(
            "dead-lettered %s/%d@%d (%s, sha256 %s)",
            record.topic, record.partition, record.offset, error_class, raw_sha[:12],
        )  # fmt: skip
        return ProcessResult("dead_lettered", reason=error_class)

    # --- steps ---------------------------------------------------------------------------

    def _plan(self, reports: Sequence[RadiologyReport], known: Known) -> list[_Plan]:
        plans: list[_Plan] = []
        seen: set[tuple[str | None, str]] = set()
        for index, report in enumerate(reports):
            status = (report.status or "").strip().lower()
            if report.is_final or status in RIS_CANCELLED:
                plans.append(_Plan(index, report, "final"))
                continue
            if not report.findings.strip():
                plans.append(_Plan(index, report, "skip", reason="no_findings"))
                continue
            procedure = report.procedure
            scope = self.drafter.check_scope(
                report.findings,
                procedure_code=procedure.code if procedure else None,
                procedure_text=(procedure.display or procedure.code) if procedure else None,
                modality=report.modality,
            )
            if not scope.in_scope:
                plans.append(_Plan(index, report, "skip", reason="out_of_scope", scope=scope))
                continue
            key = (report.accession, report.findings_hash)
            existing = (
                known.drafts.get((report.accession, report.findings_hash))
                if report.accession is not None
                else None
            )
            if existing is not None:
                plans.append(_Plan(index, report, "duplicate", existing=existing))
            elif report.accession is not None and key in seen:
                plans.append(_Plan(index, report, "skip", reason="repeated_in_message"))
            else:
                plans.append(_Plan(index, report, "draft", scope=scope))
            seen.add(key)
        return plans

    async def _draft_all(self, plans: Sequence[_Plan]) -> None:
        todo = [p for p in plans if p.action == "draft"]
        if not todo:
            return
        # Training prompts carry the findings only, so no extra context is sent.
        results = await asyncio.gather(
            *(self.drafter.draft(p.report.findings, scope=p.scope) for p in todo),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        for error in errors:  # retriable first: the message is retried as a whole
            if is_retriable(error):
                raise error
        for error in errors:
            raise error
        for plan, result in zip(todo, results, strict=True):
            assert isinstance(result, Draft)
            plan.draft = result
            self.metrics.model_latency.observe(result.latency_s)

    async def _store(
        self,
        record: InboundRecord,
        plans: Sequence[_Plan],
        source_key: str,
        source_format: str | None,
        raw_sha: str,
        existing: InboundMessage | None,
    ) -> Outcome:
        actions = {p.action for p in plans}

        def outcome_of(matched_final: bool) -> Outcome:
            if "draft" in actions:
                return "drafted"
            if matched_final:
                return "final_matched"
            return "duplicate" if "duplicate" in actions else "skipped"

        async def work(
            session: AsyncSession, writes: store.Writes
        ) -> tuple[Outcome, list[AuditEvent]]:
            inbound = writes.add_inbound(
                source_key=source_key, topic=record.topic, partition=record.partition,
                offset=record.offset, source_format=source_format, raw_sha256=raw_sha,
                outcome=outcome_of(False),  # final reports may still change it (below)
                existing=existing,
            )  # fmt: skip
            events = [
                self._event(
                    "received",
                    "message",
                    inbound.id,
                    patient_id=patient_of([p.report for p in plans]),
                    details={
                        "source_key": source_key,
                        "topic": record.topic,
                        "partition": record.partition,
                        "offset": record.offset,
                        "raw_sha256": raw_sha,
                        "format": source_format,
                        "reports": len(plans),
                    },
                )
            ]
            if not plans:  # e.g. a laboratory ORU: nothing radiological with findings
                events.append(
                    self._event(
                        "skipped", "message", inbound.id,
                        details={"reason": "no_radiology_report_with_findings"},
                    )
                )  # fmt: skip
            matched_final = False
            for plan in plans:
                matched_final |= await self._store_plan(session, inbound, plan, events, writes)
            outcome = outcome_of(matched_final)
            if inbound.outcome != outcome:
                writes.set_outcome(inbound, outcome)
            return outcome, events

        outcome = await self.committer.run(work)
        for plan in plans:
            if plan.action == "draft" and plan.draft is not None:
                self.metrics.drafts.labels(plan.draft.adapter_id or "base").inc()
        return outcome

    async def _store_plan(
        self,
        session: AsyncSession,
        inbound: InboundMessage,
        plan: _Plan,
        events: list[AuditEvent],
        writes: store.Writes,
    ) -> bool:
        report = plan.report
        if plan.action == "final":
            await writes.flush(session)  # the matching reads the drafts: earlier rows first
            result = await record_external_final(session, report, actor=self.actor)
            if not result.matched:
                events.append(
                    self._event(
                        "skipped", "report", f"{inbound.source_key}#{plan.index}",
                        report=report, details={"reason": "final_without_pending_draft"},
                    )
                )  # fmt: skip
            return result.matched
        if plan.action == "skip":
            details: dict[str, Any] = {"reason": plan.reason}
            if plan.scope is not None:
                details["scope"] = plan.scope.to_json()
            events.append(
                self._event(
                    "skipped", "report", f"{inbound.source_key}#{plan.index}",
                    report=report, details=details,
                )
            )  # fmt: skip
            return False
        if plan.action == "duplicate":
            assert plan.existing is not None
            events.append(
                self._event(
                    "duplicate", "draft", plan.existing.id, report=report,
                    details={"reason": "same_accession_and_findings", "inbound_id": inbound.id},
                )
            )  # fmt: skip
            return False
        assert plan.draft is not None
        report_key = f"{inbound.source_key}#{plan.index}"
        plan.superseded = []  # filled in by the flush: the audit details below hold this list
        row = writes.add_draft(
            inbound_id=inbound.id, report_key=report_key, report=report, draft=plan.draft,
            adapter_version=self.adapter_version, superseded=plan.superseded,
        )  # fmt: skip
        plan.row = row
        draft = plan.draft
        events.append(
            self._event(
                "drafted",
                "draft",
                row.id,
                report=report,
                details={
                    "inbound_id": inbound.id,
                    "findings_sha256": report.findings_hash,
                    "model_id": draft.model_id,
                    "adapter_id": draft.adapter_id,
                    "adapter_version": self.adapter_version,
                    "backend": draft.backend,
                    "prompt_tokens": draft.prompt_tokens,
                    "generated_tokens": draft.generated_tokens,
                    "latency_ms": row.latency_ms,
                    "finish_reason": draft.finish_reason,
                    "method": draft.method,
                    "candidates": draft.candidates,
                    "safety_flags": len(draft.safety_flags),
                    "supersedes": plan.superseded,
                },
            )
        )
        return False

    async def _publish(self, drafts: Sequence[DraftRecord], record: InboundRecord) -> int:
        if not drafts:
            return 0
        sent: list[tuple[DraftRecord, list[PublishedOutput]]] = []
        for row in drafts:
            outputs = await self.publisher.publish_preliminary(
                store.report_of(row), row.draft_text, store.provenance_of(row)
            )
            sent.append((row, outputs))
            for output in outputs:
                self.metrics.outputs.labels(output.format).inc()

        async def work(
            session: AsyncSession, writes: store.Writes
        ) -> tuple[None, list[AuditEvent]]:
            writes.mark_published([row.id for row, _ in sent])
            events = [
                self._event(
                    "published",
                    "draft",
                    row.id,
                    accession=row.accession,
                    patient_id=row.patient_id,
                    details={
                        "status": "preliminary",
                        "outputs": [
                            {
                                "format": o.format,
                                "topic": o.topic,
                                "partition": o.partition,
                                "offset": o.offset,
                                "message_id": o.message_id,
                            }
                            for o in outputs
                        ],
                    },
                )
                for row, outputs in sent
            ]
            return None, events

        await self.committer.run(work)
        if record.timestamp_ms is not None:
            self.metrics.end_to_end.observe(max(0.0, time.time() - record.timestamp_ms / 1000))
        return len(sent)

    async def _withdraw_superseded(
        self, plans: Sequence[_Plan], *, accessions: Sequence[str] = ()
    ) -> None:
        """Withdraw the published preliminaries of drafts a new report superseded (HL7
        OBX-11 ``W`` / FHIR ``entered-in-error``) and audit each ``withdrawn``.

        Drafts already withdrawn (a ``withdrawn`` event exists) are skipped, so a redelivery
        after a Kafka refusal -- which passes the ``accessions`` of its drafts -- sends what
        is still missing and nothing twice.
        """
        ids = sorted({i for p in plans if p.action == "draft" for i in p.superseded})
        if not ids and not accessions:
            return
        async with self._reads, self.database.sessions() as session, store.storage_errors():
            if accessions:
                found = await session.execute(
                    select(DraftRecord.id).where(
                        DraftRecord.accession.in_(list(accessions)),
                        DraftRecord.status == "superseded",
                        DraftRecord.published_at.is_not(None),
                    )
                )
                ids = sorted({*ids, *(str(i) for i in found.scalars().all())})
            withdrawn = await session.execute(
                select(AuditEntry.entity_id).where(
                    AuditEntry.action == "withdrawn", AuditEntry.entity_id.in_(ids)
                )
            )
            skip = set(withdrawn.scalars().all())
            rows = [await store.find_draft(session, draft_id=i) for i in ids if i not in skip]
        now = utcnow()
        done: list[tuple[DraftRecord, list[PublishedOutput]]] = []
        for row in rows:
            if row is None or row.published_at is None:
                continue
            outputs = await self.publisher.publish_withdrawal(
                store.report_of(row), row.draft_text, store.provenance_of(row),
                reason="superseded", withdrawn_at=now,
            )  # fmt: skip
            done.append((row, outputs))
        if not done:
            return

        def ids_of(outputs: list[PublishedOutput]) -> list[dict[str, Any]]:
            return [
                {"format": o.format, "topic": o.topic, "partition": o.partition,
                 "offset": o.offset, "message_id": o.message_id}
                for o in outputs
            ]  # fmt: skip

        async def work(
            _session: AsyncSession, _writes: store.Writes
        ) -> tuple[None, list[AuditEvent]]:
            return None, [
                self._event(
                    "withdrawn",
                    "draft",
                    row.id,
                    accession=row.accession,
                    patient_id=row.patient_id,
                    details={"reason": "superseded", "outputs": ids_of(outputs)},
                )
                for row, outputs in done
            ]

        await self.committer.run(work)

    async def _redelivered(
        self, existing: InboundMessage, record: InboundRecord, same_delivery: bool
    ) -> ProcessResult:
        """A message seen before: re-publish unacknowledged drafts, never draft again."""
        async with self._reads, self.database.reader() as session:
            drafts = await store.drafts_for_inbound(session, inbound_id=existing.id)
        unpublished = [d for d in drafts if d.published_at is None and d.status == "pending_review"]
        published = await self._publish(unpublished, record)
        await self._withdraw_superseded(
            [], accessions=sorted({d.accession for d in drafts if d.accession})
        )

        async def work(
            _session: AsyncSession, _writes: store.Writes
        ) -> tuple[None, list[AuditEvent]]:
            event = self._event(
                "duplicate",
                "message",
                existing.id,
                patient_id=next((d.patient_id for d in drafts if d.patient_id), None),
                details={
                    "reason": "redelivery" if same_delivery else "resent",
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "first_outcome": existing.outcome,
                    "republished": published,
                },
            )
            return None, [event]

        await self.committer.run(work)
        log.info(
            "message %s seen before (%s); republished %d draft(s)",
            existing.id, "redelivery" if same_delivery else "resent", published,
        )  # fmt: skip
        return ProcessResult("duplicate", published=published, redelivered=True)

    def _event(
        self,
        action: str,
        entity_type: str,
        entity_id: str,
        *,
        report: RadiologyReport | None = None,
        accession: str | None = None,
        patient_id: str | None = None,
        outcome: Literal["success", "failure", "denied"] = "success",
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        return AuditEvent(
            actor=self.actor,
            actor_role=_ROLE,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            accession=report.accession if report else accession,
            patient_id=report.patient_id if report else patient_id,
            outcome=outcome,
            details=details,
        )
