"""Recovery times after faults, against the embedded broker, PostgreSQL and the model server.

Each scenario runs ``radgpt serve`` in-process (production timers: worker backoff up to 30 s,
circuit reset 30 s), publishes reports before and during the fault, and reports the seconds
from the dependency's return to the first new draft (from the drafts' ``created_at``), plus
what was lost or duplicated (expected: nothing):

* ``db-refuse``: ``ALTER DATABASE ... ALLOW_CONNECTIONS false`` and its backends terminated
  for ``--outage`` seconds (a failover or restart, as a client sees it);
* ``db-kill``: every connection terminated every 0.2-0.5 s for ``--outage`` seconds;
* ``model-down``: the model server stopped for ``--outage`` seconds and started again.

Needs a PostgreSQL superuser connection (``--pg``; a throw-away database is created and
dropped).  The fault-injection tests (``pytest -m faults``) check the same with shorter
outages and a 10 s bound.

    .venv/bin/python bench/bench_faults.py --outage 30
    .venv/bin/python bench/bench_faults.py --scenario model-down --outage 30 --trials 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from integration.app.demo import SampleReport, build_diagnostic_report, build_oru  # noqa: E402
from integration.app.service import serve  # noqa: E402
from integration.app.settings import (  # noqa: E402
    ApiSettings,
    DatabaseSettings,
    InferenceSettings,
    KafkaSettings,
    PipelineSettings,
    Settings,
    TopicSettings,
)
from integration.pipeline.broker import EmbeddedBroker, free_port  # noqa: E402
from integration.storage.db import (  # noqa: E402
    Database,
    DraftRecord,
    InboundMessage,
    open_database,
    upgrade_database,
)

NOW = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)


class ModelServer:
    def __init__(self, delay_ms: float) -> None:
        self.port = free_port()
        self.delay_ms = delay_ms
        self.adapter = Path(tempfile.mkdtemp(prefix="radgpt-bench-adapter-"))
        (self.adapter / "adapter_config.json").write_text("{}")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "integration", "serve-model", "--engine", "instant",
             "--port", str(self.port), "--no-default-adapter", "--delay-ms", str(self.delay_ms),
             "--adapter", f"radiology={self.adapter}"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("RADGPT_")},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("model server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def _reports(n: int, tag: str) -> list[SampleReport]:
    return [
        SampleReport(
            uid=str(i), exam="XR CHEST 2 VIEWS", indication="Cough.",
            findings=f"Heart size is normal. Lungs are clear. Study {i}.", impression="n/a",
            accession=f"{tag}-{i:05d}", mrn=f"MRN{i:06d}", control_id=f"{tag}{i:05d}",
        )
        for i in range(n)
    ]


async def _publish(bootstrap: str, topics: TopicSettings, reports: list[SampleReport]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for i, r in enumerate(reports):
            topic, value = (
                (topics.hl7_in, build_oru(r, now=NOW))
                if i % 2 == 0
                else (topics.fhir_in, build_diagnostic_report(r, now=NOW))
            )
            futures.append(await producer.send(topic, value, key=r.accession.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _counts(database: Database) -> tuple[int, int, int]:
    async with database.sessions() as s:
        drafts = (await s.execute(select(func.count(DraftRecord.id)))).scalar_one()
        accessions = (
            await s.execute(select(func.count(func.distinct(DraftRecord.accession))))
        ).scalar_one()
        dead = (
            await s.execute(
                select(func.count(InboundMessage.id)).where(
                    InboundMessage.outcome == "dead_lettered"
                )
            )
        ).scalar_one()
    return int(drafts), int(accessions), int(dead)


async def _wait_drafts(database: Database, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if (await _counts(database))[0] >= n:
                return
        except Exception:  # the database may still be coming back
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {n} drafts")


@asynccontextmanager
async def _service(settings: Settings) -> AsyncIterator[None]:
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        serve(settings, stop=stop, on_started=lambda *_: started.set())
    )
    await asyncio.wait_for(started.wait(), 60)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def _admin(pg: str, *sql: str) -> None:
    conn = await asyncpg.connect(pg)
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


def _terminate(name: str) -> str:
    return (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )


async def run_scenario(
    scenario: str, outage_s: float, pg: str, bootstrap: str
) -> dict[str, object]:
    name = f"radgpt_bench_{uuid.uuid4().hex[:10]}"
    await _admin(pg, f'CREATE DATABASE "{name}"')
    url = pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    model = ModelServer(delay_ms=40)
    model.start()
    database = open_database(url)
    try:
        await upgrade_database(database)
        tag = uuid.uuid4().hex[:6]
        topics = TopicSettings(
            hl7_in=f"b{tag}.hl7.in", fhir_in=f"b{tag}.fhir.in", hl7_out=f"b{tag}.hl7.out",
            fhir_out=f"b{tag}.fhir.out", dead_letter=f"b{tag}.dlq",
        )  # fmt: skip
        settings = Settings(
            kafka=KafkaSettings(bootstrap_servers=bootstrap, group_id=f"g{tag}", topics=topics),
            database=DatabaseSettings(url=SecretStr(url)),
            inference=InferenceSettings(url=model.url, verify_adapter=False, timeout_s=5.0),
            pipeline=PipelineSettings(max_in_flight=16),
            api=ApiSettings(port=free_port()),
        )
        before, during = _reports(200, f"A{tag}"), _reports(200, f"B{tag}")
        async with _service(settings):
            await _publish(bootstrap, topics, before)
            await _wait_drafts(database, 20, 60)
            if scenario == "db-refuse":
                refuse = f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'
                await _admin(pg, refuse, _terminate(name))
                await _publish(bootstrap, topics, during)
                await asyncio.sleep(outage_s)
                await _admin(pg, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            elif scenario == "db-kill":
                await _publish(bootstrap, topics, during)
                deadline = time.monotonic() + outage_s
                while time.monotonic() < deadline:
                    await asyncio.sleep(random.uniform(0.2, 0.5))
                    await _admin(pg, _terminate(name))
            else:
                model.stop()
                await _publish(bootstrap, topics, during)
                await asyncio.sleep(outage_s)
                model.start()
            restored = datetime.now(UTC)
            await _wait_drafts(database, len(before) + len(during), 300)
            await asyncio.sleep(1.0)
        async with database.sessions() as s:
            first = (
                await s.execute(
                    select(func.min(DraftRecord.created_at)).where(
                        DraftRecord.created_at >= restored
                    )
                )
            ).scalar_one()
        drafts, accessions, dead = await _counts(database)
        return {
            "scenario": scenario,
            "outage_s": outage_s,
            "recovery_s": round((first - restored).total_seconds(), 2) if first else None,
            "reports": len(before) + len(during),
            "drafts": drafts,
            "distinct_reports_drafted": accessions,
            "dead_lettered": dead,
        }
    finally:
        await database.dispose()
        model.stop()
        await _admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main_async(args: argparse.Namespace) -> None:
    scenarios = [args.scenario] if args.scenario else ["db-refuse", "db-kill", "model-down"]
    with EmbeddedBroker() as broker:
        for scenario in scenarios:
            for _ in range(args.trials):
                bootstrap = broker.bootstrap_servers
                result = await run_scenario(scenario, args.outage, args.pg, bootstrap)
                print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["db-refuse", "db-kill", "model-down"])
    parser.add_argument("--outage", type=float, default=30.0, help="seconds of fault")
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
