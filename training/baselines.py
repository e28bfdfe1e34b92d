"""Reference systems scored by the same code as the model: constant answers, TF-IDF 1-NN.

A model that does not beat the 1-nearest-neighbour lookup of training impressions is worse
than a lookup table; a model that does not beat the constant normal answer has learnt only
the class prior.
"""

from __future__ import annotations

from collections.abc import Sequence

from inference.drafting.retrieval import ExemplarIndex

__all__ = ["CONSTANT_ANSWERS", "constant_outputs", "nearest_neighbour_outputs"]

CONSTANT_ANSWERS = (
    "No acute cardiopulmonary disease.",
    "No acute cardiopulmonary abnormality.",
)


def constant_outputs(answer: str, n: int) -> list[str]:
    """The same answer for every report."""
    return [answer] * n


def nearest_neighbour_outputs(index: ExemplarIndex, findings: Sequence[str]) -> list[str]:
    """The impression of the training report with the most similar findings (TF-IDF cosine)."""
    return [index.top_k(f, 1)[0] for f in findings]
