"""Interoperability end to end (issue 12, input hygiene of issue 16): real broker, database and
model server. Messages shaped like real RIS/EHR feeds are drafted and answered in their own
character set without a human interpreter; truncated, undecodable, control-character and
identity-less messages are dead-lettered with the reason, never drafted."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from integration.app.settings import Settings
from integration.codecs.hl7.reader import Er7Message, decode_message
from integration.storage.db import Database, DraftRecord, InboundMessage

from .conftest import publish, read_outputs

# Chest radiographs: inside the shipped adapter's scope.
GOOD_HL7 = ["oru_v251_8859_2.hl7", "oru_v251_8859_15.hl7"]
GOOD_FHIR = ["bundle_accession_on_basedon_only.json", "dr_presentedform_only_plain_identifier.json"]
POISON = {
    "hl7/bad_truncated_obx.hl7": b"TruncatedMessageError",
    "hl7/bad_truncated_mllp.hl7": b"TruncatedMessageError",
    "hl7/bad_declared_ascii_utf8.hl7": b"CharsetError",
    "hl7/bad_nul_in_findings.hl7": b"ControlCharacterError",
    "hl7/bad_no_accession.hl7": b"MissingIdentityError",
    "fhir/bad_no_identity.json": b"MissingIdentityError",
    "fhir/bad_nul_in_conclusion.json": b"ControlCharacterError",
}


async def test_real_feed_shapes_and_refused_input(
    running: Settings, kafka_broker: str, migrated: Database, data_dir: Path
) -> None:
    topics = running.kafka.topics
    messages: list[tuple[str, bytes | None, bytes]] = []
    # Sent as not-yet-final reports (a RIS-final report is matched, not drafted).
    messages += [
        (topics.hl7_in, None, (data_dir / "hl7" / n).read_bytes().replace(b"|RAD|F", b"|RAD|P"))
        for n in GOOD_HL7
    ]
    messages += [
        (
            topics.fhir_in,
            None,
            (data_dir / "fhir" / n).read_bytes().replace(b'"final"', b'"preliminary"'),
        )
        for n in GOOD_FHIR
    ]
    poison = {}
    for name, error in POISON.items():
        raw = (data_dir / name).read_bytes()
        poison[raw] = error
        messages.append((topics.hl7_in if name.endswith(".hl7") else topics.fhir_in, None, raw))
    await publish(kafka_broker, messages)

    out = await read_outputs(kafka_broker, topics, until=len(messages))
    assert len(out.hl7) == 2 and len(out.fhir) == 2 and len(out.dead) == len(POISON)
    for raw, headers in out.dead:  # original bytes, typed reason
        assert headers["dlq-error-class"] == poison[raw]
        assert headers["dlq-reason"]

    by_charset = {}
    for raw in out.hl7:
        text, codec = decode_message(raw)
        message = Er7Message.parse(text, codec)
        obr = next(s for s in message.segments if s.id == "OBR")
        assert obr.field(32) == "" and "NOWAK" not in text  # no human interpreter
        by_charset[message.msh.field(18)] = (raw, text)
    polish_raw, polish = by_charset["8859/2"]  # answered in the sender's set, bytes and label
    assert "MAŁECKI".encode("iso8859-2") in polish_raw and "MAŁECKI^ZBIGNIEW" in polish
    french_raw, french = by_charset["8859/15"]
    assert "CŒURDEROY".encode("iso8859-15") in french_raw and "CŒURDEROY^BÉATRICE" in french

    async with migrated.sessions() as session:
        for _ in range(100):
            inbound = (await session.execute(select(InboundMessage))).scalars().all()
            if len(inbound) >= len(messages):
                break
            await asyncio.sleep(0.2)
        drafts = (await session.execute(select(DraftRecord))).scalars().all()
    assert sorted(d.accession for d in drafts) == sorted(
        ["PL-ACC-2024-0305-17", "FR-ACC-240412-55", "RIS-55120-XR", "LK-24-070233"]
    )
    outcomes = sorted(i.outcome for i in inbound)
    assert outcomes == sorted(["drafted"] * 4 + ["dead_lettered"] * len(POISON))
    assert not any("Saffronqu" in (d.findings or "") for d in drafts)
