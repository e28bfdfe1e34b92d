"""``radgpt audit query|export|verify``, ``radgpt dev-token`` and ``radgpt stats``.

The audit commands are for compliance officers with database access; they read the database
URL from settings (``RADGPT_DATABASE__URL``) or ``--database-url``, and every run is itself
recorded in the audit log (``queried``, ``exported``, ``verified``) with the operating-system
user as actor.  ``audit verify`` exits 1 when the hash chain is broken.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

__all__ = ["register"]

audit_app = typer.Typer(
    name="audit",
    help="Query, export and verify the audit log (compliance).",
    no_args_is_help=True,
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL (default: RADGPT_DATABASE__URL)",
        show_default=False,
    ),
]
Actor = Annotated[
    str | None,
    typer.Option(help="who runs this, for the audit log (default: the OS user)"),
]
Since = Annotated[str | None, typer.Option(help="recorded at or after (ISO 8601; UTC if no zone)")]
Until = Annotated[str | None, typer.Option(help="recorded before (ISO 8601; UTC if no zone)")]
ActorFilter = Annotated[str | None, typer.Option("--by", help="only events of this actor")]
Action = Annotated[str | None, typer.Option(help="only this action (e.g. viewed, approved)")]
Accession = Annotated[str | None, typer.Option(help="only this accession number")]
PatientId = Annotated[str | None, typer.Option("--patient-id", help="only this patient id")]
Outcome = Annotated[str | None, typer.Option(help="only this outcome: success, failure or denied")]


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--{name}: not an ISO 8601 date/time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _database_url(database_url: str | None) -> str:
    """The database to read; a SQLite file that does not exist is refused (never created)."""
    url = database_url
    if not url:
        from integration.app.settings import Settings

        url = Settings().database.url.get_secret_value()
    _require_existing_sqlite(url)
    return url


def _require_existing_sqlite(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError("--database-url is not a SQLAlchemy URL") from exc
    path = parsed.database
    if not parsed.drivername.startswith("sqlite") or not path or path == ":memory:":
        return
    if path.startswith("file:"):  # URI form: sqlite:///file:...?mode=ro&uri=true
        path = path[5:].split("?", 1)[0]
    if not Path(path).is_file():
        raise OSError(
            f"no such database file: {path} (check --database-url or RADGPT_DATABASE__URL)"
        )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    return f"cli:{_os_user()}"


def _who_ran(actor: str | None) -> dict[str, Any]:
    """What the audit row records beside the actor: the OS user and host that really ran the
    command, and whether the actor name was only claimed with ``--actor``."""
    return {"os_user": _os_user(), "host": socket.gethostname()[:255], "actor_claimed": bool(actor)}


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (0600), even if it existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def _filters(
    since: str | None,
    until: str | None,
    by: str | None,
    action: str | None,
    accession: str | None,
    patient_id: str | None,
    outcome: str | None,
) -> Any:
    from integration.audit.log import AUDIT_ACTIONS, AuditFilters

    if action is not None and action not in AUDIT_ACTIONS:
        raise ValueError(f"--action: unknown action {action!r}; one of {sorted(AUDIT_ACTIONS)}")
    if outcome is not None and outcome not in ("success", "failure", "denied"):
        raise ValueError("--outcome must be success, failure or denied")
    return AuditFilters(
        actor=by,
        action=action,
        accession=accession,
        patient_id=patient_id,
        outcome=outcome,
        since=_parse_time(since, "since"),
        until=_parse_time(until, "until"),
    )


async def _with_database(url: str, work: Any) -> Any:
    from integration.storage.db import open_database

    database = open_database(url)
    try:
        return await work(database)
    finally:
        await database.dispose()


# --- audit query --------------------------------------------------------------------------


@audit_app.command("query")
def query_command(
    since: Since = None,
    until: Until = None,
    by: ActorFilter = None,
    action: Action = None,
    accession: Accession = None,
    patient_id: PatientId = None,
    outcome: Outcome = None,
    page: Annotated[int, typer.Option(min=1, help="page number")] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=1000, help="events per page")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    database_url: DatabaseUrl = None,
    actor: Actor = None,
) -> None:
    """Search the audit log, newest first."""
    from integration.audit.export import AuditRow
    from integration.audit.log import PageRequest
    from integration.audit.service import search_events

    filters = _filters(since, until, by, action, accession, patient_id, outcome)
    who = _actor(actor)

    async def work(database: Any) -> tuple[list[AuditRow], int]:
        async with database.sessions() as session:
            result = await search_events(
                session,
                filters,
                PageRequest(limit=page_size, offset=(page - 1) * page_size),
                actor=who,
                actor_role="cli",
                details=_who_ran(actor),
            )
            rows = [AuditRow.model_validate(e) for e in result.items]
            await session.commit()
            return rows, result.total

    rows, total = asyncio.run(_with_database(_database_url(database_url), work))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "total": total,
                    "page": page,
                    "page_size": page_size,
                    "items": [r.model_dump(mode="json") for r in rows],
                },
                indent=1,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"audit log: {total} events (page {page})", show_lines=False)
    for column in ("id", "recorded (UTC)", "actor", "role", "action", "outcome", "entity",
                   "accession", "patient"):  # fmt: skip
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.id),
            r.recorded_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            r.actor,
            r.actor_role,
            r.action,
            r.outcome,
            f"{r.entity_type} {r.entity_id}",
            r.accession or "",
            r.patient_id or "",
        )
    Console(width=160).print(table)


# --- audit export -------------------------------------------------------------------------


@audit_app.command("export")
def export_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="file to write", dir_okay=False)],
    format: Annotated[
        Literal["csv", "fhir"], typer.Option("--format", "-f", help="csv or fhir")
    ] = "csv",
    since: Since = None,
    until: Until = None,
    by: ActorFilter = None,
    action: Action = None,
    accession: Accession = None,
    patient_id: PatientId = None,
    outcome: Outcome = None,
    database_url: DatabaseUrl = None,
    actor: Actor = None,
) -> None:
    """Export matching events (oldest first) as CSV or a FHIR R4 AuditEvent Bundle."""
    from integration.audit.export import to_csv, to_fhir_bundle
    from integration.audit.service import export_events

    filters = _filters(since, until, by, action, accession, patient_id, outcome)
    who = _actor(actor)

    async def work(database: Any) -> str:
        async with database.sessions() as session:
            rows = await export_events(
                session,
                filters,
                format=format,
                actor=who,
                actor_role="cli",
                details=_who_ran(actor),
            )
            if format == "csv":
                text = to_csv(rows)
            else:
                text = json.dumps(to_fhir_bundle(rows), ensure_ascii=False, indent=1)
            write_private(out, text)
            await session.commit()  # recorded once the file is written
            sys.stderr.write(f"wrote {len(rows)} audit events to {out} ({format})\n")
            return text

    asyncio.run(_with_database(_database_url(database_url), work))


# --- audit verify -------------------------------------------------------------------------


CheckpointFile = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        help="also check against the signed checkpoints in this file "
        "(key: RADGPT_AUDIT__CHECKPOINT_KEY)",
    ),
]


def _checkpoint_key() -> bytes:
    from integration.app.settings import Settings

    key = Settings().audit.checkpoint_key
    if key is None:
        raise ValueError("RADGPT_AUDIT__CHECKPOINT_KEY is not set")
    return key.get_secret_value().encode()


@audit_app.command("verify")
def verify_command(
    database_url: DatabaseUrl = None, actor: Actor = None, checkpoint: CheckpointFile = None
) -> None:
    """Walk the hash chain; exit 1 and name the first broken link if the log was altered."""
    from integration.audit.checkpoint import read_checkpoints, verify_checkpoints
    from integration.audit.log import record_verification, verify_chain

    who = _actor(actor)
    anchors = None
    if checkpoint is not None:
        if not checkpoint.is_file():
            raise ValueError(f"--checkpoint: no such file: {checkpoint}")
        key, anchors = _checkpoint_key(), read_checkpoints(checkpoint)

    async def work(database: Any) -> Any:
        async with database.sessions() as session:
            report = await verify_chain(session)
        anchored = None
        if anchors is not None:
            async with database.sessions() as session:
                anchored = await verify_checkpoints(session, anchors, key)
        async with database.sessions() as session:
            await record_verification(
                session, report, actor=who, actor_role="cli", extra=_who_ran(actor)
            )
            await session.commit()
        return report, anchored

    report, anchored = asyncio.run(_with_database(_database_url(database_url), work))
    if not report.ok:
        typer.echo(
            f"audit chain BROKEN at event #{report.first_broken_id}: {report.reason} "
            f"({report.checked} events before it verified)"
        )
        raise typer.Exit(1)
    if anchored is not None and not anchored.ok:
        typer.echo(f"audit chain does NOT match its checkpoints: {anchored.reason}")
        raise typer.Exit(1)
    typer.echo(f"audit chain OK: {report.checked} events verified, head {report.head_hash}")
    if anchored is not None:
        typer.echo(f"checkpoints OK: {anchored.checked} verified, latest at #{anchored.head_id}")


@audit_app.command("checkpoint")
def checkpoint_command(
    out: Annotated[
        Path | None,
        typer.Option(help="append to this file (default: RADGPT_AUDIT__CHECKPOINT_PATH)"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Append a signed checkpoint of the chain's head (keep the file off the database host)."""
    from integration.app.settings import Settings
    from integration.audit.checkpoint import append_checkpoint, take_checkpoint

    path = out or Settings().audit.checkpoint_path
    if path is None:
        raise ValueError("--out or RADGPT_AUDIT__CHECKPOINT_PATH is required")
    key = _checkpoint_key()

    async def work(database: Any) -> Any:
        async with database.sessions() as session:
            return await take_checkpoint(session, key)

    taken = asyncio.run(_with_database(_database_url(database_url), work))
    append_checkpoint(path, taken)
    typer.echo(f"checkpoint: event #{taken.head_id}, {taken.count} events, head {taken.head_hash}")


