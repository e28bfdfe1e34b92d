"""The review and audit pages in a real headless browser (Debian chromium via Playwright).

A radiologist pastes a token, opens the queue, opens a draft, edits and approves it with the
keyboard; the final report must then be on the Kafka output topic and the audit rows in the
database.  A compliance officer searches the audit log, verifies the chain and exports CSV.
Screenshots are written to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from review_helpers import (
    FLAG_LATERALITY,
    ReviewServer,
    Tokens,
    consume_all,
    insert_pending,
)

from integration.app.settings import KafkaSettings, TopicSettings
from integration.audit.log import AuditFilters, query_events
from integration.codecs.codec import parse_message
from integration.storage.db import Database

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def topics() -> TopicSettings:
    suffix = uuid.uuid4().hex[:8]
    return TopicSettings(hl7_out=f"test.pages.hl7.{suffix}", fhir_out=f"test.pages.fhir.{suffix}")


async def _sign_in(page: object, url: str, token: str) -> None:
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    await page.goto(url)
    await expect(page.locator("#login")).to_be_visible()
    await page.fill("#token-input", token)
    await page.click("#token-submit")
    await expect(page.locator("#main")).to_be_visible()


async def test_radiologist_edits_and_approves_with_the_keyboard(
    server: ReviewServer,
    db: Database,
    tokens: Tokens,
    kafka: KafkaSettings,
    topics: TopicSettings,
    browser: object,
    backend_url: str,
) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    accession = f"XR{uuid.uuid4().hex[:8].upper()}"
    draft_id = await insert_pending(
        db,
        accession=accession,
        mrn="MRN-4711",
        findings="Small right pleural effusion. No pneumothorax. Heart size is normal.",
        draft_text="Small left pleural effusion.",
        flags=[FLAG_LATERALITY],
    )
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await _sign_in(page, server.url + "/", tokens.mint("radiologist", "dr-browser"))
    await expect(page.locator("#who")).to_contain_text("dr-browser")

    row = page.locator("#queue-rows tr", has_text=accession)
    await expect(row).to_be_visible()
    await expect(row).to_contain_text("AI DRAFT — pending radiologist review")
    await row.get_by_role("link", name="Open").click()
    await page.wait_for_url(f"**/drafts/{draft_id}")

    await expect(page.locator("#findings")).to_contain_text("Small right pleural effusion")
    await expect(page.locator("#ai-label")).to_have_text("AI DRAFT — pending radiologist review")
    await expect(page.locator("#flags")).to_be_visible()
    await expect(page.locator("#flag-list")).to_contain_text("CRITICAL")
    await expect(page.locator("#flag-list mark")).to_have_text("left pleural effusion")
    await expect(page.locator("#impression")).to_have_value("Small left pleural effusion.")
    SHOTS.mkdir(parents=True, exist_ok=True)
    backend = "pg" if "postgresql" in backend_url else "sqlite"
    await page.screenshot(path=str(SHOTS / f"review-{backend}.png"), full_page=True)

    # A critical flag must be acknowledged before Approve is enabled (scope item 1).
    await expect(page.locator("#approve")).to_be_disabled()
    await page.check("#ack-0")
    await page.keyboard.press("e")
    await expect(page.locator("#impression")).to_be_focused()
    await page.keyboard.press("Control+a")
    await page.keyboard.type("Small right pleural effusion.")
    await page.keyboard.press("Escape")
    await expect(page.locator("#approve")).to_be_focused()
    await page.keyboard.press("a")
    await expect(page.locator("#draft-status")).to_contain_text("Edited and approved by dr-browser")
    await expect(page.locator("#ai-label")).to_have_text("Reviewed: edited")
    await expect(page.locator("#approve")).to_be_disabled()
    await page.screenshot(path=str(SHOTS / f"approved-{backend}.png"), full_page=True)

    finals = await consume_all(kafka, topics.hl7_out, key=accession.encode())
    assert len(finals) == 1
    final = parse_message(finals[0][1])[0]
    assert final.status == "F" and final.impression == "Small right pleural effusion."
    fhir = await consume_all(kafka, topics.fhir_out, key=accession.encode())
    assert b'"status":"final"' in fhir[0][1]

    async with db.sessions() as session:
        mine = await query_events(session, AuditFilters(actor="dr-browser"))
    actions = [e.action for e in mine.items]
    assert actions[0] == "edited" and "viewed" in actions and "listed" in actions
    assert mine.items[0].entity_id == draft_id and mine.items[0].details["edit_distance"] == 1


async def test_radiologist_rejects_and_cannot_open_the_audit_log(
    server: ReviewServer, db: Database, tokens: Tokens, browser: object
) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    draft_id = await insert_pending(db)
    page = await browser.new_page()
    await _sign_in(page, f"{server.url}/drafts/{draft_id}", tokens.mint("radiologist", "dr-r"))
    await expect(page.locator("#impression")).to_have_value("Small right pleural effusion.")
    await page.locator("body").press("r")
    await expect(page.locator("#reject-reason")).to_be_focused()
    await page.select_option("#reject-category", "omission")
    await page.fill("#reject-reason", "Omits the pneumothorax check.")
    await page.click("#reject-confirm")
    await expect(page.locator("#draft-status")).to_contain_text("Rejected by dr-r")
    # The token stays in sessionStorage: the audit page reuses it and is refused (403).
    await page.click("nav >> text=Audit log")
    await expect(page.locator("#message")).to_contain_text("Your role does not allow this")
    async with db.sessions() as session:
        denied = await query_events(session, AuditFilters(actor="dr-r", action="denied"))
    assert denied.total == 1


async def test_compliance_officer_searches_verifies_and_exports(
    server: ReviewServer,
    db: Database,
    tokens: Tokens,
    browser: object,
    backend_url: str,
    tmp_path: Path,
) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    accession = f"AUD{uuid.uuid4().hex[:6].upper()}"
    await insert_pending(db, accession=accession, mrn="MRN-9")
    page = await browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    await _sign_in(page, server.url + "/audit", tokens.mint("compliance", "officer-b"))
    await expect(page.locator("#audit-rows tr").first).to_be_visible()

    # Something to find: the radiologist views the draft through the API in the meantime.
    dr_page = await browser.new_page()
    await _sign_in(dr_page, server.url + "/", tokens.mint("radiologist", "dr-seen"))
    await dr_page.locator("#queue-rows tr", has_text=accession).get_by_role("link").click()
    await expect(dr_page.locator("#findings")).not_to_be_empty()

    await page.fill("#a-accession", accession)
    await page.select_option("#a-action", "viewed")
    await page.click("#audit-search")
    rows = page.locator("#audit-rows tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("dr-seen")
    await expect(rows.first).to_contain_text("MRN-9")
    await expect(page.locator("#audit-page-info")).to_contain_text("1 events")

    await page.click("#verify-chain")
    await expect(page.locator("#verify-result")).to_contain_text("Chain intact")
    async with page.expect_download() as info:
        await page.click("#export-csv")
    download = await info.value
    target = tmp_path / download.suggested_filename
    await download.save_as(target)
    lines = target.read_text().splitlines()
    assert lines[0].startswith("id,recorded_at,actor") and len(lines) == 2
    assert "dr-seen" in lines[1]
    backend = "pg" if "postgresql" in backend_url else "sqlite"
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"audit-{backend}.png"), full_page=True)

    async with db.sessions() as session:
        mine = await query_events(session, AuditFilters(actor="officer-b"))
    actions = {e.action for e in mine.items}
    assert {"queried", "verified", "exported"} <= actions
