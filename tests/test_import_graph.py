"""The import graph of the three packages: no cycles, and ``inference`` never imports
``integration`` (the model layer does not depend on the service layer).

Every import counts, at module level, inside functions and under ``TYPE_CHECKING``: a cycle
hidden in a lazy import is still a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("inference", "integration", "training")


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".")
        if path.name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join([*base, node.module] if node.module else base)
    else:
        prefix = node.module or ""
    # ``from pkg import mod`` imports the module ``pkg.mod`` when there is one
    return [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the three packages it imports (the nearest existing one)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            targets = _targets(module, path, node)
            if isinstance(node, ast.ImportFrom):
                # a name imported from a module is an edge to that module only
                named = [t for t in targets[:-1] if t in modules]
                targets = named if len(named) == len(targets) - 1 else [*named, targets[-1]]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    deps.add(target)
        graph[module] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            if children:
                child = children.pop()
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, sorted(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _parents(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges without those to a module's own parent packages (importing ``a.b.c`` runs
    ``a/__init__`` and ``a/b/__init__`` first; a package re-exporting its modules is not a
    cycle with them)."""
    return {
        module: {d for d in deps if not module.startswith(d + ".")}
        for module, deps in graph.items()
    }


def test_the_walker_finds_a_cycle_and_the_real_graph_has_none() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = _parents(import_graph())
    assert (
        "inference.drafting.drafter" in graph
        and "inference.backends.factory" in graph["inference.drafting.drafter"]
    )
    assert cycles(graph) == []


def test_inference_never_imports_integration() -> None:
    graph = import_graph()
    wrong = sorted(
        (module, dep)
        for module, deps in graph.items()
        if module.split(".")[0] == "inference"
        for dep in deps
        if dep.split(".")[0] == "integration"
    )
    assert wrong == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "inference.backends.local",
            "from inference.serving.model import LocalModel",
            {"inference.serving.model"},
        ),
        (
            "inference.backends.factory",
            "from .resilience import ResilientBackend",
            {"inference.backends.resilience"},
        ),
        ("inference", "from .backends import factory", {"inference.backends.factory"}),
        ("integration.app.cli", "import inference.errors", {"inference.errors"}),
    ],
)
def test_imports_resolve_to_modules(module: str, source: str, expected: set[str]) -> None:
    modules = _modules()
    path = modules[module]
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.Import | ast.ImportFrom)
    targets = {t for t in _targets(module, path, node) if t in modules}
    assert expected <= targets


def test_the_cli_calls_services_not_http_routers() -> None:
    graph = import_graph()
    cli = [m for m in graph if m.startswith("integration.app.cli")]
    assert cli, "the CLI modules moved"
    wrong = sorted(
        (m, d) for m in cli for d in graph[m] if d.startswith("integration.review.web.api")
    )
    assert wrong == []
