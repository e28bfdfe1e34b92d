"""Review quality metrics (integration.review.quality): pure summary, DB loading,
Prometheus output."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from review_helpers import insert_pending

from integration.review.quality import (
    QualityCollector,
    ReviewedDraft,
    load_quality,
    summarise,
)
from integration.review.workflow import Reviewer, approve_draft, reject_draft
from integration.storage.db import Database

T0 = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)


def _r(
    modality: str, adapter: str, status: str, distance: int | None, minutes: float
) -> ReviewedDraft:
    return ReviewedDraft(modality, adapter, status, distance, T0, T0 + timedelta(minutes=minutes))


def test_summarise_per_group_and_total() -> None:
    rows = [
        _r("CT", "a1", "approved", 0, 10),
        _r("CT", "a1", "edited", 4, 20),
        _r("CT", "a1", "rejected", None, 5),
        _r("CT", "a1", "edited", 2, 30),
        _r("CR", "a2", "approved", 0, 2),
        _r("CR", "a2", "pending_review", None, 0),  # not reviewed: ignored
    ]
    stats = {(s.modality, s.adapter): s for s in summarise(rows)}
    ct = stats[("CT", "a1")]
    assert (ct.reviewed, ct.approved, ct.edited, ct.rejected) == (4, 1, 2, 1)
    assert ct.acceptance_rate == pytest.approx(0.25)
    assert ct.edit_rate == pytest.approx(0.5)
    assert ct.rejection_rate == pytest.approx(0.25)
    assert ct.mean_edit_distance == pytest.approx(2.0)  # (0 + 4 + 2) / 3
    assert ct.mean_time_to_approve_s == pytest.approx(20 * 60)  # 10, 20, 30 min
    assert ct.median_time_to_approve_s == pytest.approx(20 * 60)
    total = stats[("all", "all")]
    assert total.reviewed == 5 and total.acceptance_rate == pytest.approx(0.4)
    assert list(stats)[-1] == ("all", "all")


def test_summarise_edge_cases() -> None:
    assert summarise([]) == []
    only_rejected = summarise([_r("MR", "a", "rejected", None, 1)], with_totals=False)
    assert len(only_rejected) == 1
    s = only_rejected[0]
    assert s.acceptance_rate == 0.0 and s.mean_edit_distance is None
    assert s.mean_time_to_approve_s is None
    unknown = summarise([ReviewedDraft(None, None, "approved", None, T0, None)])
    assert (unknown[0].modality, unknown[0].adapter) == ("unknown", "unknown")
    assert unknown[0].mean_edit_distance == 0.0  # approved unchanged counts as 0 edits


def test_collector_exposes_snapshot() -> None:
    collector = QualityCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    assert b"radgpt_review_acceptance_ratio{" not in generate_latest(registry)
    collector.update(
        summarise([_r("CT", "a1", "approved", 0, 10), _r("CT", "a1", "edited", 3, 20)])
    )
    text = generate_latest(registry).decode()
    assert 'radgpt_review_decisions{adapter="a1",decision="edited",modality="CT"} 1.0' in text
    assert 'radgpt_review_acceptance_ratio{adapter="a1",modality="CT"} 0.5' in text
    assert 'radgpt_review_edit_distance_words_mean{adapter="a1",modality="CT"} 1.5' in text
    assert 'radgpt_review_time_to_approve_seconds_mean{adapter="all",modality="all"} 900.0' in text


async def test_load_quality_and_refresh_from_database(database: Database) -> None:
    dr = Reviewer(subject="dr-q", role="radiologist")
    ids = [await insert_pending(database, modality="CT", adapter_id="rad-ct") for _ in range(3)]
    await insert_pending(database, modality="CT", adapter_id="rad-ct")  # stays pending
    async with database.sessions() as session:
        await approve_draft(session, draft_id=ids[0], reviewer=dr, publisher=None)
    async with database.sessions() as session:
        await approve_draft(
            session, draft_id=ids[1], reviewer=dr, impression="Tiny right effusion.", publisher=None
        )
    async with database.sessions() as session:
        await reject_draft(session, draft_id=ids[2], reviewer=dr, reason="no")
    async with database.sessions() as session:
        stats = await load_quality(session)
        later = await load_quality(session, since=datetime.now(UTC) + timedelta(hours=1))
    ct = next(s for s in stats if s.adapter == "rad-ct")
    assert (ct.reviewed, ct.approved, ct.edited, ct.rejected) == (3, 1, 1, 1)
    assert ct.mean_edit_distance == pytest.approx(1.0)  # as is: 0; Small→Tiny, -pleural: 2
    assert later == []
    collector = QualityCollector()
    await collector.refresh(database.sessions)
    assert collector.stats == stats
