"""``radgpt demo``: the whole pipeline on one machine with embedded components only.

It starts the embedded Kafka broker (Tansu), the embedded model server (``radgpt
serve-model`` in a subprocess: the SmolLM2 base model with the shipped ``radiology`` adapter
when present), uses SQLite in a temporary directory, publishes sample reports built from the
Open-i test split (HL7 v2 ORU^R01 and FHIR R4 DiagnosticReport alternately, fake patients,
MRNs and accessions), lets :func:`integration.app.service.serve` draft them, and reports the drafts
next to the reference impressions.

The sample mixes normal and abnormal studies (half abnormal, chosen by their reference
impression with :func:`training.metrics.is_normal_impression`), gives abnormal ones a STAT or
ASAP priority, and -- from five samples up -- includes one CT head report, outside the chest
radiograph adapter's validated scope.  The database and the development key live in a fresh
temporary directory that is announced at the start and removed on exit unless ``keep``.

The message builders are pure functions; the rest is orchestration.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import func, select

from integration.app.settings import (
    ApiSettings,
    AuthSettings,
    DatabaseSettings,
    InferenceSettings,
    KafkaSettings,
    PipelineSettings,
    Settings,
)
from integration.codecs.hl7.escape import STANDARD_ENCODING, escape
from integration.pipeline.broker import EmbeddedBroker, free_port
from integration.pipeline.kafka_client import make_producer
from integration.storage.db import DraftRecord, InboundMessage, open_database

__all__ = [
    "DemoOptions",
    "DemoPaths",
    "DemoReport",
    "DemoResult",
    "SampleReport",
    "build_diagnostic_report",
    "build_oru",
    "default_data_dir",
    "load_samples",
    "run_demo",
]

_REPO = Path(__file__).resolve().parents[2]
_FACILITY = "DEMO HOSPITAL"
_MRN_SYSTEM = "http://demo-hospital.example.org/mrn"
_ACCESSION_SYSTEM = "http://demo-hospital.example.org/accession"
_REPORT_ID_SYSTEM = "http://demo-hospital.example.org/report-id"
_GENDER = {"F": "female", "M": "male", "O": "other", "U": "unknown"}
_FHIR_PRIORITY = {"S": "stat", "A": "asap", "R": "routine"}
_LOINC_OF_CPT = {"71046": "36643-5", "70450": "30799-1"}  # XR chest 2 views, CT head w/o


def default_data_dir() -> Path:
    """``<repo>/../shared/data/openi``: the shared data next to the repository."""
    return _REPO.parent / "shared" / "data" / "openi"


@dataclass(frozen=True)
class SampleReport:
    """One Open-i test report, with the fake identifiers the demo gives it."""

    uid: str
    exam: str
    indication: str
    findings: str
    impression: str
    accession: str
    mrn: str
    control_id: str
    family: str = "DEMO"
    given: str = "PATIENT"
    birth_date: date = date(1960, 1, 1)
    sex: str = "U"  # HL7 table 0001
    priority: str = "R"  # HL7 table 0027: S stat, A asap, R routine
    modality: str = "RAD"
    procedure_code: str = "71046"
    referrer: str = "1234^REFERRER^DEMO"


# Fictional patients for the demo (no real person): family, given, birth date, sex.
_PEOPLE = [
    ("HOLLOWAY", "DENISE", date(1958, 3, 22), "F"), ("OKAFOR", "SAMUEL", date(1971, 11, 9), "M"),
    ("FERREIRA", "ANA", date(1985, 1, 30), "F"), ("KOWALSKI", "PIOTR", date(1949, 7, 11), "M"),
    ("TANAKA", "HIROSHI", date(1955, 8, 9), "M"), ("LARSSON", "INGRID", date(1992, 2, 14), "F"),
    ("NGUYEN", "LINH", date(1988, 3, 5), "F"), ("ABERNATHY", "GRACE", date(1940, 2, 21), "F"),
    ("MORALES", "DIEGO", date(1966, 9, 17), "M"), ("OSEI", "AKUA", date(1979, 12, 2), "F"),
]  # fmt: skip
_REFERRERS = ["2231^PATEL^ANIL", "3310^LEE^ANA", "4102^MBEKI^THABO", "5120^SCHMIDT^EVA"]
# An out-of-scope study (the shipped adapter is validated on chest radiographs only).
CT_HEAD = {
    "exam": "CT HEAD WITHOUT CONTRAST",
    "indication": "Sudden severe headache, onset 2 hours ago.",
    "findings": (
        "There is a 2.1 cm acute intraparenchymal hemorrhage in the right basal ganglia with "
        "surrounding edema. Mass effect on the right lateral ventricle with 4 mm leftward "
        "midline shift. No intraventricular extension. The basal cisterns are patent. No "
        "calvarial fracture."
    ),
    "impression": (
        "Acute right basal ganglia intraparenchymal hemorrhage with 4 mm leftward midline "
        "shift. Critical result."
    ),
}


def load_samples(data_dir: Path, limit: int, *, run_tag: str) -> list[SampleReport]:
    """``limit`` test-split rows of ``reports.csv`` with findings and impression: alternately
    abnormal and normal (so at least half abnormal when there are enough), and from five
    samples up one CT head report (out of the adapter's scope) in place of a normal one."""
    from training.metrics import is_normal_impression

    path = data_dir / "reports.csv"
    if not path.is_file():
        raise OSError(f"no reports.csv in {data_dir} (use --data-dir)")
    normal: list[SampleReport] = []
    abnormal: list[SampleReport] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("benchmark_split") != "test":
                continue
            findings, impression = (
                (row.get("findings") or "").strip(),
                (row.get("impression") or "").strip(),
            )
            if not findings or not impression:
                continue
            uid = row["uid"]
            group = normal if is_normal_impression(impression) else abnormal
            group.append(
                SampleReport(
                    uid=uid,
                    exam=(row.get("image") or "XR CHEST").strip(),
                    indication=(row.get("indication") or "").strip(),
                    findings=findings,
                    impression=impression,
                    accession=f"ACC{run_tag}{int(uid):05d}",
                    mrn=f"MRN{900000 + int(uid)}",
                    control_id=f"D{run_tag}{int(uid):05d}",
                    priority="R" if group is normal else ("S" if len(group) % 3 == 0 else "A"),
                    referrer=_REFERRERS[int(uid) % len(_REFERRERS)],
                )
            )
            if len(normal) >= limit and len(abnormal) >= limit:
                break
    samples: list[SampleReport] = []
    while len(samples) < limit and (normal or abnormal):
        for group in (abnormal, normal):
            if group and len(samples) < limit:
                samples.append(group.pop(0))
    # One fictional person per sample (MORALES is kept for the CT head below).
    people = [p for p in _PEOPLE if p[0] != "MORALES"]
    samples = [
        dataclasses.replace(
            s, family=people[i % len(people)][0], given=people[i % len(people)][1],
            birth_date=people[i % len(people)][2], sex=people[i % len(people)][3],
        )
        for i, s in enumerate(samples)
    ]  # fmt: skip
    if limit >= 5:
        index = next((i for i, s in enumerate(samples) if s.priority == "R"), len(samples) - 1)
        samples[index] = SampleReport(
            uid="99001",
            exam=CT_HEAD["exam"],
            indication=CT_HEAD["indication"],
            findings=CT_HEAD["findings"],
            impression=CT_HEAD["impression"],
            accession=f"ACC{run_tag}99001",
            mrn="MRN999001",
            control_id=f"D{run_tag}99001",
            family="MORALES",
            given="DIEGO",
            birth_date=date(1966, 9, 17),
            sex="M",
            priority="S",
            modality="CT",
            procedure_code="70450",
            referrer="3310^LEE^ANA",
        )
    return samples


def build_oru(sample: SampleReport, *, now: datetime) -> bytes:
    """A realistic HL7 v2.5.1 ORU^R01 (preliminary, findings + indication OBX) for a sample."""

    def esc(text: str) -> str:
        return escape(text, STANDARD_ENCODING)

    ts = now.strftime("%Y%m%d%H%M%S")
    segments = [
        f"MSH|^~\\&|RIS|{_FACILITY}|RADGPT|{_FACILITY}|{ts}||ORU^R01^ORU_R01|"
        f"{sample.control_id}|P|2.5.1",
        f"PID|1||{sample.mrn}^^^DEMO^MR||{esc(sample.family)}^{esc(sample.given)}||"
        f"{sample.birth_date:%Y%m%d}|{sample.sex}",
        "PV1|1|O",
        f"ORC|RE|ORD{sample.uid}|{sample.accession}",
        f"OBR|1|ORD{sample.uid}|{sample.accession}|{sample.procedure_code}^"
        f"{esc(sample.exam[:60])}^C4|||{ts}|||||||||{sample.referrer}||||||{ts}||"
        f"{sample.modality}|P||^^^^^{sample.priority}",
    ]
    set_id = 1
    if sample.indication:
        segments.append(
            f"OBX|{set_id}|TX|18785-6^Indications for Procedure^LN|1|{esc(sample.indication)}"
            "||||||P"
        )
        set_id += 1
    segments.append(
        f"OBX|{set_id}|TX|18782-3^Radiology Study observation^LN|1|{esc(sample.findings)}||||||P"
    )
    return "\r".join(segments).encode("utf-8") + b"\r"


def build_diagnostic_report(sample: SampleReport, *, now: datetime) -> bytes:
    """A FHIR R4 DiagnosticReport (preliminary) with the findings as text/plain presentedForm."""
    text = f"INDICATION: {sample.indication}\n\nFINDINGS: {sample.findings}\n"
    accession_identifier = {
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]
        },
        "system": _ACCESSION_SYSTEM,
        "value": sample.accession,
    }
    referrer = sample.referrer.split("^")
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": f"demo-{sample.control_id.lower()}",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "patient",
                "identifier": [{"system": _MRN_SYSTEM, "value": sample.mrn}],
                "name": [{"use": "official", "family": sample.family, "given": [sample.given]}],
                "gender": _GENDER.get(sample.sex, "unknown"),
                "birthDate": sample.birth_date.isoformat(),
            },
            {
                "resourceType": "ServiceRequest",
                "id": "order",
                "identifier": [accession_identifier],
                "status": "active",
                "intent": "order",
                "priority": _FHIR_PRIORITY.get(sample.priority, "routine"),
                "subject": {"reference": "#patient"},
                "reasonCode": [{"text": sample.indication}] if sample.indication else [],
                "requester": {"display": " ".join(reversed(referrer[1:3])).title()},
            },
        ],
        "identifier": [{"system": _REPORT_ID_SYSTEM, "value": sample.control_id}],
        "basedOn": [{"reference": "#order", "type": "ServiceRequest"}],
        "status": "preliminary",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                        "code": sample.modality,
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": _LOINC_OF_CPT.get(sample.procedure_code, "36643-5"),
                    "display": sample.exam,
                }
            ],
            "text": sample.exam,
        },
        "subject": {"reference": "#patient"},
        "effectiveDateTime": now.isoformat(timespec="seconds"),
        "issued": now.isoformat(timespec="seconds"),
        "presentedForm": [
            {
                "contentType": "text/plain",
                "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
            }
        ],
    }
    return json.dumps(resource).encode("utf-8")


