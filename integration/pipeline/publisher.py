"""Publishing outputs to Kafka: preliminary and final reports, and dead letters.

Answers are deterministic for a draft: the HL7 MSH-10 is derived from the draft id (``P`` +
id for the preliminary, ``F`` + id for the final), the FHIR Bundle's full URLs are uuid5 of
accession and draft id (conditional update on the accession identifier), and the timestamps
are the draft's own.  A re-publish after a crash is therefore byte-identical and downstream
de-duplicates it by MSH-10 or by the conditional update.

The outputs of one answer are enqueued together and acknowledged together; every send waits
for the broker's acknowledgement (``acks=all``); a failure raises the
retriable :class:`~integration.errors.PublishError`.  The optional FHIR sink POSTs the same
transaction Bundle to a FHIR server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from integration.app.settings import FhirSinkSettings, PipelineSettings, TopicSettings
from integration.codecs.fhir.writer import (
    build_final_bundle,
    build_preliminary_bundle,
    build_withdrawal_bundle,
)
from integration.codecs.hl7.writer import (
    build_final_oru,
    build_preliminary_oru,
    build_withdrawal_oru,
    encode_er7,
)
from integration.errors import PublishError
from integration.pipeline.faults import is_too_large, translate_kafka
from integration.report.model import Approval, Clinician, DraftProvenance, RadiologyReport
from integration.report.vocabulary import WithdrawalReason

__all__ = [
    "Answer",
    "FhirSink",
    "OutputFormat",
    "PublishedOutput",
    "Publisher",
    "control_id_for",
    "final_answer",
    "formats_for",
    "message_key",
    "preliminary_answer",
]

log = logging.getLogger(__name__)

OutputFormat = Literal["hl7", "fhir"]
_FORMAT_OF_SOURCE: dict[str, OutputFormat] = {"hl7v2": "hl7", "fhir-r4": "fhir"}
# topic, value, key, headers
_Outgoing = tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]


@dataclass(frozen=True)
class PublishedOutput:
    """One acknowledged output message (no content: ids only, safe to log and audit)."""

    format: OutputFormat | Literal["dead_letter"]
    topic: str
    partition: int
    offset: int
    message_id: str


def control_id_for(draft_id: str, kind: Literal["P", "F", "W"]) -> str:
    """The MSH-10 of the answer for a draft: stable, 20 characters (HL7 2.5 ST limit)."""
    return kind + draft_id.replace("-", "")[:19]


def message_key(report: RadiologyReport) -> bytes:
    """The Kafka key that keeps one study's messages in order: accession, else patient."""
    return (report.accession or report.patient_id or report.message_id).encode("utf-8")


def formats_for(
    report: RadiologyReport, *, output_formats: Sequence[str], answer_in_kind: bool
) -> list[OutputFormat]:
    """Which outputs a report gets: its own format, or every configured one."""
    configured: list[OutputFormat] = [f for f in ("hl7", "fhir") if f in output_formats]
    if not answer_in_kind:
        return configured
    own = _FORMAT_OF_SOURCE[report.source_format]
    return [own] if own in configured else configured