# --- dev-token and stats ------------------------------------------------------------------


def dev_token_command(
    role: Annotated[str, typer.Option(help="radiologist, compliance or admin")],
    sub: Annotated[str, typer.Option(help="the user name (token subject)")],
    ttl: Annotated[int, typer.Option(help="lifetime in seconds", min=60)] = 8 * 3600,
    key_path: Annotated[
        Path | None,
        typer.Option(help="development key (default: auth.dev_key_path or .radgpt/dev-key.pem)"),
    ] = None,
) -> None:
    """Mint a bearer token with the local development key (environment=local only)."""
    from integration.app.settings import Settings
    from integration.review.auth import DEFAULT_DEV_KEY_PATH, mint_dev_token

    settings = Settings()
    if settings.environment != "local":
        raise ValueError("dev-token is only for environment=local; use your identity provider")
    path = key_path or settings.auth.dev_key_path or DEFAULT_DEV_KEY_PATH
    token = mint_dev_token(
        role,
        sub,
        key_path=path,
        ttl_s=ttl,
        issuer=settings.auth.issuer,
        audience=settings.auth.audience,
        role_claim=settings.auth.role_claim,
    )
    typer.echo(token)
    if not settings.auth.trust_dev_key:
        sys.stderr.write(
            "note: the service trusts this token only with RADGPT_AUTH__TRUST_DEV_KEY=true"
            f" and the same key ({path})\n"
        )


