"""Review domain logic (integration.review.workflow): edit distance, transitions,
RIS-final matching."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from review_helpers import FLAG_LATERALITY, insert_pending, report_for

from integration.audit.log import AuditFilters, query_events, verify_chain
from integration.errors import ConflictError, NotFoundError, PublishError
from integration.report.model import Approval, DraftProvenance, RadiologyReport
from integration.review.workflow import (
    DraftFilters,
    Reviewer,
    approve_draft,
    classify_external_final,
    list_drafts,
    normalise_text,
    record_external_final,
    reject_draft,
    word_edit_distance,
)
from integration.storage.db import Database, DraftRecord, utcnow

DR = Reviewer(subject="dr-patel", role="radiologist", given_name="Anil", family_name="Patel")


# --- edit distance (pure) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("", "", 0),
        ("No acute disease.", "No acute disease.", 0),
        ("No acute disease.", "No  acute\ndisease.", 0),  # reflowing is free
        ("No acute disease.", "No acute cardiopulmonary disease.", 1),
        ("Left pleural effusion.", "Right pleural effusion.", 1),
        ("Small left effusion.", "", 3),
        ("", "New right lower lobe opacity.", 5),
        ("a b c d", "b c d e", 2),
        ("kitten sitting", "sitting kitten", 2),
    ],
)
def test_word_edit_distance_examples(before: str, after: str, expected: int) -> None:
    assert word_edit_distance(before, after) == expected


_words = st.lists(st.sampled_from(["no", "left", "right", "effusion", "acute", "."]), max_size=8)


@given(_words, _words, _words)
def test_word_edit_distance_is_a_metric(a: list[str], b: list[str], c: list[str]) -> None:
    x, y, z = " ".join(a), " ".join(b), " ".join(c)
    assert word_edit_distance(x, y) == word_edit_distance(y, x)
    assert (word_edit_distance(x, y) == 0) == (a == b)
    assert word_edit_distance(x, z) <= word_edit_distance(x, y) + word_edit_distance(y, z)
    assert abs(len(a) - len(b)) <= word_edit_distance(x, y) <= max(len(a), len(b))


def test_classify_external_final() -> None:
    draft = "Small right pleural effusion."
    assert classify_external_final(draft, " Small right  pleural effusion. ", "F") == "approved"
    assert classify_external_final(draft, "Moderate right pleural effusion.", "F") == "edited"
    assert classify_external_final(draft, draft, "X") == "rejected"
    assert classify_external_final(draft, draft, "entered-in-error") == "rejected"
    assert classify_external_final(draft, draft, "cancelled") == "rejected"
    assert classify_external_final(draft, None, "F") == "rejected"
    assert normalise_text(" a\n b ") == "a b"


# --- transitions on both databases ----------------------------------------------------------


class RecordingPublisher:
    """A FinalPublisher that records calls (the Kafka path is tested in test_review_api)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[RadiologyReport, str, Approval, DraftProvenance]] = []
        self.fail = fail

    async def publish_final(
        self,
        report: RadiologyReport,
        impression: str,
        approval: Approval,
        draft: DraftProvenance,
    ) -> None:
        if self.fail:
            raise PublishError("broker unavailable")
        self.calls.append((report, impression, approval, draft))


async def _draft(database: Database, draft_id: str) -> DraftRecord:
    async with database.sessions() as session:
        row = await session.get(DraftRecord, draft_id)
        assert row is not None
        return row


async def test_approve_as_is(database: Database) -> None:
    draft_id = await insert_pending(database, accession="XR-1", draft_text="No acute disease.")
    publisher = RecordingPublisher()
    async with database.sessions() as session:
        outcome = await approve_draft(session, draft_id=draft_id, reviewer=DR, publisher=publisher)
    assert (outcome.status, outcome.edit_distance, outcome.published) == ("approved", 0, True)
    row = await _draft(database, draft_id)
    assert row.status == "approved" and row.final_text == "No acute disease."
    assert row.reviewer == "dr-patel" and row.review_source == "ui" and row.version == 2
    assert row.reviewed_at is not None and row.published_at is not None
    report, impression, approval, provenance = publisher.calls[0]
    assert report.accession == "XR-1" and impression == "No acute disease."
    assert approval.radiologist.display == "Anil Patel" and approval.edited is False
    assert provenance.draft_id == draft_id and provenance.adapter_id == "radiology"
    async with database.sessions() as session:
        events = await query_events(session, AuditFilters(entity_id=draft_id))
        assert (await verify_chain(session)).ok
    event = events.items[0]
    assert (event.action, event.actor, event.accession) == ("approved", "dr-patel", "XR-1")
    assert event.details["edit_distance"] == 0
    assert "No acute" not in str(event.details)  # hashes, never report text


