"""A newer report supersedes a published AI preliminary: the pipeline withdraws it downstream
(HL7 OBX-11 ``W``, FHIR ``entered-in-error``), exactly once, even after a Kafka refusal."""

from __future__ import annotations

import uuid
from typing import Any

from review_helpers import oru
from sqlalchemy import select

from inference.backends.instant import InstantBackend
from inference.drafting.drafter import Drafter
from integration.app.settings import KafkaSettings
from integration.audit.log import AuditFilters, query_events
from integration.errors import PublishError
from integration.pipeline.kafka_client import ensure_topics, make_producer
from integration.pipeline.processor import InboundRecord, Processor
from integration.pipeline.publisher import PublishedOutput, Publisher, control_id_for
from integration.storage.db import Database, DraftRecord

from .conftest import read_outputs, unique_topics


class RefusingWithdrawals(Publisher):
    """The real publisher, except that withdrawals are refused once (a broker hiccup)."""

    refusals = 1

    async def publish_withdrawal(self, *args: Any, **kwargs: Any) -> list[PublishedOutput]:
        if self.refusals:
            self.refusals -= 1
            raise PublishError("Kafka refused a message: KafkaTimeoutError")
        return await super().publish_withdrawal(*args, **kwargs)


async def test_superseded_preliminary_is_withdrawn_once_even_after_a_refusal(
    kafka_broker: str, migrated: Database
) -> None:
    topics = unique_topics()
    kafka = KafkaSettings(bootstrap_servers=kafka_broker)
    await ensure_topics(kafka, [topics.hl7_out, topics.fhir_out, topics.dead_letter], partitions=1)
    producer = make_producer(kafka)
    await producer.start()
    accession, mrn = f"SUP{uuid.uuid4().hex[:8].upper()}", f"MRN-{uuid.uuid4().hex[:6]}"
    try:
        publisher = RefusingWithdrawals(producer=producer, topics=topics)
        processor = Processor(
            database=migrated, drafter=Drafter(InstantBackend(), verify=False), publisher=publisher
        )
        first = oru(accession, mrn, "Mild cardiomegaly. Lungs are clear.").encode()
        newer = oru(accession, mrn, "Moderate cardiomegaly. Small bilateral effusions.").encode()
        await processor.process(InboundRecord(topics.hl7_in, 0, 0, first))
        record = InboundRecord(topics.hl7_in, 0, 1, newer)
        try:
            await processor.process(record)
            raise AssertionError("the refused withdrawal must be retried, not swallowed")
        except PublishError:
            pass  # retriable: the worker processes the record again
        async with migrated.sessions() as session:
            none_yet = await query_events(session, AuditFilters(action="withdrawn"))
        assert none_yet.total == 0
        again = await processor.process(record)  # the redelivery
        assert again.outcome == "duplicate"
        await processor.process(record)  # and once more: nothing is sent twice
    finally:
        await producer.stop()

    async with migrated.sessions() as session:
        rows = (
            (await session.execute(select(DraftRecord).where(DraftRecord.accession == accession)))
            .scalars()
            .all()
        )
        withdrawn = await query_events(session, AuditFilters(action="withdrawn"))
    old = next(r for r in rows if r.status == "superseded")
    assert withdrawn.total == 1 and withdrawn.items[0].entity_id == old.id
    assert withdrawn.items[0].patient_id == mrn
    assert withdrawn.items[0].details["reason"] == "superseded"
    out = await read_outputs(kafka_broker, topics, until=3, settle_s=1.5)
    hl7_ids = [m.split(b"\r", 1)[0].split(b"|")[9].decode() for m in out.hl7]
    assert hl7_ids.count(control_id_for(old.id, "W")) == 1  # withdrawn exactly once
    assert len(out.hl7) == 3  # two preliminaries and one withdrawal
    withdrawal = next(m for m in out.hl7 if control_id_for(old.id, "W").encode() in m)
    segments = withdrawal.decode().split("\r")
    assert next(s for s in segments if s.startswith("OBR|")).split("|")[25] == "I"
    assert {s.split("|")[11] for s in segments if s.startswith("OBX|")} == {"W"}
