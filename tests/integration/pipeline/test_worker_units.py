"""Pure logic of the pipeline: offset tracking, backoff, routing, keys, Kafka options."""

from __future__ import annotations

import ssl

import pytest
from pydantic import SecretStr

from inference.errors import AdapterError, BackendUnavailable, GenerationFailed, InvalidRequest
from integration.app.settings import KafkaSettings
from integration.errors import MessageParseError, PublishError, StorageError
from integration.pipeline.kafka_client import client_options
from integration.pipeline.processor import is_retriable, source_key_of
from integration.pipeline.publisher import control_id_for, formats_for, message_key
from integration.pipeline.worker import PartitionOffsets, RetryPolicy, backoff_delay
from integration.report.model import Hl7Origin, RadiologyReport


def test_commit_position_stops_at_the_lowest_unfinished_offset() -> None:
    offsets = PartitionOffsets()
    for offset in (10, 11, 12, 13):
        offsets.add(offset)
    assert offsets.committable() is None
    offsets.complete(12)
    offsets.complete(11)
    assert offsets.committable() is None  # 10 still in flight
    offsets.complete(10)
    assert offsets.committable() == 13 and len(offsets) == 1
    offsets.complete(13)
    assert offsets.committable() == 14 and len(offsets) == 0


def test_offsets_must_increase() -> None:
    offsets = PartitionOffsets()
    offsets.add(5)
    with pytest.raises(ValueError, match="not after"):
        offsets.add(5)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(initial_s=1.0, max_s=8.0)
    delays = [backoff_delay(n, policy, jitter=0.0) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert all(0.8 <= backoff_delay(1, policy) <= 1.2 for _ in range(50))


@pytest.mark.parametrize(
    ("error", "retriable"),
    [
        (StorageError("db down"), True),
        (PublishError("kafka down"), True),
        (BackendUnavailable("503"), True),
        (AdapterError("wrong adapter"), True),  # a deployment fault: stall, do not dead-letter
        (InvalidRequest("422"), False),
        (GenerationFailed("empty"), False),
        (MessageParseError("garbage"), False),
        (KeyError("bug"), False),
    ],
)
def test_retriable_classification(error: Exception, retriable: bool) -> None:
    assert is_retriable(error) is retriable


def _report(fmt: str = "hl7v2", accession: str | None = "ACC1") -> RadiologyReport:
    return RadiologyReport(
        source_format=fmt,  # type: ignore[arg-type]
        message_id="MSG1",
        source_system="RIS^HOSP",
        accession=accession,
        patient_id="MRN1",
        findings="Clear lungs.",
        hl7=Hl7Origin(pid="PID|1", obr="OBR|1"),
    )


def test_answers_in_kind_unless_configured_for_both() -> None:
    both = ["hl7", "fhir"]
    assert formats_for(_report("hl7v2"), output_formats=both, answer_in_kind=True) == ["hl7"]
    assert formats_for(_report("fhir-r4"), output_formats=both, answer_in_kind=True) == ["fhir"]
    assert formats_for(_report("hl7v2"), output_formats=both, answer_in_kind=False) == both
    assert formats_for(_report("hl7v2"), output_formats=["fhir"], answer_in_kind=True) == ["fhir"]


def test_keys_and_control_ids_are_stable() -> None:
    assert message_key(_report()) == b"ACC1"
    assert message_key(_report(accession=None)) == b"MRN1"
    draft_id = "0b6f3c2e-1d2a-4c1b-9d7e-5a4b3c2d1e0f"
    assert control_id_for(draft_id, "P") == "P0b6f3c2e1d2a4c1b9d7"
    assert len(control_id_for(draft_id, "F")) == 20
    assert source_key_of([_report()], "ab" * 32) == "RIS^HOSP|MSG1"
    assert source_key_of([], "ab" * 32) == "raw|" + "ab" * 32


def test_kafka_options_for_sasl_scram_over_tls() -> None:
    kafka = KafkaSettings(
        bootstrap_servers="kafka-0:9093,kafka-1:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="radgpt",
        sasl_password=SecretStr("s3cret"),
        ssl_check_hostname=False,
    )
    options = client_options(kafka)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "radgpt"
    assert options["sasl_plain_password"] == "s3cret"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].check_hostname is False


def test_kafka_sasl_without_credentials_is_refused() -> None:
    kafka = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256")
    with pytest.raises(ValueError, match="sasl_username"):
        client_options(kafka)
    with pytest.raises(ValueError, match="sasl_mechanism"):
        client_options(KafkaSettings(security_protocol="SASL_PLAINTEXT"))


def test_plaintext_options_carry_no_security() -> None:
    options = client_options(KafkaSettings(bootstrap_servers="127.0.0.1:9092"))
    assert options == {
        "bootstrap_servers": "127.0.0.1:9092",
        "client_id": "radgpt",
        "security_protocol": "PLAINTEXT",
    }