async def test_approve_with_edit_records_before_and_after(database: Database) -> None:
    draft_id = await insert_pending(database, draft_text="Small left pleural effusion.")
    async with database.sessions() as session:
        outcome = await approve_draft(
            session,
            draft_id=draft_id,
            reviewer=DR,
            impression="Small right pleural effusion. No pneumothorax.",
            publisher=RecordingPublisher(),
        )
    assert outcome.status == "edited" and outcome.edit_distance == 3
    row = await _draft(database, draft_id)
    assert row.draft_text == "Small left pleural effusion."  # the original is kept
    assert row.final_text == "Small right pleural effusion. No pneumothorax."
    assert row.edit_distance == 3


async def test_second_approval_conflicts_and_publish_failure_rolls_back(
    database: Database,
) -> None:
    draft_id = await insert_pending(database)
    async with database.sessions() as session:
        with pytest.raises(PublishError):
            await approve_draft(
                session, draft_id=draft_id, reviewer=DR, publisher=RecordingPublisher(fail=True)
            )
    row = await _draft(database, draft_id)
    assert row.status == "pending_review" and row.version == 1  # nothing changed
    async with database.sessions() as session:
        await approve_draft(session, draft_id=draft_id, reviewer=DR, publisher=None)
    async with database.sessions() as session:
        with pytest.raises(ConflictError, match="approved"):
            await approve_draft(session, draft_id=draft_id, reviewer=DR, publisher=None)
        with pytest.raises(ConflictError):
            await reject_draft(session, draft_id=draft_id, reviewer=DR, reason="late")
        with pytest.raises(NotFoundError):
            await approve_draft(session, draft_id="no-such-draft", reviewer=DR, publisher=None)


async def test_stale_version_and_empty_impression_are_refused(database: Database) -> None:
    draft_id = await insert_pending(database)
    async with database.sessions() as session:
        with pytest.raises(ConflictError, match="changed"):
            await approve_draft(
                session, draft_id=draft_id, reviewer=DR, expected_version=7, publisher=None
            )
        with pytest.raises(ValueError, match="empty"):
            await approve_draft(
                session, draft_id=draft_id, reviewer=DR, impression="  ", publisher=None
            )
    assert (await _draft(database, draft_id)).status == "pending_review"


async def test_concurrent_approvals_have_one_winner(database: Database) -> None:
    draft_id = await insert_pending(database)
    publisher = RecordingPublisher()

    async def attempt(i: int) -> str:
        reviewer = Reviewer(subject=f"dr-{i}", role="radiologist")
        async with database.sessions() as session:
            try:
                await approve_draft(
                    session, draft_id=draft_id, reviewer=reviewer, publisher=publisher
                )
                return "won"
            except ConflictError:
                return "lost"

    results = await asyncio.gather(*(attempt(i) for i in range(6)))
    assert sorted(results) == ["lost"] * 5 + ["won"]
    assert len(publisher.calls) == 1
    async with database.sessions() as session:
        approved = await query_events(session, AuditFilters(entity_id=draft_id, action="approved"))
    assert approved.total == 1


async def test_reject(database: Database) -> None:
    draft_id = await insert_pending(database, flags=[FLAG_LATERALITY])
    async with database.sessions() as session:
        outcome = await reject_draft(
            session,
            draft_id=draft_id,
            reviewer=DR,
            reason="Wrong side: effusion is on the right.",
            category="laterality",
        )
        with pytest.raises(ValueError):
            await reject_draft(session, draft_id=draft_id, reviewer=DR, reason=" ")
    assert outcome.status == "rejected" and not outcome.published
    row = await _draft(database, draft_id)
    assert row.reject_reason == "Wrong side: effusion is on the right."
    async with database.sessions() as session:
        event = (await query_events(session, AuditFilters(action="rejected"))).items[0]
    assert event.details["category"] == "laterality"
    assert "Wrong side" not in str(event.details)


async def test_list_drafts_filters_and_pages(database: Database) -> None:
    ids = [await insert_pending(database, modality="CT" if i % 2 else "CR") for i in range(5)]
    async with database.sessions() as session:
        await reject_draft(session, draft_id=ids[0], reviewer=DR, reason="no")
    async with database.sessions() as session:
        pending = await list_drafts(session, DraftFilters(status="pending_review"), page_size=2)
        assert pending.total == 4 and len(pending.items) == 2
        page2 = await list_drafts(
            session, DraftFilters(status="pending_review"), page=2, page_size=2
        )
        assert {d.id for d in pending.items}.isdisjoint({d.id for d in page2.items})
        ct = await list_drafts(session, DraftFilters(modality="CT"))
        assert ct.total == 2 and all(d.modality == "CT" for d in ct.items)
        recent = await list_drafts(session, DraftFilters(max_age_hours=1))
        assert recent.total == 5
        future = await list_drafts(
            session, DraftFilters(max_age_hours=1), now=utcnow() + timedelta(hours=3)
        )
        assert future.total == 0
        with pytest.raises(ValueError):
            await list_drafts(session, DraftFilters(), page=0)


