"""What kind of fault a failure is: the one place that decides retry, pause or dead-letter.

Every failure of a message is one of three kinds (:class:`Fault`):

``infrastructure``  a dependency is down for *every* message: the database refuses or drops
                    connections (SQLSTATE classes 08, 53, 55, 57, 58, 40001/40P01, 3D000, 28;
                    refused sockets, timeouts), the broker is unreachable or has no leader,
                    the model server is down, overloaded or its circuit is open.  The worker
                    pauses all consumption, probes the dependency and retries without a cap.
``transient``       a retriable error of this message (a unique-key race, an unexpected
                    driver error, a 500 from the model server): retried with backoff at most
                    ``pipeline.max_attempts`` times, then dead-lettered with the history.
``message``         the message itself is at fault (unparseable, oversize, SQLSTATE class 22
                    data exceptions such as a NUL character): dead-lettered at once.

:func:`translate_db` turns any SQLAlchemy / asyncpg / socket error into the matching
:class:`~integration.errors.StorageError` subclass, and :func:`db_errors` applies it around a
whole session's life -- opening (connect-time errors are raised raw by asyncpg), use, commit
and close.  :func:`translate_kafka` does the same for aiokafka errors.  Messages carry
class names and SQLSTATE codes only, never SQL or values.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

import asyncpg
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)
from sqlalchemy import exc as sa_exc

from inference.errors import Dependency
from integration.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    DataRejected,
    DuplicateKeyError,
    MessageTooLarge,
    PublishError,
    RadgptError,
    RetriesExhausted,
    StorageError,
)

__all__ = [
    "DB_ERRORS",
    "Classified",
    "Dependency",
    "Fault",
    "classify",
    "db_errors",
    "is_too_large",
    "sqlstate_of",
    "translate_db",
    "translate_kafka",
]

# SQLSTATE classes (first two characters) and codes that mean "the database, not the message".
_INFRA_CLASSES = frozenset({"08", "53", "55", "57", "58", "28", "3D"})
_INFRA_CODES = frozenset({"40001", "40P01", "25006"})  # serialization, deadlock, read-only
_DATA_CLASS = "22"

# What a DB-touching block may raise that :func:`translate_db` understands.
DB_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,  # ConnectionError, TimeoutError, socket errors
)


class Fault(StrEnum):
    INFRASTRUCTURE = "infrastructure"
    TRANSIENT = "transient"
    MESSAGE = "message"


@dataclass(frozen=True)
class Classified:
    fault: Fault
    dependency: Dependency | None = None


def _chain(exc: BaseException, depth: int = 8) -> list[BaseException]:
    """``exc``, the DB-API error it wraps and its causes (bounded, no cycles)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < depth and current not in seen:
        seen.append(current)
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and orig not in seen:
            seen.append(orig)
        current = current.__cause__ or current.__context__
    return seen


def sqlstate_of(exc: BaseException) -> str | None:
    """The first SQLSTATE found on ``exc`` or the errors it wraps (asyncpg, SQLAlchemy)."""
    for candidate in _chain(exc):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str) and len(state) == 5:
            return state
    return None


def _is_connection_loss(exc: BaseException) -> bool:
    for candidate in _chain(exc):
        if isinstance(
            candidate,
            OSError
            | asyncpg.InterfaceError
            | asyncpg.InternalClientError
            | asyncpg.PostgresConnectionError
            | sa_exc.DisconnectionError
            | sa_exc.TimeoutError
            | sa_exc.InterfaceError,
        ):
            return True
        if isinstance(candidate, sa_exc.DBAPIError) and candidate.connection_invalidated:
            return True
    return False


def translate_db(exc: BaseException) -> StorageError:
    """The :class:`StorageError` for a database failure (raise it ``from exc``)."""
    if isinstance(exc, StorageError):
        return exc
    name = type(exc).__name__
    state = sqlstate_of(exc)
    if state is not None:
        detail = f"{name} (SQLSTATE {state})"
        if state.startswith(_DATA_CLASS):
            return DataRejected(f"the database refused the message's data: {detail}")
        if state[:2] in _INFRA_CLASSES or state in _INFRA_CODES:
            return DatabaseUnavailable(f"database unavailable: {detail}")
        if state.startswith("23"):
            return DuplicateKeyError(f"idempotency key already stored: {detail}")
        return StorageError(f"database error: {detail}")
    if isinstance(exc, sa_exc.IntegrityError):
        return DuplicateKeyError("idempotency key already stored")
    if _is_connection_loss(exc):
        return DatabaseUnavailable(f"database unavailable: {name}")
    if isinstance(exc, sa_exc.OperationalError):  # SQLite: locked, I/O error, cannot open
        return DatabaseUnavailable(f"database unavailable: {name}")
    if isinstance(exc, sa_exc.DataError):
        return DataRejected(f"the database refused the message's data: {name}")
    return StorageError(f"database error: {name}")


@contextlib.asynccontextmanager
async def db_errors() -> AsyncIterator[None]:
    """Translate database failures raised inside the block (see :func:`translate_db`)."""
    try:
        yield
    except StorageError:
        raise
    except DB_ERRORS as exc:
        raise translate_db(exc) from exc


def translate_kafka(exc: KafkaError, topic: str) -> PublishError:
    """The :class:`PublishError` for an aiokafka failure while sending to ``topic``."""
    name = type(exc).__name__
    if isinstance(exc, MessageSizeTooLargeError | RecordTooLargeError):
        error: PublishError = PublishError(f"Kafka refused a message for {topic} as too large")
        error.retriable = False
        return error
    if exc.retriable or isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
        return BrokerUnavailable(f"Kafka unavailable for {topic}: {name}")
    return PublishError(f"Kafka refused a message for {topic}: {name}")


def is_too_large(exc: BaseException) -> bool:
    """True when Kafka refused a record for its size (client- or broker-side)."""
    return any(
        isinstance(c, MessageSizeTooLargeError | RecordTooLargeError | MessageTooLarge)
        for c in _chain(exc)
    )


def classify(exc: BaseException) -> Classified:
    """Which :class:`Fault` ``exc`` is, and which dependency is down for infrastructure."""
    if isinstance(exc, RetriesExhausted):
        return Classified(Fault.MESSAGE)
    if isinstance(exc, DB_ERRORS) and not isinstance(exc, RadgptError):
        exc = translate_db(exc)  # a raw driver error that escaped translation
    if isinstance(exc, RadgptError):  # the flags decide (inference.errors), nothing else
        if exc.infrastructure:
            dependency: Dependency = exc.dependency or (
                "database" if isinstance(exc, StorageError) else "broker"
            )
            return Classified(Fault.INFRASTRUCTURE, dependency)
        return Classified(Fault.TRANSIENT if exc.retriable else Fault.MESSAGE)
    return Classified(Fault.MESSAGE)  # a bug: never retried forever
