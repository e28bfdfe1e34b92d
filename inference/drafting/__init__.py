"""Findings in, a checked draft out: ``prompter`` (prompts as data, shared with training),
``retrieval`` (exemplar search), ``adapters`` and ``canary`` (what an adapter is and proof
that it is loaded), ``scope`` (which studies it may draft), ``findings`` (positive findings,
the extractive fallback), ``choose`` (verify a candidate) and ``drafter`` (all of it).

Modules are imported on use; ``inference`` re-exports :class:`~inference.drafting.drafter.Drafter`.
"""

from __future__ import annotations

__all__: list[str] = []
