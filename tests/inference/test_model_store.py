"""The embedded model's store takes its environment from the caller."""

from __future__ import annotations

from pathlib import Path

from inference.model_store import OFFLINE_ENV, default_cache_dir, set_offline


def test_set_offline_writes_the_flags_into_the_mapping_it_is_given() -> None:
    environ = {"HF_HUB_OFFLINE": "0", "PATH": "/usr/bin"}
    set_offline(environ)
    assert environ == {**OFFLINE_ENV, "PATH": "/usr/bin"}
    assert environ["HF_HUB_OFFLINE"] == "1" and environ["TRANSFORMERS_OFFLINE"] == "1"


def test_default_cache_dir_follows_the_xdg_directory_passed_in(tmp_path: Path) -> None:
    assert default_cache_dir(str(tmp_path)) == tmp_path / "radgpt"
    assert default_cache_dir(None) == Path.home() / ".cache" / "radgpt"
    assert default_cache_dir("") == Path.home() / ".cache" / "radgpt"
