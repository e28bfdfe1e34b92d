"""The review and audit HTTP API (JSON under ``/api``) and the web pages, as one APIRouter.

``integration.app.service`` includes :func:`build_review_router`; every ``/api`` route needs a
bearer token (see :mod:`integration.review.auth`):

====================================  =====================  ======================
route                                 role                   audited as
====================================  =====================  ======================
``GET  /api/me``                      any valid token        (not audited)
``GET  /api/drafts``                  radiologist, admin     ``listed``
``GET  /api/drafts/{id}``             radiologist, admin     ``viewed``
``POST /api/drafts/{id}/approve``     radiologist, admin     ``approved`` / ``edited``
``POST /api/drafts/{id}/reject``      radiologist, admin     ``rejected`` (+ ``withdrawn``)
``POST /api/drafts/{id}/communications`` radiologist, admin   ``communicated``
``GET  /api/stats``                   any role               (not audited: aggregates)
``POST /api/audit/search``            compliance, admin      ``queried``
``POST /api/audit/export``            compliance, admin      ``exported``
``GET  /api/audit``, ``/export``        compliance, admin      (deprecated: filters in the URL)
``GET  /api/audit/verify``            compliance, admin      ``verified``
====================================  =====================  ======================

A missing or invalid token answers 401 with ``WWW-Authenticate: Bearer`` (audited
``unauthenticated``), a valid token without the role 403 (audited ``denied``).  The pages
(``/``, ``/drafts/{id}``, ``/audit``) are static shells: they ask for the token once, keep it
in ``sessionStorage`` and call this API, so the same roles apply.
"""

# No ``from __future__ import annotations``: FastAPI resolves the route signatures, which use
# dependency aliases local to build_review_router.
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, cast

from fastapi import (
    APIRouter,
    Body,
    Depends,
    FastAPI,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
)
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integration.audit.export import AuditRow, ExportFormat, to_csv, to_fhir_bundle
from integration.audit.log import (
    AuditEvent,
    AuditFilters,
    PageRequest,
    append_draft_event,
    append_event,
    append_events,
    record_verification,
    verify_chain,
)
from integration.audit.service import export_events, search_events
from integration.errors import (
    AuthError,
    ForbiddenError,
    PublishError,
    RadgptError,
    RenderError,
    StorageError,
)
from integration.pipeline.faults import db_errors
from integration.report.model import Priority, RadiologyReport
from integration.report.vocabulary import DraftStatus
from integration.review.auth import (
    Permission,
    Principal,
    TokenVerifier,
    authorize,
    bearer_token,
)
from integration.review.quality import QualityCollector, load_quality
from integration.review.web.pages import AI_DRAFT_LABEL, add_page_routes
from integration.review.web.rate_limit import UnauthenticatedLimiter
from integration.review.workflow import (
    ATTESTATION,
    CommunicationMethod,
    DraftFilters,
    FinalPublisher,
    FlagFilter,
    RejectCategory,
    Reviewer,
    Withdrawer,
    approve_draft,
    draft_history,
    flag_evidence,
    get_draft,
    list_drafts,
    prior_drafts,
    record_communication,
    reject_draft,
    text_sha256,
)
from integration.storage.db import AuditEntry, DraftRecord, utcnow
from integration.storage.repository import report_of

__all__ = [
    "AI_DRAFT_LABEL",
    "ReviewContext",
    "build_review_router",
    "create_review_app",
]

log = logging.getLogger(__name__)

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass
class ReviewContext:
    """What the review API needs; built by the service (or a test) at startup."""

    sessions: async_sessionmaker[AsyncSession]
    verifier: TokenVerifier
    publisher: FinalPublisher | None
    clock: Callable[[], datetime] = utcnow
    quality: QualityCollector | None = None
    site: str = "radgpt"
    # Per-client limit on unauthenticated requests and their audit rows (None: no limit).
    limiter: UnauthenticatedLimiter | None = None
    withdrawer: Withdrawer | None = None

    def __post_init__(self) -> None:
        # The Kafka publisher also withdraws; a bare FinalPublisher (tests) does not.
        if self.withdrawer is None and hasattr(self.publisher, "publish_withdrawal"):
            self.withdrawer = cast(Withdrawer, self.publisher)


