"""Fixtures of the pipeline tests: the instant model server over HTTP, per-test topics,
settings pointing at the real broker and database, and a Kafka reader of the outputs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr

from integration.app.service import serve
from integration.app.settings import (
    ApiSettings,
    DatabaseSettings,
    InferenceSettings,
    KafkaSettings,
    PipelineSettings,
    Settings,
    TopicSettings,
)
from integration.pipeline.broker import free_port
from integration.storage.db import Database, open_database, upgrade_database

REPO = Path(__file__).resolve().parents[3]


class ModelServer:
    """``radgpt serve-model --engine instant`` in a subprocess; can be stopped and restarted."""

    def __init__(self, port: int | None = None, *, delay_ms: float = 0.0) -> None:
        self.port = port or free_port()
        self.delay_ms = delay_ms
        self.proc: subprocess.Popen[bytes] | None = None
        # The instant engine loads no weights; it only needs a peft-shaped directory to
        # serve the adapter name "radiology" like the real server does.
        self.adapter_dir = Path(tempfile.mkdtemp(prefix="radgpt-instant-adapter-"))
        (self.adapter_dir / "adapter_config.json").write_text("{}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ModelServer:
        command = [
            sys.executable, "-m", "integration", "serve-model", "--engine", "instant",
            "--port", str(self.port), "--no-default-adapter", "--delay-ms", str(self.delay_ms),
            "--adapter", f"radiology={self.adapter_dir}",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("RADGPT_")},
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"model server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("model server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    server = ModelServer().start()
    try:
        yield server
    finally:
        server.stop()


def unique_topics() -> TopicSettings:
    tag = uuid.uuid4().hex[:8]
    return TopicSettings(
        hl7_in=f"t{tag}.hl7.in",
        fhir_in=f"t{tag}.fhir.in",
        hl7_out=f"t{tag}.hl7.out",
        fhir_out=f"t{tag}.fhir.out",
        dead_letter=f"t{tag}.dlq",
        partitions=3,
    )


def make_settings(
    bootstrap: str, db_url: str, model_url: str, *, max_in_flight: int = 16, **pipeline: object
) -> Settings:
    return Settings(
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap,
            group_id=f"g-{uuid.uuid4().hex[:8]}",
            topics=unique_topics(),
            session_timeout_ms=10_000,
        ),
        database=DatabaseSettings(url=SecretStr(db_url)),
        inference=InferenceSettings(
            backend="tgi",
            url=model_url,
            adapter="radiology",
            verify_adapter=False,
            timeout_s=5.0,
            max_retries=1,
            circuit_reset_s=1.0,
        ),
        pipeline=PipelineSettings(
            max_in_flight=max_in_flight,
            retry_backoff_s=0.2,
            retry_backoff_max_s=1.0,
            drain_timeout_s=5.0,
            **pipeline,  # type: ignore[arg-type]
        ),
        api=ApiSettings(port=free_port()),
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as RADGPT_* variables, for a ``radgpt serve`` subprocess."""
    k, t, i, p = settings.kafka, settings.kafka.topics, settings.inference, settings.pipeline
    env = {key: value for key, value in os.environ.items() if not key.startswith("RADGPT_")}
    env.update(
        RADGPT_KAFKA__BOOTSTRAP_SERVERS=k.bootstrap_servers,
        RADGPT_KAFKA__GROUP_ID=k.group_id,
        RADGPT_KAFKA__SESSION_TIMEOUT_MS=str(k.session_timeout_ms),
        RADGPT_KAFKA__TOPICS__HL7_IN=t.hl7_in,
        RADGPT_KAFKA__TOPICS__FHIR_IN=t.fhir_in,
        RADGPT_KAFKA__TOPICS__HL7_OUT=t.hl7_out,
        RADGPT_KAFKA__TOPICS__FHIR_OUT=t.fhir_out,
        RADGPT_KAFKA__TOPICS__DEAD_LETTER=t.dead_letter,
        RADGPT_DATABASE__URL=settings.database.url.get_secret_value(),
        RADGPT_INFERENCE__BACKEND=i.backend,
        RADGPT_INFERENCE__URL=i.url,
        RADGPT_INFERENCE__ADAPTER=i.adapter,
        RADGPT_INFERENCE__VERIFY_ADAPTER="false",
        RADGPT_INFERENCE__TIMEOUT_S=str(i.timeout_s),
        RADGPT_INFERENCE__MAX_RETRIES=str(i.max_retries),
        RADGPT_INFERENCE__CIRCUIT_RESET_S=str(i.circuit_reset_s),
        RADGPT_PIPELINE__MAX_IN_FLIGHT=str(p.max_in_flight),
        RADGPT_PIPELINE__RETRY_BACKOFF_S=str(p.retry_backoff_s),
        RADGPT_PIPELINE__RETRY_BACKOFF_MAX_S=str(p.retry_backoff_max_s),
        RADGPT_API__PORT=str(settings.api.port),
        RADGPT_LOG_LEVEL="WARNING",
    )
    return env


@pytest.fixture
async def migrated(db_url: str) -> AsyncIterator[Database]:
    database = open_database(db_url)
    await upgrade_database(database)
    try:
        yield database
    finally:
        await database.dispose()


@dataclass
class Outputs:
    """Everything read so far from the output and dead-letter topics."""

    hl7: list[bytes] = field(default_factory=list)
    fhir: list[bytes] = field(default_factory=list)
    dead: list[tuple[bytes, dict[str, bytes]]] = field(default_factory=list)
    headers: list[dict[str, bytes]] = field(default_factory=list)


async def read_outputs(
    bootstrap: str,
    topics: TopicSettings,
    *,
    until: int,
    timeout_s: float = 60.0,
    settle_s: float = 1.0,
) -> Outputs:
    """Read output topics until ``until`` messages arrived (then ``settle_s`` longer)."""
    consumer = AIOKafkaConsumer(
        topics.hl7_out, topics.fhir_out, topics.dead_letter,
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        group_id=None,
    )  # fmt: skip
    await consumer.start()
    outputs = Outputs()
    deadline = time.monotonic() + timeout_s
    settled_at: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                for r in records:
                    headers = dict(r.headers)
                    if tp.topic == topics.hl7_out:
                        outputs.hl7.append(r.value)
                        outputs.headers.append(headers)
                    elif tp.topic == topics.fhir_out:
                        outputs.fhir.append(r.value)
                        outputs.headers.append(headers)
                    else:
                        outputs.dead.append((r.value, headers))
            total = len(outputs.hl7) + len(outputs.fhir) + len(outputs.dead)
            if total >= until and settled_at is None:
                settled_at = time.monotonic()
            if settled_at is not None and time.monotonic() - settled_at >= settle_s:
                break
    finally:
        await consumer.stop()
    return outputs


async def publish(bootstrap: str, messages: list[tuple[str, bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@pytest.fixture
async def running(
    db_url: str, kafka_broker: str, model_server: ModelServer
) -> AsyncIterator[Settings]:
    """`radgpt serve` against the test broker, database and model server, until the test ends."""
    settings = make_settings(kafka_broker, db_url, model_server.url, max_in_flight=8)
    stop = asyncio.Event()
    started = asyncio.Event()
    task = asyncio.create_task(
        serve(settings, migrate=True, stop=stop, on_started=lambda *_: started.set())
    )
    await asyncio.wait_for(started.wait(), 60)
    try:
        yield settings
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
