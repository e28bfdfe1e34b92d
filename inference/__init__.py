"""radgpt inference: prompts, backends (TGI, OpenAI-compatible, local), the drafter and the
embedded model server.

The public names are imported lazily so that ``import inference.errors`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import BackendConfig, DraftBackend, create_backend
    from .drafter import Drafter
    from .types import Completion, Draft

__all__ = ["BackendConfig", "Completion", "Draft", "DraftBackend", "Drafter", "create_backend"]

_LOCATIONS = {
    "BackendConfig": "backend",
    "DraftBackend": "backend",
    "create_backend": "backend",
    "Drafter": "drafter",
    "Completion": "types",
    "Draft": "types",
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
