"""aioquic's internals stay in one module (hface.protocols.http3._aioquic), version-checked.

Every other module of hface uses aioquic's public names only: it imports no
private aioquic module, subclasses no aioquic class (the adapters of
``_aioquic`` are subclassed instead, and reach no aioquic private member
through ``self``), and reads no private attribute of an aioquic object. The
private names are found by introspecting live aioquic objects, so a new
use of one in another module fails here.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path

import aioquic
import pytest
from aioquic.h3.connection import H3Connection
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from hface.protocols.http3._aioquic import VERIFIED_AIOQUIC, check_aioquic_version

SOURCES = Path(__file__).resolve().parents[2] / "packages"
ADAPTER = Path("hface-core/src/hface/protocols/http3/_aioquic.py")


@pytest.mark.parametrize("version", ["1.7.0", "1.7.2", "1.7.10"])
def test_verified_versions_are_accepted(version: str) -> None:
    check_aioquic_version(version)


@pytest.mark.parametrize("version", ["1.8.0", "1.6.9", "2.0.0", "1", "dev"])
def test_other_versions_are_refused_with_a_clear_error(version: str) -> None:
    with pytest.raises(ImportError, match=f"supports aioquic 1.7.x, not {version}") as error:
        check_aioquic_version(version)
    assert "pip install 'aioquic>=1.7,<1.8'" in str(error.value)


def test_the_installed_aioquic_is_verified() -> None:
    major, minor = (int(part) for part in aioquic.__version__.split(".")[:2])
    assert (major, minor) in VERIFIED_AIOQUIC


def _aioquic_private_names() -> set[str]:
    """The private attributes of aioquic's objects, found on live ones."""
    quic = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=["h3"]))
    quic.connect(("127.0.0.1", 4433), now=0.0)
    h3 = H3Connection(quic)
    h3.send_headers(0, [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")])
    names: set[str] = set()
    seen: set[int] = set()

    def walk(value: object) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, dict | list | tuple | set):
            items = value.values() if isinstance(value, dict) else value
            for item in items:
                walk(item)
            return
        module = type(value).__module__
        if not module.startswith("aioquic") or not hasattr(value, "__dict__"):
            return
        for cls in type(value).__mro__:
            names.update(name for name in vars(cls) if _private(name))
        for name, attribute in vars(value).items():
            if _private(name):
                names.add(name)
            walk(attribute)

    walk(h3)
    return names


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(SOURCES.glob("*/src/hface/**/*.py")):
        # (``__main__`` modules run the command line when imported.)
        if path.relative_to(SOURCES) != ADAPTER and path.name != "__main__.py":
            yield path, ast.parse(path.read_text(), str(path))


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCES).with_suffix("").parts[2:]  # skip "<dist>/src"
    return ".".join(part for part in parts if part != "__init__")


def _hface_private_names() -> set[str]:
    """Private names hface defines itself (attributes it sets, methods, class fields)."""
    names: set[str] = set()
    for _, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return {name for name in names if _private(name)}


def _aioquic_classes(path: Path, tree: ast.Module) -> set[str]:
    """The classes of a module that inherit from an aioquic class."""
    module = importlib.import_module(_module_name(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            cls = getattr(module, node.name, None)
            if inspect.isclass(cls) and any(
                base.__module__.startswith("aioquic") for base in cls.__mro__
            ):
                found.add(node.name)
    return found


def _violations() -> list[str]:
    aioquic_names = _aioquic_private_names()
    hface_names = _hface_private_names()
    found = []
    for path, tree in _modules():
        where = path.relative_to(SOURCES)
        subclasses = _aioquic_classes(path, tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aioquic._"):
                found.append(f"{where}:{node.lineno}: imports {node.module}")
            if isinstance(node, ast.ClassDef) and node.name in subclasses:
                direct = importlib.import_module(_module_name(path))
                bases = getattr(direct, node.name).__bases__
                if any(base.__module__.startswith("aioquic") for base in bases):
                    found.append(f"{where}:{node.lineno}: {node.name} subclasses aioquic")
                for inner in ast.walk(node):
                    if (
                        isinstance(inner, ast.Attribute)
                        and isinstance(inner.value, ast.Name)
                        and inner.value.id == "self"
                        and inner.attr in aioquic_names
                    ):
                        found.append(f"{where}:{inner.lineno}: self.{inner.attr} is aioquic's")
            if (
                isinstance(node, ast.Attribute)
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                and node.attr in aioquic_names
                and node.attr not in hface_names
            ):
                found.append(f"{where}:{node.lineno}: .{node.attr} is aioquic's")
    return found


def test_no_module_but_the_adapter_touches_aioquic_internals() -> None:
    assert _aioquic_private_names() >= {"_close_pending", "_host_cids", "_stream", "_pending"}
    assert _violations() == []
