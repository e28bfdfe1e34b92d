"""``radgpt serve`` fills the review quality metrics from the database at start-up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from sqlalchemy import update

from inference.types import Draft
from integration.app.service import Pipeline, serve
from integration.app.settings import InferenceSettings
from integration.report.model import RadiologyReport
from integration.storage.db import DraftRecord, open_database, upgrade_database, utcnow
from integration.storage.repository import insert_draft, record_inbound

from .conftest import make_settings


async def _seed_reviewed_drafts(url: str) -> None:
    """Two drafts reviewed before the restart: one approved unchanged, one rejected."""
    database = open_database(url)
    await upgrade_database(database)
    try:
        async with database.sessions() as session:
            inbound = await record_inbound(
                session, source_key="RIS|1", topic="radiology.hl7.oru", partition=0, offset=0,
                source_format="hl7v2", raw_sha256="c" * 64, outcome="drafted",
            )  # fmt: skip
            for index, status in enumerate(("approved", "rejected")):
                report = RadiologyReport(
                    source_format="hl7v2", message_id=f"MSG{index}", accession=f"ACC{index}",
                    modality="CR", findings=f"Heart size is normal. Case {index}.",
                )  # fmt: skip
                draft = Draft(
                    text="No acute disease.", raw_text="No acute disease.", model_id="m",
                    adapter_id="radiology", prompt_tokens=10, generated_tokens=4,
                    latency_s=0.01, finish_reason="eos_token", backend="instant",
                )  # fmt: skip
                row = await insert_draft(
                    session, inbound_id=inbound.id, report_key=f"RIS|1#{index}", report=report,
                    draft=draft, adapter_version="1",
                )  # fmt: skip
                await session.execute(
                    update(DraftRecord)
                    .where(DraftRecord.id == row.id)
                    .values(status=status, reviewed_at=utcnow(), edit_distance=0)
                )
            await session.commit()
    finally:
        await database.dispose()


async def test_metrics_show_review_quality_after_a_restart(
    kafka_broker: str, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'radgpt.db'}"
    await _seed_reviewed_drafts(url)
    settings = make_settings(kafka_broker, url, "http://127.0.0.1:9").model_copy(
        update={"inference": InferenceSettings(backend="instant", verify_adapter=False)}
    )
    stop = asyncio.Event()
    started: list[int] = []

    def on_started(_pipeline: Pipeline, port: int) -> None:
        started.append(port)

    service = asyncio.create_task(
        serve(settings, migrate=True, stop=stop, on_started=on_started, quality_refresh_s=0.2)
    )
    try:
        deadline = time.monotonic() + 60
        while not started and time.monotonic() < deadline and not service.done():
            await asyncio.sleep(0.1)
        assert started, "the service did not start"
        text = ""
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{started[0]}") as client:
            # No review happened in this process: the figures can only come from the database.
            while time.monotonic() < deadline:
                text = (await client.get("/metrics")).text
                if "radgpt_review_decisions{" in text:
                    break
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(service, timeout=60)
    line = 'radgpt_review_decisions{adapter="radiology",decision="approved",modality="CR"} 1.0'
    assert line in text
    assert 'decision="rejected",modality="CR"} 1.0' in text
    assert 'radgpt_review_rejection_ratio{adapter="radiology",modality="CR"} 0.5' in text
