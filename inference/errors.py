"""Errors of the inference package.

```
InferenceError                 base; ``retriable`` tells the caller to retry or give up
├── BackendUnavailable         connection refused/reset, 5xx, server still loading (retriable)
│   ├── BackendTimeout         the request took longer than the timeout (retriable)
│   ├── BackendOverloaded      429: too many requests in flight (retriable)
│   ├── BackendFailure         424/500: the server failed this generation (retried a bounded
│   │                          number of times)
│   └── CircuitOpen            too many recent failures; calls are refused for a while (retriable)
├── InvalidRequest             422/400: the server rejected the request itself (not retriable)
│   └── OutOfScope             the study is outside what the adapter was validated on
├── AdapterError               adapter unknown, or it answers like the base model (not retriable)
├── ModelNotAvailable          the embedded model or adapter files are missing (not retriable)
└── GenerationFailed           the model produced no usable impression (not retriable)
```
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "BackendFailure",
    "BackendOverloaded",
    "BackendTimeout",
    "BackendUnavailable",
    "CircuitOpen",
    "GenerationFailed",
    "InferenceError",
    "InvalidRequest",
    "ModelNotAvailable",
    "OutOfScope",
]


class InferenceError(Exception):
    """Base of all inference errors."""

    retriable: bool = False


class BackendUnavailable(InferenceError):
    """The model server cannot be reached or failed transiently."""

    retriable = True


class BackendTimeout(BackendUnavailable):
    """The model server did not answer within the timeout."""


class BackendOverloaded(BackendUnavailable):
    """The model server refused the request because it is at capacity (429)."""


class BackendFailure(BackendUnavailable):
    """The model server failed while generating (424 generation / 500 incomplete)."""


class CircuitOpen(BackendUnavailable):
    """The circuit breaker is open after repeated failures; no request was sent."""


class InvalidRequest(InferenceError):
    """The model server rejected the request as invalid (422/400)."""


class OutOfScope(InvalidRequest):
    """The study (modality, body part) is outside the adapter's validated scope: no draft."""


class AdapterError(InferenceError):
    """The LoRA adapter is unknown to the server or is not the one expected."""


class ModelNotAvailable(InferenceError):
    """Model or adapter files are missing or unreadable."""


class GenerationFailed(InferenceError):
    """The model returned no usable impression."""
