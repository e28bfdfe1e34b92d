"""Errors of the integration package (codecs, pipeline, review, audit).

The root is :class:`inference.errors.RadgptError` (re-exported here): one tree for the whole
service, whose ``retriable`` / ``infrastructure`` / ``http_status`` attributes the worker,
the resilient backend and the HTTP layers read (see :mod:`inference.errors` for their
meaning and the inference branch).  HTTP statuses are in brackets.

```
RadgptError                    the root (inference.errors), with InferenceError beside these
├── InputError                 the input itself is bad: never retried, dead-lettered (422; CLI 2)
│   ├── MessageParseError      not parseable as HL7 v2 or FHIR JSON at all
│   │   ├── TruncatedMessageError  MLLP start without end, or a cut-off last segment
│   │   ├── CharsetError           bytes that do not decode in the declared MSH-18 charset
│   │   └── ControlCharacterError  NUL or another control character in the text
│   ├── MissingIdentityError   a report with findings but no accession / business identifier
│   ├── UnsupportedMessageError  parseable, but a message type/version we do not handle
│   ├── InvalidResourceError   FHIR resource that fails validation (type, required, status)
│   └── MessageTooLarge        over ``pipeline.max_message_bytes`` (or an output the broker refuses)
├── RenderError                a write-back could not be built from the report (422)
├── StorageError               the database failed (retriable, a few times per message) (503)
│   ├── DatabaseUnavailable    refused/reset/starting/too many connections... (infrastructure)
│   ├── DuplicateKeyError      an idempotency key was taken concurrently (retry finds the row)
│   └── DataRejected           the database refused the message's data (SQLSTATE 22; not retriable)
├── PublishError               Kafka (or the FHIR sink) refused the output (retriable) (503)
│   └── BrokerUnavailable      Kafka cannot be reached or has no leader (infrastructure)
├── RetriesExhausted           a message failed ``max_attempts`` times; dead-lettered with history
├── ConflictError              a state change lost a race (e.g. draft already approved) (409)
├── NotFoundError              an entity does not exist (404)
└── AuthError                  missing/invalid credentials (401)
    └── ForbiddenError         authenticated but not allowed (403)
```

``infrastructure`` marks a dependency that is down for every message (database, broker): the
worker pauses all consumption and probes the dependency instead of retrying message by
message; such faults never count against a message's retry cap.  :mod:`integration.pipeline.faults`
is the one place that decides which class a failure belongs to.
"""

from __future__ import annotations

from inference.errors import Dependency, RadgptError

__all__ = [
    "AuthError",
    "BrokerUnavailable",
    "CharsetError",
    "ConflictError",
    "ControlCharacterError",
    "DataRejected",
    "DatabaseUnavailable",
    "DuplicateKeyError",
    "ForbiddenError",
    "InputError",
    "InvalidResourceError",
    "MessageParseError",
    "MessageTooLarge",
    "MissingIdentityError",
    "NotFoundError",
    "PublishError",
    "RadgptError",
    "RenderError",
    "RetriesExhausted",
    "StorageError",
    "TruncatedMessageError",
    "UnsupportedMessageError",
]


class InputError(RadgptError):
    """The input message is bad; retrying cannot help."""

    http_status = 422


class MessageParseError(InputError):
    """The bytes are not a parseable HL7 v2 message or FHIR JSON document."""


class TruncatedMessageError(MessageParseError):
    """The message was cut off: MLLP start block without end block, or a partial segment."""


class CharsetError(MessageParseError):
    """The bytes do not decode in the character set the message declares (MSH-18)."""


class ControlCharacterError(MessageParseError):
    """NUL or another control character in the text (never stored; see the mapping doc)."""


class MissingIdentityError(InputError):
    """A report with findings has no usable identity (accession or business identifier)."""


class UnsupportedMessageError(InputError):
    """A well-formed message of a type or version this service does not handle."""


class InvalidResourceError(InputError):
    """A FHIR resource that does not validate (wrong type, missing element, bad code)."""


class MessageTooLarge(InputError):
    """The message (or an output built from it) is larger than the configured maximum."""


class RenderError(RadgptError):
    """A write-back message could not be built."""

    http_status = 422


class StorageError(RadgptError):
    """The database is unreachable or failed."""

    retriable = True
    http_status = 503


class DatabaseUnavailable(StorageError):
    """The database cannot be reached or refuses connections (SQLSTATE 08, 53, 55, 57...)."""

    infrastructure = True
    dependency: Dependency | None = "database"


class DuplicateKeyError(StorageError):
    """An idempotency key was taken concurrently; processing again finds the stored row."""


class DataRejected(StorageError):
    """The database refused the message's own data (SQLSTATE class 22: NUL, bad encoding)."""

    retriable = False
    http_status = 422


class PublishError(RadgptError):
    """An output could not be published."""

    retriable = True
    http_status = 503


class BrokerUnavailable(PublishError):
    """Kafka cannot be reached, timed out, or the partition has no leader."""

    infrastructure = True
    dependency: Dependency | None = "broker"


class RetriesExhausted(RadgptError):
    """A message failed ``attempts`` times with retriable errors of its own; dead-letter it."""

    def __init__(self, attempts: int, history: list[str]) -> None:
        self.attempts = attempts
        self.history = list(history)
        super().__init__(f"gave up after {attempts} attempt(s): {', '.join(history)}"[:300])


class ConflictError(RadgptError):
    """A concurrent change won; the requested transition is no longer possible."""

    http_status = 409


class NotFoundError(RadgptError):
    """The requested entity does not exist."""

    http_status = 404


class AuthError(RadgptError):
    """Missing, malformed, expired or untrusted credentials."""

    http_status = 401


class ForbiddenError(AuthError):
    """The caller is authenticated but lacks the role for this action."""

    http_status = 403
