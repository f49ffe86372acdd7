"""The build and leaderboard packages: no import cycles between their modules, none too long.

Imports are read from the source (every ``import``, also inside functions and under
``TYPE_CHECKING``): a cycle hidden in a function body is still a cycle, it only fails later.
A package's ``__init__`` importing its own submodules (to re-export them) is not a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vul2safe

ROOT = Path(vul2safe.__file__).parent
PACKAGES = ("build", "leaderboard")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph(package: str) -> dict[str, set[str]]:
    files = {_module(p): p for p in (ROOT / package).glob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among submodules (package ``__init__`` edges left out), or None."""
    package = min(graph, key=len)
    edges = {m: {t for t in ts if t != package} for m, ts in graph.items() if m != package}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    cycle = _cycle(_graph(package))
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"p": {"p.a"}, "p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}}
    assert _cycle(graph) == ["p.a", "p.b", "p.c", "p.a"]
    assert _cycle({"p": {"p.a"}, "p.a": {"p"}}) is None  # re-exports from the package


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_stay_under_500_lines(package: str) -> None:
    long = {
        p.name: n
        for p in (ROOT / package).glob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert not long
