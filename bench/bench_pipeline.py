"""Pipeline throughput and added latency against a raw aiokafka consume-and-produce loop.

Everything runs in one process run on one embedded broker (Tansu):

* **baseline**: a raw aiokafka loop (``getmany`` -> ``send`` each record to an output topic
  -> wait for the acks -> ``commit``), no parsing, no database, no model;
* **pipeline**: the real worker (:mod:`integration.pipeline.worker` +
  :mod:`integration.pipeline.processor`):
  parse, dedupe, draft with the instant (extractive, no weights) model, store in SQLite or
  PostgreSQL, audit, publish, commit.  ``--model inprocess`` (default) drafts with the
  in-process ``instant`` backend, so the figure is the pipeline's own cost;
  ``--model http`` goes through ``serve-model --engine instant`` over HTTP (TGI API).

Throughput: drain a backlog of ``--messages`` reports (half HL7 v2, half FHIR R4).
Latency: publish ``--paced`` reports at ``--rate`` per second into a running consumer and take
output CreateTime minus input CreateTime per report; "added" is pipeline minus baseline.

CPU floor: the same messages through the pipeline's in-memory steps alone, one after the
other, with no broker and no database -- parse (our HL7 reader; FHIR validated by
fhir.resources), draft with the instant model (prompt, extraction, safety checks), build and
serialise the HL7 and FHIR answers, hash the audit rows.  One core cannot run the pipeline
faster than that, whatever the database and Kafka cost; its ratio to the raw loop is the
best any pipeline doing this work in this process could reach.

    .venv/bin/python bench/bench_pipeline.py --messages 1000
    .venv/bin/python bench/bench_pipeline.py --messages 1000 --model http
    .venv/bin/python bench/bench_pipeline.py --database postgresql+asyncpg://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from integration.app.demo import SampleReport, build_diagnostic_report, build_oru  # noqa: E402
from integration.app.service import open_pipeline  # noqa: E402
from integration.app.settings import (  # noqa: E402
    DatabaseSettings,
    InferenceSettings,
    KafkaSettings,
    PipelineSettings,
    Settings,
    TopicSettings,
)
from integration.pipeline.broker import EmbeddedBroker, free_port  # noqa: E402
from integration.pipeline.kafka_client import ensure_topics  # noqa: E402

NOW = datetime(2025, 1, 1, tzinfo=UTC)
FINDINGS = [
    "Heart size is normal. Lungs are clear. No pleural effusion.",
    "Small right pleural effusion with adjacent atelectasis. No pneumothorax.",
    "Left lower lobe consolidation. Mild cardiomegaly.",
]


def _messages(topics: TopicSettings, n: int, tag: str) -> list[tuple[str, bytes, bytes]]:
    out = []
    for i in range(n):
        s = SampleReport(
            uid=str(i), exam="XR CHEST 2 VIEWS", indication="Cough.",
            findings=f"{FINDINGS[i % 3]} Case {tag}-{i}.", impression="", mrn=f"M{i:07d}",
            accession=f"{tag}{i:06d}", control_id=f"{tag}{i:06d}",
        )  # fmt: skip
        if i % 2 == 0:
            out.append((topics.hl7_in, s.accession.encode(), build_oru(s, now=NOW)))
        else:
            out.append((topics.fhir_in, s.accession.encode(), build_diagnostic_report(s, now=NOW)))
    return out


async def _publish(bootstrap: str, messages: list[tuple[str, bytes, bytes]], rate: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        if rate <= 0:
            futures = [await producer.send(t, v, key=k) for t, k, v in messages]
            await asyncio.gather(*futures)
            return
        for t, k, v in messages:
            await producer.send_and_wait(t, v, key=k)
            await asyncio.sleep(1.0 / rate)
    finally:
        await producer.stop()


async def _collect(bootstrap: str, topics: list[str], n: int, timeout_s: float) -> dict[bytes, int]:
    """Output CreateTime (ms) per key, for the first ``n`` outputs."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    seen: dict[bytes, int] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    seen.setdefault(r.key, r.timestamp)
    finally:
        await consumer.stop()
    if len(seen) < n:
        raise RuntimeError(f"only {len(seen)} of {n} outputs arrived")
    return seen


async def _input_times(bootstrap: str, topics: list[str], n: int) -> dict[bytes, int]:
    return await _collect(bootstrap, topics, n, 60)


