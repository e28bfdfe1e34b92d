"""Kafka connection options, clients and topic provisioning, from :class:`KafkaSettings`.

:func:`client_options` is the one place settings become aiokafka arguments (SASL/SCRAM and
TLS included); producers, consumers and the admin client all take them.  The embedded Tansu
broker supports neither idempotent producers nor transactions, so ``enable_idempotence`` is
only passed when the settings ask for it.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from integration.app.settings import KafkaSettings
from integration.errors import PublishError

__all__ = [
    "REQUEST_HEADROOM_BYTES",
    "client_options",
    "ensure_topics",
    "make_consumer",
    "make_producer",
    "ssl_context",
]

log = logging.getLogger(__name__)


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """The TLS context for ``SSL`` / ``SASL_SSL``: CA bundle, optional client certificate."""
    context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    if kafka.ssl_certfile:
        context.load_cert_chain(
            certfile=str(kafka.ssl_certfile),
            keyfile=str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
        )
    context.check_hostname = kafka.ssl_check_hostname
    if not kafka.ssl_check_hostname:
        log.warning("Kafka TLS hostname verification is disabled")
    return context


def client_options(kafka: KafkaSettings, *, client_suffix: str = "") -> dict[str, Any]:
    """The keyword arguments every aiokafka client gets (connection and security)."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": f"{kafka.client_id}{client_suffix}",
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL"):
        if kafka.sasl_mechanism is None:
            raise ValueError(f"kafka.sasl_mechanism is required with {kafka.security_protocol}")
        if not kafka.sasl_username or kafka.sasl_password is None:
            raise ValueError("kafka.sasl_username and kafka.sasl_password are required for SASL")
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return options


# Room for the headers and record framing on top of the largest accepted message (a dead
# letter carries the original bytes plus its reason headers).
REQUEST_HEADROOM_BYTES = 64 * 1024


def make_producer(
    kafka: KafkaSettings, *, linger_ms: int = 2, max_message_bytes: int | None = None
) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas (``acks=all``).

    ``max_message_bytes`` (``pipeline.max_message_bytes``) sets ``max_request_size`` so that
    any accepted inbound message can be dead-lettered whole (aiokafka's default is 1 MiB).
    """
    options = client_options(kafka, client_suffix="-producer")
    options.update(acks="all", linger_ms=linger_ms, request_timeout_ms=30_000)
    if max_message_bytes is not None:
        options["max_request_size"] = max(1024 * 1024, max_message_bytes + REQUEST_HEADROOM_BYTES)
    if kafka.enable_idempotence:
        options["enable_idempotence"] = True
    return AIOKafkaProducer(**options)


def make_consumer(
    kafka: KafkaSettings, *, group_id: str | None = None, **overrides: Any
) -> AIOKafkaConsumer:
    """A group consumer with manual commits, starting from the earliest unread offset."""
    options = client_options(kafka, client_suffix="-consumer")
    options.update(
        group_id=group_id if group_id is not None else kafka.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=kafka.session_timeout_ms,
        max_poll_interval_ms=kafka.max_poll_interval_ms,
        heartbeat_interval_ms=min(3_000, kafka.session_timeout_ms // 3),
    )
    options.update(overrides)
    return AIOKafkaConsumer(**options)


async def ensure_topics(
    kafka: KafkaSettings,
    names: Iterable[str],
    *,
    partitions: int,
    replication_factor: int = 1,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    wanted = sorted(set(names))
    admin = AIOKafkaAdminClient(**client_options(kafka, client_suffix="-admin"))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another replica was quicker
                await admin.create_topics(
                    [NewTopic(name, partitions, replication_factor) for name in missing]
                )
            log.info("created topics %s (%d partitions)", ", ".join(missing), partitions)
        return missing
    except KafkaError as exc:
        raise PublishError(f"cannot provision Kafka topics: {type(exc).__name__}") from exc
    finally:
        await admin.close()
