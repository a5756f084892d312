"""Run the TCP and TLS tests over every stream implementation of SystemNetworking.

A test that asks for the ``networking`` fixture runs on asyncio with the
event loop's transports (SystemNetworking's default there), on uvloop with
uvloop's, on asyncio with anyio's streams (``asyncio_transports=False``),
and on Trio (anyio's streams: the only kind there).
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import pytest

from hface.networking import SystemNetworking
from tests.helpers.network import NetworkingFactory

#: ``(anyio_backend, asyncio_transports)`` for each way to run a networking test.
_PATHS: list[Any] = [
    pytest.param(("asyncio", True), id="asyncio"),
    pytest.param(("asyncio", False), id="asyncio-anyio-streams"),
    pytest.param(("trio", False), id="trio"),
]
if importlib.util.find_spec("uvloop") is not None:
    import uvloop

    _UVLOOP = ("asyncio", {"loop_factory": uvloop.new_event_loop})
    _PATHS.insert(1, pytest.param((_UVLOOP, True), id="uvloop"))

#: The other tests here run as everywhere (see the root conftest.py).
_BACKENDS: list[Any] = [
    pytest.param(("asyncio", True), id="asyncio"),
    pytest.param(("trio", False), id="trio"),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``stream_path``: :data:`_PATHS` for the tests using ``networking``."""
    if "stream_path" in metafunc.fixturenames:
        paths = _PATHS if "networking" in metafunc.fixturenames else _BACKENDS
        metafunc.parametrize("stream_path", paths)


@pytest.fixture
def anyio_backend(stream_path: tuple[Any, bool]) -> Any:
    """The event loop of this run (overrides the root conftest's)."""
    return stream_path[0]


@pytest.fixture
def networking(stream_path: tuple[Any, bool]) -> NetworkingFactory:
    """Makes a SystemNetworking for this run's stream implementation (takes its arguments)."""
    return functools.partial(SystemNetworking, asyncio_transports=stream_path[1])
