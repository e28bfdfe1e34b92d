"""radgpt inference: prompts, backends (TGI, OpenAI-compatible, local), the drafter and the
embedded model server.

Subpackages: :mod:`inference.backends` (the backend protocol, the factory and the concrete
backends), :mod:`inference.serving` (the embedded model, its engine and batcher, the
model server) and :mod:`inference.drafting` (prompts, retrieval, adapters, scope, verify and
choose, the drafter).  This package never imports ``integration``.

The public names are imported lazily so that ``import inference.errors`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends.base import DraftBackend
    from .backends.factory import BackendConfig, create_backend
    from .drafting.drafter import Drafter
    from .types import Completion, Draft

__all__ = ["BackendConfig", "Completion", "Draft", "DraftBackend", "Drafter", "create_backend"]

_LOCATIONS = {
    "BackendConfig": "backends.factory",
    "DraftBackend": "backends.base",
    "create_backend": "backends.factory",
    "Drafter": "drafting.drafter",
    "Completion": "types",
    "Draft": "types",
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
