"""Composition of the running service: database, Kafka, drafter, worker and the HTTP app.

``radgpt serve`` calls :func:`serve`.  One process runs one consumer-group member (both
input topics) next to a uvicorn server with ``/healthz`` (the process is alive), ``/readyz``
(broker reachable, database reachable, adapter canary passed, consumption not paused on a
fault; 503 otherwise), ``/metrics``
(Prometheus) and the review API and pages of :mod:`integration.review.web.api`.

The worker starts consuming only once the adapter canary has passed: a model server that
answers with the wrong adapter must not produce drafts (nor dead-letter every message).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Response

from inference.errors import InferenceError
from integration.app.settings import Settings
from integration.errors import PublishError, RadgptError, StorageError
from integration.pipeline.fault_gate import FaultGate, Probe
from integration.pipeline.faults import Dependency
from integration.pipeline.kafka_client import ensure_topics, make_consumer, make_producer
from integration.pipeline.metrics import CONTENT_TYPE, PipelineMetrics
from integration.pipeline.processor import ImpressionDrafter, Processor
from integration.pipeline.publisher import FhirSink, Publisher
from integration.pipeline.worker import RetryPolicy, Worker
from integration.review.quality import QualityCollector
from integration.storage.db import Database, open_database, upgrade_database

__all__ = ["Pipeline", "build_app", "open_pipeline", "serve"]

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    """The started components of one service process."""

    settings: Settings
    database: Database
    producer: AIOKafkaProducer
    publisher: Publisher
    drafter: Any
    processor: Processor
    worker: Worker
    metrics: PipelineMetrics
    quality: QualityCollector = field(default_factory=QualityCollector)
    canary_passed: bool = False
    canary_error: str | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def readiness(self) -> dict[str, bool]:
        """Broker and database answer now, the canary passed, and nothing is paused on a
        fault (a dependency the worker found down and is still probing)."""
        checks = {
            "broker": False,
            "database": False,
            "adapter_canary": self.canary_passed,
            "consuming": not self.worker.gate.paused,
        }
        try:
            await asyncio.wait_for(probe_broker(self.producer), timeout=2.0)
            checks["broker"] = True
        except (KafkaError, TimeoutError):
            pass
        try:
            await asyncio.wait_for(self.database.ping(), timeout=2.0)
            checks["database"] = True
        except (StorageError, TimeoutError):
            pass
        return checks

    async def wait_for_canary(self, *, retry_s: float = 2.0) -> None:
        """Run the drafter's canary until it passes (model server may still be loading)."""
        start = getattr(self.drafter, "start", None)
        while start is not None:
            try:
                await start()
                break
            except InferenceError as exc:
                self.canary_error = type(exc).__name__
                level = logging.WARNING if exc.retriable else logging.ERROR
                log.log(level, "adapter canary not passed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(retry_s if exc.retriable else max(retry_s, 30.0))
        self.canary_passed, self.canary_error = True, None

    async def run_worker(self) -> None:
        await self.wait_for_canary()
        await self.worker.run()

    async def run_checkpoints(self) -> None:
        """Append a signed audit checkpoint every ``audit.checkpoint_interval_s`` (if set)."""
        from integration.audit.checkpoint import append_checkpoint, take_checkpoint

        audit = self.settings.audit
        if audit.checkpoint_path is None or audit.checkpoint_key is None:
            return
        key = audit.checkpoint_key.get_secret_value().encode()
        while True:
            try:
                async with self.database.reader() as session:
                    checkpoint = await take_checkpoint(session, key)
                append_checkpoint(audit.checkpoint_path, checkpoint)
            except (StorageError, OSError) as exc:
                log.warning("audit checkpoint not written: %s", type(exc).__name__)
            await asyncio.sleep(audit.checkpoint_interval_s)

    async def run_quality_refresh(self, *, interval_s: float = 30.0) -> None:
        """Keep the review quality metrics fresh (from start-up on; cancel to stop)."""
        await self.quality.run(self.database.sessions, interval_s=interval_s)


async def probe_broker(producer: AIOKafkaProducer) -> None:
    """Raise :class:`KafkaError` unless a broker answers a metadata request now."""
    await producer.client.fetch_all_metadata()


def _fault_gate(
    settings: Settings,
    database: Database,
    producer: AIOKafkaProducer,
    drafter: Any,
    metrics: PipelineMetrics,
) -> FaultGate:
    probes: dict[Dependency, Probe] = {
        "database": database.ping,
        "broker": lambda: probe_broker(producer),
    }
    model_probe = getattr(drafter, "probe", None)
    if model_probe is not None:
        probes["model"] = model_probe
    pipeline = settings.pipeline
    return FaultGate(
        probes,
        probe_initial_s=min(0.2, pipeline.probe_interval_max_s),
        probe_max_s=pipeline.probe_interval_max_s,
        max_wait_s=pipeline.retry_backoff_max_s,
        metrics=metrics,
    )


def _drafter_from_settings(settings: Settings) -> Any:
    from inference.drafting.drafter import Drafter

    return Drafter.from_config(
        settings.inference.backend_config(),
        samples=settings.inference.samples,
        extra_scopes=tuple(settings.inference.extra_scopes),
    )


def _adapter_version(drafter: Any) -> str | None:
    info = getattr(drafter, "adapter_info", None)
    version = getattr(info, "version", None)
    return str(version) if version is not None else None


@contextlib.asynccontextmanager
async def open_pipeline(
    settings: Settings,
    *,
    drafter: ImpressionDrafter | None = None,
    migrate: bool = False,
    metrics: PipelineMetrics | None = None,
) -> AsyncIterator[Pipeline]:
    """Open the database and Kafka clients, provision topics; close everything on exit."""
    metrics = metrics or PipelineMetrics()
    kafka, topics = settings.kafka, settings.kafka.topics
    database = open_database(
        settings.database.url.get_secret_value(),
        pool_size=settings.database.pool_size,
        # every in-flight message may hold a connection for a moment
        max_overflow=max(settings.database.pool_size, settings.pipeline.max_in_flight),
        echo=settings.database.echo,
    )
    producer: AIOKafkaProducer | None = None
    own_drafter = drafter is None
    the_drafter: Any = drafter
    sink: FhirSink | None = None
    try:
        if migrate:
            await upgrade_database(database)
        if topics.create_missing:
            names = [topics.hl7_in, topics.fhir_in, topics.hl7_out, topics.fhir_out]
            await ensure_topics(
                kafka,
                [*names, topics.dead_letter],
                partitions=topics.partitions,
                replication_factor=topics.replication_factor,
            )
        producer = make_producer(kafka, max_message_bytes=settings.pipeline.max_message_bytes)
        try:
            await producer.start()
        except KafkaError as exc:
            raise PublishError(f"cannot connect to Kafka: {type(exc).__name__}") from exc
        if the_drafter is None:
            the_drafter = _drafter_from_settings(settings)
        sink = FhirSink(settings.fhir_sink) if settings.fhir_sink.url else None
        publisher = Publisher(producer, topics, settings.pipeline, fhir_sink=sink)
        processor = Processor(
            database=database,
            drafter=the_drafter,
            publisher=publisher,
            metrics=metrics,
            adapter_version=_adapter_version(the_drafter),
            # one pooled connection for the group commit, the rest for dedupe reads
            read_concurrency=max(1, settings.database.pool_size - 1),
            max_message_bytes=settings.pipeline.max_message_bytes,
        )
        worker = Worker(
            make_consumer(kafka),
            [topics.hl7_in, topics.fhir_in],
            handler=processor.process,
            dead_letter=processor.dead_letter,
            max_in_flight=settings.pipeline.max_in_flight,
            retry=RetryPolicy(
                settings.pipeline.retry_backoff_s, settings.pipeline.retry_backoff_max_s
            ),
            drain_timeout_s=settings.pipeline.drain_timeout_s,
            metrics=metrics,
            gate=_fault_gate(settings, database, producer, the_drafter, metrics),
            max_attempts=settings.pipeline.max_attempts,
        )
        quality = QualityCollector()
        metrics.registry.register(quality)
        yield Pipeline(
            settings=settings,
            database=database,
            producer=producer,
            publisher=publisher,
            drafter=the_drafter,
            processor=processor,
            worker=worker,
            metrics=metrics,
            quality=quality,
        )
    finally:
        if sink is not None:
            await sink.aclose()
        if own_drafter and the_drafter is not None:
            await the_drafter.aclose()
        if producer is not None:
            with contextlib.suppress(KafkaError):
                await producer.stop()
        await database.dispose()


def _review_router(pipeline: Pipeline) -> Any | None:
    """The review API of :mod:`integration.review.web.api`, when auth is configured."""
    from integration.review.auth import TokenVerifier
    from integration.review.web.api import ReviewContext, build_review_router
    from integration.review.web.rate_limit import UnauthenticatedLimiter

    try:
        verifier = TokenVerifier.from_settings(pipeline.settings.auth)
    except ValueError as exc:
        log.warning("review API disabled: %s", exc)
        return None
    auth = pipeline.settings.auth
    context = ReviewContext(
        sessions=pipeline.database.sessions,
        verifier=verifier,
        publisher=pipeline.publisher,
        quality=pipeline.quality,
        limiter=UnauthenticatedLimiter(
            rate_per_s=auth.unauthenticated_rate_per_s,
            burst=auth.unauthenticated_burst,
            audit_per_minute=auth.unauthenticated_audit_per_minute,
        ),
    )
    return build_review_router(context)


def build_app(pipeline: Pipeline, *, review: bool = True) -> FastAPI:
    """The service's HTTP app: probes, metrics and (optionally) the review API and pages."""
    app = FastAPI(title="radgpt", docs_url=None, redoc_url=None)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(response: Response) -> dict[str, Any]:
        checks = await pipeline.readiness()
        ready = all(checks.values())
        response.status_code = 200 if ready else 503
        return {"ready": ready, "checks": checks}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(pipeline.metrics.render(), media_type=CONTENT_TYPE)

    if review:
        router = _review_router(pipeline)
        if router is not None:
            app.include_router(router)
    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (the service stops worker and server)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    settings: Settings,
    *,
    migrate: bool = False,
    drafter: ImpressionDrafter | None = None,
    on_started: Callable[[Pipeline, int], None] | None = None,
    stop: asyncio.Event | None = None,
    quality_refresh_s: float = 30.0,
) -> None:
    """Run the worker and the HTTP server until SIGTERM/SIGINT (or ``stop`` is set).

    The review quality metrics are refreshed from the database at start-up and every
    ``quality_refresh_s`` seconds, so ``/metrics`` serves them after a restart too.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with open_pipeline(settings, drafter=drafter, migrate=migrate) as pipeline:
        app = build_app(pipeline)
        config = uvicorn.Config(
            app,
            host=settings.api.host,
            port=settings.api.port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        server = _Server(config)
        http = asyncio.create_task(server.serve(), name="http")
        worker = asyncio.create_task(pipeline.run_worker(), name="worker")
        while not server.started and not http.done():
            await asyncio.sleep(0.05)
        if http.done():
            http.result()  # the port is taken, etc.: raise it
        quality = asyncio.create_task(
            pipeline.run_quality_refresh(interval_s=quality_refresh_s), name="quality"
        )
        checkpoints = asyncio.create_task(pipeline.run_checkpoints(), name="audit-checkpoints")
        if on_started is not None:
            on_started(pipeline, settings.api.port)
        stopper = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait({http, worker, stopper}, return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down")
        pipeline.worker.stop()
        server.should_exit = True
        if not worker.done():
            if not pipeline.worker.started:
                worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        await http
        stopper.cancel()
        checkpoints.cancel()
        await asyncio.gather(checkpoints, return_exceptions=True)
        quality.cancel()
        (ended,) = await asyncio.gather(quality, return_exceptions=True)
        if not isinstance(ended, asyncio.CancelledError):
            log.warning("quality metrics refresh had stopped: %s", type(ended).__name__)
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                if isinstance(exc, RadgptError):
                    raise exc
                raise RuntimeError(f"{task.get_name()} failed: {type(exc).__name__}") from exc