@contextlib.asynccontextmanager
async def _raw_loop(bootstrap: str, inputs: list[str], output: str) -> AsyncIterator[None]:
    consumer = AIOKafkaConsumer(
        *inputs, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False, auto_offset_reset="earliest",
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=500)
            futures = [
                await producer.send(output, r.value, key=r.key)
                for records in batch.values()
                for r in records
            ]
            await asyncio.gather(*futures)
            if batch:
                await consumer.commit()

    task = asyncio.create_task(loop())
    while not consumer.assignment():  # joined the group
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        stop.set()
        await task
        await producer.stop()
        await consumer.stop()


@contextlib.asynccontextmanager
async def _pipeline(settings: Settings) -> AsyncIterator[None]:
    async with open_pipeline(settings, migrate=True) as pipeline:
        task = asyncio.create_task(pipeline.run_worker())
        while not (pipeline.worker.started and pipeline.worker.consumer.assignment()):
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            pipeline.worker.stop()
            await task


def _topics(tag: str) -> TopicSettings:
    return TopicSettings(
        hl7_in=f"{tag}.hl7.in", fhir_in=f"{tag}.fhir.in", hl7_out=f"{tag}.hl7.out",
        fhir_out=f"{tag}.fhir.out", dead_letter=f"{tag}.dlq", partitions=3,
    )  # fmt: skip


async def _measure(
    bootstrap: str,
    runner: Callable[[TopicSettings], contextlib.AbstractAsyncContextManager[None]],
    outputs: Callable[[TopicSettings], list[str]],
    *,
    messages: int,
    paced: int,
    rate: float,
) -> tuple[float, list[float]]:
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    # Throughput: drain a backlog.
    # Message ids and accessions are new in every run, so a reused database (PostgreSQL)
    # does not see the reports as already drafted.
    run = uuid.uuid4().hex[:6]
    topics = _topics(f"b{run}")
    await ensure_topics(kafka, [topics.hl7_in, topics.fhir_in, *outputs(topics)], partitions=3)
    await _publish(bootstrap, _messages(topics, messages, f"T{run}"), rate=0)
    async with runner(topics):
        done = await _collect(bootstrap, outputs(topics), messages, 600)
    # From the first output to the last (the consumer-group join is not counted).
    elapsed = (max(done.values()) - min(done.values())) / 1000.0
    # Latency: paced arrivals into a running consumer.
    topics = _topics(f"l{uuid.uuid4().hex[:6]}")
    await ensure_topics(kafka, [topics.hl7_in, topics.fhir_in, *outputs(topics)], partitions=3)
    async with runner(topics):
        await _publish(bootstrap, _messages(topics, paced, f"L{run}"), rate=rate)
        out = await _collect(bootstrap, outputs(topics), paced, 120)
    inputs = await _input_times(bootstrap, [topics.hl7_in, topics.fhir_in], paced)
    latencies = [(out[k] - inputs[k]) / 1000.0 for k in out]
    return (messages - 1) / elapsed, latencies


