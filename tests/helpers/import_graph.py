"""The import graph of orchestrator/ and trainables/ from every import statement in the source:
module level, inside functions (lazy), and under `if TYPE_CHECKING:`, which import-linter leaves out.

`python tests/helpers/import_graph.py` prints rooms (modules), arrows, floors (the longest downward chain)
and any cycle; tests/test_import_graph.py asserts there is none and that the rooms of orchestrator/
import downward only (the same layers as pyproject.toml's import-linter contract).
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "trainables")


def module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    return modules


@cache
def import_graph() -> dict[str, set[str]]:
    """module -> the project's modules it imports (a name imported from a package that is a module
    counts as that module; anything else as the package or module named)."""
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                parent = (
                    ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                    if node.level
                    else node.module
                )
                targets.add(parent)
                targets.update(f"{parent}.{alias.name}" for alias in node.names)
        found = set()
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
        graph[name] = found
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def floors(graph: dict[str, set[str]], package: str) -> int:
    """The longest chain of imports among one package's modules (an acyclic graph)."""
    inside = {
        name: {t for t in targets if t.startswith(package)}
        for name, targets in graph.items()
        if name.startswith(package)
    }

    @cache
    def height(node: str) -> int:
        return 1 + max((height(target) for target in inside.get(node, ())), default=0)

    return max(height(node) for node in inside)


if __name__ == "__main__":
    graph = import_graph()
    for package in PACKAGES:
        rooms = [name for name in graph if name.startswith(package)]
        arrows = sum(len([t for t in graph[name] if t.startswith(package)]) for name in rooms)
        print(f"{package}: {len(rooms)} modules, {arrows} arrows, {floors(graph, package)} floors")
    print("cycles:", cycles(graph) or "none")
