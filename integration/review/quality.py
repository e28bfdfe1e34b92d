"""Review quality metrics: how radiologists treat the AI drafts, per modality and adapter.

For each (modality, adapter) group of reviewed drafts (UI and RIS reviews alike):

``acceptance_rate``   share approved without changes (``approved``)
``edit_rate``         share approved after editing (``edited``)
``rejection_rate``    share rejected
``mean_edit_distance``  mean word-level Levenshtein distance over approved + edited drafts
``time_to_approve``   mean / median seconds from draft creation to approval (approved + edited)

:func:`summarise` is pure; :func:`load_quality` reads the drafts table; :class:`QualityCollector`
exposes a snapshot on ``/metrics`` (prometheus_client collectors are synchronous, so the
service refreshes the snapshot from the database in the background with :meth:`refresh`).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integration.errors import StorageError
from integration.pipeline.faults import db_errors
from integration.storage.db import DraftRecord

__all__ = [
    "QualityCollector",
    "QualityStats",
    "ReviewedDraft",
    "load_quality",
    "load_reviewed",
    "summarise",
]

log = logging.getLogger(__name__)

_REVIEWED = ("approved", "edited", "rejected")
_ALL = "all"


@dataclass(frozen=True)
class ReviewedDraft:
    """The fields of one reviewed draft that the metrics need."""

    modality: str | None
    adapter_id: str | None
    status: str
    edit_distance: int | None
    created_at: datetime
    reviewed_at: datetime | None


@dataclass(frozen=True)
class QualityStats:
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _group(modality: str, adapter: str, rows: Sequence[ReviewedDraft]) -> QualityStats:
    counts = {status: sum(1 for r in rows if r.status == status) for status in _REVIEWED}
    reviewed = sum(counts.values())
    signed = [r for r in rows if r.status in ("approved", "edited")]
    distances = [
        r.edit_distance if r.edit_distance is not None else 0
        for r in signed
        if r.edit_distance is not None or r.status == "approved"
    ]
    waits = [
        (r.reviewed_at - r.created_at).total_seconds() for r in signed if r.reviewed_at is not None
    ]
    return QualityStats(
        modality=modality,
        adapter=adapter,
        reviewed=reviewed,
        approved=counts["approved"],
        edited=counts["edited"],
        rejected=counts["rejected"],
        acceptance_rate=_ratio(counts["approved"], reviewed),
        edit_rate=_ratio(counts["edited"], reviewed),
        rejection_rate=_ratio(counts["rejected"], reviewed),
        mean_edit_distance=statistics.fmean(distances) if distances else None,
        mean_time_to_approve_s=statistics.fmean(waits) if waits else None,
        median_time_to_approve_s=statistics.median(waits) if waits else None,
    )


def summarise(rows: Iterable[ReviewedDraft], *, with_totals: bool = True) -> list[QualityStats]:
    """Per-(modality, adapter) statistics, sorted, plus an ``all``/``all`` total row."""
    reviewed = [r for r in rows if r.status in _REVIEWED]
    groups: dict[tuple[str, str], list[ReviewedDraft]] = defaultdict(list)
    for row in reviewed:
        groups[(row.modality or "unknown", row.adapter_id or "unknown")].append(row)
    stats = [_group(m, a, items) for (m, a), items in sorted(groups.items())]
    if with_totals and reviewed:
        stats.append(_group(_ALL, _ALL, reviewed))
    return stats


async def load_reviewed(
    session: AsyncSession, *, since: datetime | None = None
) -> list[ReviewedDraft]:
    """Reviewed drafts (optionally those reviewed since ``since``)."""
    query = select(
        DraftRecord.modality,
        DraftRecord.adapter_id,
        DraftRecord.status,
        DraftRecord.edit_distance,
        DraftRecord.created_at,
        DraftRecord.reviewed_at,
    ).where(DraftRecord.status.in_(_REVIEWED))
    if since is not None:
        query = query.where(DraftRecord.reviewed_at >= since)
    try:
        result = await session.execute(query)
    except SQLAlchemyError as exc:
        raise StorageError(f"quality query failed: {type(exc).__name__}") from exc
    return [ReviewedDraft(*row) for row in result.all()]


async def load_quality(
    session: AsyncSession, *, since: datetime | None = None
) -> list[QualityStats]:
    return summarise(await load_reviewed(session, since=since))


class QualityCollector(Collector):
    """A prometheus_client collector serving the last snapshot of :func:`load_quality`.

    Register it on the service registry, then keep it fresh: ``await collector.refresh(...)``
    after startup and on an interval (:meth:`run`), or after each review decision.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: list[QualityStats] = []
        self._refreshed = False

    @property
    def stats(self) -> list[QualityStats]:
        with self._lock:
            return list(self._stats)

    def update(self, stats: Sequence[QualityStats]) -> None:
        with self._lock:
            self._stats = list(stats)
            self._refreshed = True

    async def refresh(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        async with db_errors(), sessions() as session:  # connect-time errors too
            self.update(await load_quality(session))

    async def run(
        self, sessions: async_sessionmaker[AsyncSession], *, interval_s: float = 30.0
    ) -> None:
        """Refresh forever (cancel the task to stop); database errors are logged and retried."""
        while True:
            try:
                await self.refresh(sessions)
            except StorageError as exc:
                log.warning("quality metrics refresh failed: %s", exc)
            await asyncio.sleep(interval_s)

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        return iter(self._families())

    def _families(self) -> list[Metric]:
        labels = ["modality", "adapter"]
        decisions = GaugeMetricFamily(
            "radgpt_review_decisions",
            "Reviewed AI drafts by decision (approved / edited / rejected)",
            labels=[*labels, "decision"],
        )
        acceptance = GaugeMetricFamily(
            "radgpt_review_acceptance_ratio", "Share of drafts approved unchanged", labels=labels
        )
        edit = GaugeMetricFamily(
            "radgpt_review_edit_ratio", "Share of drafts approved after editing", labels=labels
        )
        rejection = GaugeMetricFamily(
            "radgpt_review_rejection_ratio", "Share of drafts rejected", labels=labels
        )
        distance = GaugeMetricFamily(
            "radgpt_review_edit_distance_words_mean",
            "Mean word-level edit distance of approved drafts",
            labels=labels,
        )
        wait = GaugeMetricFamily(
            "radgpt_review_time_to_approve_seconds_mean",
            "Mean time from draft to approval",
            labels=labels,
        )
        with self._lock:
            snapshot = list(self._stats)
        for s in snapshot:
            key = [s.modality, s.adapter]
            for decision in _REVIEWED:
                decisions.add_metric([*key, decision], getattr(s, decision))
            for family, value in (
                (acceptance, s.acceptance_rate),
                (edit, s.edit_rate),
                (rejection, s.rejection_rate),
                (distance, s.mean_edit_distance),
                (wait, s.mean_time_to_approve_s),
            ):
                if value is not None:
                    family.add_metric(key, value)
        return [decisions, acceptance, edit, rejection, distance, wait]
