"""The package's imports run one way: no module imports, even lazily inside a function, one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import xrayutils

PACKAGE = Path(xrayutils.__file__).parent


def imports() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports anywhere in its text."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("xrayutils", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xrayutils"):
                found |= {f"xrayutils.{a.name}" for a in node.names} if node.module == "xrayutils" else {node.module}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("xrayutils")}
        graph[name] = found - {name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every pair of modules that reach each other, as the path from one back to itself."""
    def reach(start: str) -> dict[str, list[str]]:
        paths, todo = {start: [start]}, [start]
        while todo:
            here = todo.pop()
            for there in graph.get(here, ()):
                if there in graph and there not in paths:
                    paths[there] = [*paths[here], there]
                    todo.append(there)
        return paths

    reached = {module: reach(module) for module in graph}
    return [reached[a][b] + reached[b][a][1:] for a in graph for b in reached[a] if a < b and a in reached[b]]


def test_no_module_imports_one_that_imports_it_back():
    assert circles(imports()) == []


def test_a_circle_is_found_and_named():
    assert circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b", "a"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}})[0] == ["a", "b", "c", "a"]
    assert circles({"a": {"b"}, "b": {"c"}}) == []


def test_only_the_command_line_imports_the_runner():
    """The runner (``xray-book``) sits on top: the chapters' package never reaches up into it."""
    upward = {module: sorted(d for d in deps if d.startswith("xrayutils.runner")) for module, deps in imports().items()
              if not module.startswith("xrayutils.runner") and module != "xrayutils.cli"}
    assert {module: deps for module, deps in upward.items() if deps} == {}
