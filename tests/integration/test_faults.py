"""Fault classification against the real PostgreSQL: one test per class of failure.

Infrastructure faults (connections refused, dropped, too many) are retriable for every
message and pause consumption; faults of the message (SQLSTATE class 22) are dead-lettered
at once; everything raised while opening, using or closing a session is translated."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    UnknownError,
)
from pg_faults import PG_ADMIN_URL, PgFaults
from review_helpers import ReviewServer, Tokens
from sqlalchemy import text

from inference.errors import (
    AdapterError,
    BackendFailure,
    BackendUnavailable,
    CircuitOpen,
    InvalidRequest,
)
from integration.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    DataRejected,
    DuplicateKeyError,
    MessageParseError,
    MessageTooLarge,
    PublishError,
    RetriesExhausted,
    StorageError,
)
from integration.pipeline.faults import (
    Fault,
    classify,
    is_too_large,
    sqlstate_of,
    translate_db,
    translate_kafka,
)
from integration.review.auth import TokenVerifier
from integration.storage import repository as store
from integration.storage.db import Database, open_database, upgrade_database

pytestmark = pytest.mark.faults


@pytest.fixture
async def pg(pg_database: str) -> Database:
    database = open_database(pg_database)
    await upgrade_database(database)
    try:
        yield database  # type: ignore[misc]
    finally:
        await database.dispose()


def _infra(exc: BaseException, dependency: str = "database") -> None:
    kind = classify(exc)
    assert kind.fault is Fault.INFRASTRUCTURE, exc
    assert kind.dependency == dependency


async def test_refused_connections_are_database_unavailable_on_ping_and_sessions(
    pg: Database, pg_database: str
) -> None:
    await pg.ping()
    faults = PgFaults(pg_database)
    async with faults.refusing():
        with pytest.raises(DatabaseUnavailable, match="55000") as raised:
            await pg.ping()
        assert isinstance(raised.value.__cause__, asyncpg.ObjectNotInPrerequisiteStateError)
        _infra(raised.value)
        with pytest.raises(DatabaseUnavailable):  # opening a session: a connect-time error
            async with pg.reader() as session:
                await session.execute(text("SELECT 1"))
        with pytest.raises(DatabaseUnavailable):
            async with pg.writer() as session:
                await session.execute(text("SELECT 1"))
    await pg.ping()  # and back


async def test_a_connection_killed_in_use_is_database_unavailable(
    pg: Database, pg_database: str
) -> None:
    faults = PgFaults(pg_database)
    with pytest.raises(DatabaseUnavailable) as raised:
        async with pg.writer() as session:
            await session.execute(text("SELECT 1"))
            await faults.terminate()
            await session.execute(text("SELECT 1"))
    _infra(raised.value)
    await pg.ping()  # the pool replaces the dead connection


async def test_too_many_connections_is_database_unavailable(pg_database: str) -> None:
    role = f"radgpt_test_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
        url = pg_database.replace("://postgres@", f"://{role}@")
        limited = open_database(url)
        try:
            with pytest.raises(DatabaseUnavailable, match="53300") as raised:
                await limited.ping()
            assert isinstance(raised.value.__cause__, asyncpg.TooManyConnectionsError)
            _infra(raised.value)
        finally:
            await limited.dispose()
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_server_side_infrastructure_errors_are_infrastructure(error: BaseException) -> None:
    translated = translate_db(error)
    assert isinstance(translated, DatabaseUnavailable)
    assert translated.retriable and translated.infrastructure
    _infra(error)  # raw, as asyncpg raises it at connect time
    _infra(translated)


async def test_a_nul_character_is_a_fault_of_the_message(pg: Database) -> None:
    with pytest.raises(DataRejected, match="22021") as raised:
        async with pg.writer() as session:
            await store.record_inbound(
                session, source_key="RIS|NUL1", topic="t", partition=0, offset=1,
                source_format="hl7v2", raw_sha256="a" * 64, outcome="drafted",
                error="findings with a \x00 NUL",
            )  # fmt: skip
            await session.commit()
    assert sqlstate_of(raised.value) == "22021"  # CharacterNotInRepertoireError
    assert raised.value.retriable is False
    assert classify(raised.value).fault is Fault.MESSAGE
    assert "\x00" not in str(raised.value)  # class and SQLSTATE only, never the value


async def test_a_nul_escape_in_json_is_a_fault_of_the_message(pg: Database) -> None:
    with pytest.raises(DataRejected, match="22P05"):
        async with pg.writer() as session:
            await session.execute(text("SELECT CAST(:doc AS jsonb)"), {"doc": '{"a": "\\u0000"}'})
    await pg.ping()


async def test_a_duplicate_key_is_transient(pg: Database) -> None:
    async def insert() -> None:
        async with pg.writer() as session:
            await store.record_inbound(
                session, source_key="RIS|DUP1", topic="t", partition=0, offset=1,
                source_format="hl7v2", raw_sha256="a" * 64, outcome="drafted",
            )  # fmt: skip
            await session.commit()

    await insert()
    with pytest.raises(DuplicateKeyError) as raised:
        await insert()
    assert classify(raised.value).fault is Fault.TRANSIENT


@pytest.mark.parametrize(
    ("error", "fault", "dependency"),
    [
        (StorageError("unexpected driver error"), Fault.TRANSIENT, None),
        (PublishError("FHIR sink 503"), Fault.TRANSIENT, None),
        (BrokerUnavailable("no leader"), Fault.INFRASTRUCTURE, "broker"),
        (BackendUnavailable("connection refused"), Fault.INFRASTRUCTURE, "model"),
        (CircuitOpen("open"), Fault.INFRASTRUCTURE, "model"),
        (AdapterError("wrong adapter"), Fault.INFRASTRUCTURE, "model"),
        (BackendFailure("500"), Fault.TRANSIENT, None),
        (InvalidRequest("422"), Fault.MESSAGE, None),
        (MessageParseError("garbage"), Fault.MESSAGE, None),
        (MessageTooLarge("5 MiB"), Fault.MESSAGE, None),
        (RetriesExhausted(5, ["StorageError"] * 5), Fault.MESSAGE, None),
        (KeyError("a bug"), Fault.MESSAGE, None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_classes_of_pipeline_errors(
    error: BaseException, fault: Fault, dependency: str | None
) -> None:
    kind = classify(error)
    assert (kind.fault, kind.dependency) == (fault, dependency)


def test_kafka_errors_by_cause() -> None:
    assert isinstance(translate_kafka(KafkaConnectionError(), "t"), BrokerUnavailable)
    assert isinstance(translate_kafka(NotLeaderForPartitionError(), "t"), BrokerUnavailable)
    too_large = translate_kafka(MessageSizeTooLargeError(), "t")
    assert not isinstance(too_large, BrokerUnavailable) and too_large.retriable is False
    try:
        raise too_large from MessageSizeTooLargeError()
    except PublishError as exc:
        assert is_too_large(exc)
    other = translate_kafka(UnknownError(), "t")
    assert classify(other).fault is Fault.TRANSIENT


async def test_the_review_api_answers_503_not_500_while_the_database_refuses(
    pg: Database, pg_database: str, tmp_path: Path
) -> None:
    tokens = Tokens(tmp_path / "dev-key.pem")
    verifier = TokenVerifier(issuer="radgpt-dev", audience="radgpt", dev_key_path=tokens.key_path)
    server = ReviewServer(pg_database, verifier).start()
    try:
        headers = tokens.headers("radiologist", "dr-fault")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            assert (await http.get("/api/drafts", headers=headers)).status_code == 200
            async with PgFaults(pg_database).refusing():
                refused = await http.get("/api/drafts", headers=headers)
            assert refused.status_code == 503, refused.text
            assert "database unavailable" in refused.json()["detail"]
            assert (await http.get("/api/drafts", headers=headers)).status_code == 200
    finally:
        server.stop()