@dataclass(frozen=True)
class DemoOptions:
    limit: int = 10
    data_dir: Path | None = None
    port: int | None = None
    engine: str = "model"
    serve_after: bool = False
    work_dir: Path | None = None
    keep: bool = False
    cache_dir: Path = _REPO / ".radgpt" / "cache"


@dataclass(frozen=True)
class DemoReport:
    accession: str
    format: str
    findings: str
    draft: str | None
    reference: str
    status: str
    method: str | None = None  # "model" or "extractive-fallback" (inference.drafting.drafter)

    def to_json(self) -> dict[str, Any]:
        return {
            "accession": self.accession,
            "format": self.format,
            "findings": self.findings,
            "draft": self.draft,
            "reference": self.reference,
            "status": self.status,
            "method": self.method,
        }


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo keeps its data (announced at the start; PHI-like, so 0600/0700)."""

    work_dir: Path
    database: Path
    dev_key: Path
    removed_on_exit: bool


@dataclass(frozen=True)
class DemoResult:
    reports: list[DemoReport]
    review_url: str
    tokens: dict[str, str]


@contextlib.contextmanager
def model_server(engine: str, *, cache_dir: Path, timeout_s: float = 600.0) -> Iterator[str]:
    """``radgpt serve-model`` in a subprocess on a free port; yields its base URL."""
    from inference.drafting.adapters import shipped_adapter_dir

    port = free_port()
    command = [
        sys.executable, "-m", "integration", "serve-model", "--port", str(port),
        "--engine", engine, "--cache-dir", str(cache_dir),
    ]  # fmt: skip
    if shipped_adapter_dir() is None:
        command.append("--no-default-adapter")
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                tail = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")
                last = tail.strip().splitlines()[-1:] or ["no output"]
                raise OSError(f"the model server exited ({proc.returncode}): {last[0]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise OSError(f"the model server did not start within {timeout_s:.0f}s")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _publish(settings: Settings, messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _wait_processed(
    url: str, expected: int, progress: Callable[[int], None], timeout_s: float
) -> None:
    database = open_database(url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with contextlib.suppress(Exception):  # the service may still be migrating
                async with database.sessions() as session:
                    done = (
                        await session.execute(select(func.count(InboundMessage.id)))
                    ).scalar_one()
                progress(int(done))
                if done >= expected:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"reports not processed within {timeout_s:.0f}s")
            await asyncio.sleep(0.3)
    finally:
        await database.dispose()


async def _collect(url: str, samples: list[SampleReport], formats: list[str]) -> list[DemoReport]:
    database = open_database(url)
    try:
        async with database.sessions() as session:
            rows = (await session.execute(select(DraftRecord))).scalars().all()
    finally:
        await database.dispose()
    by_accession = {row.accession: row for row in rows}
    reports = []
    for sample, fmt in zip(samples, formats, strict=True):
        row = by_accession.get(sample.accession)
        reports.append(
            DemoReport(
                accession=sample.accession,
                format=fmt,
                findings=sample.findings,
                draft=row.draft_text if row else None,
                reference=sample.impression,
                status=row.status if row else "not drafted",
                method=row.draft_method if row else None,
            )
        )
    return reports


def _tokens(work_dir: Path, auth: AuthSettings) -> dict[str, str]:
    from integration.review.auth import mint_dev_token

    key_path = auth.dev_key_path or work_dir / "dev-key.pem"
    return {
        role: mint_dev_token(role=role, sub=f"demo-{role}", key_path=key_path)
        for role in ("radiologist", "compliance")
    }


async def run_demo(
    options: DemoOptions,
    *,
    progress: Callable[[int, int], None] = lambda done, total: None,
    on_ready: Callable[[DemoResult], None] = lambda result: None,
    on_paths: Callable[[DemoPaths], None] = lambda paths: None,
) -> DemoResult:
    """Run the demo; with ``serve_after`` keep serving until SIGINT/SIGTERM.

    A temporary working directory (database and development key) is removed when the demo
    ends, also on Ctrl-C, unless ``options.keep`` or the caller gave ``work_dir``.
    """
    data_dir = options.data_dir or default_data_dir()
    run_tag = datetime.now(UTC).strftime("%H%M%S")
    samples = load_samples(data_dir, options.limit, run_tag=run_tag)
    if not samples:
        raise ValueError(f"no test-split reports with findings in {data_dir}")
    work_dir = options.work_dir or Path(tempfile.mkdtemp(prefix="radgpt-demo-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    remove = options.work_dir is None and not options.keep
    on_paths(DemoPaths(work_dir, work_dir / "radgpt.db", work_dir / "dev-key.pem", remove))
    try:
        return await _run_in(options, samples, work_dir, progress=progress, on_ready=on_ready)
    finally:
        if remove:
            shutil.rmtree(work_dir, ignore_errors=True)


async def _run_in(
    options: DemoOptions,
    samples: list[SampleReport],
    work_dir: Path,
    *,
    progress: Callable[[int, int], None],
    on_ready: Callable[[DemoResult], None],
) -> DemoResult:
    from integration.app.service import serve

    cache_dir = options.cache_dir
    port = options.port or free_port()
    db_url = f"sqlite+aiosqlite:///{work_dir / 'radgpt.db'}"
    with EmbeddedBroker() as broker, model_server(options.engine, cache_dir=cache_dir) as model:
        from inference.drafting.adapters import shipped_adapter_dir

        has_adapter = shipped_adapter_dir() is not None
        auth = AuthSettings(trust_dev_key=True, dev_key_path=work_dir / "dev-key.pem")
        settings = Settings(
            kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers),
            database=DatabaseSettings(url=SecretStr(db_url)),
            inference=InferenceSettings(
                backend="tgi",
                url=model,
                adapter="radiology" if has_adapter else "",
                verify_adapter=has_adapter and options.engine == "model",
                timeout_s=300.0,
            ),
            pipeline=PipelineSettings(max_in_flight=8, retry_backoff_s=0.5),
            auth=auth,
            api=ApiSettings(host="127.0.0.1", port=port),
        )
        topics = settings.kafka.topics
        now = datetime.now(UTC)
        messages: list[tuple[str, bytes, bytes]] = []
        formats: list[str] = []
        for index, sample in enumerate(samples):
            if index % 2 == 0:
                topic, value, fmt = topics.hl7_in, build_oru(sample, now=now), "hl7v2"
            else:
                topic, value = topics.fhir_in, build_diagnostic_report(sample, now=now)
                fmt = "fhir-r4"
            messages.append((topic, sample.accession.encode(), value))
            formats.append(fmt)
        stop = asyncio.Event()
        started = asyncio.Event()
        service = asyncio.create_task(
            serve(settings, migrate=True, stop=stop, on_started=lambda *_: started.set())
        )
        try:
            waiter = asyncio.create_task(started.wait())
            await asyncio.wait({service, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if service.done():
                service.result()
                raise RuntimeError("the service stopped before it started")
            await _publish(settings, messages)
            total = len(samples)
            await _wait_processed(db_url, total, lambda done: progress(done, total), 120.0 * total)
            reports = await _collect(db_url, samples, formats)
            result = DemoResult(
                reports=reports,
                review_url=f"http://127.0.0.1:{port}/",
                tokens=_tokens(work_dir, auth) if options.serve_after else {},
            )
            on_ready(result)
            if options.serve_after:
                await service  # until SIGINT / SIGTERM
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await service
    return result
