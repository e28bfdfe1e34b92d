"""``serve-model`` with the real embedded model, driven through huggingface_hub and the
Drafter: generation, chat, batching, and the fail-closed adapter check (canary)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from conftest import CANARY_TOKENS, ModelServer
from huggingface_hub import AsyncInferenceClient

from inference.backends.factory import BackendConfig
from inference.backends.local import LocalBackend
from inference.backends.tgi import TgiBackend
from inference.drafting.adapters import read_adapter_info
from inference.drafting.canary import verify_adapter
from inference.drafting.drafter import Drafter
from inference.drafting.prompter import Prompter
from inference.errors import AdapterError, InvalidRequest
from inference.serving.model import LocalModel
from inference.types import Draft

FINDINGS = "There is a large right pleural effusion. No pneumothorax."


def tgi_config(server: ModelServer, adapter_path: Path, **kwargs: object) -> BackendConfig:
    return BackendConfig(
        backend="tgi",
        url=server.url,
        adapter="radiology",
        adapter_path=adapter_path,
        max_new_tokens=8,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_text_generation_matches_in_process_greedy(
    model_server: ModelServer, local_model: LocalModel
) -> None:
    prompt = Prompter.load().build(FINDINGS)
    client = AsyncInferenceClient(model=f"{model_server.url}/generate", api_key="test")
    output = await client.text_generation(
        prompt,
        adapter_id="radiology",
        max_new_tokens=6,
        details=True,
        return_full_text=False,
        do_sample=False,
    )
    expected = local_model.generate(prompt, max_new_tokens=6, adapter="radiology")
    assert output.generated_text == expected.text
    assert output.details is not None
    assert output.details.generated_tokens == expected.generated_tokens
    assert [t.id for t in output.details.tokens] == [t.id for t in expected.tokens]


async def test_concurrent_requests_are_batched(model_server: ModelServer) -> None:
    prompter = Prompter.load()
    client = AsyncInferenceClient(model=f"{model_server.url}/generate", api_key="test")
    prompts = [prompter.build(f) for f in (FINDINGS, "Mild cardiomegaly.", "Clear lungs.")]
    stats = model_server.engine.batcher.stats
    batches_before = stats.batches
    texts = await asyncio.gather(
        *(client.text_generation(p, adapter_id="radiology", max_new_tokens=4) for p in prompts)
    )
    assert stats.batches - batches_before < len(prompts)  # at least two shared a batch
    singles = [
        await client.text_generation(p, adapter_id="radiology", max_new_tokens=4) for p in prompts
    ]
    assert texts == singles


async def test_chat_completion_with_the_adapter(model_server: ModelServer) -> None:
    client = AsyncInferenceClient(base_url=model_server.url, api_key="test")
    output = await client.chat_completion(
        [{"role": "user", "content": Prompter.load().build(FINDINGS)}],
        model="radiology",
        max_tokens=5,
        temperature=0,
    )
    assert output.choices[0].message.content
    assert output.usage.completion_tokens <= 5
    assert output.model == "radiology"


async def test_drafter_verifies_the_adapter_and_drafts(
    model_server: ModelServer, adapter_dir: Path
) -> None:
    async with Drafter.from_config(tgi_config(model_server, adapter_dir)) as drafter:
        await drafter.start()
        assert drafter.verified is not None
        draft = await drafter.draft(FINDINGS, context={"modality": "CR"})
    assert isinstance(draft, Draft)
    assert draft.text and draft.raw_text
    assert draft.adapter_id == "radiology" and draft.backend == "tgi"
    assert draft.model_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert draft.generated_tokens is not None and draft.generated_tokens <= 8
    assert isinstance(draft.safety_flags, tuple)
    assert draft.to_dict()["truncated"] == draft.truncated


async def test_openai_backend_verifies_the_chat_canary(
    model_server: ModelServer, adapter_dir: Path
) -> None:
    config = BackendConfig(
        backend="openai",
        url=model_server.url,
        adapter="radiology",
        adapter_path=adapter_dir,
        max_new_tokens=6,
    )
    async with Drafter.from_config(config) as drafter:
        draft = await drafter.draft(FINDINGS)
    assert drafter.verified is not None
    assert draft.backend == "openai" and draft.text


async def test_wrong_adapter_name_refuses_to_start(
    model_server: ModelServer, adapter_dir: Path
) -> None:
    config = BackendConfig(
        backend="tgi", url=model_server.url, adapter="radiologie", adapter_path=adapter_dir
    )
    async with Drafter.from_config(config) as drafter:
        with pytest.raises(AdapterError, match="does not know the requested adapter"):
            await drafter.start()
        with pytest.raises(AdapterError):  # and it never drafts
            await drafter.draft(FINDINGS)


async def test_other_adapter_under_the_name_refuses_to_start(
    model_server: ModelServer, adapter_dir: Path
) -> None:
    config = BackendConfig(
        backend="tgi", url=model_server.url, adapter="impostor", adapter_path=adapter_dir
    )
    async with Drafter.from_config(config) as drafter:
        with pytest.raises(AdapterError, match="does not match the adapter's known answer"):
            await drafter.start()


async def test_server_answering_with_the_base_model_is_caught(
    model_server: ModelServer, adapter_dir: Path
) -> None:
    """TGI's silent fallback: the request reaches the base model (no adapter applied)."""
    backend = TgiBackend(model_server.url, adapter_id=None)
    try:
        with pytest.raises(AdapterError, match="like the base model"):
            await verify_adapter(backend, read_adapter_info(adapter_dir), Prompter.load())
    finally:
        await backend.aclose()


async def test_local_backend_drafts_in_process(
    model_server: ModelServer, adapter_dir: Path
) -> None:
    drafter = Drafter(
        LocalBackend(model_server.engine, adapter_id="radiology"),
        adapter_info=read_adapter_info(adapter_dir),
        max_new_tokens=CANARY_TOKENS,
    )
    draft = await drafter.draft(FINDINGS)  # runs the canary first
    assert drafter.verified is not None
    assert draft.backend == "local" and draft.prompt_tokens and draft.prompt_tokens > 10


async def test_tampered_canary_is_refused(
    model_server: ModelServer, adapter_dir: Path, tmp_path: Path
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(adapter_dir, tampered)
    meta = json.loads((tampered / "radgpt-adapter.json").read_text())
    meta["canary"]["expected"] = "Completely different impression."
    (tampered / "radgpt-adapter.json").write_text(json.dumps(meta))
    async with Drafter.from_config(tgi_config(model_server, tampered)) as drafter:
        with pytest.raises(AdapterError, match="does not match"):
            await drafter.start()


async def test_empty_findings_are_an_invalid_request(
    model_server: ModelServer, adapter_dir: Path
) -> None:
    async with Drafter.from_config(tgi_config(model_server, adapter_dir)) as drafter:
        with pytest.raises(InvalidRequest, match="findings are empty") as info:
            await drafter.draft("  \n")
    assert not info.value.retriable
