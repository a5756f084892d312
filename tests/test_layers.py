"""Guards over the imports of the whole tree: layers point one way, and no import cycle.

The layers, bottom up (README, ``docs/index.rst``): ``hface.common`` and
``hface.errors`` < ``hface.events`` < ``hface.protocols`` <
``hface.networking`` < ``hface.connections`` < ``hface.server`` and
``hface.client`` (which never import each other) < ``hface.cli``. A
module may import its own layer and those below. Every import counts:
at the top, in functions, under ``TYPE_CHECKING`` (see
:func:`tests.helpers.source.imports_of`).
"""

from __future__ import annotations

import itertools
import textwrap
from collections import deque
from pathlib import Path
from typing import Final

import pytest

from tests.helpers.source import Module, imports_of, product_modules

#: Each subpackage of ``hface`` and its layer.
LAYERS: Final = {
    "common": 0,
    "errors": 0,
    "events": 1,
    "protocols": 2,
    "networking": 3,
    "connections": 4,
    "server": 5,
    "client": 5,
    "cli": 6,
    "__main__": 6,  # hface/__main__.py: ``python -m hface``, of hface-cli
}

#: Subpackages of one layer that never import each other.
APART: Final = (frozenset({"server", "client"}),)

#: Import cycles known, and being cut elsewhere: the list only shrinks.
#: Once a cycle is cut, test_known_cycles_are_still_there says to remove it.
KNOWN_CYCLES: Final[dict[frozenset[str], str]] = {}

Graph = dict[str, dict[str, int]]


def import_graph(modules: dict[str, Module]) -> Graph:
    """Each module's imports of product modules, with the line of the (first) import."""
    graph: Graph = {}
    for name, module in modules.items():
        edges: dict[str, int] = {}
        for imported, line in imports_of(module, modules):
            if imported != name:
                edges.setdefault(imported, line)
        graph[name] = edges
    return graph


def import_cycles(graph: Graph) -> list[list[str]]:
    """Every set of modules that import one another round (Tarjan's components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for other in graph[name]:
            if other not in index:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in on_stack:
                low[name] = min(low[name], index[other])
        if low[name] == index[name]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == name:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(components)


def describe_cycle(graph: Graph, component: list[str], modules: dict[str, Module]) -> str:
    """One way round the cycle, with the file and line of each import."""
    start = component[0]
    members = set(component)
    # Breadth first from start's imports back to start, inside the component.
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        name = queue.popleft()
        for other in graph[name]:
            if other in members and other not in previous:
                previous[other] = name
                queue.append(other)
        if start in previous:
            break
    path = [start]
    while True:
        path.append(previous[path[-1]])
        if path[-1] == start:
            break
    path.reverse()
    steps = [
        f"  {modules[a].relative_path}:{graph[a][b]}: {a} imports {b}"
        for a, b in itertools.pairwise(path)
    ]
    return f"cycle among {', '.join(component)}:\n" + "\n".join(steps)


def layer_violations(modules: dict[str, Module]) -> list[str]:
    """Every import of a module from a higher layer, or between server and client."""
    violations = []
    for module in modules.values():
        here = module.subpackage
        for imported, line in imports_of(module, modules):
            there = modules[imported].subpackage
            if LAYERS[there] > LAYERS[here] or frozenset({here, there}) in APART:
                violations.append(
                    f"{module.relative_path}:{line}: {module.name} imports {imported} "
                    f"(hface.{there} is not below hface.{here})"
                )
    return violations


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return product_modules()


def test_every_subpackage_has_a_layer(modules: dict[str, Module]) -> None:
    unknown = {module.subpackage for module in modules.values()} - set(LAYERS)
    assert not unknown, f"add these subpackages to LAYERS: {sorted(unknown)}"


def test_layers_import_only_downwards(modules: dict[str, Module]) -> None:
    violations = layer_violations(modules)
    assert not violations, "\n".join(violations)


def test_no_import_cycle(modules: dict[str, Module]) -> None:
    graph = import_graph(modules)
    found = [
        component for component in import_cycles(graph) if frozenset(component) not in KNOWN_CYCLES
    ]
    assert not found, "\n".join(describe_cycle(graph, component, modules) for component in found)


def test_known_cycles_are_still_there(modules: dict[str, Module]) -> None:
    """A known cycle that was cut leaves the list (which only shrinks)."""
    found = {frozenset(component) for component in import_cycles(import_graph(modules))}
    cut = [sorted(cycle) for cycle in KNOWN_CYCLES if cycle not in found]
    assert not cut, f"no longer a cycle, remove from KNOWN_CYCLES: {cut}"


# -- the guards themselves, on a tree made up for them ------------------------------------


def _write(root: Path, files: dict[str, str]) -> dict[str, Module]:
    for relative, text in files.items():
        path = root / "packages" / "dist" / "src" / "hface" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return product_modules(root)


def test_the_guards_see_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    modules = _write(
        tmp_path,
        {
            "events/__init__.py": "",
            "events/_a.py": """
                def later():
                    from hface.client import _b  # lazy, and from a higher layer
            """,
            "client/__init__.py": "from ._b import B as B\n",
            "client/_b.py": "from . import _c\nclass B: ...\n",
            "client/_c.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from ._b import B
            """,
            "server/__init__.py": "from hface.client import B\n",
        },
    )
    graph = import_graph(modules)
    assert import_cycles(graph) == [["hface.client._b", "hface.client._c"]]
    description = describe_cycle(graph, ["hface.client._b", "hface.client._c"], modules)
    assert "client/_b.py:1: hface.client._b imports hface.client._c" in description
    assert "client/_c.py:4: hface.client._c imports hface.client._b" in description
    violations = layer_violations(modules)
    assert len(violations) == 2, violations
    assert "events/_a.py:3: hface.events._a imports hface.client._b" in violations[0]
    assert "hface.server imports hface.client (hface.client is not below" in violations[1]