def _canonical_json(document: dict[str, Any]) -> bytes:
    """Sorted keys: a re-publish is byte-identical even after a JSONB round trip."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text.encode("utf-8")


@dataclass(frozen=True)
class Answer:
    """One answer for one report, built by pure functions shared by the pipeline and the CLI.

    :meth:`payloads` are exactly the bytes published: HL7 ER7 with ``\\r`` separators in the
    character set MSH-18 declares, FHIR as canonical JSON.  ``radgpt render`` prints them.
    """

    message_id: str
    status: Literal["preliminary", "final", "withdrawn"]
    hl7: str | None
    bundle: dict[str, Any] | None

    def payloads(self) -> list[tuple[OutputFormat, bytes]]:
        out: list[tuple[OutputFormat, bytes]] = []
        if self.hl7 is not None:
            out.append(("hl7", encode_er7(self.hl7)))
        if self.bundle is not None:
            out.append(("fhir", _canonical_json(self.bundle)))
        return out


def preliminary_answer(
    report: RadiologyReport,
    impression: str,
    draft: DraftProvenance,
    *,
    pipeline: PipelineSettings,
    formats: Sequence[OutputFormat],
) -> Answer:
    """The AI-labelled preliminary answer for a draft; identical on every re-build."""
    message_id = control_id_for(draft.draft_id, "P")
    moment: datetime = draft.drafted_at
    hl7 = (
        build_preliminary_oru(
            report,
            impression,
            draft,
            status=pipeline.hl7_preliminary_status,
            control_id=message_id,
            now=moment,
            output_charset=pipeline.hl7_output_charset,
        )
        if "hl7" in formats
        else None
    )
    bundle = (
        build_preliminary_bundle(report, impression, draft, now=moment)
        if "fhir" in formats
        else None
    )
    return Answer(message_id, "preliminary", hl7, bundle)


def final_answer(
    report: RadiologyReport,
    impression: str,
    approval: Approval,
    draft: DraftProvenance | None,
    *,
    pipeline: PipelineSettings,
    formats: Sequence[OutputFormat],
) -> Answer:
    """The radiologist-signed final answer (HL7 OBR-25 ``F``, FHIR ``final``)."""
    draft_id = draft.draft_id if draft else approval.draft_id
    message_id = control_id_for(draft_id, "F") if draft_id else None
    hl7 = (
        build_final_oru(
            report,
            impression,
            approval,
            draft=draft,
            control_id=message_id,
            now=approval.approved_at,
            output_charset=pipeline.hl7_output_charset,
        )
        if "hl7" in formats
        else None
    )
    bundle = (
        build_final_bundle(report, impression, approval, draft=draft, now=approval.approved_at)
        if "fhir" in formats
        else None
    )
    return Answer(message_id or "", "final", hl7, bundle)


class FhirSink:
    """POSTs transaction Bundles to a FHIR server (``POST [base]``)."""

    def __init__(self, settings: FhirSinkSettings, *, client: httpx.AsyncClient | None = None):
        if not settings.url:
            raise ValueError("fhir_sink.url is not set")
        headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        if settings.token is not None:
            headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        self._url = settings.url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=settings.timeout_s, headers=headers)

    async def post_bundle(self, bundle: dict[str, Any]) -> None:
        try:
            response = await self._client.post(self._url, content=json.dumps(bundle))
        except httpx.HTTPError as exc:
            raise PublishError(f"FHIR sink unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise PublishError(f"FHIR sink answered {response.status_code}")
        if response.status_code >= 400:
            error = PublishError(f"FHIR sink rejected the bundle ({response.status_code})")
            error.retriable = False
            raise error

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass
class Publisher:
    """Sends answers and dead letters through one started :class:`AIOKafkaProducer`."""

    producer: AIOKafkaProducer
    topics: TopicSettings
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    fhir_sink: FhirSink | None = None

    def formats(self, report: RadiologyReport) -> list[OutputFormat]:
        return formats_for(
            report,
            output_formats=self.pipeline.output_formats,
            answer_in_kind=self.pipeline.answer_in_kind,
        )

    async def _send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> tuple[int, int]:
        (position,) = await self._send_all([(topic, value, key, headers)])
        return position

    async def _send_all(self, messages: Sequence[_Outgoing]) -> list[tuple[int, int]]:
        """Enqueue every message in order, then wait for all acknowledgements together.

        The producer batches what is enqueued together into one request per partition, and
        messages with one key keep their order.  Any refusal raises :class:`PublishError`
        (after every send has settled, so nothing is left unobserved).
        """
        futures: list[asyncio.Future[Any]] = []
        try:
            for topic, value, key, headers in messages:
                futures.append(await self.producer.send(topic, value, key=key, headers=headers))
        except KafkaError as exc:
            await asyncio.gather(*futures, return_exceptions=True)
            raise translate_kafka(exc, topic) from exc
        results = await asyncio.gather(*futures, return_exceptions=True)
        positions: list[tuple[int, int]] = []
        for (topic, *_), result in zip(messages, results, strict=True):
            if isinstance(result, KafkaError):
                raise translate_kafka(result, topic) from result
            if isinstance(result, BaseException):
                raise result
            positions.append((int(result.partition), int(result.offset)))
        return positions

    async def _publish(self, report: RadiologyReport, answer: Answer) -> list[PublishedOutput]:
        key = message_key(report)
        headers = [
            ("radgpt-report-status", answer.status.encode()),
            ("radgpt-message-id", answer.message_id.encode()),
        ]
        topics = {"hl7": self.topics.hl7_out, "fhir": self.topics.fhir_out}
        content_types = {"hl7": b"x-application/hl7-v2+er7", "fhir": b"application/fhir+json"}
        payloads = answer.payloads()
        outgoing: list[_Outgoing] = [
            (topics[fmt], value, key, [*headers, ("content-type", content_types[fmt])])
            for fmt, value in payloads
        ]
        positions = await self._send_all(outgoing)
        if answer.bundle is not None and self.fhir_sink is not None:
            await self.fhir_sink.post_bundle(answer.bundle)
        return [
            PublishedOutput(fmt, topic, partition, offset, answer.message_id)
            for (fmt, _), (topic, *_), (partition, offset) in zip(
                payloads, outgoing, positions, strict=True
            )
        ]

    async def publish_preliminary(
        self,
        report: RadiologyReport,
        impression: str,
        draft: DraftProvenance,
        *,
        formats: Sequence[OutputFormat] | None = None,
    ) -> list[PublishedOutput]:
        """The AI-labelled preliminary answer(s) for a stored draft; identical on re-send."""
        wanted = list(formats) if formats is not None else self.formats(report)
        answer = preliminary_answer(
            report, impression, draft, pipeline=self.pipeline, formats=wanted
        )
        return await self._publish(report, answer)

    async def publish_final(
        self,
        report: RadiologyReport,
        impression: str,
        approval: Approval,
        draft: DraftProvenance | None = None,
    ) -> list[PublishedOutput]:
        """The radiologist-signed final answer(s) (HL7 OBR-25 ``F``, FHIR ``final``)."""
        answer = final_answer(
            report,
            impression,
            approval,
            draft,
            pipeline=self.pipeline,
            formats=self.formats(report),
        )
        return await self._publish(report, answer)

    async def publish_withdrawal(
        self,
        report: RadiologyReport,
        impression: str,
        draft: DraftProvenance,
        *,
        reason: WithdrawalReason,
        withdrawn_at: datetime,
        withdrawn_by: Clinician | None = None,
    ) -> list[PublishedOutput]:
        """Withdraw a published preliminary (HL7 OBR-25 ``I``/OBX-11 ``W``; FHIR
        ``entered-in-error``) in the formats the preliminary went out in.  MSH-10 is ``W`` +
        the draft id and the FHIR full URLs are deterministic, so a re-send is identical."""
        wanted = self.formats(report)
        message_id = control_id_for(draft.draft_id, "W")
        hl7 = (
            build_withdrawal_oru(
                report, impression, draft, reason=reason, control_id=message_id, now=withdrawn_at,
                output_charset=self.pipeline.hl7_output_charset,
            )
            if "hl7" in wanted
            else None
        )
        bundle = (
            build_withdrawal_bundle(
                report, impression, draft, reason=reason, withdrawn_by=withdrawn_by,
                now=withdrawn_at,
            )
            if "fhir" in wanted
            else None
        )  # fmt: skip
        return await self._publish(report, Answer(message_id, "withdrawn", hl7, bundle))

    async def dead_letter(
        self, raw: bytes, reason: str, headers: dict[str, str], *, key: bytes | None = None
    ) -> PublishedOutput:
        """Park the original bytes on the dead-letter topic with the reason in headers.

        A record Kafka refuses as too large (the producer's ``max_request_size`` follows
        ``pipeline.max_message_bytes``; a broker may allow less) is sent truncated, with
        ``dlq-truncated``, ``dlq-original-length`` and the SHA-256 of the whole original in
        headers, halving until the broker takes it -- never retried forever.
        """
        all_headers = [("dlq-reason", reason[:500].encode("utf-8"))]
        all_headers += [(name, value.encode("utf-8")) for name, value in headers.items()]
        topic = self.topics.dead_letter
        try:
            partition, offset = await self._send(topic, raw, key=key, headers=all_headers)
        except PublishError as exc:
            if not is_too_large(exc):
                raise
            partition, offset = await self._dead_letter_truncated(raw, all_headers, key)
        return PublishedOutput("dead_letter", topic, partition, offset, "")

    async def _dead_letter_truncated(
        self, raw: bytes, headers: list[tuple[str, bytes]], key: bytes | None
    ) -> tuple[int, int]:
        size = min(len(raw) - 1, self.pipeline.max_message_bytes)
        marked = [
            *headers,
            ("dlq-truncated", b"true"),
            ("dlq-original-length", str(len(raw)).encode()),
        ]
        if not any(name == "dlq-raw-sha256" for name, _ in headers):
            marked.append(("dlq-raw-sha256", hashlib.sha256(raw).hexdigest().encode()))
        while True:
            try:
                position = await self._send(
                    self.topics.dead_letter, raw[:size], key=key, headers=marked
                )
            except PublishError as exc:
                if not is_too_large(exc) or size == 0:
                    raise
                size //= 2
                continue
            log.warning(
                "dead letter of %d bytes was too large for Kafka; sent its first %d bytes",
                len(raw), size,
            )  # fmt: skip
            return position