# --- wire models --------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class EvidenceSpan(BaseModel):
    text: Literal["findings", "draft"]
    start: int
    end: int


class SafetyFlagOut(_Out):
    index: int = 0
    kind: str
    severity: str = "warning"
    phrase: str | None = None
    detail: str | None = None
    evidence: list[EvidenceSpan] = Field(default_factory=list)


class DraftSummary(_Out):
    id: str
    label: str = Field(description="AI_DRAFT_LABEL while pending; the review status otherwise")
    status: str
    accession: str | None
    patient_id: str | None
    modality: str | None
    procedure_code: str | None
    procedure_display: str | None
    patient_name: str | None = None
    priority: str | None = None
    adapter_id: str | None
    created_at: datetime
    reviewed_at: datetime | None
    reviewer: str | None
    flag_count: int
    critical_flags: int
    version: int


class DraftPage(BaseModel):
    items: list[DraftSummary]
    total: int
    page: int
    page_size: int


class SourceIds(BaseModel):
    inbound_id: str
    report_key: str
    source_format: str | None = None
    source_system: str | None = None
    message_id: str | None = None


class PatientOut(BaseModel):
    name: str | None
    birth_date: date | None
    age_years: int | None
    sex: str | None


class HistoryItem(BaseModel):
    at: datetime
    actor: str
    action: str
    outcome: str
    detail: str | None = None


class PriorReport(BaseModel):
    id: str
    accession: str | None
    procedure: str | None
    created_at: datetime
    status: str
    impression: str
    reviewed: bool


class CommunicationOut(BaseModel):
    at: datetime
    recipient: str
    method: str
    communicated_at: str
    by: str


class DraftDetail(DraftSummary):
    findings: str
    indication: str | None = None
    patient: PatientOut | None = None
    ordering_provider: str | None = None
    study_time: datetime | None = None
    draft_sha256: str
    attestation: str = ATTESTATION
    history: list[HistoryItem] = Field(default_factory=list)
    prior_reports: list[PriorReport] = Field(default_factory=list)
    communications: list[CommunicationOut] = Field(default_factory=list)
    draft_text: str
    final_text: str | None
    edit_distance: int | None
    reject_reason: str | None
    review_source: str | None
    safety_flags: list[SafetyFlagOut]
    model_id: str
    adapter_version: str | None
    finish_reason: str | None
    # "model" or "extractive-fallback": no model candidate passed the consistency checks and
    # the draft lists the report's own positive findings (inference.drafting.drafter).
    method: str = "model"
    published_at: datetime | None
    source: SourceIds


class ApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    impression: str | None = Field(
        default=None,
        max_length=20_000,
        description="The edited impression; omit to approve the draft as is",
    )
    expected_version: int | None = Field(
        default=None, description="Refuse (409) if the draft changed since this version"
    )
    acknowledged_flags: list[int] = Field(
        default_factory=list,
        max_length=100,
        description="Positions of the critical safety flags the reviewer acknowledged",
    )
    attested: bool = Field(default=False, description="The reviewer confirmed the attestation")
    draft_sha256: str | None = Field(
        default=None, max_length=64, description="SHA-256 of the AI draft the reviewer saw"
    )
    impression_sha256: str | None = Field(
        default=None,
        max_length=64,
        description="SHA-256 of the (whitespace-normalised) text shown when approving",
    )


class CommunicationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipient: str = Field(min_length=1, max_length=200, description="to whom (name, role)")
    method: CommunicationMethod
    communicated_at: datetime = Field(description="when (ISO 8601 with zone)")


