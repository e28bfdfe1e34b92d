"""Reliability against real components: kill -9 of a worker process mid-batch, the model
server going away and coming back, poison messages in the stream.

"Exactly one draft per report" is checked in the database; outputs are counted per report
without de-duplicating anything: every report has at least one output, and any extra one is
a byte-identical re-send (same MSH-10 / same Bundle), bounded by the in-flight window."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from integration.app.demo import SampleReport, build_diagnostic_report, build_oru
from integration.app.service import serve
from integration.app.settings import Settings
from integration.audit.log import verify_chain
from integration.pipeline.publisher import control_id_for
from integration.storage.db import Database, DraftRecord, InboundMessage

from .conftest import REPO, ModelServer, Outputs, make_settings, publish, read_outputs, settings_env

NOW = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)
FINDINGS = [
    "Heart size is normal. Lungs are clear.",
    "Small right pleural effusion. No pneumothorax.",
    "Left lower lobe opacity concerning for pneumonia.",
    "Stable cardiomegaly. No focal consolidation.",
]


def samples(n: int, tag: str) -> list[SampleReport]:
    return [
        SampleReport(
            uid=str(i),
            exam="XR CHEST 2 VIEWS",
            indication="Cough.",
            findings=f"{FINDINGS[i % len(FINDINGS)]} Study {i}.",
            impression="n/a",
            accession=f"{tag}-{i:04d}",
            mrn=f"MRN{i:06d}",
            control_id=f"{tag}{i:05d}",
        )
        for i in range(n)
    ]


Message = tuple[str, bytes | None, bytes]


def messages(settings: Settings, reports: list[SampleReport]) -> list[Message]:
    topics = settings.kafka.topics
    out: list[Message] = []
    for i, s in enumerate(reports):
        if i % 2 == 0:
            out.append((topics.hl7_in, s.accession.encode(), build_oru(s, now=NOW)))
        else:
            out.append((topics.fhir_in, s.accession.encode(), build_diagnostic_report(s, now=NOW)))
    return out


def outputs_by_accession(out: Outputs) -> dict[str, list[bytes]]:
    """Every output message, grouped by the report's accession (nothing de-duplicated)."""
    grouped: dict[str, list[bytes]] = defaultdict(list)
    for raw in out.hl7:
        obr = next(s for s in raw.decode().split("\r") if s.startswith("OBR|"))
        grouped[obr.split("|")[3]].append(raw)
    for raw in out.fhir:
        bundle = json.loads(raw)
        report = next(
            e["resource"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "DiagnosticReport"
        )  # fmt: skip
        accession = next(
            i["value"] for i in report.get("identifier", []) if "accession" in i.get("system", "")
        )
        grouped[accession].append(raw)
    return grouped


async def _counts(database: Database) -> tuple[int, int]:
    async with database.sessions() as session:
        inbound = (await session.execute(select(func.count(InboundMessage.id)))).scalar_one()
        drafts = (await session.execute(select(func.count(DraftRecord.id)))).scalar_one()
    return int(inbound), int(drafts)


async def _wait(database: Database, *, inbound: int = 0, drafts: int = 0, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = await _counts(database)
        if got[0] >= inbound and got[1] >= drafts:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out at {got} waiting for inbound>={inbound}, drafts>={drafts}")


class ServeProcess:
    """``radgpt serve`` as a real OS process (so it can be killed with SIGKILL)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "integration", "serve", "--migrate"],
            cwd=REPO, env=settings_env(self.settings), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{self.settings.api.port}/readyz"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "radgpt serve exited"
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("radgpt serve did not become ready")

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(timeout=30) == 0
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()


@pytest.fixture
def slow_model() -> Iterator[ModelServer]:
    server = ModelServer(delay_ms=30).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.faults
async def test_kill_9_mid_batch_loses_nothing_and_drafts_nothing_twice(
    db_url: str, kafka_broker: str, slow_model: ModelServer, migrated: Database, data_dir: Path
) -> None:
    settings = make_settings(kafka_broker, db_url, slow_model.url, max_in_flight=16)
    reports = samples(240, "KILL")
    poison = [(data_dir / "hl7" / "garbage.hl7").read_bytes(), b'{"resourceType": "Patient"}']
    batch = messages(settings, reports)
    topics = settings.kafka.topics
    batch[50:50] = [(topics.hl7_in, b"p1", poison[0])]
    batch[150:150] = [(topics.fhir_in, b"p2", poison[1])]

    worker = ServeProcess(settings)
    worker.start()
    try:
        await publish(kafka_broker, batch)
        await _wait(migrated, drafts=80, timeout_s=90)
        worker.kill()  # SIGKILL: no shutdown, no commit, in-flight work lost
        killed_at = await _counts(migrated)
        assert killed_at[1] < len(reports), "the kill must land mid-batch"
        worker.start()
        await _wait(migrated, inbound=len(batch), drafts=len(reports), timeout_s=150)
    finally:
        worker.terminate()

    async with migrated.sessions() as session:
        drafts = (await session.execute(select(DraftRecord))).scalars().all()
        chain = await verify_chain(session)
    assert len(drafts) == len(reports)
    assert len({d.accession for d in drafts}) == len(reports)
    assert all(d.published_at is not None for d in drafts)
    assert chain.ok, chain.reason

    out = await read_outputs(kafka_broker, topics, until=len(reports) + 2, settle_s=2.0)
    grouped = outputs_by_accession(out)
    assert set(grouped) == {r.accession for r in reports}
    extra = 0
    by_accession = {d.accession: d for d in drafts}
    for accession, sent in grouped.items():
        assert len(set(sent)) == 1, f"{accession}: different answers for one report"
        extra += len(sent) - 1
        if sent[0].startswith(b"MSH"):
            assert control_id_for(by_accession[accession].id, "P").encode() in sent[0]
    # Only messages in flight at the kill can be re-sent (published, not yet marked).
    assert extra <= settings.pipeline.max_in_flight
    dead = [raw for raw, _ in out.dead]
    assert set(dead) == set(poison)
    print(f"kill -9 at {killed_at[1]} drafts; re-sent outputs: {extra}; dead letters: {len(dead)}")


async def test_model_server_outage_is_retried_not_dead_lettered(
    db_url: str, kafka_broker: str, migrated: Database
) -> None:
    model = ModelServer(delay_ms=20).start()
    settings = make_settings(kafka_broker, db_url, model.url, max_in_flight=8)
    reports = samples(60, "OUT")
    stop, started = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(
        serve(settings, migrate=True, stop=stop, on_started=lambda *_: started.set())
    )
    try:
        await asyncio.wait_for(started.wait(), 60)
        await publish(kafka_broker, messages(settings, reports))
        await _wait(migrated, drafts=15, timeout_s=60)
        model.stop()  # the model server goes away mid-run ...
        await asyncio.sleep(2.0)
        stalled = await _counts(migrated)
        model.start()  # ... and comes back on the same port
        await _wait(migrated, inbound=len(reports), drafts=len(reports), timeout_s=90)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{settings.api.port}/metrics")
        metrics = response.text
    finally:
        stop.set()
        await asyncio.wait_for(service, 60)
        model.stop()
    assert stalled[1] < len(reports)
    assert "radgpt_retries_total" in metrics and 'error_class="Backend' in metrics
    out = await read_outputs(kafka_broker, settings.kafka.topics, until=len(reports))
    grouped = outputs_by_accession(out)
    assert set(grouped) == {r.accession for r in reports}
    assert all(len(v) == 1 for v in grouped.values())
    assert out.dead == []
    async with migrated.sessions() as session:
        inbound = (await session.execute(select(InboundMessage))).scalars().all()
    assert {i.outcome for i in inbound} == {"drafted"}