# --- RIS-final matching ----------------------------------------------------------------------


async def _ris_final(
    database: Database, accession: str, impression: str | None, status: str = "F"
) -> tuple[str | None, str | None, int | None, bool]:
    report = report_for(
        accession,
        "448812",
        "Small right pleural effusion. No pneumothorax. Heart size normal.",
        status=status,
        impression=impression,
        interpreter="3344&KIM&SARA",
    )
    async with database.sessions() as session:
        result = await record_external_final(session, report)
        await session.commit()
    return result.draft_id, result.status, result.edit_distance, result.matched


async def test_ris_final_identical_is_accepted(database: Database) -> None:
    draft_id = await insert_pending(database, accession="ACC-R1")
    got = await _ris_final(database, "ACC-R1", "Small right  pleural effusion.")
    assert got == (draft_id, "approved", 0, True)
    row = await _draft(database, draft_id)
    assert row.review_source == "ris" and row.status == "approved"
    async with database.sessions() as session:
        event = (await query_events(session, AuditFilters(action="ris_final"))).items[0]
        assert (await verify_chain(session)).ok
    assert event.entity_id == draft_id and event.details["decision"] == "approved"


async def test_ris_final_different_is_edited(database: Database) -> None:
    draft_id = await insert_pending(database, accession="ACC-R2")
    got = await _ris_final(database, "ACC-R2", "Moderate right pleural effusion, increased.")
    assert got == (draft_id, "edited", 3, True)  # Small→Moderate, "effusion."→",", +1
    row = await _draft(database, draft_id)
    assert row.final_text == "Moderate right pleural effusion, increased."


async def test_ris_cancel_rejects_and_unknown_accession_does_not_match(
    database: Database,
) -> None:
    draft_id = await insert_pending(database, accession="ACC-R3")
    got = await _ris_final(database, "ACC-R3", None, status="X")
    assert got[:2] == (draft_id, "rejected") and got[3]
    assert (await _draft(database, draft_id)).reject_reason == "cancelled in the RIS"
    # Already reviewed: a second final for the same accession matches nothing.
    assert (await _ris_final(database, "ACC-R3", "Anything."))[3] is False
    assert (await _ris_final(database, "ACC-NONE", "Anything."))[3] is False


class RecordingWithdrawer:
    """A Withdrawer that records calls (the Kafka path is tested in test_review_browser)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    async def publish_withdrawal(
        self, report: RadiologyReport, impression: str, draft: DraftProvenance, **kw: object
    ) -> list[object]:
        if self.fail:
            raise PublishError("broker unavailable")
        self.calls.append((draft.draft_id, str(kw["reason"])))
        return []


async def test_reject_withdraws_a_published_preliminary_or_changes_nothing(
    database: Database,
) -> None:
    from integration.storage import repository as store

    published = await insert_pending(database)
    unpublished = await insert_pending(database)
    async with database.sessions() as session:
        await store.mark_published(session, draft_ids=[published])
        await session.commit()
    broken = RecordingWithdrawer(fail=True)
    async with database.sessions() as session:
        with pytest.raises(PublishError):
            await reject_draft(
                session, draft_id=published, reviewer=DR, reason="wrong", withdrawer=broken
            )
    assert (await _draft(database, published)).status == "pending_review"  # rolled back
    withdrawer = RecordingWithdrawer()
    async with database.sessions() as session:
        outcome = await reject_draft(
            session, draft_id=published, reviewer=DR, reason="wrong", withdrawer=withdrawer
        )
    async with database.sessions() as session:
        await reject_draft(
            session, draft_id=unpublished, reviewer=DR, reason="wrong", withdrawer=withdrawer
        )
    assert withdrawer.calls == [(published, "rejected")]  # never-published drafts: nothing
    assert outcome.published and outcome.status == "rejected"
    async with database.sessions() as session:
        events = await query_events(session, AuditFilters(entity_id=published))
        withdrawn = await query_events(session, AuditFilters(action="withdrawn"))
        assert (await verify_chain(session)).ok
    assert [e.action for e in events.items][:2] == ["withdrawn", "rejected"]
    assert withdrawn.total == 1 and withdrawn.items[0].details["reason"] == "rejected"
    assert withdrawn.items[0].patient_id == "448812"