class AuditSearch(BaseModel):
    """Audit filters in a request body, so patient ids never appear in URLs or proxy logs."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = Field(default=None, max_length=255)
    action: str | None = Field(default=None, max_length=32)
    accession: str | None = Field(default=None, max_length=128)
    patient_id: str | None = Field(default=None, max_length=128)
    outcome: Literal["success", "failure", "denied"] | None = None
    entity_id: str | None = Field(default=None, max_length=600)
    page: int = Field(default=1, ge=1)
    page_size: int = Field(default=50, ge=1, le=500)
    format: ExportFormat = "csv"
    oldest_first: bool | None = Field(
        default=None, description="Default: oldest first for a patient search, else newest"
    )

    def filters(self) -> AuditFilters:
        return AuditFilters(
            actor=self.actor or None,
            action=self.action or None,
            accession=self.accession or None,
            patient_id=self.patient_id or None,
            outcome=self.outcome,
            entity_id=self.entity_id or None,
            since=_aware(self.since),
            until=_aware(self.until),
        )


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2_000)
    category: RejectCategory = "other"
    expected_version: int | None = None


class ReviewResult(BaseModel):
    id: str
    status: str
    final_text: str | None
    edit_distance: int | None
    reviewer: str
    reviewed_at: datetime
    published: bool
    version: int


class AuditPageOut(BaseModel):
    items: list[AuditRow]
    total: int
    page: int
    page_size: int


class ChainReportOut(BaseModel):
    ok: bool
    checked: int
    head_hash: str
    first_broken_id: int | None
    reason: str | None


class MeOut(BaseModel):
    subject: str
    name: str
    roles: list[str]
    permissions: list[str]


class QualityOut(BaseModel):
    modality: str
    adapter: str
    reviewed: int
    approved: int
    edited: int
    rejected: int
    acceptance_rate: float | None
    edit_rate: float | None
    rejection_rate: float | None
    mean_edit_distance: float | None
    mean_time_to_approve_s: float | None
    median_time_to_approve_s: float | None


# --- conversions --------------------------------------------------------------------------


def _flags(
    raw: list[Any] | None, findings: str | None = None, draft_text: str | None = None
) -> list[SafetyFlagOut]:
    flags: list[SafetyFlagOut] = []
    for index, item in enumerate(raw or []):
        if isinstance(item, dict):
            phrase = item.get("phrase")
            evidence = [
                EvidenceSpan(text=name, start=start, end=end)
                for name, text in (("findings", findings), ("draft", draft_text))
                if text
                for start, end in flag_evidence(text, phrase)
            ]
            flags.append(
                SafetyFlagOut(
                    index=index,
                    kind=str(item.get("kind") or item.get("code") or "flag"),
                    severity=str(item.get("severity") or "warning"),
                    phrase=phrase,
                    detail=item.get("detail") or item.get("message"),
                    evidence=evidence,
                )
            )
        else:
            flags.append(SafetyFlagOut(index=index, kind=str(item)))
    return flags


def _report_context(draft: DraftRecord) -> RadiologyReport | None:
    try:
        return report_of(draft)
    except ValueError:  # a row written by an older version: show what the columns hold
        return None


def _summary_fields(draft: DraftRecord) -> dict[str, Any]:
    flags = _flags(draft.safety_flags)
    report = draft.report_json or {}
    patient = report.get("patient") or {}
    family, given = patient.get("family"), patient.get("given")
    name = ", ".join(p for p in ((family or "").upper(), given) if p) or None
    return {
        "id": draft.id,
        "label": AI_DRAFT_LABEL if draft.status == "pending_review" else draft.status,
        "status": draft.status,
        "accession": draft.accession,
        "patient_id": draft.patient_id,
        "modality": draft.modality,
        "procedure_code": draft.procedure_code,
        "procedure_display": draft.procedure_display,
        "patient_name": name,
        "priority": report.get("priority"),
        "adapter_id": draft.adapter_id,
        "created_at": draft.created_at,
        "reviewed_at": draft.reviewed_at,
        "reviewer": draft.reviewer,
        "flag_count": len(flags),
        "critical_flags": sum(1 for f in flags if f.severity == "critical"),
        "version": draft.version,
    }


def _age(born: date | None, at: datetime | None) -> int | None:
    if born is None:
        return None
    on = (at or utcnow()).date()
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _history_detail(details: dict[str, Any]) -> str | None:
    parts = []
    for key in ("category", "reason", "decision", "status", "edit_distance", "method"):
        if details.get(key) not in (None, ""):
            parts.append(f"{key.replace('_', ' ')}: {details[key]}")
    if details.get("outputs"):
        parts.append(f"{len(details['outputs'])} message(s) sent")
    return "; ".join(parts) or None


def _detail(
    draft: DraftRecord,
    history: list[AuditEntry] | None = None,
    priors: list[DraftRecord] | None = None,
) -> DraftDetail:
    report = draft.report_json or {}
    parsed = _report_context(draft)
    patient = parsed.patient if parsed is not None else None
    study_time = parsed.observed_at if parsed is not None else None
    communications = [
        CommunicationOut(
            at=e.recorded_at,
            recipient=str((e.details or {}).get("recipient")),
            method=str((e.details or {}).get("method")),
            communicated_at=str((e.details or {}).get("communicated_at")),
            by=e.actor,
        )
        for e in history or []
        if e.action == "communicated" and e.outcome == "success"
    ]
    return DraftDetail(
        **_summary_fields(draft),
        findings=draft.findings,
        indication=report.get("indication"),
        patient=PatientOut(
            name=patient.display or None,
            birth_date=patient.birth_date,
            age_years=_age(patient.birth_date, study_time),
            sex=patient.sex,
        )
        if patient is not None
        else None,
        ordering_provider=(
            parsed.ordering_provider.display
            if parsed is not None and parsed.ordering_provider
            else None
        ),
        study_time=study_time,
        draft_sha256=text_sha256(draft.draft_text),
        history=[
            HistoryItem(
                at=e.recorded_at,
                actor=e.actor,
                action=e.action,
                outcome=e.outcome,
                detail=_history_detail(e.details or {}),
            )
            for e in history or []
        ],
        prior_reports=[
            PriorReport(
                id=p.id,
                accession=p.accession,
                procedure=p.procedure_display or p.procedure_code,
                created_at=p.created_at,
                status=p.status,
                impression=p.final_text or p.draft_text,
                reviewed=p.final_text is not None,
            )
            for p in priors or []
        ],
        communications=communications,
        draft_text=draft.draft_text,
        final_text=draft.final_text,
        edit_distance=draft.edit_distance,
        reject_reason=draft.reject_reason,
        review_source=draft.review_source,
        safety_flags=_flags(draft.safety_flags, draft.findings, draft.draft_text),
        model_id=draft.model_id,
        adapter_version=draft.adapter_version,
        finish_reason=draft.finish_reason,
        method=draft.draft_method,
        published_at=draft.published_at,
        source=SourceIds(
            inbound_id=draft.inbound_id,
            report_key=draft.report_key,
            source_format=report.get("source_format"),
            source_system=report.get("source_system"),
            message_id=report.get("message_id"),
        ),
    )


# Refusals of a review that are audited as failed reviews (a lost race, a publish failure,
# an approval the server rejects).
_AUDITED_APPROVE_FAILURES = frozenset({409, 422, 503})
_AUDITED_REJECT_FAILURES = frozenset({409, 503})


@contextlib.contextmanager
def _http_errors() -> Iterator[None]:
    """Translate domain errors into HTTP answers; the status is the error's own
    ``http_status`` (the one table: :mod:`inference.errors`, :mod:`integration.errors`).
    Messages carry ids only, never PHI."""
    try:
        yield
    except PublishError as exc:
        raise HTTPException(
            exc.http_status,
            f"the final report could not be published, nothing was changed: {exc}",
        ) from exc
    except RenderError as exc:
        raise HTTPException(exc.http_status, f"the final report cannot be written: {exc}") from exc
    except RadgptError as exc:
        raise HTTPException(exc.http_status, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


def _endpoint(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    return f"{request.method} {path}"


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- the router ---------------------------------------------------------------------------


def build_review_router(context: ReviewContext) -> APIRouter:
    """The ``/api`` review/audit routes and the pages, bound to ``context``."""
    router = APIRouter()

    @contextlib.asynccontextmanager
    async def session() -> AsyncIterator[AsyncSession]:
        # Connect-time and close-time database errors too become StorageError (503).
        async with db_errors(), context.sessions() as s:
            yield s

    async def audit_security(
        request: Request,
        *,
        actor: str,
        actor_role: str,
        action: Literal["unauthenticated", "denied"],
        reason: str,
        summary: dict[str, Any] | None = None,
    ) -> None:
        try:
            async with session() as s:
                await append_event(
                    s,
                    actor=actor,
                    actor_role=actor_role,
                    action=action,
                    entity_type="api",
                    entity_id=_endpoint(request),
                    outcome="failure" if action == "unauthenticated" else "denied",
                    details={
                        "reason": reason[:200],
                        "path": request.url.path[:300],
                        "client": _client(request),
                        **({"summary": summary} if summary else {}),
                    },
                )
                await s.commit()
        except Exception:  # the refusal stands even if the database is down
            log.exception("could not audit a refused request")

    async def audit_unauthenticated(request: Request, exc: AuthError) -> None:
        """Audit a 401 -- within the client's budget -- or answer 429 beyond its rate."""
        decision = context.limiter.hit(_client(request)) if context.limiter else None

        async def row(reason: str, summary: dict[str, Any] | None = None) -> None:
            await audit_security(
                request, actor="anonymous", actor_role="none", action="unauthenticated",
                reason=reason, summary=summary,
            )  # fmt: skip

        if decision is None:
            await row(str(exc))
            return
        if decision.suppressed_before:
            await row(
                "unauthenticated requests of the last minute",
                {"not_audited_singly": decision.suppressed_before, "window_s": 60},
            )
        if decision.audit:
            await row(str(exc))
        elif decision.summary_start:
            await row(
                "unauthenticated request flood: further refusals this minute are counted only",
                {"not_audited_singly": "until the minute ends", "window_s": 60},
            )
        if not decision.allowed:
            retry_after = str(max(1, math.ceil(decision.retry_after_s)))
            raise HTTPException(
                429,
                "too many unauthenticated requests from this client",
                headers={"Retry-After": retry_after, **_NO_STORE},
            ) from exc

    def require(permission: Permission | None) -> Callable[[Request], Any]:
        async def dependency(request: Request) -> Principal:
            try:
                principal = await context.verifier.verify(
                    bearer_token(request.headers.get("authorization"))
                )
            except AuthError as exc:
                await audit_unauthenticated(request, exc)
                challenge = 'Bearer realm="radgpt"'
                if request.headers.get("authorization"):
                    challenge += ', error="invalid_token"'
                raise HTTPException(
                    401, str(exc), headers={"WWW-Authenticate": challenge, **_NO_STORE}
                ) from exc
            try:
                if permission is None:
                    if not principal.roles:
                        raise ForbiddenError("the token holds no radgpt role")
                else:
                    authorize(principal, permission)
            except ForbiddenError as exc:
                await audit_security(
                    request,
                    actor=principal.subject,
                    actor_role=principal.primary_role,
                    action="denied",
                    reason=str(exc),
                )
                raise HTTPException(
                    403,
                    str(exc),
                    headers={
                        "WWW-Authenticate": 'Bearer realm="radgpt", error="insufficient_scope"'
                    },
                ) from exc
            return principal

        return dependency

    Reviewing = Annotated[Principal, Depends(require(Permission.REVIEW))]
    Auditing = Annotated[Principal, Depends(require(Permission.AUDIT))]
    AnyRole = Annotated[Principal, Depends(require(None))]
    DraftId = Annotated[str, Path(min_length=1, max_length=64)]

    def reviewer_of(principal: Principal) -> Reviewer:
        return Reviewer(
            subject=principal.subject,
            role=principal.primary_role,
            given_name=principal.given_name,
            family_name=principal.family_name
            or (principal.name if not principal.given_name else None),
        )

    @router.get("/api/me", response_model=MeOut, tags=["review"])
    async def me(principal: AnyRole, response: Response) -> MeOut:
        response.headers.update(_NO_STORE)
        return MeOut(
            subject=principal.subject,
            name=principal.display_name,
            roles=sorted(principal.roles),
            permissions=sorted(principal.permissions),
        )

    @router.get("/api/drafts", response_model=DraftPage, tags=["review"])
    async def drafts(
        principal: Reviewing,
        response: Response,
        status: Annotated[
            DraftStatus | None,
            Query(),
        ] = None,
        modality: Annotated[str | None, Query(max_length=32)] = None,
        accession: Annotated[str | None, Query(max_length=128)] = None,
        max_age_hours: Annotated[float | None, Query(gt=0, le=24 * 365)] = None,
        priority: Annotated[Priority | None, Query()] = None,
        flag: Annotated[FlagFilter | None, Query()] = None,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=200)] = 25,
    ) -> DraftPage:
        filters = DraftFilters(
            status=status,
            modality=modality,
            accession=accession,
            max_age_hours=max_age_hours,
            priority=priority,
            flag=flag,
        )
        with _http_errors():
            async with session() as s:
                result = await list_drafts(
                    s, filters, page=page, page_size=page_size, now=context.clock()
                )
                await append_events(
                    s,
                    listed_events(
                        principal,
                        result.items,
                        filters={
                            k: v
                            for k, v in {
                                "status": status,
                                "modality": modality,
                                "accession": accession,
                                "max_age_hours": max_age_hours,
                                "priority": priority,
                                "flag": flag,
                            }.items()
                            if v is not None
                        },
                        page=page,
                        page_size=page_size,
                        total=result.total,
                    ),
                )
                await s.commit()
        response.headers.update(_NO_STORE)
        return DraftPage(
            items=[DraftSummary(**_summary_fields(d)) for d in result.items],
            total=result.total,
            page=result.page,
            page_size=result.page_size,
        )

    @router.get("/api/drafts/{draft_id}", response_model=DraftDetail, tags=["review"])
    async def draft(principal: Reviewing, draft_id: DraftId, response: Response) -> DraftDetail:
        with _http_errors():
            async with session() as s:
                record = await get_draft(s, draft_id)
                priors = await prior_drafts(s, record)
                detail = _detail(record, await draft_history(s, record.id), priors)
                await append_draft_event(
                    s,
                    record,
                    actor=principal.subject,
                    actor_role=principal.primary_role,
                    action="viewed",
                    details={
                        "status": record.status,
                        "version": record.version,
                        "prior_draft_ids": [p.id for p in priors],
                    },
                )
                await s.commit()
        response.headers.update(_NO_STORE)
        return detail

    async def audit_failed_review(
        principal: Principal, draft_id: str, action: str, reason: str
    ) -> None:
        try:
            async with session() as s:
                await append_event(
                    s,
                    actor=principal.subject,
                    actor_role=principal.primary_role,
                    action=action,
                    entity_type="draft",
                    entity_id=draft_id,
                    outcome="failure",
                    details={"reason": reason[:200]},
                )
                await s.commit()
        except Exception:
            log.exception("could not audit a failed review of draft %s", draft_id)

    async def review(
        principal: Principal,
        draft_id: str,
        action: str,
        audited: frozenset[int],
        decide: Callable[[AsyncSession], Awaitable[Any]],
    ) -> ReviewResult:
        """Run one review decision in its own transaction; a refusal with a status in
        ``audited`` is recorded as a failed review before the error is answered."""
        try:
            with _http_errors():
                async with session() as s:
                    outcome = await decide(s)
        except HTTPException as exc:
            if exc.status_code in audited:
                await audit_failed_review(principal, draft_id, action, str(exc.detail))
            raise
        await _refresh_quality(context)
        return ReviewResult(id=outcome.draft_id, **_outcome_fields(outcome))

    @router.post(
        "/api/drafts/{draft_id}/approve",
        response_model=ReviewResult,
        tags=["review"],
        responses={404: {}, 409: {"description": "already reviewed"}, 503: {}},
    )
    async def approve(
        principal: Reviewing, draft_id: DraftId, body: ApproveRequest | None = None
    ) -> ReviewResult:
        request = body or ApproveRequest()
        return await review(
            principal,
            draft_id,
            "approved",
            _AUDITED_APPROVE_FAILURES,
            lambda s: approve_draft(
                s,
                draft_id=draft_id,
                reviewer=reviewer_of(principal),
                impression=request.impression,
                expected_version=request.expected_version,
                publisher=context.publisher,
                clock=context.clock,
                acknowledged_flags=request.acknowledged_flags,
                attested=request.attested,
                draft_sha256=request.draft_sha256,
                impression_sha256=request.impression_sha256,
            ),
        )

    @router.post(
        "/api/drafts/{draft_id}/reject",
        response_model=ReviewResult,
        tags=["review"],
        responses={404: {}, 409: {"description": "already reviewed"}},
    )
    async def reject(principal: Reviewing, draft_id: DraftId, body: RejectRequest) -> ReviewResult:
        return await review(
            principal,
            draft_id,
            "rejected",
            _AUDITED_REJECT_FAILURES,
            lambda s: reject_draft(
                s,
                draft_id=draft_id,
                reviewer=reviewer_of(principal),
                reason=body.reason,
                category=body.category,
                expected_version=body.expected_version,
                clock=context.clock,
                withdrawer=context.withdrawer,
            ),
        )

    @router.post(
        "/api/drafts/{draft_id}/communications",
        response_model=CommunicationOut,
        tags=["review"],
        responses={404: {}, 409: {"description": "the draft is no longer pending"}},
    )
    async def communicate(
        principal: Reviewing, draft_id: DraftId, body: CommunicationRequest
    ) -> CommunicationOut:
        with _http_errors():
            async with session() as s:
                done = await record_communication(
                    s,
                    draft_id=draft_id,
                    reviewer=reviewer_of(principal),
                    recipient=body.recipient,
                    method=body.method,
                    communicated_at=_aware(body.communicated_at) or context.clock(),
                )
        return CommunicationOut(
            at=context.clock(),
            recipient=done.recipient,
            method=done.method,
            communicated_at=done.communicated_at.isoformat(),
            by=done.by,
        )

    @router.get("/api/stats", response_model=list[QualityOut], tags=["review"])
    async def stats(principal: AnyRole) -> list[QualityOut]:
        with _http_errors():
            async with session() as s:
                rows = await load_quality(s)
        if context.quality is not None:
            context.quality.update(rows)  # /metrics shows what was just computed
        return [QualityOut(**r.as_dict()) for r in rows]

    def audit_filters(
        since: Annotated[datetime | None, Query(description="recorded at or after")] = None,
        until: Annotated[datetime | None, Query(description="recorded before")] = None,
        actor: Annotated[str | None, Query(max_length=255)] = None,
        action: Annotated[str | None, Query(max_length=32)] = None,
        accession: Annotated[str | None, Query(max_length=128)] = None,
        patient_id: Annotated[str | None, Query(max_length=128)] = None,
        outcome: Annotated[Literal["success", "failure", "denied"] | None, Query()] = None,
        entity_id: Annotated[str | None, Query(max_length=600)] = None,
    ) -> AuditFilters:
        return AuditFilters(
            actor=actor or None,
            action=action or None,
            accession=accession or None,
            patient_id=patient_id or None,
            outcome=outcome,
            entity_id=entity_id or None,
            since=_aware(since),
            until=_aware(until),
        )

    Filters = Annotated[AuditFilters, Depends(audit_filters)]

    @router.get("/api/audit", response_model=AuditPageOut, tags=["audit"])
    async def audit(
        principal: Auditing,
        filters: Filters,
        response: Response,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=500)] = 50,
        newest_first: bool = True,
    ) -> AuditPageOut:
        with _http_errors():
            async with session() as s:
                result = await search_events(
                    s,
                    filters,
                    PageRequest(
                        limit=page_size, offset=(page - 1) * page_size, newest_first=newest_first
                    ),
                    actor=principal.subject,
                    actor_role=principal.primary_role,
                )
                items = [AuditRow.model_validate(e) for e in result.items]
                await s.commit()
        response.headers.update(_NO_STORE)
        return AuditPageOut(items=items, total=result.total, page=page, page_size=page_size)

    @router.get(
        "/api/audit/export",
        tags=["audit"],
        responses={
            200: {
                "content": {"text/csv": {}, "application/fhir+json": {}},
                "description": "CSV, or a FHIR R4 Bundle of AuditEvent resources (IHE BALP)",
            }
        },
    )
    async def export(
        principal: Auditing,
        filters: Filters,
        format: Annotated[ExportFormat, Query()] = "csv",
    ) -> Response:
        with _http_errors():
            async with session() as s:
                rows = await export_events(
                    s,
                    filters,
                    format=format,
                    actor=principal.subject,
                    actor_role=principal.primary_role,
                )
                await s.commit()
        stamp = context.clock().strftime("%Y%m%dT%H%M%SZ")
        if format == "csv":
            body, media, suffix = to_csv(rows), "text/csv; charset=utf-8", "csv"
        else:
            import json

            bundle = to_fhir_bundle(rows, site=context.site, now=context.clock())
            body = json.dumps(bundle, ensure_ascii=False, indent=1)
            media, suffix = "application/fhir+json", "json"
        return Response(
            body,
            media_type=media,
            headers={
                "Content-Disposition": f'attachment; filename="radgpt-audit-{stamp}.{suffix}"',
                **_NO_STORE,
            },
        )

    @router.post("/api/audit/search", response_model=AuditPageOut, tags=["audit"])
    async def audit_search(
        principal: Auditing, response: Response, body: Annotated[AuditSearch, Body()]
    ) -> AuditPageOut:
        """Search the audit log with the filters in the body (the pages use this)."""
        oldest_first = body.oldest_first
        if oldest_first is None:
            oldest_first = body.patient_id is not None  # a patient's accounting: in order
        return await audit(
            principal,
            body.filters(),
            response,
            page=body.page,
            page_size=body.page_size,
            newest_first=not oldest_first,
        )

    @router.post(
        "/api/audit/export",
        tags=["audit"],
        responses={200: {"content": {"text/csv": {}, "application/fhir+json": {}}}},
    )
    async def export_post(principal: Auditing, body: Annotated[AuditSearch, Body()]) -> Response:
        """Export the events matching the filters in the body (CSV or FHIR)."""
        return await export(principal, body.filters(), format=body.format)

    @router.get("/api/audit/verify", response_model=ChainReportOut, tags=["audit"])
    async def verify(principal: Auditing) -> ChainReportOut:
        with _http_errors():
            async with session() as s:
                report = await verify_chain(s)
            async with session() as s:
                await record_verification(
                    s, report, actor=principal.subject, actor_role=principal.primary_role
                )
                await s.commit()
        return ChainReportOut(
            ok=report.ok,
            checked=report.checked,
            head_hash=report.head_hash,
            first_broken_id=report.first_broken_id,
            reason=report.reason,
        )

    add_page_routes(router)
    return router


