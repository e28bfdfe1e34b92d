"""The service database: SQLAlchemy 2.x async ORM models, engine and session factory.

PostgreSQL (asyncpg) in production, SQLite (aiosqlite) as the embedded default.  Three tables:

``inbound_messages``  one row per source message (idempotency key ``source_key``)
``drafts``            one row per drafted report (idempotency keys ``report_key`` and
                      ``(accession, findings_hash)``), its review state and provenance
``audit_log``         append-only, hash-chained audit trail (see :mod:`integration.audit.log`)

The schema is created by the Alembic migrations in ``integration/storage/migrations`` (``radgpt db
upgrade``, :func:`upgrade_database`); :meth:`Base.metadata` is the single definition both the
migrations and the code use.  All timestamps are timezone-aware UTC on both back ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from integration.errors import StorageError
from integration.pipeline.faults import DB_ERRORS, db_errors
from integration.report.vocabulary import DRAFT_STATUSES

__all__ = [
    "DRAFT_STATUSES",
    "INBOUND_OUTCOMES",
    "AuditEntry",
    "Base",
    "Database",
    "DraftRecord",
    "InboundMessage",
    "UTCDateTime",
    "new_id",
    "open_database",
    "upgrade_database",
    "utcnow",
]

log = logging.getLogger(__name__)

INBOUND_OUTCOMES = ("drafted", "skipped", "dead_lettered", "final_matched", "duplicate")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, on PostgreSQL and SQLite alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonType = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class InboundMessage(Base):
    """A message taken from an input topic, and what became of it."""

    __tablename__ = "inbound_messages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # "<source system>|<MSH-10 or FHIR resource id>", or "raw|<sha256>" when unparseable.
    source_key: Mapped[str] = mapped_column(String(512), unique=True)
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    source_format: Mapped[str | None] = mapped_column(String(16))
    raw_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(String(512))  # short reason, never PHI


class DraftRecord(Base):
    """One AI draft of one report's IMPRESSION and its review state."""

    __tablename__ = "drafts"
    __table_args__ = (
        UniqueConstraint("accession", "findings_hash", name="uq_drafts_accession_findings"),
        Index("ix_drafts_status_created", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    inbound_id: Mapped[str] = mapped_column(ForeignKey("inbound_messages.id"), index=True)
    # source_key + "#" + index of the report (OBR group) within the message.
    report_key: Mapped[str] = mapped_column(String(600), unique=True)
    accession: Mapped[str | None] = mapped_column(String(128), index=True)
    patient_id: Mapped[str | None] = mapped_column(String(128), index=True)
    modality: Mapped[str | None] = mapped_column(String(32))
    procedure_code: Mapped[str | None] = mapped_column(String(64))
    procedure_display: Mapped[str | None] = mapped_column(String(255))
    findings: Mapped[str] = mapped_column(Text)
    findings_hash: Mapped[str] = mapped_column(String(64))
    report_json: Mapped[dict[str, Any]] = mapped_column(JsonType)
    draft_text: Mapped[str] = mapped_column(Text)
    safety_flags: Mapped[list[Any]] = mapped_column(JsonType, default=list)
    model_id: Mapped[str] = mapped_column(String(255))
    adapter_id: Mapped[str | None] = mapped_column(String(255))
    adapter_version: Mapped[str | None] = mapped_column(String(128))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    generated_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    # "model" (a verified model candidate) or "extractive-fallback" (inference.drafting.findings).
    draft_method: Mapped[str] = mapped_column(String(32), default="model", server_default="model")
    status: Mapped[str] = mapped_column(String(32), default="pending_review")
    final_text: Mapped[str | None] = mapped_column(Text)
    edit_distance: Mapped[int | None] = mapped_column(Integer)
    reviewer: Mapped[str | None] = mapped_column(String(255))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    review_source: Mapped[str | None] = mapped_column(String(16))  # "ui" / "ris"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Optimistic locking: state changes use UPDATE ... WHERE id=? AND version=? (or status=?).
    version: Mapped[int] = mapped_column(Integer, default=1)


class AuditEntry(Base):
    """One append-only audit event; ``row_hash`` chains it to the previous row."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_recorded_at", "recorded_at"),
        Index("ix_audit_log_entity", "entity_type", "entity_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    actor_role: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32), index=True)
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(600))
    accession: Mapped[str | None] = mapped_column(String(128), index=True)
    patient_id: Mapped[str | None] = mapped_column(String(128), index=True)
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    details: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64), unique=True)


@dataclass(frozen=True)
class Database:
    """An engine and its session factory; create with :func:`open_database`.

    ``write_lock`` (SQLite only) serialises this process's write transactions: SQLite allows
    one writer at a time, and queueing on an asyncio lock is much cheaper than many
    connections sleeping in SQLite's busy handler.
    """

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    write_lock: asyncio.Lock | None = None

    @contextlib.asynccontextmanager
    async def writer(self) -> AsyncIterator[AsyncSession]:
        """A session for a write transaction (the caller commits).

        Database failures -- while connecting, in use, or while the session closes -- are
        raised as :class:`StorageError` subclasses (:func:`integration.pipeline.faults.db_errors`).
        """
        if self.write_lock is None:
            async with db_errors(), self.sessions() as session:
                yield session
            return
        async with db_errors(), self.write_lock, self.sessions() as session:
            yield session

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        """A session for reads, with the same error translation as :meth:`writer`."""
        async with db_errors(), self.sessions() as session:
            yield session

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def ping(self) -> None:
        """Raise :class:`StorageError` unless the database answers ``SELECT 1``.

        Connect-time refusals (``ALLOW_CONNECTIONS false``, server starting, too many
        connections) are :class:`~integration.errors.DatabaseUnavailable` like the rest.
        """
        async with db_errors(), self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _create_private(path: Path) -> None:
    """Create a new SQLite file readable by its owner only (0600); SQLite gives its -wal and
    -shm files the same mode.  An existing file is left as it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def open_database(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int | None = None,
    echo: bool = False,
    connect_timeout_s: float = 5.0,
) -> Database:
    """Create the async engine for ``url`` (``postgresql+asyncpg://`` or ``sqlite+aiosqlite://``).

    SQLite runs in WAL mode with a busy timeout, so the worker and the review API can share
    the file; writes are serialised by SQLite's database lock.  On PostgreSQL a connection
    attempt gives up after ``connect_timeout_s`` (asyncpg waits 60 s by default), so an
    unreachable server is noticed and probed quickly.
    """
    kwargs: dict[str, Any] = {
        "echo": echo,
        "pool_size": pool_size,
        "max_overflow": pool_size if max_overflow is None else max_overflow,
    }
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if not path or path.startswith(":memory:") or "mode=memory" in path:
            # Every pooled connection would open its own, empty database.
            raise StorageError("in-memory SQLite is not supported: give a file path")
        _create_private(Path(path.split("?", 1)[0]).expanduser())
    else:
        kwargs["pool_pre_ping"] = True
        if url.startswith("postgresql+asyncpg"):
            kwargs["connect_args"] = {"timeout": connect_timeout_s}
    try:
        engine = create_async_engine(url, **kwargs)
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise StorageError(f"invalid database URL: {type(exc).__name__}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
    return Database(engine, sessions, lock)


async def upgrade_database(database: Database, revision: str = "head") -> None:
    """Run the Alembic migrations shipped in ``integration/storage/migrations`` up to
    ``revision``."""
    from alembic import command
    from alembic.config import Config

    def run(connection: Any) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(run)
    except DB_ERRORS as exc:  # asyncpg raises connect-time refusals untranslated
        raise StorageError(f"database migration failed: {type(exc).__name__}: {exc}") from exc
    log.info("database upgraded to %s (%s)", revision, database.dialect)
