"""The product's source as modules and syntax trees, for the guards over the whole tree."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

#: The repository's root.
ROOT = Path(__file__).parent.parent.parent


@dataclass(frozen=True)
class Module:
    """One product module: ``hface.client._pool`` at ``packages/.../_pool.py``."""

    name: str
    path: Path
    is_package: bool

    @property
    def relative_path(self) -> str:
        """The path from the repository's root, for messages."""
        if not self.path.is_relative_to(ROOT):
            return str(self.path)
        return self.path.relative_to(ROOT).as_posix()

    @property
    def subpackage(self) -> str:
        """The subpackage of ``hface`` it belongs to (``client`` for ``hface.client._pool``)."""
        return self.name.split(".")[1]

    def tree(self) -> ast.Module:
        return _parse(self.path)


@cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def product_modules(root: Path = ROOT) -> dict[str, Module]:
    """Every module under ``packages/*/src/hface``, by its dotted name."""
    modules: dict[str, Module] = {}
    for source in sorted(root.glob("packages/*/src")):
        for path in sorted(source.rglob("*.py")):
            parts = list(path.relative_to(source).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(parts)
            modules[name] = Module(name, path, is_package)
    return modules


def _absolute(module: Module, target: str, level: int) -> str:
    """The absolute name of ``from <level dots><target> import ...`` in ``module``."""
    if level == 0:
        return target
    base = module.name.split(".")
    if not module.is_package:
        base.pop()
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imports_of(module: Module, modules: dict[str, Module]) -> Iterator[tuple[str, int]]:
    """The product modules ``module`` imports, with the line of each import.

    Every import counts: at the top, inside functions (lazy imports) and
    under ``TYPE_CHECKING``. ``from package import name`` is an import of
    the submodule ``package.name`` when there is one, else of ``package``
    (its ``__init__``). Imports of other distributions are left out.
    """
    for node in ast.walk(module.tree()):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node.module or "", node.level)
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in modules:
                    yield submodule, node.lineno
                elif target in modules:
                    yield target, node.lineno
