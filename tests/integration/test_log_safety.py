"""PHI safety at DEBUG: third-party loggers that print message values stay at INFO unless
``RADGPT_LOG_UNSAFE_PAYLOADS=true`` (checked with aiokafka against the real broker)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from integration.app.log_safety import PAYLOAD_LOGGERS, configure_logging
from integration.app.settings import Settings

MARKER = "PID|1||MRN-PHI-7731^^^HOSP||DOE^JANE"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def root_records() -> Iterator[_Records]:
    root = logging.getLogger()
    saved = root.level, {n: logging.getLogger(n).level for n in PAYLOAD_LOGGERS}
    handler = _Records()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)


async def _round_trip(bootstrap: str) -> None:
    topic = f"phi{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, MARKER.encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        assert any(r.value == MARKER.encode() for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()


async def test_debug_logs_of_kafka_clients_carry_no_message_values(
    kafka_broker: str, root_records: _Records
) -> None:
    configure_logging("DEBUG")
    assert logging.getLogger().getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("aiokafka.consumer.fetcher").getEffectiveLevel() == logging.INFO
    await _round_trip(kafka_broker)
    assert root_records.lines  # INFO lines of the clients still arrive
    assert not [line for line in root_records.lines if "MRN-PHI-7731" in line]


async def test_unsafe_payloads_lets_them_log_at_debug(
    kafka_broker: str, root_records: _Records
) -> None:
    configure_logging("DEBUG", unsafe_payloads=True)
    assert logging.getLogger("aiokafka.consumer.fetcher").getEffectiveLevel() == logging.DEBUG
    await _round_trip(kafka_broker)
    # aiokafka does print whole records at DEBUG: the cap above is what keeps them out.
    assert [line for line in root_records.lines if "MRN-PHI-7731" in line]
    assert any("unsafe" in line for line in root_records.lines)  # the warning about it


def test_the_switch_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_unsafe_payloads is False
    monkeypatch.setenv("RADGPT_LOG_UNSAFE_PAYLOADS", "true")
    assert Settings().log_unsafe_payloads is True


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("CHATTY")
