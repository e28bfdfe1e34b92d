"""Errors of the integration package (codecs, pipeline, review, audit).

```
RadgptError                    base; ``retriable`` drives retry vs dead-letter in the workers
├── InputError                 the input itself is bad: never retried, dead-lettered (CLI exit 2)
│   ├── MessageParseError      not parseable as HL7 v2 or FHIR JSON at all
│   │   ├── TruncatedMessageError  MLLP start without end, or a cut-off last segment
│   │   ├── CharsetError           bytes that do not decode in the declared MSH-18 charset
│   │   └── ControlCharacterError  NUL or another control character in the text
│   ├── MissingIdentityError   a report with findings but no accession / business identifier
│   ├── UnsupportedMessageError  parseable, but a message type/version we do not handle
│   ├── InvalidResourceError   FHIR resource that fails validation (type, required, status)
│   └── MessageTooLarge        over ``pipeline.max_message_bytes`` (or an output the broker refuses)
├── RenderError                a write-back could not be built from the report (not retriable)
├── StorageError               the database failed (retriable, at most a few times per message)
│   ├── DatabaseUnavailable    refused/reset/starting/too many connections... (infrastructure)
│   ├── DuplicateKeyError      an idempotency key was taken concurrently (retry finds the row)
│   └── DataRejected           the database refused the message's data (SQLSTATE 22; not retriable)
├── PublishError               Kafka (or the FHIR sink) refused the output (retriable)
│   └── BrokerUnavailable      Kafka cannot be reached or has no leader (infrastructure)
├── RetriesExhausted           a message failed ``max_attempts`` times; dead-lettered with history
├── ConflictError              a state change lost a race (e.g. draft already approved)
├── NotFoundError              an entity does not exist
└── AuthError                  missing/invalid credentials (401)
    └── ForbiddenError         authenticated but not allowed (403)
```

``infrastructure`` marks a dependency that is down for every message (database, broker): the
worker pauses all consumption and probes the dependency instead of retrying message by
message; such faults never count against a message's retry cap.  :mod:`integration.pipeline.faults`
is the one place that decides which class a failure belongs to.
"""

from __future__ import annotations

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


class RadgptError(Exception):
    """Base of all radgpt integration errors."""

    retriable: bool = False
    # A dependency is down for every message: pause consumption, probe, retry without a cap.
    infrastructure: bool = False


class InputError(RadgptError):
    """The input message is bad; retrying cannot help."""


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


class StorageError(RadgptError):
    """The database is unreachable or failed."""

    retriable = True


class DatabaseUnavailable(StorageError):
    """The database cannot be reached or refuses connections (SQLSTATE 08, 53, 55, 57...)."""

    infrastructure = True


class DuplicateKeyError(StorageError):
    """An idempotency key was taken concurrently; processing again finds the stored row."""


class DataRejected(StorageError):
    """The database refused the message's own data (SQLSTATE class 22: NUL, bad encoding)."""

    retriable = False


class PublishError(RadgptError):
    """An output could not be published."""

    retriable = True


class BrokerUnavailable(PublishError):
    """Kafka cannot be reached, timed out, or the partition has no leader."""

    infrastructure = True


class RetriesExhausted(RadgptError):
    """A message failed ``attempts`` times with retriable errors of its own; dead-letter it."""

    def __init__(self, attempts: int, history: list[str]) -> None:
        self.attempts = attempts
        self.history = list(history)
        super().__init__(f"gave up after {attempts} attempt(s): {', '.join(history)}"[:300])


class ConflictError(RadgptError):
    """A concurrent change won; the requested transition is no longer possible."""


class NotFoundError(RadgptError):
    """The requested entity does not exist."""


class AuthError(RadgptError):
    """Missing, malformed, expired or untrusted credentials."""


class ForbiddenError(AuthError):
    """The caller is authenticated but lacks the role for this action."""
