"""The host pipeline runs in one direction, and one module talks to the container engine."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "toolkit" / "mlbox"


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "mlbox":  # `from mlbox import layout`
                names |= {f"mlbox.{alias.name}" for alias in node.names}
    return names


def modules() -> dict[str, set[str]]:
    return {f"mlbox.{path.stem}": imports(path) for path in sorted(PACKAGE.glob("*.py")) if path.stem != "__main__"}


def test_only_the_engine_module_uses_the_docker_client() -> None:
    users = {name for name, imported in modules().items() if any(i.split(".")[0] == "docker" for i in imported)}
    assert users == {"mlbox.engine"}


def test_no_two_modules_import_each_other_nor_in_a_longer_cycle() -> None:
    every = modules()
    graph = {name: {i for i in imported if i in every} for name, imported in every.items()}
    mutual = sorted((a, b) for a, deps in graph.items() for b in deps if a < b and a in graph[b])
    assert mutual == []
    import graphlib

    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_plan_and_render_do_not_depend_on_the_executors_or_the_cli() -> None:
    graph = modules()
    for pure in ("mlbox.plan", "mlbox.render", "mlbox.layout", "mlbox.spec", "mlbox.catalog"):
        assert graph[pure] & {"mlbox.build", "mlbox.cli", "mlbox.engine", "mlbox.run", "mlbox.publish"} == set(), pure


def test_the_harness_never_imports_the_host_tool() -> None:
    for path in sorted((REPO / "entrypoints" / "mlbox_bench").rglob("*.py")):
        assert not {i for i in imports(path) if i.split(".")[0] == "mlbox"}, path
