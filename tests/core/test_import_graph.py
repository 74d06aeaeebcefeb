"""The import graph of ``src/attrib`` has no circle (issue 19).

Read from the source with :mod:`ast` (nothing is imported). An edge ``a -> b``
is any ``import`` in module ``a`` that names module ``b`` of the package:

- module-level imports (also inside ``try`` / ``if`` at module level), and
- function-level imports (an import inside a function runs when it is called:
  a circle through one still ties the two modules together, it only hides the
  order problem), but
- not the imports under ``if TYPE_CHECKING:``, which never run.

``from . import x`` and ``from .x import y`` both point at the module ``x``;
``from .pkg import name`` points at ``pkg`` (its ``__init__``) unless ``name``
is a submodule. Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``;
those edges are not added (a package ``__init__`` that imports its own
submodules would otherwise be a circle with each of them).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "src" / "attrib"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            todo.append(child)


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                origin = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin
                           for a in node.names]
            else:
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_package_import_graph_has_no_circle() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "attrib._attributor" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_checker_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    graph = import_graph()
    # what plotting did before issue 19 (Explanation imported for its isinstance checks)
    # closes a circle with Explanation.plot's function-level import of plotting
    assert "attrib.plotting" in graph["attrib._explanation"]
    graph["attrib.plotting"] = graph["attrib.plotting"] | {"attrib._explanation"}
    assert find_cycle(graph) is not None
