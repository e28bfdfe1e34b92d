"""End to end against real components: Tansu broker, SQLite/PostgreSQL, the model server over
HTTP (instant engine) and the service's own HTTP endpoints."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from integration.app.demo import SampleReport, build_diagnostic_report, build_oru
from integration.app.settings import Settings
from integration.audit.log import AuditFilters, PageRequest, query_events, verify_chain
from integration.pipeline.publisher import control_id_for
from integration.storage.db import AuditEntry, Database, DraftRecord, InboundMessage

from .conftest import publish, read_outputs

NOW = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)


def sample(n: int, findings: str, *, control: str | None = None) -> SampleReport:
    return SampleReport(
        uid=str(n),
        exam="XR CHEST PA AND LATERAL",
        indication="Cough for two weeks.",
        findings=findings,
        impression="No acute cardiopulmonary process.",
        accession=f"E2E-ACC-{n}",
        mrn=f"MRN-SECRET-{n}",
        control_id=control or f"E2E{n:05d}",
    )


def final_oru(report: SampleReport, impression: str, control: str) -> bytes:
    """The RIS-final version of a report: OBR-25 F and an impression OBX."""
    er7 = build_oru(report, now=NOW).decode().replace(report.control_id, control, 1)
    er7 = er7.replace("||RAD|P", "||RAD|F")
    return (er7 + f"OBX|9|TX|19005-8^Impression^LN|1|{impression}||||||F\r").encode()


async def _wait_inbound(database: Database, count: int, timeout_s: float = 60.0) -> None:
    for _ in range(int(timeout_s / 0.2)):
        async with database.sessions() as session:
            rows = (await session.execute(select(InboundMessage))).scalars().all()
        if len(rows) >= count:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"only {len(rows)} of {count} messages processed")


async def test_reports_are_drafted_answered_in_kind_dead_lettered_and_audited(
    running: Settings,
    kafka_broker: str,
    migrated: Database,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    topics = running.kafka.topics
    hl7_samples = [sample(1, "Heart size normal. Lungs clear."), sample(2, "Small left effusion.")]
    fhir_samples = [sample(3, "Right lower lobe opacity. No effusion."), sample(4, "Clear lungs.")]
    hl7_files = ["oru_v251_findings_only.hl7", "oru_v24_tx_repetitions_lf.hl7"]
    poison = {
        topics.hl7_in: ["garbage.hl7", "adt_a01.hl7"],
        topics.fhir_in: ["not_json.json", "invalid_bogus_status.json"],
    }
    messages: list[tuple[str, bytes | None, bytes]] = [
        (topics.hl7_in, s.accession.encode(), build_oru(s, now=NOW)) for s in hl7_samples
    ]
    messages += [
        (topics.fhir_in, s.accession.encode(), build_diagnostic_report(s, now=NOW))
        for s in fhir_samples
    ]
    messages += [(topics.hl7_in, None, (data_dir / "hl7" / f).read_bytes()) for f in hl7_files]
    messages += [
        (topics.fhir_in, None, (data_dir / "fhir" / "dr_presentedform_html.json").read_bytes()),
        (topics.hl7_in, None, (data_dir / "hl7" / "oru_v251_lab_numeric.hl7").read_bytes()),
        (topics.fhir_in, None, (data_dir / "fhir" / "dr_lab_no_findings.json").read_bytes()),
        (topics.fhir_in, None, (data_dir / "fhir" / "dr_text_narrative.json").read_bytes()),
    ]
    poison_bytes = {}
    for topic, names in poison.items():
        for name in names:
            folder = "hl7" if name.endswith(".hl7") else "fhir"
            raw = (data_dir / folder / name).read_bytes()
            poison_bytes[raw] = topic
            messages.append((topic, None, raw))
    await publish(kafka_broker, messages)

    out = await read_outputs(kafka_broker, topics, until=4 + 3 + 4)
    assert len(out.hl7) == 4 and len(out.fhir) == 3 and len(out.dead) == 4

    # Dead letters: the original bytes and the reason headers.
    for raw, headers in out.dead:
        assert poison_bytes[raw] == headers["dlq-source-topic"].decode()
        assert headers["dlq-error-class"] in {
            b"MessageParseError", b"UnsupportedMessageError", b"InvalidResourceError",
        }  # fmt: skip
        assert headers["dlq-reason"] and headers["dlq-timestamp"]
        assert int(headers["dlq-source-offset"]) >= 0 and b"dlq-source-partition" not in raw

    await _wait_inbound(migrated, len(messages))
    async with migrated.sessions() as session:
        drafts = (await session.execute(select(DraftRecord))).scalars().all()
        inbound = (await session.execute(select(InboundMessage))).scalars().all()
    assert len(drafts) == 7
    assert all(d.published_at is not None and d.status == "pending_review" for d in drafts)
    assert Counter(i.outcome for i in inbound) == {"drafted": 7, "skipped": 3, "dead_lettered": 4}

    # Answers in kind, with the draft's deterministic MSH-10 and the AI label.
    msh10 = {m.decode().split("\r", 1)[0].split("|")[9] for m in out.hl7}
    by_accession = {d.accession: d for d in drafts}
    for s in hl7_samples:
        assert control_id_for(by_accession[s.accession].id, "P") in msh10
    for raw in out.hl7:
        text = raw.decode()
        assert "AI-GENERATED DRAFT" in text and "|RAD|P" in text.replace("||RAD|P", "|RAD|P")
    for raw in out.fhir:
        bundle = json.loads(raw)
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        reports = [
            e["resource"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "DiagnosticReport"
        ]  # fmt: skip
        assert reports[0]["status"] == "preliminary"
    assert {h["radgpt-report-status"] for h in out.headers} == {b"preliminary"}

    # Phase 2: a re-sent message, a RIS-final report and a newer report for an accession.
    resent = (data_dir / "hl7" / "oru_v251_findings_only.hl7").read_bytes()
    first = hl7_samples[0]
    newer = sample(2, "Moderate left effusion, increased.", control="E2E00002B")
    await publish(
        kafka_broker,
        [
            (topics.hl7_in, b"XR240512-0007", resent),
            (topics.hl7_in, first.accession.encode(), final_oru(first, "Normal chest.", "E2EF1")),
            (topics.hl7_in, newer.accession.encode(), build_oru(newer, now=NOW)),
        ],
    )
    await _wait_inbound(migrated, len(messages) + 2)  # the resent one keeps its row
    out2 = await read_outputs(kafka_broker, topics, until=4 + 3 + 4 + 1, settle_s=2.0)
    # The newer report was answered, and the preliminary it superseded withdrawn (issue 13):
    # 4 + 1 answers and 1 withdrawal on the HL7 topic (the superseded draft came in as HL7).
    assert len(out2.hl7) == 6 and len(out2.fhir) == 3
    withdrawals = [m for m in out2.hl7 if m.split(b"\r", 1)[0].split(b"|")[9].startswith(b"W")]
    assert len(withdrawals) == 1
    obr = next(x for x in withdrawals[0].decode().split("\r") if x.startswith("OBR|"))
    assert obr.split("|")[25] == "I" and newer.accession in obr
    async with migrated.sessions() as session:
        drafts = (await session.execute(select(DraftRecord))).scalars().all()
        statuses = Counter((d.accession, d.status) for d in drafts)
        ris = next(d for d in drafts if d.accession == first.accession)
    assert len(drafts) == 8
    assert statuses[(newer.accession, "superseded")] == 1
    assert statuses[(newer.accession, "pending_review")] == 1
    assert ris.status == "edited" and ris.review_source == "ris" and ris.final_text

    # The audit trail is complete, chained, and free of report text.
    async with migrated.sessions() as session:
        chain = await verify_chain(session)
        actions = Counter(
            e.action for e in (await session.execute(select(AuditEntry))).scalars().all()
        )
        duplicate = await query_events(
            session, AuditFilters(action="duplicate"), PageRequest(limit=10)
        )
    assert chain.ok, chain.reason
    assert actions["drafted"] == 8 and actions["published"] == 8
    assert actions["dead_lettered"] == 4 and actions["ris_final"] == 1
    assert actions["skipped"] == 3 and actions["received"] == len(messages) + 2 - 4
    assert actions["withdrawn"] == 1  # the superseded draft's preliminary
    assert duplicate.items[0].details["reason"] == "resent"

    # Probes and metrics over real HTTP.
    base = f"http://127.0.0.1:{running.api.port}"
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {
            "broker": True, "database": True, "adapter_canary": True, "consuming": True,
        }  # fmt: skip
        metrics = (await client.get("/metrics")).text
    assert f'radgpt_messages_total{{outcome="drafted",topic="{topics.hl7_in}"}}' in metrics
    assert "radgpt_end_to_end_latency_seconds_bucket" in metrics
    assert 'radgpt_dead_letters_total{error_class="MessageParseError"} 2.0' in metrics

    # No patient data in the logs.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for s in [*hl7_samples, *fhir_samples]:
        assert s.mrn not in logged and s.findings not in logged


async def test_a_study_outside_the_adapters_scope_gets_no_draft(
    running: Settings, kafka_broker: str, migrated: Database, data_dir: Path
) -> None:
    """A CT head (the shipped adapter is validated on chest radiographs only) is audited as
    skipped with reason out_of_scope; no draft is stored or published.  A chest radiograph
    sent after it on the same topic is drafted, so the gate is no accident of the set-up."""
    topics = running.kafka.topics
    ct_head = (data_dir / "scope" / "ct_head_oru.hl7").read_bytes()
    chest = sample(90, "Moderate right pleural effusion. No pneumothorax.")
    await publish(
        kafka_broker,
        [
            (topics.hl7_in, b"CT240513-0031", ct_head),
            (topics.hl7_in, chest.accession.encode(), build_oru(chest, now=NOW)),
        ],
    )
    out = await read_outputs(kafka_broker, topics, until=1)
    assert len(out.hl7) == 1 and not out.fhir and not out.dead
    await _wait_inbound(migrated, 2)
    async with migrated.sessions() as session:
        drafts = (await session.execute(select(DraftRecord))).scalars().all()
        skipped = await query_events(
            session, AuditFilters(action="skipped"), PageRequest(limit=10)
        )
    assert [d.accession for d in drafts] == [chest.accession]
    assert b"CT240513-0031" not in out.hl7[0]
    events = [e for e in skipped.items if e.accession == "CT240513-0031"]
    assert len(events) == 1
    details = events[0].details
    assert details["reason"] == "out_of_scope"
    assert details["scope"]["in_scope"] is False and details["scope"]["modality"] == "CT"