def listed_events(
    principal: Principal,
    items: Any,
    *,
    filters: dict[str, Any],
    page: int,
    page_size: int,
    total: int,
) -> list[AuditEvent]:
    """The ``listed`` events of one queue page: one per patient shown (with that patient's
    draft ids), so a query by patient finds every listing of their data; one without a
    patient when the page shows none."""
    by_patient: dict[str | None, list[Any]] = {}
    for draft in items:
        by_patient.setdefault(draft.patient_id, []).append(draft)
    groups = list(by_patient.items()) or [(None, [])]
    return [
        AuditEvent(
            actor=principal.subject,
            actor_role=principal.primary_role,
            action="listed",
            entity_type="draft",
            entity_id="drafts",
            accession=drafts[0].accession if len(drafts) == 1 else None,
            patient_id=patient_id,
            details={
                "filters": filters,
                "page": page,
                "page_size": page_size,
                "total": total,
                "draft_ids": [d.id for d in drafts],
                "patients_on_page": len(by_patient),
            },
        )
        for patient_id, drafts in groups
    ]


def _outcome_fields(outcome: Any) -> dict[str, Any]:
    return {
        "status": outcome.status,
        "final_text": outcome.final_text,
        "edit_distance": outcome.edit_distance,
        "reviewer": outcome.reviewer,
        "reviewed_at": outcome.reviewed_at,
        "published": outcome.published,
        "version": outcome.version,
    }


async def _refresh_quality(context: ReviewContext) -> None:
    if context.quality is None:
        return
    try:
        await context.quality.refresh(context.sessions)
    except StorageError as exc:
        log.warning("quality metrics refresh failed: %s", exc)


def create_review_app(context: ReviewContext, *, title: str = "radgpt review") -> FastAPI:
    """A FastAPI app serving only the review API and pages (the service adds the rest)."""
    app = FastAPI(title=title, version=_version())
    app.include_router(build_review_router(context))
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("radgpt")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"
