"""``radgpt demo`` from the repository with embedded defaults only (broker, SQLite, model)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _demo(*args: str, timeout: float) -> list[dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADGPT_")}
    result = subprocess.run(
        [sys.executable, "-m", "integration", "demo", "--no-serve", "--json", *args],
        cwd=REPO, env=env, capture_output=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return [json.loads(line) for line in result.stdout.decode().splitlines() if line.strip()]


def test_demo_instant_engine_drafts_every_sample() -> None:
    rows = _demo("--limit", "4", "--engine", "instant", timeout=180)
    assert len(rows) == 4
    assert {r["status"] for r in rows} == {"pending_review"}
    for row in rows:
        assert set(row) >= {"accession", "findings", "draft", "reference", "status"}
        assert isinstance(row["draft"], str) and row["draft"]
        # the instant engine copies the first sentence; when that hides an abnormality the
        # drafter writes the extractive fallback: either way the draft is the findings' words
        words = set(str(row["findings"]).lower().replace(".", " ").replace(",", " ").split())
        draft_words = str(row["draft"]).lower().replace(".", " ").replace(",", " ").split()
        assert set(draft_words) <= words, row
        if row["draft"] not in str(row["findings"]):
            assert row["method"] == "extractive-fallback"
        assert row["reference"] and row["reference"] != row["draft"]


@pytest.mark.slow
def test_demo_with_the_embedded_model(base_model_dir: Path) -> None:
    """The real embedded model (SmolLM2 + the shipped adapter when present), one report."""
    rows = _demo("--limit", "1", timeout=600)
    assert len(rows) == 1 and rows[0]["status"] == "pending_review"
    draft = str(rows[0]["draft"])
    assert draft.strip() and "### " not in draft  # a parsed impression, not the raw prompt


def test_demo_reports_a_missing_data_dir_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADGPT_")}
    result = subprocess.run(
        [sys.executable, "-m", "integration", "demo", "--no-serve", "--data-dir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.decode().strip().splitlines()[-1].startswith("error: no reports.csv")


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADGPT_")}
    return subprocess.run(
        [sys.executable, "-m", "integration", "demo", "--no-serve", "--json", *args],
        cwd=REPO, env=env, capture_output=True, timeout=timeout, check=False,
    )  # fmt: skip


def _announced(stderr: bytes, label: str) -> Path:
    line = next(x for x in stderr.decode().splitlines() if x.startswith(label))
    return Path(line.split(":", 1)[1].strip())


def test_demo_mixes_abnormal_studies_announces_and_removes_its_files(tmp_path: Path) -> None:
    from training.metrics import is_normal_impression

    kept = _run("--limit", "6", "--engine", "instant", "--keep", timeout=180)
    assert kept.returncode == 0, kept.stderr.decode()[-2000:]
    rows = [json.loads(line) for line in kept.stdout.decode().splitlines() if line.strip()]
    assert len(rows) == 6
    abnormal = [r for r in rows if not is_normal_impression(str(r["reference"]))]
    assert len(abnormal) >= 2  # at least a third
    ct_head = [r for r in rows if "intraparenchymal hemorrhage" in str(r["findings"])]
    assert len(ct_head) == 1  # the out-of-scope study
    database = _announced(kept.stderr, "demo database")
    key = _announced(kept.stderr, "development key")
    try:
        assert database.is_file() and database.stat().st_mode & 0o777 == 0o600
        assert key.parent == database.parent
    finally:
        shutil.rmtree(database.parent, ignore_errors=True)

    removed = _run("--limit", "2", "--engine", "instant", timeout=180)
    assert removed.returncode == 0, removed.stderr.decode()[-2000:]
    gone = _announced(removed.stderr, "demo database")
    assert "removed on exit" in removed.stderr.decode()
    assert not gone.exists() and not gone.parent.exists()
