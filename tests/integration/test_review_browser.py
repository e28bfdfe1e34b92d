"""Safe sign-off, patient context, withdrawal and complete accounting, in a real browser.

Debian chromium via Playwright against the review server (real uvicorn, SQLite file and
PostgreSQL, the Tansu broker).  The last test also runs the real pipeline processor (with the
in-process instant drafting backend) so the audit log holds what the pipeline records
(``received``, ``dead_lettered``, ``drafted``, ``published``, ``withdrawn``) next to what the
pages record.  Screenshots go to ``artifacts/screenshots/`` (docs/guide-radiologist.md).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from review_helpers import ReviewServer, Tokens, consume_all, insert_pending, oru, report_for
from test_pages_browser import SHOTS, _sign_in

from inference.safety import check_draft
from integration.app.settings import KafkaSettings, TopicSettings
from integration.audit.log import AuditFilters, PageRequest, query_events
from integration.codecs.fhir.reader import parse_fhir
from integration.codecs.hl7.reader import Er7Message
from integration.pipeline.publisher import control_id_for
from integration.review.workflow import ATTESTATION
from integration.storage.db import Database, DraftRecord

pytestmark = pytest.mark.browser

FINDINGS = (
    "Large right pneumothorax with leftward mediastinal shift. Small right pleural effusion. "
    "Heart size is normal."
)
DRAFT = "Small left pleural effusion. No acute cardiopulmonary abnormality."


@pytest.fixture(scope="module")
def topics() -> TopicSettings:
    suffix = uuid.uuid4().hex[:8]
    return TopicSettings(
        hl7_out=f"test.rb.hl7.{suffix}",
        fhir_out=f"test.rb.fhir.{suffix}",
        dead_letter=f"test.rb.dlq.{suffix}",
    )


def _backend(url: str) -> str:
    return "pg" if "postgresql" in url else "sqlite"


async def _row(db: Database, draft_id: str) -> DraftRecord:
    async with db.sessions() as session:
        row = await session.get(DraftRecord, draft_id)
    assert row is not None
    return row


async def test_critical_flags_need_acknowledgement_and_evidence_is_highlighted(
    server: ReviewServer, db: Database, tokens: Tokens, kafka: KafkaSettings,
    topics: TopicSettings, browser: object, backend_url: str,
) -> None:  # fmt: skip
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    accession = f"CT{uuid.uuid4().hex[:8].upper()}"
    flags = check_draft(FINDINGS, DRAFT)
    critical = [f for f in flags if f.severity == "critical"]
    assert len(critical) >= 2  # the omitted pneumothorax and the wrong side at least
    report = report_for(accession, "MRN-CRIT", FINDINGS, priority="S", modality="CR")
    draft_id = await insert_pending(
        db, accession=accession, report=report, draft_text=DRAFT, flags=flags
    )
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await _sign_in(page, f"{server.url}/drafts/{draft_id}", tokens.mint("radiologist", "dr-ack"))

    # Patient and study context for the wrong-patient check.
    context = page.locator("#context-list")
    for text in ("HOLLOWAY, DENISE", "1958-03-22 (66 y)", "female", "MRN-CRIT", accession,
                 "XR CHEST 2 VIEWS", "STAT", "ANIL PATEL", "2024-05-12 08:15"):  # fmt: skip
        await expect(context).to_contain_text(text)

    # Evidence: the spans behind the flags are highlighted in the findings.
    marks = page.locator("#findings mark.evidence")
    await expect(marks.first).to_be_visible()
    highlighted = [t.lower() for t in await marks.all_inner_texts()]
    assert "pneumothorax" in highlighted and "pleural effusion" in highlighted
    assert await page.locator("#findings mark.evidence.critical").count() >= 2
    backend = _backend(backend_url)
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"review-critical-{backend}.png"), full_page=True)

    # Approve is disabled, and the keyboard cannot approve, until every critical flag is ticked.
    approve = page.locator("#approve")
    await expect(approve).to_be_disabled()
    await expect(page.locator("#ack-note")).to_be_visible()
    await page.locator("#findings").focus()
    await page.keyboard.press("a")
    await expect(page.locator("#message")).to_contain_text("Tick every critical safety flag")
    assert (await _row(db, draft_id)).status == "pending_review"
    boxes = page.locator("#flag-list input.ack")
    assert await boxes.count() == len(critical)
    for index in range(len(critical) - 1):
        await boxes.nth(index).check()
    await expect(approve).to_be_disabled()  # one still unticked

    # The critical result is communicated and recorded.
    await page.fill("#comm-recipient", "Dr Ana Lee, ED attending")
    await page.select_option("#comm-method", "telephone")
    await page.click("#comm-save")
    await expect(page.locator("#comm-list")).to_contain_text("To Dr Ana Lee, ED attending")
    await expect(page.locator("#history-list")).to_contain_text("communicated")

    await boxes.nth(len(critical) - 1).check()
    await expect(approve).to_be_enabled()
    await expect(page.locator("#attestation")).to_contain_text(ATTESTATION)
    await page.keyboard.press("a")  # the focus is on the last checkbox: shortcuts work there
    await expect(page.locator("#draft-status")).to_contain_text("Approved by dr-ack")

    async with db.sessions() as session:
        approved = await query_events(session, AuditFilters(entity_id=draft_id, action="approved"))
    details = approved.items[0].details
    assert [a["index"] for a in details["acknowledged_flags"]] == [
        i for i, f in enumerate(flags) if f.severity == "critical"
    ]
    assert details["attestation"] == ATTESTATION and details["communications"] == 1
    finals = await consume_all(kafka, topics.hl7_out, key=accession.encode())
    text = finals[0][1].decode()
    assert "Critical result communicated to Dr Ana Lee, ED attending by telephone" in text


async def test_edit_is_marked_diffed_and_survives_token_expiry(
    server: ReviewServer, db: Database, tokens: Tokens, browser: object, backend_url: str
) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    draft_id = await insert_pending(db, draft_text="Small left pleural effusion.")
    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
    await _sign_in(page, f"{server.url}/drafts/{draft_id}", tokens.mint("radiologist", "dr-exp"))
    await expect(page.locator("#impression")).to_have_value("Small left pleural effusion.")
    await expect(page.locator("#impression-label")).to_have_text("Impression — AI draft (unedited)")
    mine = "Small right pleural effusion, new since the prior study."
    await page.fill("#impression", mine)
    await expect(page.locator("#impression-label")).to_contain_text("edited by you")

    # The diff view: AI draft versus the current text, word by word.
    await page.click("#diff-toggle")
    await expect(page.locator("#diff-panel")).to_be_visible()
    await expect(page.locator("#draft-view")).to_have_text("Small left pleural effusion.")
    deleted = await page.locator("#diff del").all_inner_texts()
    inserted = await page.locator("#diff ins").all_inner_texts()
    assert "left" in deleted and "effusion." in deleted
    assert {"right", "effusion,", "new", "prior", "study."} <= set(inserted)
    await page.screenshot(path=str(SHOTS / f"review-diff-{_backend(backend_url)}.png"),
                          full_page=True)  # fmt: skip

    # The stored token expires while the radiologist works; Approve gets a 401.
    expired = tokens.mint("radiologist", "dr-exp", ttl_s=60, now=time.time() - 3600)
    await page.evaluate("t => sessionStorage.setItem('radgpt.token', t)", expired)
    await page.click("#approve")
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#login-error")).to_contain_text("expired")
    assert (await _row(db, draft_id)).status == "pending_review"

    await page.fill("#token-input", tokens.mint("radiologist", "dr-exp"))
    await page.click("#token-submit")
    await expect(page.locator("#main")).to_be_visible()
    await expect(page.locator("#impression")).to_have_value(mine)  # not the AI text
    await expect(page.locator("#message")).to_contain_text("still pending")
    await expect(page.locator("#message")).not_to_contain_text("Approving")
    await expect(page.locator("#restored")).to_be_visible()
    await expect(page.locator("#impression-label")).to_contain_text("edited by you")
    await expect(page.locator("#approve")).to_be_enabled()

    # A reload of the tab keeps the work too (sessionStorage, per draft).
    await page.reload()
    await expect(page.locator("#impression")).to_have_value(mine)

    await page.click("#approve")
    await expect(page.locator("#draft-status")).to_contain_text("Edited and approved by dr-exp")
    row = await _row(db, draft_id)
    assert row.status == "edited" and row.final_text == mine
    assert await page.evaluate(f"sessionStorage.getItem('radgpt.work.{draft_id}')") is None


async def test_queue_shows_critical_and_stat_first(
    server: ReviewServer, db: Database, tokens: Tokens, browser: object, backend_url: str
) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    modality = f"P{uuid.uuid4().hex[:5].upper()}"
    order = []
    for code, flags in (("R", []), ("S", []), ("A", []), ("R", check_draft(FINDINGS, DRAFT))):
        accession = f"P{uuid.uuid4().hex[:9].upper()}"
        report = report_for(accession, "MRN-PQ", FINDINGS, modality=modality, priority=code)
        await insert_pending(db, accession=accession, report=report, draft_text=DRAFT, flags=flags)
        order.append(accession)
    routine, stat, asap, critical = order
    page = await browser.new_page(viewport={"width": 1280, "height": 700})
    await _sign_in(page, server.url + "/", tokens.mint("radiologist", "dr-queue"))
    await page.fill("#f-modality", modality)
    await page.click("#queue-filters button[type=submit]")
    rows = page.locator("#queue-rows tr")
    await expect(rows).to_have_count(4)
    texts = await rows.all_inner_texts()
    assert [next(a for a in order if a in t) for t in texts] == [critical, stat, asap, routine]
    await expect(rows.nth(0)).to_contain_text("critical")
    await expect(rows.nth(1)).to_contain_text("STAT")
    await expect(rows.nth(0)).to_contain_text("HOLLOWAY, DENISE")
    await page.screenshot(path=str(SHOTS / f"queue-{_backend(backend_url)}.png"), full_page=True)
    await page.select_option("#f-priority", "stat")
    await page.click("#queue-filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(stat)
    await page.select_option("#f-priority", "")
    await page.select_option("#f-flag", "critical")
    await page.click("#queue-filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(critical)


async def test_reject_withdraws_downstream_and_the_patient_query_lists_everything(
    server: ReviewServer, db: Database, tokens: Tokens, kafka: KafkaSettings,
    topics: TopicSettings, browser: object, backend_url: str,
) -> None:  # fmt: skip
    from playwright.async_api import Browser, expect

    from inference.backends.instant import InstantBackend
    from inference.drafting.drafter import Drafter
    from integration.app.settings import PipelineSettings
    from integration.pipeline.kafka_client import ensure_topics, make_producer
    from integration.pipeline.processor import InboundRecord, Processor
    from integration.pipeline.publisher import Publisher

    assert isinstance(browser, Browser)
    mrn = f"MRN-W{uuid.uuid4().hex[:6].upper()}"
    rejected_acc = f"W{uuid.uuid4().hex[:8].upper()}"
    superseded_acc = f"S{uuid.uuid4().hex[:8].upper()}"
    await ensure_topics(kafka, [topics.hl7_out, topics.fhir_out, topics.dead_letter], partitions=1)
    producer = make_producer(kafka)
    await producer.start()
    try:
        processor = Processor(
            database=db,
            drafter=Drafter(InstantBackend(), verify=False),
            publisher=Publisher(
                producer=producer, topics=topics, pipeline=PipelineSettings(answer_in_kind=False)
            ),
        )
        messages = [
            oru(rejected_acc, mrn, "Small right pleural effusion. No pneumothorax."),
            oru(superseded_acc, mrn, "Mild cardiomegaly. Lungs are clear."),
            oru(superseded_acc, mrn, "Moderate cardiomegaly. Small bilateral effusions."),
            oru("BROKEN1", mrn, "Clear lungs.", version="9.9"),  # unsupported: dead-lettered
        ]
        results = []
        for offset, message in enumerate(messages):
            record = InboundRecord("radiology.hl7.oru", 0, offset, message.encode(), None)
            results.append(await processor.process(record))
        assert [r.outcome for r in results] == ["drafted", "drafted", "drafted", "dead_lettered"]
    finally:
        await producer.stop()

    async with db.sessions() as session:
        drafts = {
            d.accession + ":" + d.status: d
            for d in (
                await session.execute(
                    DraftRecord.__table__.select().where(DraftRecord.patient_id == mrn)
                )
            ).all()
        }
    assert set(drafts) == {
        f"{rejected_acc}:pending_review", f"{superseded_acc}:superseded",
        f"{superseded_acc}:pending_review",
    }  # fmt: skip
    draft_id = drafts[f"{rejected_acc}:pending_review"].id
    superseded_id = drafts[f"{superseded_acc}:superseded"].id

    # The radiologist finds the draft in the queue and rejects it.
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await _sign_in(page, server.url + "/", tokens.mint("radiologist", "dr-withdraw"))
    await page.locator("#queue-rows tr", has_text=rejected_acc).get_by_role("link").click()
    await page.wait_for_url(f"**/drafts/{draft_id}")
    await expect(page.locator("#provenance")).not_to_contain_text("Preliminary sent\nno")
    await expect(page.locator("#priors")).to_be_visible()  # the same patient's other reports
    await expect(page.locator("#prior-rows")).to_contain_text(superseded_acc)
    await page.locator("body").press("r")
    await page.select_option("#reject-category", "laterality")
    await page.fill("#reject-reason", "Effusion side is wrong in the draft.")
    await page.click("#reject-confirm")
    await expect(page.locator("#draft-status")).to_contain_text("Rejected by dr-withdraw")
    await expect(page.locator("#message")).to_contain_text("withdrawn")
    await expect(page.locator("#history-list")).to_contain_text("withdrawn by dr-withdraw")
    await page.screenshot(path=str(SHOTS / f"rejected-{_backend(backend_url)}.png"),
                          full_page=True)  # fmt: skip

    # Downstream: the preliminary, then its withdrawal, on the same key, parsed back.
    hl7 = await consume_all(kafka, topics.hl7_out, key=rejected_acc.encode(), expect=2)
    assert [h[2]["radgpt-report-status"] for h in hl7] == [b"preliminary", b"withdrawn"]
    withdrawal = Er7Message.parse(hl7[1][1].decode().rstrip("\r"))
    assert withdrawal.msh.text(10) == control_id_for(draft_id, "W")
    obr = next(s for s in withdrawal.segments if s.id == "OBR")
    assert obr.text(3) == rejected_acc and obr.text(25) == "I"
    assert {s.text(11) for s in withdrawal.segments if s.id == "OBX"} == {"W"}
    fhir = await consume_all(kafka, topics.fhir_out, key=rejected_acc.encode(), expect=2)
    withdrawn = parse_fhir(json.loads(fhir[1][1]))
    assert withdrawn[0].status == "entered-in-error" and withdrawn[0].accession == rejected_acc
    # The superseded draft's preliminary was withdrawn by the pipeline.
    old = await consume_all(kafka, topics.hl7_out, key=superseded_acc.encode(), expect=3)
    statuses = [h[2]["radgpt-report-status"] for h in old]
    assert statuses.count(b"withdrawn") == 1 and statuses.count(b"preliminary") == 2
    gone = next(h for h in old if h[2]["radgpt-report-status"] == b"withdrawn")
    assert control_id_for(superseded_id, "W").encode() in gone[1]

    # The compliance officer asks for everything about the patient.
    async with db.sessions() as session:
        every = await query_events(
            session, AuditFilters(patient_id=mrn), PageRequest(limit=500, newest_first=False)
        )
    actions = [e.action for e in every.items]
    for action in ("received", "dead_lettered", "drafted", "published", "listed", "viewed",
                   "rejected", "withdrawn"):  # fmt: skip
        assert action in actions, (action, actions)
    assert actions.count("withdrawn") == 2 and actions.count("received") == 3
    officer = await browser.new_page(viewport={"width": 1500, "height": 1200})
    await _sign_in(officer, server.url + "/audit", tokens.mint("compliance", "officer-w"))
    requests: list[str] = []
    officer.on("request", lambda r: requests.append(r.url))
    await officer.fill("#a-patient", mrn)
    await officer.click("#audit-search")
    rows = officer.locator("#audit-rows tr")
    await expect(rows).to_have_count(every.total)
    await expect(officer.locator("#audit-page-info")).to_contain_text(f"{every.total} events")
    shown = [t.split("\t") for t in await rows.all_inner_texts()]
    assert [int(r[0]) for r in shown] == [e.id for e in every.items]  # in the order they happened
    assert [r[4] for r in shown] == actions
    assert all(mrn not in url for url in requests)  # the patient id travelled in the body only
    await officer.screenshot(path=str(SHOTS / f"audit-patient-{_backend(backend_url)}.png"),
                             full_page=True)  # fmt: skip
