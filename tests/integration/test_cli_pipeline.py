"""``radgpt publish`` against a real Kafka-protocol broker (Tansu): checks before sending."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

REPO = Path(__file__).resolve().parents[2]
HL7 = REPO / "tests" / "data" / "hl7"


def radgpt(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "integration", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _values(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        for _ in range(100):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values += [r.value for r in records]
            if len(values) >= count:
                break
    finally:
        await consumer.stop()
    return values


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "error: in.hl7: empty message (use --raw to send it unchecked)"),
        (b"hello world\n", "error: in.hl7: not an HL7 v2 message (no MSH segment) nor FHIR"),
        (bytes(range(256)), "error: in.hl7: not an HL7 v2 message (no MSH segment) nor FHIR"),
        ((HL7 / "bad_truncated_obx.hl7").read_bytes(), "error: in.hl7: truncated HL7 v2"),
    ],
)
def test_publish_parses_each_file_first(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "in.hl7"
    path.write_bytes(content)
    # refused before any connection: the bootstrap server below does not exist
    line = _one_error_line(
        radgpt("publish", path, "--topic", "t", "--bootstrap-servers", "127.0.0.1:9")
    )
    assert line.startswith(message), line


def test_publish_refuses_oversize_files_even_raw(tmp_path: Path) -> None:
    path = tmp_path / "big.hl7"
    path.write_bytes(b"x" * 5000)
    line = _one_error_line(
        radgpt(
            "publish",
            path,
            "--raw",
            "--topic",
            "t",
            "--bootstrap-servers",
            "127.0.0.1:9",
            RADGPT_PIPELINE__MAX_MESSAGE_BYTES="4096",
        )
    )
    assert line.startswith("error: big.hl7 is larger than the message size limit of 4096 bytes")


def test_publish_connection_error_names_the_servers(tmp_path: Path) -> None:
    line = _one_error_line(
        radgpt(
            "publish",
            HL7 / "oru_v27_no_pv1_orc.hl7",
            "--topic",
            "t",
            RADGPT_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:9",
        )
    )
    assert line == (
        "error: cannot connect to Kafka at 127.0.0.1:9 "
        "(set --bootstrap-servers or RADGPT_KAFKA__BOOTSTRAP_SERVERS)"
    )


def test_publish_needs_an_existing_topic_and_sends_raw_on_request(
    kafka_broker: str, tmp_path: Path
) -> None:
    topic = f"t{uuid.uuid4().hex[:8]}.radiology.hl7.oru"
    good = HL7 / "oru_v27_no_pv1_orc.hl7"
    line = _one_error_line(
        radgpt("publish", good, "--topic", topic, "--bootstrap-servers", kafka_broker)
    )
    assert line.startswith(f"error: topic '{topic}' does not exist on {kafka_broker}")
    assert topic not in asyncio.run(_topics(kafka_broker))  # a typo creates nothing

    result = radgpt(
        "publish", good, "--topic", topic, "--bootstrap-servers", kafka_broker, "--create-topic"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"oru_v27_no_pv1_orc.hl7\t{topic}\t")
    garbage = tmp_path / "dead-letter.bin"
    garbage.write_bytes(b"\x00\x01 not a message")
    result = radgpt(
        "publish", garbage, "--raw", "--topic", topic, "--bootstrap-servers", kafka_broker
    )
    assert result.returncode == 0, result.stderr
    values = asyncio.run(_values(kafka_broker, topic, 2))
    assert sorted(values) == sorted([good.read_bytes(), garbage.read_bytes()])
