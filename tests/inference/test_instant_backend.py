"""The in-process ``instant`` backend (benchmarks and smoke tests): config, drafts, provenance."""

from __future__ import annotations

import pytest

from inference.backends.base import DraftBackend
from inference.backends.factory import BackendConfig, create_backend
from inference.backends.instant import InstantBackend
from inference.drafting.drafter import Drafter
from inference.serving.instant import INSTANT_MODEL_ID
from integration.app.settings import InferenceSettings


def test_settings_select_the_instant_backend_without_a_url() -> None:
    config = InferenceSettings(
        backend="instant", url="unused", verify_adapter=False
    ).backend_config()
    backend = create_backend(config)
    assert isinstance(backend, InstantBackend)
    assert isinstance(backend, DraftBackend)
    assert (backend.name, backend.adapter_id, backend.prompt_format) == (
        "instant",
        "radiology",
        "raw",
    )


def test_unknown_backends_are_still_refused() -> None:
    with pytest.raises(ValueError, match="tgi, openai, local or instant"):
        BackendConfig(backend="instantaneous")  # type: ignore[arg-type]


async def test_drafts_the_first_sentence_with_instant_provenance() -> None:
    config = BackendConfig(backend="instant", adapter="radiology", verify_adapter=False)
    async with Drafter.from_config(config) as drafter:
        draft = await drafter.draft(
            "Small right pleural effusion with adjacent atelectasis. No pneumothorax."
        )
    assert draft.text == "Small right pleural effusion with adjacent atelectasis."
    assert "pneumothorax" not in draft.text.lower()
    assert (draft.backend, draft.model_id, draft.adapter_id) == (
        "instant",
        INSTANT_MODEL_ID,
        "radiology",
    )
    assert draft.finish_reason == "eos_token"
    assert draft.generated_tokens == 7  # words of that sentence


async def test_generation_is_cut_at_max_new_tokens() -> None:
    backend = InstantBackend(adapter_id=None)
    completion = await backend.generate(
        "### Findings:\nA large right pleural effusion is seen today.", max_new_tokens=3, stop=()
    )
    assert (completion.text, completion.finish_reason, completion.adapter_id) == (
        "A large right",
        "length",
        None,
    )
    with pytest.raises(ValueError, match="max_new_tokens"):
        await backend.generate("### Findings:\nClear.", max_new_tokens=0, stop=())
