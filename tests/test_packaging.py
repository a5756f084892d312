"""Guards for the monorepo: one namespace, one version, explicit exports."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import venv
from importlib.metadata import version
from pathlib import Path

import pytest
import tomllib

import hface

ROOT = Path(__file__).parent.parent
PACKAGES = ROOT / "packages"
DISTRIBUTIONS = ("hface-core", "hface-server", "hface-client", "hface-cli")


def _pyproject(distribution: str) -> dict[str, object]:
    with (PACKAGES / distribution / "pyproject.toml").open("rb") as file:
        project: dict[str, object] = tomllib.load(file)["project"]
    return project


def test_hface_is_a_namespace_package() -> None:
    assert not hasattr(hface, "__file__") or hface.__file__ is None
    assert type(hface.__path__).__name__ == "_NamespacePath"
    assert list((PACKAGES).glob("*/src/hface/__init__.py*")) == []


def test_each_distribution_owns_its_subpackages_with_py_typed() -> None:
    owned = {
        "hface-core": (
            "common",
            "errors",
            "events",
            "protocols",
            "networking",
            "connections",
        ),
        "hface-server": ("server",),
        "hface-client": ("client",),
        "hface-cli": ("cli",),
    }
    for distribution, subpackages in owned.items():
        src = PACKAGES / distribution / "src" / "hface"
        found = {path.name for path in src.iterdir() if path.is_dir() and path.name[0] != "_"}
        assert found == set(subpackages), distribution
        for subpackage in subpackages:
            assert (src / subpackage / "py.typed").is_file(), subpackage


def test_versions_move_in_lockstep() -> None:
    versions = {name: _pyproject(name)["version"] for name in (*DISTRIBUTIONS, "hface")}
    assert len(set(versions.values())) == 1, versions
    expected = versions["hface"]
    meta_dependencies = _pyproject("hface")["dependencies"]
    assert isinstance(meta_dependencies, list)
    assert sorted(meta_dependencies) == sorted(f"{name}=={expected}" for name in DISTRIBUTIONS)
    assert version("hface-core") == expected


def _public_modules() -> list[str]:
    names = []
    for module in pkgutil.walk_packages(hface.__path__, "hface."):
        if any(part.startswith("_") for part in module.name.split(".")[1:]):
            continue
        names.append(module.name)
    return sorted(names)


@pytest.mark.parametrize("module_name", _public_modules())
def test_all_attributes(module_name: str) -> None:
    """Every public module declares a tuple ``__all__`` of names it really has."""
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, tuple), f"{module_name} needs a tuple __all__"
    for name in exported:
        assert hasattr(module, name), f"{module_name}.{name}"
        value = getattr(module, name)
        defined_here = inspect.isclass(value) or inspect.isfunction(value)
        if defined_here and value.__module__.startswith("hface."):
            assert value.__doc__, f"{module_name}.{name} needs a docstring"


@pytest.mark.slow
def test_hface_core_installs_alone(tmp_path: Path) -> None:
    """``pip install packages/hface-core`` works in a fresh venv, with nothing else of hface."""
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(PACKAGES / "hface-core"),
        ],
        check=True,
        timeout=300,
    )
    script = (
        "import importlib.util, hface.protocols.http3, hface.connections\n"
        "for name in ('hface.server', 'hface.client', 'hface.cli'):\n"
        "    assert importlib.util.find_spec(name) is None, name\n"
        "try:\n"
        "    import hface.server\n"
        "except ModuleNotFoundError as error:\n"
        "    assert error.name == 'hface.server'\n"
        "else:\n"
        "    raise AssertionError('hface.server imported')\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_python_m_hface_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hface", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"hface {version('hface-cli')}"
