"""The pipeline's write-backs on the wire equal ``radgpt render``'s bytes (real broker)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from integration.app.settings import KafkaSettings, PipelineSettings, TopicSettings
from integration.codecs.codec import parse_message
from integration.pipeline.kafka_client import ensure_topics, make_producer
from integration.pipeline.publisher import Publisher
from integration.report.model import DraftProvenance

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
AT = "2024-05-01T11:59:00+00:00"


async def _published(bootstrap: str, path: Path, draft_id: str) -> list[bytes]:
    tag = uuid.uuid4().hex[:8]
    topics = TopicSettings(hl7_out=f"p{tag}.hl7", fhir_out=f"p{tag}.fhir")
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    await ensure_topics(kafka, [topics.hl7_out, topics.fhir_out], partitions=1)
    producer = make_producer(kafka)
    await producer.start()
    try:
        publisher = Publisher(producer, topics, PipelineSettings())
        for report in parse_message(path.read_bytes()):
            draft = DraftProvenance(
                draft_id=draft_id,
                model_id="HuggingFaceTB/SmolLM2-135M",
                adapter_id="radiology",
                drafted_at=datetime.fromisoformat(AT),
            )
            await publisher.publish_preliminary(report, "Sans anomalie.", draft)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topics.hl7_out, topics.fhir_out, bootstrap_servers=bootstrap,
        auto_offset_reset="earliest", group_id=None,
    )  # fmt: skip
    await consumer.start()
    values: list[bytes] = []
    try:
        for _ in range(100):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values += [r.value for r in records]
            if values:
                await asyncio.sleep(0.3)
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    values += [r.value for r in records]
                break
    finally:
        await consumer.stop()
    return values


@pytest.mark.parametrize(
    "name",
    ["hl7/oru_v251_8859_2.hl7", "hl7/oru_v28_two_obr.hl7", "fhir/bundle_transaction_urn.json"],
)
def test_pipeline_and_render_agree_byte_for_byte(kafka_broker: str, name: str) -> None:
    path = DATA / name
    on_the_wire = asyncio.run(_published(kafka_broker, path, "d-wire-1"))
    rendered = subprocess.run(
        [sys.executable, "-m", "integration", "render", str(path), "--impression",
         "Sans anomalie.", "--draft-id", "d-wire-1", "--at", AT],
        cwd=REPO, capture_output=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    separator = b"\r" if name.endswith(".hl7") else b"\n"
    expected = separator.join(on_the_wire) + (b"\n" if name.endswith(".json") else b"")
    assert len(on_the_wire) == (2 if "two_obr" in name else 1)
    assert rendered == expected
