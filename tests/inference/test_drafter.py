"""The Drafter against ``serve-model --engine instant``: retrieval exemplars in the prompt,
context, provenance and safety flags on every draft."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Collection
from pathlib import Path

import pytest
from inference_helpers import InstantServer

from inference.backends.factory import BackendConfig
from inference.backends.instant import InstantBackend
from inference.drafting.drafter import Drafter
from inference.drafting.retrieval import Exemplar, ExemplarIndex, Hit
from inference.errors import AdapterError
from inference.safety import SafetyFlag


def adapter_with_retrieval(tmp_path: Path) -> Path:
    path = tmp_path / "adapter"
    path.mkdir()
    (path / "adapter_config.json").write_text("{}")
    ExemplarIndex.build(
        [
            ("1", "Large right pleural effusion.", "Large right effusion."),
            ("2", "Clear lungs, normal heart.", "No acute disease."),
            ("3", "Left lower lobe opacity.", "Left lower lobe pneumonia."),
        ]
    ).save(path / "exemplars.json")
    meta = {
        "name": "radiology",
        "version": "t1",
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "prompt_template": "radiology",
        "max_new_tokens": 16,
        "retrieval": {"k": 2, "exemplars": "exemplars.json"},
        "canary": {
            "findings": "Clear lungs.",
            "examples": [],
            "prompt": "unused",
            "expected": "a",
            "base_output": "b",
        },
    }
    (path / "radgpt-adapter.json").write_text(json.dumps(meta))
    return path


async def test_draft_uses_exemplars_and_carries_safety_flags(
    instant_server: InstantServer, tmp_path: Path
) -> None:
    config = BackendConfig(
        backend="tgi",
        url=instant_server.url,
        adapter="radiology",
        adapter_path=adapter_with_retrieval(tmp_path),
        verify_adapter=False,
    )
    findings = "No pneumothorax. Large right pleural effusion."
    async with Drafter.from_config(config, samples=3) as drafter:
        assert drafter.k == 2
        draft = await drafter.draft(findings, context={"modality": "CR"})
    # the instant engine answers with the first sentence of the findings ("No
    # pneumothorax."), which leaves out the large effusion: every candidate is rejected and
    # the draft is the report's own positive finding, marked as the extractive fallback
    assert draft.text == "Large right pleural effusion."
    assert draft.method == "extractive-fallback"
    assert draft.candidates == 4 and draft.rejected == ("omitted_critical",)
    assert draft.safety_flags == ()
    assert draft.exemplars == 2
    assert draft.backend == "tgi" and draft.adapter_id == "radiology"
    assert draft.model_id == "radgpt/instant-extractive"
    assert draft.to_dict()["method"] == "extractive-fallback"

    # without the fallback the model's text is kept and the reviewer is told
    async with Drafter.from_config(config) as plain:
        plain.fallback = False
        draft = await plain.draft(findings, context={"modality": "CR"})
    assert draft.text == "No pneumothorax." and draft.method == "model"
    assert [(f.kind, f.phrase, f.severity) for f in draft.safety_flags] == [
        ("omitted_critical", "pleural effusion", "critical")
    ]
    assert isinstance(draft.safety_flags[0], SafetyFlag)
    assert draft.to_dict()["safety_flags"][0]["kind"] == "omitted_critical"


async def test_verification_without_metadata_refuses(instant_server: InstantServer) -> None:
    config = BackendConfig(backend="tgi", url=instant_server.url, adapter="other")
    with pytest.raises(AdapterError, match="cannot verify adapter 'other'"):
        Drafter.from_config(config)


class SlowIndex(ExemplarIndex):
    """A real index whose searches take 0.4 s (an archive far larger than a test can build)."""

    __slots__ = ("threads",)

    def __init__(self, exemplars: list[Exemplar]) -> None:
        super().__init__(exemplars)
        self.threads: list[str] = []

    def search(self, findings: str, k: int, *, exclude: Collection[str] = ()) -> list[Hit]:
        self.threads.append(threading.current_thread().name)
        time.sleep(0.4)  # blocking, like a long CPU-bound search
        return super().search(findings, k, exclude=exclude)


async def test_exemplar_search_runs_off_the_event_loop() -> None:
    index = SlowIndex(
        [
            Exemplar("1", "Large right pleural effusion.", "Large right effusion."),
            Exemplar("2", "Clear lungs, normal heart.", "No acute disease."),
        ]
    )
    drafter = Drafter(InstantBackend(), exemplars=index, k=1, verify=False)
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    drafts = await asyncio.gather(
        drafter.draft("Large right pleural effusion."), drafter.draft("Clear lungs.")
    )
    elapsed = time.perf_counter() - started
    stop.set()
    await ticking
    assert [d.exemplars for d in drafts] == [1, 1]
    assert len(index.threads) == 2
    assert threading.main_thread().name not in index.threads
    # two 0.4 s searches ran side by side in worker threads, not one after the other on the loop
    assert elapsed < 0.75
    # and the loop kept turning meanwhile: no pause near the length of a search
    assert len(gaps) >= 20 and max(gaps) < 0.2