async def _cpu_floor(messages: list[tuple[str, bytes, bytes]]) -> float:
    """Seconds per message of the in-memory work alone (see the module docstring)."""
    import hashlib
    import json

    from inference.backends.instant import InstantBackend
    from inference.drafting.drafter import Drafter
    from integration.audit.log import compute_row_hash
    from integration.codecs.codec import parse_message
    from integration.codecs.fhir.writer import build_preliminary_bundle
    from integration.codecs.hl7.writer import build_preliminary_oru, encode_er7
    from integration.report.model import DraftProvenance

    drafter = Drafter(InstantBackend(adapter_id="radiology"), verify=False)
    start = time.perf_counter()
    for _topic, _key, value in messages:
        raw_sha = hashlib.sha256(value).hexdigest()
        for report in parse_message(value):
            draft = await drafter.draft(report.findings)
            provenance = DraftProvenance(
                draft_id=str(uuid.uuid4()), model_id=draft.model_id, adapter_id="radiology",
                drafted_at=NOW,
            )  # fmt: skip
            if report.source_format == "hl7v2":
                hl7 = build_preliminary_oru(
                    report, draft.text, provenance, status="P", control_id="P1", now=NOW
                )
                encode_er7(hl7)
            else:
                bundle = build_preliminary_bundle(report, draft.text, provenance, now=NOW)
                json.dumps(bundle, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
            prev = "0" * 64
            for action in ("received", "drafted", "published"):  # three audit rows per report
                prev = compute_row_hash(
                    recorded_at=NOW, actor="radgpt-pipeline", actor_role="system",
                    action=action, entity_type="draft", entity_id=provenance.draft_id,
                    accession=report.accession, patient_id=report.patient_id,
                    outcome="success", details={"raw_sha256": raw_sha}, prev_hash=prev,
                )  # fmt: skip
    return (time.perf_counter() - start) / len(messages)


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def main_async(args: argparse.Namespace) -> None:
    model_port = free_port()
    model: subprocess.Popen[bytes] | None = None
    if args.model == "http":
        adapter_dir = Path(tempfile.mkdtemp(prefix="bench-adapter-"))
        (adapter_dir / "adapter_config.json").write_text("{}")
        model = subprocess.Popen(
            [sys.executable, "-m", "integration", "serve-model", "--engine", "instant",
             "--port", str(model_port), "--no-default-adapter",
             "--adapter", f"radiology={adapter_dir}"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    db_dir = Path(tempfile.mkdtemp(prefix="bench-db-"))
    try:
        for _ in range(300 if model is not None else 0):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{model_port}/health").status_code == 200:
                    break
            await asyncio.sleep(0.1)
        with EmbeddedBroker() as broker:
            bootstrap = broker.bootstrap_servers

            def raw(topics: TopicSettings) -> contextlib.AbstractAsyncContextManager[None]:
                return _raw_loop(bootstrap, [topics.hl7_in, topics.fhir_in], topics.hl7_out)

            def pipe(topics: TopicSettings) -> contextlib.AbstractAsyncContextManager[None]:
                url = args.database or f"sqlite+aiosqlite:///{db_dir / uuid.uuid4().hex}.db"
                settings = Settings(
                    kafka=KafkaSettings(
                        bootstrap_servers=bootstrap, topics=topics,
                        group_id=f"pipe-{uuid.uuid4().hex[:6]}",
                    ),
                    database=DatabaseSettings(url=SecretStr(url)),
                    inference=InferenceSettings(
                        backend="instant" if args.model == "inprocess" else "tgi",
                        url=f"http://127.0.0.1:{model_port}", verify_adapter=False,
                        # no adapter metadata, so no exemplar retrieval: the instant model's
                        # answer does not use exemplars, and their search is model-side cost
                        adapter="",
                        max_concurrency=args.in_flight,
                    ),
                    pipeline=PipelineSettings(max_in_flight=args.in_flight),
                )  # fmt: skip
                return _pipeline(settings)

            raw_tp, raw_lat = await _measure(
                bootstrap, raw, lambda t: [t.hl7_out],
                messages=args.messages, paced=args.paced, rate=args.rate,
            )  # fmt: skip
            pipe_tp, pipe_lat = await _measure(
                bootstrap, pipe, lambda t: [t.hl7_out, t.fhir_out],
                messages=args.messages, paced=args.paced, rate=args.rate,
            )  # fmt: skip
            floor_s = await _cpu_floor(_messages(_topics("floor"), args.messages, "F"))
    finally:
        if model is not None:
            model.terminate()
            model.wait()
    database = "PostgreSQL" if args.database else "SQLite"
    print(
        f"database: {database}; model: instant {args.model}; messages: {args.messages}; "
        f"in flight: {args.in_flight}"
    )
    print(f"raw aiokafka loop : {raw_tp:8.1f} msg/s")
    print(f"radgpt pipeline   : {pipe_tp:8.1f} msg/s  (ratio {pipe_tp / raw_tp:.4f} of raw)")
    floor_tp = 1.0 / floor_s
    print(
        f"CPU floor         : {floor_tp:8.1f} msg/s  (ratio {floor_tp / raw_tp:.4f} of raw; "
        f"{floor_s * 1e6:.0f} us/message of parse + draft + build + hash, no I/O; "
        f"raw loop {1e6 / raw_tp:.0f} us/message)"
    )
    for name, q in (("p50", 50), ("p99", 99)):
        r, p = _pct(raw_lat, q), _pct(pipe_lat, q)
        print(f"latency {name}: raw {r * 1000:7.1f} ms, pipeline {p * 1000:7.1f} ms, "
              f"added {(p - r) * 1000:7.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--paced", type=int, default=200, help="reports for the latency run")
    parser.add_argument("--rate", type=float, default=20.0, help="paced reports per second")
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--database", help="SQLAlchemy async URL (default: a SQLite file)")
    parser.add_argument(
        "--model",
        choices=["inprocess", "http"],
        default="inprocess",
        help="instant model in-process (the pipeline's own cost) or over HTTP (serve-model)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
