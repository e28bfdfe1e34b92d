"""The root of every radgpt error, and the errors of the inference package.

:class:`RadgptError` is the one root (``integration.errors`` builds its tree under it).
Three class attributes say what a failure means, and every layer reads them, nothing
else: the Kafka worker (retry, pause or dead-letter; ``integration.pipeline.faults``), the
resilient backend (retry the call or not) and both HTTP layers (the status of the answer).

* ``retriable``: the same call may succeed if it is repeated soon (a transient fault).
* ``infrastructure``: a dependency (``dependency``: ``model``, ``database``, ``broker``) is
  down or misconfigured for every message: the worker pauses all consumption and probes it
  instead of retrying message by message, and never dead-letters for it.
* ``http_status``: the HTTP status an API answers with (the table below is the only one).

Neither flag: a fault of the message or request itself (dead-lettered, HTTP 4xx).

```
RadgptError                    (500)
└── InferenceError             (500)
    ├── BackendUnavailable     connection refused/reset, 5xx, loading   retriable, infra (503)
    │   ├── BackendTimeout     longer than the timeout                  retriable, infra (504)
    │   ├── BackendOverloaded  429: too many requests in flight         retriable, infra (429)
    │   ├── CircuitOpen        too many recent failures: refused a while retriable, infra (503)
    │   └── BackendFailure     424/500: the server failed this generation  retriable (424)
    ├── InvalidRequest         422/400: the request itself is rejected                (422)
    │   ├── UnknownAdapter     a model server asked for an adapter it does not have  (404)
    │   └── OutOfScope         the study is outside the adapter's validated scope     (422)
    ├── AdapterError           adapter unknown, or answers like the base model  infra (503)
    ├── ModelNotAvailable      the embedded model or adapter files are missing  infra (503)
    └── GenerationFailed       the model produced no usable impression                (424)
```
"""

from __future__ import annotations

from typing import Literal

#: What an ``infrastructure`` error says is down.
Dependency = Literal["model", "database", "broker"]

__all__ = [
    "AdapterError",
    "BackendFailure",
    "BackendOverloaded",
    "BackendTimeout",
    "BackendUnavailable",
    "CircuitOpen",
    "Dependency",
    "GenerationFailed",
    "InferenceError",
    "InvalidRequest",
    "ModelNotAvailable",
    "OutOfScope",
    "RadgptError",
    "UnknownAdapter",
]


class RadgptError(Exception):
    """Root of all radgpt errors; the class attributes say what the failure means."""

    retriable: bool = False
    infrastructure: bool = False
    dependency: Dependency | None = None
    http_status: int = 500


class InferenceError(RadgptError):
    """Base of the inference errors."""


class BackendUnavailable(InferenceError):
    """The model server cannot be reached or failed transiently."""

    retriable = True
    infrastructure = True
    dependency: Dependency | None = "model"
    http_status = 503


class BackendTimeout(BackendUnavailable):
    """The model server did not answer within the timeout."""

    http_status = 504


class BackendOverloaded(BackendUnavailable):
    """The model server refused the request because it is at capacity (429)."""

    http_status = 429


class BackendFailure(BackendUnavailable):
    """The model server failed while generating (424 generation / 500 incomplete): maybe
    this prompt, so the message is retried a bounded number of times, not paused for."""

    infrastructure = False
    dependency = None
    http_status = 424


class CircuitOpen(BackendUnavailable):
    """The circuit breaker is open after repeated failures; no request was sent."""


class InvalidRequest(InferenceError):
    """The model server rejected the request as invalid (422/400)."""

    http_status = 422


class UnknownAdapter(InvalidRequest):
    """The request names an adapter this model server does not have (404)."""

    http_status = 404


class OutOfScope(InvalidRequest):
    """The study (modality, body part) is outside the adapter's validated scope: no draft."""


class AdapterError(InferenceError):
    """The LoRA adapter is unknown to the server or is not the one expected: a deployment
    fault, the same for every message."""

    infrastructure = True
    dependency: Dependency | None = "model"
    http_status = 503


class ModelNotAvailable(InferenceError):
    """Model or adapter files are missing or unreadable."""

    infrastructure = True
    dependency: Dependency | None = "model"
    http_status = 503


class GenerationFailed(InferenceError):
    """The model returned no usable impression."""

    http_status = 424
