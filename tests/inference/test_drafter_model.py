"""Verify and choose with the real embedded model and the shipped adapter: abnormal findings
are never drafted as a normal template, normal ones keep the model's own wording."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inference.backends.local import LocalBackend
from inference.drafting.adapters import read_adapter_info, shipped_adapter_dir
from inference.drafting.drafter import Drafter
from inference.drafting.retrieval import ExemplarIndex
from inference.errors import OutOfScope
from inference.safety import find_mentions
from inference.serving.engine import ModelEngine
from inference.serving.model import LocalModel


@pytest.fixture(scope="module")
def shipped() -> Path:
    directory = shipped_adapter_dir()
    assert directory is not None, "the shipped adapter is part of the repository"
    return directory


@pytest.fixture(scope="module")
def shipped_model(base_model_dir: Path, shipped: Path) -> LocalModel:
    return LocalModel(base_model_dir, shipped, threads=2)


@pytest.fixture
async def drafter(shipped_model: LocalModel, shipped: Path) -> AsyncIterator[Drafter]:
    info = read_adapter_info(shipped)
    assert info.retrieval is not None
    backend = LocalBackend(ModelEngine(shipped_model), adapter_id="radiology")
    async with Drafter(
        backend,
        adapter_info=info,
        exemplars=ExemplarIndex.load(info.retrieval.exemplars),
        k=info.retrieval.k,
        max_new_tokens=info.max_new_tokens,
    ) as d:
        yield d


def _positive(text: str) -> set[str]:
    return {m.concept for m in find_mentions(text) if m.polarity in ("present", "uncertain")}


@pytest.mark.parametrize(
    ("findings", "concept", "side"),
    [
        (
            "Heart size is normal. There is a large right pneumothorax with leftward "
            "mediastinal shift. No pleural effusion.",
            "pneumothorax",
            "right",
        ),
        (
            "The cardiomediastinal silhouette is normal. Moderate left pleural effusion with "
            "adjacent atelectasis. No pneumothorax.",
            "pleural effusion",
            "left",
        ),
        (
            "Endotracheal tube tip is in the right mainstem bronchus. Lungs are clear. "
            "No pneumothorax.",
            "malpositioned device",
            None,
        ),
        (
            "Normal heart size. Displaced fracture of the left 7th rib. No pneumothorax.",
            "fracture",
            "left",
        ),
    ],
)
async def test_an_abnormal_study_is_never_drafted_as_normal(
    drafter: Drafter, findings: str, concept: str, side: str | None
) -> None:
    draft = await drafter.draft(findings)
    assert concept in _positive(draft.text), (draft.text, draft.method, draft.rejected)
    assert not [f for f in draft.safety_flags if f.severity == "critical"], draft.text
    if side is not None:
        assert not any(f.kind == "laterality_conflict" for f in draft.safety_flags)
    if draft.method == "model" and draft.candidates > 1:
        assert draft.rejected  # the greedy draft was rejected and a sample chosen
    assert drafter.verified is not None  # the adapter canary ran first


async def test_normal_findings_keep_the_greedy_model_draft(drafter: Drafter) -> None:
    draft = await drafter.draft(
        "Heart size is normal. The lungs are clear. No pleural effusion or pneumothorax."
    )
    assert (draft.method, draft.candidates, draft.safety_flags) == ("model", 1, ())
    assert _positive(draft.text) == set()


async def test_a_head_ct_is_refused_before_any_generation(drafter: Drafter) -> None:
    with pytest.raises(OutOfScope, match="head"):
        await drafter.draft(
            "Acute left subdural hematoma with 5 mm midline shift. The ventricles are effaced."
        )
