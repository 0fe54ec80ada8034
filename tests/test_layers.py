"""The package's import graph: no circle, and no arrow from a lower layer up to a higher one (every import
counts: at module level, inside a function, under ``TYPE_CHECKING``)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "airflow_kling"

LAYERS: list[set[str]] = [
    # What everything builds on, with no Scenario call in it: the errors, the version module, media and
    # the model specs.
    {"airflow_kling", "exceptions", "version_compat", "media", "models"},
    {"api"},  # the wire contract, ids, the retry rules, redaction of signed URLs
    {"jobs"},  # a job's life: status vocabulary, submit-once, polling, events, the XComs of a job
    {
        "files"
    },  # storage, locations, uploads, downloads, the archive: against protocols the sync hook satisfies
    {"hooks"},
    {"observability"},  # lineage and metrics
    {"triggers"},
    {"sensors", "operators"},
    {"plugins"},
]
"""Lowest first, by the first part of a module's name under ``airflow_kling``; a module may import its own
layer (without a circle) and the ones below it."""
EMULATOR_MAY_IMPORT = LAYERS[0] | {"api", "jobs.status", "emulator"}
"""The emulator stands beside the provider: it shares the foundations, the wire contract, the status
vocabulary and the model specs, never the hooks or the job machinery."""


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parents, *([node.module] if node.module else [])])
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(target for target in targets if target in modules and target != name)
    return graph


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    (index,) = [index for index, layer in enumerate(LAYERS) if top in layer]
    return index


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    for module in module_names():
        if not module.startswith("airflow_kling.emulator"):
            layer_of(module)  # exactly one layer names it


def test_no_module_imports_in_a_circle() -> None:
    assert circles(import_graph()) == []


def test_no_package_imports_in_a_circle() -> None:
    """Folders too: ``hooks`` may use ``files``, or the other way round, not both."""
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in import_graph().items():
        for target in targets:
            here, there = module.split(".")[:2], target.split(".")[:2]
            if here != there:
                packages[".".join(here)].add(".".join(there))
    assert circles(packages) == []


def test_no_arrow_goes_up() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if not module.startswith("airflow_kling.emulator")
        for target in targets
        if not target.startswith("airflow_kling.emulator") and layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_the_emulator_uses_only_the_foundations() -> None:
    reaching = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if module.startswith("airflow_kling.emulator")
        for target in targets
        if target != "airflow_kling"
        and target.split(".")[1] not in EMULATOR_MAY_IMPORT
        and ".".join(target.split(".")[1:3]) not in EMULATOR_MAY_IMPORT
    ]
    assert reaching == []


@pytest.mark.parametrize(
    ("source", "target"),
    [("hooks.scenario", "operators.generate"), ("api.retry", "hooks.scenario")],
)
def test_an_arrow_up_would_be_seen(source: str, target: str) -> None:
    """The check itself: an import from a lower layer to a higher one is reported."""
    graph = {f"airflow_kling.{source}": {f"airflow_kling.{target}"}}
    assert layer_of(f"airflow_kling.{target}") > layer_of(f"airflow_kling.{source}")
    assert circles({**graph, f"airflow_kling.{target}": {f"airflow_kling.{source}"}}) != []
