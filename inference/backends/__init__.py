"""The ways of running the model behind one protocol (:class:`DraftBackend`).

``base`` (the protocol, prompt formats), ``factory`` (:class:`BackendConfig`,
:func:`create_backend`: the only importer of the concrete backends), ``tgi``,
``openai_compat``, ``local``, ``instant`` and ``resilience`` (timeouts, retries, breaker).
"""

from __future__ import annotations

from .base import DraftBackend, PromptFormat
from .factory import BackendConfig, create_backend

__all__ = ["BackendConfig", "DraftBackend", "PromptFormat", "create_backend"]