def stats_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    since: Annotated[
        str | None, typer.Option(help="only drafts reviewed at or after (ISO 8601)")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Review quality per modality and adapter: acceptance/edit rates, edit distance, time."""
    from integration.review.quality import QualityStats, load_quality

    moment = _parse_time(since, "since")

    async def work(database: Any) -> list[QualityStats]:
        async with database.sessions() as session:
            return await load_quality(session, since=moment)

    stats: list[QualityStats] = asyncio.run(_with_database(_database_url(database_url), work))
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in stats], indent=1))
        return
    if not stats:
        typer.echo("no reviewed drafts yet")
        return
    from rich.console import Console
    from rich.table import Table

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.1f}%"

    def num(value: float | None, unit: str = "") -> str:
        return "—" if value is None else f"{value:.1f}{unit}"

    table = Table(title="review quality")
    for column in ("modality", "adapter", "reviewed", "accepted", "edited", "rejected",
                   "mean edit dist. (words)", "mean time to approve", "median"):  # fmt: skip
        table.add_column(column)
    for s in stats:
        table.add_row(
            s.modality,
            s.adapter,
            str(s.reviewed),
            pct(s.acceptance_rate),
            pct(s.edit_rate),
            pct(s.rejection_rate),
            num(s.mean_edit_distance),
            num(s.mean_time_to_approve_s, " s"),
            num(s.median_time_to_approve_s, " s"),
        )
    Console(width=160).print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
    app.command("dev-token")(dev_token_command)
    app.command("stats")(stats_command)
