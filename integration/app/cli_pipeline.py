"""``radgpt serve``, ``radgpt publish``, ``radgpt demo`` and ``radgpt db upgrade``."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from integration.app.settings import PipelineSettings

__all__ = ["register"]


def _settings() -> object:
    from integration.app.settings import Settings

    return Settings()


def serve_command(
    migrate: Annotated[
        bool | None,
        typer.Option(help="run the database migrations first (default: only for SQLite)"),
    ] = None,
    host: Annotated[str | None, typer.Option(help="HTTP interface (default: api.host)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: api.port)")] = None,
) -> None:
    """Run the Kafka workers and the HTTP API (/healthz, /readyz, /metrics, review)."""
    from integration.app.service import serve
    from integration.app.settings import Settings

    settings = Settings()
    if host is not None or port is not None:
        api = settings.api.model_copy(
            update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
        )
        settings = settings.model_copy(update={"api": api})
    url = settings.database.url.get_secret_value()
    do_migrate = migrate if migrate is not None else url.startswith("sqlite")
    _configure_logging(settings.log_level, unsafe_payloads=settings.log_unsafe_payloads)
    asyncio.run(serve(settings, migrate=do_migrate))


def _configure_logging(level: str, *, unsafe_payloads: bool = False) -> None:
    from integration.app.log_safety import configure_logging

    configure_logging(level, unsafe_payloads=unsafe_payloads)


def _checked_payloads(
    files: list[Path], *, raw: bool, pipeline: PipelineSettings
) -> list[tuple[str, bytes, bytes | None]]:
    """Each file read (size-limited) and, unless ``raw``, parsed with the codec first."""
    from integration.app.cli_codecs import read_limited
    from integration.codecs.codec import CodecOptions, parse_message
    from integration.errors import InputError
    from integration.pipeline.publisher import message_key

    options = CodecOptions.from_settings(pipeline)
    payloads = []
    for path in files:
        data = read_limited(path, pipeline.max_message_bytes)
        key = None
        if not raw:
            try:
                reports = parse_message(data, options)
            except InputError as exc:
                raise type(exc)(f"{path.name}: {exc} (use --raw to send it unchecked)") from exc
            key = message_key(reports[0]) if reports else None
        payloads.append((path.name, data, key))
    return payloads


async def _publish_files(
    payloads: list[tuple[str, bytes, bytes | None]],
    topic: str,
    bootstrap_servers: str | None,
    *,
    create_topic: bool,
) -> list[tuple[str, int, int]]:
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from integration.app.settings import Settings
    from integration.errors import PublishError
    from integration.pipeline.kafka_client import ensure_topics, make_producer

    settings = Settings()
    kafka = settings.kafka
    if bootstrap_servers:
        kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})
    where = (
        "--bootstrap-servers"
        if bootstrap_servers
        else "--bootstrap-servers or RADGPT_KAFKA__BOOTSTRAP_SERVERS"
    )
    # aiokafka logs each failed connection attempt; the CLI reports one line instead.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    producer = make_producer(kafka)
    try:
        try:
            await producer.start()
        except KafkaConnectionError as exc:
            raise PublishError(
                f"cannot connect to Kafka at {kafka.bootstrap_servers} (set {where})"
            ) from exc
        metadata = await producer.client.fetch_all_metadata()
        if topic not in metadata.topics():
            if not create_topic:
                raise PublishError(
                    f"topic {topic!r} does not exist on {kafka.bootstrap_servers} "
                    "(check the name, or pass --create-topic)"
                )
            await ensure_topics(
                kafka,
                [topic],
                partitions=kafka.topics.partitions,
                replication_factor=kafka.topics.replication_factor,
            )
        sent = []
        for name, raw, key in payloads:
            meta = await producer.send_and_wait(topic, raw, key=key)
            sent.append((name, int(meta.partition), int(meta.offset)))
        return sent
    except KafkaError as exc:
        raise PublishError(
            f"cannot publish to {topic} at {kafka.bootstrap_servers}: {type(exc).__name__}"
        ) from exc
    finally:
        await producer.stop()


def publish_command(
    files: Annotated[list[Path], typer.Argument(help="message files (HL7 v2 or FHIR JSON)")],
    topic: Annotated[str, typer.Option(help="topic to publish to (must exist)")],
    bootstrap_servers: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (default: settings)")
    ] = None,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw", help="send the bytes unchecked (dead-letter replay); the size limit holds"
        ),
    ] = False,
    create_topic: Annotated[
        bool, typer.Option("--create-topic", help="create the topic if it does not exist")
    ] = False,
) -> None:
    """Publish message files to a topic (key = accession), e.g. to replay dead letters.

    Each file is parsed first, as the pipeline would (exit 2 with the reason if it cannot);
    files over pipeline.max_message_bytes are refused."""
    from integration.app.settings import Settings

    for path in files:
        if not path.is_file():
            raise typer.BadParameter(f"no such file: {path}")
    payloads = _checked_payloads(files, raw=raw, pipeline=Settings().pipeline)
    sent = asyncio.run(
        _publish_files(payloads, topic, bootstrap_servers, create_topic=create_topic)
    )
    for name, partition, offset in sent:
        typer.echo(f"{name}\t{topic}\t{partition}\t{offset}")


def db_upgrade_command(
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
) -> None:
    """Apply the database migrations (Alembic) up to ``head``."""
    from integration.app.settings import Settings
    from integration.storage.db import open_database, upgrade_database

    async def run() -> str:
        settings = Settings()
        database = open_database(settings.database.url.get_secret_value())
        try:
            await upgrade_database(database, revision)
            return database.dialect
        finally:
            await database.dispose()

    dialect = asyncio.run(run())
    typer.echo(f"database ({dialect}) upgraded to {revision}")


def demo_command(
    limit: Annotated[int, typer.Option(min=1, max=200, help="number of sample reports")] = 10,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="keep serving the review pages")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per report")] = False,
    port: Annotated[int | None, typer.Option(help="review HTTP port (default: free)")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Open-i data (default: <repo>/../shared/data/openi)")
    ] = None,
    engine: Annotated[
        Literal["model", "instant"], typer.Option(help="model server engine")
    ] = "model",
    keep: Annotated[
        bool, typer.Option("--keep", help="keep the demo database and key after exit")
    ] = False,
) -> None:
    """End to end on this machine: embedded broker, SQLite, embedded model server.

    The database and development key are in a fresh temporary directory, printed at the
    start and removed on exit (Ctrl-C included) unless --keep.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from integration.app.demo import DemoOptions, DemoPaths, DemoResult, run_demo

    console = Console(stderr=True)
    out = Console()

    def show(result: DemoResult) -> None:
        if as_json:
            for report in result.reports:
                typer.echo(json.dumps(report.to_json(), ensure_ascii=False))
        else:
            from rich.table import Table

            table = Table(title="radgpt demo: AI draft vs reference impression", show_lines=True)
            table.add_column("accession", no_wrap=True)
            table.add_column("findings", ratio=3)
            table.add_column("AI draft (preliminary)", ratio=2)
            table.add_column("reference impression", ratio=2)
            for r in result.reports:
                draft = r.draft or f"({r.status})"
                if r.method == "extractive-fallback":
                    draft += "\n[extractive fallback: no model draft passed the checks]"
                table.add_row(
                    f"{r.accession}\n{r.format}", r.findings, draft, r.reference
                )  # fmt: skip
            out.print(table)
        if serve_after:
            typer.echo(f"review: {result.review_url}")
            for role, token in result.tokens.items():
                typer.echo(f"token {role}: {token}")
            console.print("serving the review pages; Ctrl-C to stop")

    def paths(where: DemoPaths) -> None:
        fate = "removed on exit (--keep keeps them)" if where.removed_on_exit else "kept"
        console.print(f"demo database: {where.database}")
        console.print(f"development key: {where.dev_key}")
        console.print(f"both are {fate}; they hold fictional patients only")

    options = DemoOptions(
        limit=limit, data_dir=data_dir, port=port, engine=engine, serve_after=serve_after,
        keep=keep,
    )  # fmt: skip
    with Progress(
        TextColumn("drafting"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task("drafting", total=limit)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        def ready(result: DemoResult) -> None:
            bar.stop()
            show(result)

        asyncio.run(run_demo(options, progress=progress, on_ready=ready, on_paths=paths))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.command("publish")(publish_command)
    app.command("demo")(demo_command)
    db_app = typer.Typer(help="The service database.", no_args_is_help=True)
    db_app.command("upgrade")(db_upgrade_command)
    app.add_typer(db_app, name="db")
