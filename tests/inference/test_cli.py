"""``radgpt model prepare``, ``radgpt draft`` and ``radgpt serve-model`` as real processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
from inference_helpers import REPO, InstantServer, free_port


def radgpt(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADGPT_")}
    return subprocess.run(
        [sys.executable, "-m", "integration", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_model_prepare_prints_the_directory(model_cache_dir: Path, base_model_dir: Path) -> None:
    result = radgpt("model", "prepare", "--cache-dir", str(model_cache_dir))
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == base_model_dir


def test_draft_without_a_model_server_names_the_url_and_the_setting() -> None:
    """Was "error: cannot reach the model server: ConnectError" after 18 s, with no URL."""
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADGPT_")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "integration", "draft", "--findings", "Clear lungs.",
         "--backend", "tgi", "--no-verify"],
        cwd=REPO, env={**env, "RADGPT_INFERENCE__URL": url},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"error: cannot reach the model server: ConnectError at {url} "
        "(set --url or RADGPT_INFERENCE__URL)\n"
    )
    assert time.monotonic() - started < 15
    result = radgpt(
        "draft", "--findings", "Clear lungs.", "--backend", "tgi", "--no-verify", "--url", url
    )
    assert result.stderr == (
        f"error: cannot reach the model server: ConnectError at {url} (set --url)\n"
    )


def test_draft_prints_the_impression(instant_server: InstantServer) -> None:
    result = radgpt(
        "draft", "--findings", "Heart size is normal.  Lungs are clear.", "--backend", "tgi",
        "--url", instant_server.url, "--adapter", "radiology", "--no-verify",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Heart size is normal.\n"


def test_draft_json_has_provenance(instant_server: InstantServer) -> None:
    result = radgpt(
        "draft", "--findings", "Small left pleural effusion.", "--backend", "openai",
        "--url", instant_server.url, "--adapter", "radiology", "--no-verify", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    draft = json.loads(result.stdout)
    assert draft["text"] == "Small left pleural effusion."
    assert draft["backend"] == "openai" and draft["adapter_id"] == "radiology"
    assert isinstance(draft["safety_flags"], list)


def test_draft_bad_input_is_one_line_exit_2(instant_server: InstantServer) -> None:
    cases = [
        ["--findings", " ", "--url", instant_server.url, "--no-verify"],
        ["--findings", "x", "--url", "ftp://nowhere", "--no-verify"],
        ["--findings", "x", "--url", instant_server.url, "--no-verify", "--context", "oops"],
        ["--findings", "Heart size is normal.", "--url", instant_server.url, "--no-verify",
         "--adapter", "nope"],
    ]
    messages = []
    for args in cases:
        result = radgpt("draft", "--backend", "tgi", *args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
        messages.append(result.stderr)
    assert "findings are empty" in messages[0]
    assert "must start with http" in messages[1]
    assert "NAME=VALUE" in messages[2]
    assert "does not know the requested adapter" in messages[3]


def test_draft_refuses_to_run_without_a_verifiable_adapter(
    instant_server: InstantServer, adapter_dir: Path
) -> None:
    result = radgpt(
        "draft", "--findings", "Clear lungs.", "--backend", "tgi", "--url", instant_server.url,
        "--adapter", "radiology", "--adapter-path", str(adapter_dir),
    )  # fmt: skip
    # the instant engine is not the adapter: its answer to the canary is wrong
    assert result.returncode == 2
    assert "does not match the adapter's known answer" in result.stderr


def test_serve_model_refuses_to_start_with_a_mismatching_adapter(
    base_model_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(adapter_dir, tampered)
    meta = json.loads((tampered / "radgpt-adapter.json").read_text())
    meta["canary"]["expected"] = "Completely different impression."
    (tampered / "radgpt-adapter.json").write_text(json.dumps(meta))
    result = radgpt(
        "serve-model", "--engine", "model", "--base-model-dir", str(base_model_dir),
        "--adapter", f"radiology={tampered}", "--no-default-adapter", "--threads", "1",
        "--port", str(free_port()),
    )  # fmt: skip
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in result.stderr
    assert "does not match the adapter's known answer" in last


def test_serve_model_rejects_a_missing_adapter_directory(tmp_path: Path) -> None:
    result = radgpt(
        "serve-model", "--engine", "instant", "--adapter", f"radiology={tmp_path / 'none'}",
    )  # fmt: skip
    assert result.returncode == 2
    assert "no peft adapter" in result.stderr


def test_offline_flag_with_an_http_backend_is_a_clear_error(instant_server: InstantServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADGPT_")}
    result = subprocess.run(
        [sys.executable, "-m", "integration", "draft", "--findings", "x", "--backend", "tgi",
         "--url", instant_server.url, "--no-verify"],
        cwd=REPO, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "HF_HUB_OFFLINE" in result.stderr and "refuses every HTTP request" in result.stderr


def test_serve_model_with_the_real_model_serves_verified_drafts(
    base_model_dir: Path, adapter_dir: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADGPT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "integration", "serve-model", "--engine", "model",
         "--base-model-dir", str(base_model_dir), "--adapter", f"radiology={adapter_dir}",
         "--no-default-adapter", "--threads", "1", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve-model did not start"
            time.sleep(0.5)
        info = httpx.get(f"{url}/info").json()
        assert info["adapters"] == ["radiology"] and info["engine"] == "model"
        result = radgpt(
            "draft", "--findings", "Small left pleural effusion.", "--backend", "tgi",
            "--url", url, "--adapter", "radiology", "--adapter-path", str(adapter_dir),
            "--max-new-tokens", "6", "--json",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        draft = json.loads(result.stdout)
        assert draft["text"] and draft["model_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert draft["adapter_id"] == "radiology" and draft["generated_tokens"] <= 6
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_draft_with_the_local_backend(model_cache_dir: Path, adapter_dir: Path) -> None:
    result = radgpt(
        "draft", "--findings", "Mild cardiomegaly. No pleural effusion.", "--backend", "local",
        "--adapter", "radiology", "--adapter-path", str(adapter_dir),
        "--cache-dir", str(model_cache_dir), "--max-new-tokens", "6", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    draft = json.loads(result.stdout)
    assert draft["backend"] == "local" and draft["text"]
    assert draft["prompt_tokens"] > 10 and draft["generated_tokens"] <= 6


def test_model_canary_adds_the_chat_canary(
    base_model_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "adapter"
    shutil.copytree(adapter_dir, copy)
    original = json.loads((copy / "radgpt-adapter.json").read_text())
    stripped = json.loads(json.dumps(original))
    del stripped["canary"]["expected_chat"], stripped["canary"]["base_output_chat"]
    (copy / "radgpt-adapter.json").write_text(json.dumps(stripped))
    result = radgpt(
        "model", "canary", "--adapter-path", str(copy), "--base-model-dir", str(base_model_dir)
    )
    assert result.returncode == 0, result.stderr
    updated = json.loads((copy / "radgpt-adapter.json").read_text())
    assert updated["canary"]["expected_chat"] == original["canary"]["expected_chat"]
    assert updated["canary"]["base_output_chat"] == original["canary"]["base_output_chat"]
    assert updated["metrics"] == original["metrics"]


def test_draft_shows_the_fallback_and_flags_without_json(instant_server: InstantServer) -> None:
    # the instant engine drafts the first sentence, which leaves out the pneumothorax
    findings = "Heart size is normal. Large left pneumothorax."
    common = ["draft", "--findings", findings, "--backend", "tgi", "--url", instant_server.url,
              "--no-verify"]  # fmt: skip
    result = radgpt(*common, "--samples", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Large left pneumothorax.\n"
    assert result.stderr.startswith("method: extractive-fallback (no model candidate of 4 ")
    assert "omitted_critical" in result.stderr

    # without the fallback the model's text is printed, the flag follows on stderr, exit 3
    result = radgpt(*common, "--no-fallback", "--samples", "0")
    assert result.returncode == 3, result.stderr
    assert result.stdout == "Heart size is normal.\n"
    assert result.stderr.splitlines() == [
        "flag: CRITICAL omitted_critical: findings report pneumothorax; the draft does not "
        "mention it"
    ]


def test_draft_refuses_a_study_outside_the_adapters_scope(instant_server: InstantServer) -> None:
    head = "Acute left subdural hematoma with midline shift. The ventricles are effaced."
    for extra in ([], ["--procedure", "CT HEAD WO CONTRAST"]):
        result = radgpt(
            "draft", "--findings", head, "--backend", "tgi", "--url", instant_server.url,
            "--no-verify", *extra,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: not drafted: ") and result.stdout == ""
    result = radgpt(
        "draft", "--findings", "Lungs are clear.", "--procedure", "CT CHEST", "--backend", "tgi",
        "--url", instant_server.url, "--no-verify",
    )  # fmt: skip
    assert result.returncode == 2 and "modality CT is not validated" in result.stderr
