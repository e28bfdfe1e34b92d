"""Helpers of the review/audit tests: realistic reports and drafts, a real uvicorn server.

Drafts are stored through :mod:`integration.storage.repository` exactly as the pipeline
stores them (no
model needed).  :class:`ReviewServer` runs the review API on a free port in its own thread
and event loop, with its own database engine and Kafka producer (asyncio clients are bound
to the loop that created them).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer

from inference.safety import SafetyFlag
from inference.types import Draft, DraftMethod
from integration.app.settings import KafkaSettings, PipelineSettings, TopicSettings
from integration.codecs.codec import parse_message
from integration.pipeline.broker import free_port
from integration.pipeline.kafka_client import ensure_topics, make_producer
from integration.pipeline.publisher import Publisher
from integration.report.model import RadiologyReport
from integration.review.auth import TokenVerifier, mint_dev_token
from integration.review.web.api import ReviewContext, create_review_app
from integration.review.web.rate_limit import UnauthenticatedLimiter
from integration.storage import repository as store
from integration.storage.db import Database, open_database, upgrade_database

PG_ADMIN_URL = os.environ.get("RADGPT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

# Debian chromium for the browser tests (scripts/setup-browser.sh installs it).
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]



def oru(
    accession: str,
    mrn: str,
    findings: str,
    *,
    status: str = "P",
    impression: str | None = None,
    modality: str = "CR",
    message_id: str | None = None,
    interpreter: str = "",
    priority: str = "",
    version: str = "2.5.1",
) -> str:
    """An HL7 v2.5.1 ORU^R01 radiology report (as a RIS sends it); ``priority`` is the table
    0027 code put in OBR-27.6 (``S`` stat, ``A`` asap, ``R`` routine)."""
    msg = message_id or uuid.uuid4().hex[:16].upper()
    obx_status = "F" if status in ("F", "C") else status
    segments = [
        "MSH|^~\\&|RIS|ST MARY MED CTR|RADGPT|ST MARY MED CTR|20240512090000||ORU^R01^ORU_R01|"
        f"{msg}|P|{version}",
        f"PID|1||{mrn}^^^SMMC^MR||HOLLOWAY^DENISE^R||19580322|F",
        "PV1|1|O",
        f"ORC|RE|ORD{accession}|{accession}",
        f"OBR|1|ORD{accession}|{accession}|71046^XR CHEST 2 VIEWS^C4|||20240512081500|||||||||"
        f"2231^PATEL^ANIL||||||20240512085500||{modality}|{status}||"
        f"{'^^^^^' + priority if priority else ''}|||||{interpreter}",
        f"OBX|1|TX|18782-3^Radiology Study observation^LN|1|FINDINGS: {findings}||||||{obx_status}",
    ]
    if impression is not None:
        segments.append(
            f"OBX|2|TX|18782-3^Radiology Study observation^LN|1|IMPRESSION: {impression}"
            f"||||||{obx_status}"
        )
    return "\r".join(segments) + "\r"


def report_for(accession: str, mrn: str, findings: str, **kw: Any) -> RadiologyReport:
    reports = parse_message(oru(accession, mrn, findings, **kw).encode())
    assert len(reports) == 1
    return reports[0]


FLAG_LATERALITY = SafetyFlag(
    kind="laterality_conflict",
    phrase="left pleural effusion",
    detail="the findings place the effusion on the right",
    severity="critical",
)


async def insert_pending(
    db: Database,
    *,
    accession: str | None = None,
    mrn: str = "448812",
    findings: str = "Small right pleural effusion. No pneumothorax. Heart size normal.",
    draft_text: str = "Small right pleural effusion.",
    modality: str = "CR",
    adapter_id: str = "radiology",
    flags: Sequence[Any] = (),
    report: RadiologyReport | None = None,
    method: DraftMethod = "model",
) -> str:
    """Store a pending AI draft the way the pipeline does; returns the draft id."""
    accession = accession or f"XR{uuid.uuid4().hex[:10].upper()}"
    report = report or report_for(accession, mrn, findings, modality=modality)
    draft = Draft(
        text=draft_text,
        raw_text=draft_text,
        model_id="HuggingFaceTB/SmolLM2-135M",
        adapter_id=adapter_id,
        prompt_tokens=120,
        generated_tokens=12,
        latency_s=0.25,
        finish_reason="eos_token",
        backend="local",
        safety_flags=tuple(flags),
        method=method,
    )
    async with db.sessions() as session:
        inbound = await store.record_inbound(
            session,
            source_key=f"{report.source_system}|{report.message_id}|{uuid.uuid4().hex}",
            topic="radiology.hl7.oru",
            partition=0,
            offset=0,
            source_format=report.source_format,
            raw_sha256="ab" * 32,
            outcome="drafted",
        )
        row = await store.insert_draft(
            session,
            inbound_id=inbound.id,
            report_key=f"{inbound.source_key}#0",
            report=report,
            draft=draft,
            adapter_version="v1",
        )
        await session.commit()
        return row.id


# --- databases ----------------------------------------------------------------------------


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_pg_database() -> tuple[str, str]:
    """A fresh PostgreSQL database (for module-scoped fixtures); returns (name, asyncpg URL)."""
    name = f"radgpt_review_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return name, f"{base}/{name}"


def drop_pg_database(name: str) -> None:
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def migrate(url: str) -> None:
    async def run() -> None:
        db = open_database(url)
        try:
            await upgrade_database(db)
        finally:
            await db.dispose()

    asyncio.run(run())


# --- the server ---------------------------------------------------------------------------


@dataclass
class ReviewServer:
    """The review API on ``http://127.0.0.1:<port>`` in a thread, until :meth:`stop`."""

    db_url: str
    verifier: TokenVerifier
    kafka: KafkaSettings | None = None
    topics: TopicSettings = field(default_factory=TopicSettings)
    port: int = field(default_factory=free_port)
    limiter: UnauthenticatedLimiter | None = None
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _main(self) -> None:
        db = open_database(self.db_url)
        producer = None
        publisher = None
        if self.kafka is not None:
            await ensure_topics(
                self.kafka, [self.topics.hl7_out, self.topics.fhir_out], partitions=1
            )
            producer = make_producer(self.kafka)
            await producer.start()
            publisher = Publisher(
                producer=producer,
                topics=self.topics,
                pipeline=PipelineSettings(answer_in_kind=False),
            )
        context = ReviewContext(
            sessions=db.sessions, verifier=self.verifier, publisher=publisher, limiter=self.limiter
        )
        config = uvicorn.Config(
            create_review_app(context),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        try:
            await self._server.serve()
        finally:
            if producer is not None:
                await producer.stop()
            await db.dispose()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc

    def start(self, timeout_s: float = 30.0) -> ReviewServer:
        self._thread = threading.Thread(target=self._run, name="review-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._error is not None:
                raise RuntimeError(f"review server failed: {self._error!r}")
            if self._server is not None and self._server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("review server did not start")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)


@dataclass
class Tokens:
    """Bearer tokens minted with the trusted development key."""

    key_path: Path

    def mint(self, role: str, sub: str | None = None, **kw: Any) -> str:
        return mint_dev_token(role, sub or f"{role}-user", key_path=self.key_path, **kw)

    def headers(self, role: str, sub: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.mint(role, sub)}"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def consume_all(
    kafka: KafkaSettings,
    topic: str,
    *,
    key: bytes | None = None,
    timeout_s: float = 10.0,
    expect: int = 1,
) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """Read a topic from the beginning (no group); messages with ``key`` if given."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    found: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(found) < expect:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if key is None or record.key == key:
                        found.append((record.key, record.value, dict(record.headers)))
    finally:
        await consumer.stop()
    return found


def client(server: ReviewServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, timeout=30.0)
