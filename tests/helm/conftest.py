"""Fixtures for the deployment tests: the chart rendered offline by Helm's own Go SDK."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from pydantic import BaseModel

from integration.app.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "radgpt"
CI_DIR = CHART_DIR / "ci"
RELEASE = "radgpt"
NAMESPACE = "radiology-ai"

Manifest = dict[str, Any]


@dataclass
class Rendered:
    """The manifests of one rendered release, grouped by template file."""

    files: dict[str, list[Manifest]]
    notes: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def manifests(self) -> list[Manifest]:
        return [doc for docs in self.files.values() for doc in docs]

    def kinds(self) -> set[str]:
        return {doc["kind"] for doc in self.manifests}

    def all(self, kind: str) -> list[Manifest]:
        return [doc for doc in self.manifests if doc["kind"] == kind]

    def one(self, kind: str, component: str | None = None) -> Manifest:
        found = [
            doc
            for doc in self.all(kind)
            if component is None
            or doc["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]
        assert len(found) == 1, f"expected one {kind} ({component}), found {len(found)}"
        return found[0]


Render = Callable[..., Rendered]


def load_ci_values(name: str) -> dict[str, Any]:
    """One of the chart's example value sets, helm/radgpt/ci/values-<name>.yaml."""
    loaded = yaml.safe_load((CI_DIR / f"values-{name}.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


CI_VALUE_SETS = sorted(p.stem.removeprefix("values-") for p in CI_DIR.glob("values-*.yaml"))


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base`` (maps merge, everything else replaces)."""
    out = json.loads(json.dumps(base))
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _settings_env_names() -> set[str]:
    """Every RADGPT_* variable the settings model reads (prefix, ``__`` nesting)."""

    def walk(model: type[BaseModel], prefix: str) -> Iterator[str]:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            env = f"{prefix}{name.upper()}"
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                yield from walk(annotation, env + "__")
            else:
                yield env

    return set(walk(Settings, "RADGPT_"))


def _container_env(manifest: Manifest) -> dict[str, dict[str, Any]]:
    """Env entries of every container of a workload, by variable name."""
    spec = manifest["spec"]["template"]["spec"]
    return {
        entry["name"]: entry
        for container in spec.get("containers", []) + spec.get("initContainers", [])
        for entry in container.get("env", [])
    }


@pytest.fixture(scope="session")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: helm_python.Chart) -> Render:
    """Validate values against values.schema.json (as `helm install` does), then render."""

    def _render(
        values: dict[str, Any], *, release: str = RELEASE, namespace: str = NAMESPACE
    ) -> Rendered:
        chart.validate_schema(values)
        raw = chart.render(values, name=release, namespace=namespace, is_install=True)
        files: dict[str, list[Manifest]] = {}
        notes = ""
        for path, text in raw.items():
            if path.endswith("NOTES.txt"):
                notes = text
                continue
            docs = [doc for doc in yaml.safe_load_all(text) if doc]
            if docs:
                files[path.split("/templates/", 1)[1]] = docs
        return Rendered(files=files, notes=notes, values=chart.merge_values(values))

    return _render


@pytest.fixture(scope="session")
def chart_dir() -> Path:
    return CHART_DIR


@pytest.fixture(scope="session")
def ci_values() -> Callable[[str], dict[str, Any]]:
    """Load helm/radgpt/ci/values-<name>.yaml."""
    return load_ci_values


@pytest.fixture(scope="session")
def merged() -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    """Deep-merge two value dicts (the second wins)."""
    return merge


@pytest.fixture(scope="session")
def settings_env_names() -> set[str]:
    """Every RADGPT_* variable name integration.app.settings.Settings reads."""
    return _settings_env_names()


@pytest.fixture(scope="session")
def container_env() -> Callable[[Manifest], dict[str, dict[str, Any]]]:
    """Env entries of every container of a workload manifest, by name."""
    return _container_env


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise tests that take ``value_set`` over every helm/radgpt/ci/values-*.yaml."""
    if "value_set" in metafunc.fixturenames:
        metafunc.parametrize("value_set", CI_VALUE_SETS)
