"""``bench/profile_server.py`` charges py-spy's samples to the right layers (issue 19)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def profile_server() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("profile_server", BENCH / "profile_server.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


SITE = "/venv/lib/python3.11/site-packages"
SRC = "/repo/packages/hface-core/src"

RAW = [
    # The innermost frame is charged, whatever the outer ones are.
    "process 1;run (/py/asyncio/runners.py:1);"
    f"feed ({SRC}/hface/protocols/http1/_httptools.py:9) 7\n",
    f"process 1;send_all ({SRC}/hface/networking/_tcp.py:3) 2\n",
    f"process 1;_work (/repo/packages/hface-server/src/hface/server/_asgi_connection.py:5);"
    f"send_data ({SITE}/h2/connection.py:8) 3\n",
    f"process 1;encode ({SITE}/hpack/hpack.py:2) 1\n",
    "process 1;_reply (/repo/bench/app.py:40) 4\n",
    "process 1;cast (/py/typing.py:1) 1\n",
    "not a sample line\n",
    # Threads that wait (anyio's idle workers, a selector) are left out.
    "process 1;_worker (/py/threading.py:3);Condition.wait (/py/threading.py:331) 50\n",
    "process 1;run_forever (/py/asyncio/base_events.py:1);"
    "EpollSelector.select (/py/selectors.py:468) 9\n",
]


def test_samples_go_to_the_innermost_frames_layer(profile_server: ModuleType) -> None:
    layers, functions, total = profile_server.tally(RAW)
    assert total == 18
    assert layers == {
        "hface.protocols": 7,
        "hface.networking": 2,
        "h2 + hpack": 4,
        "app": 4,
        "other (stdlib, typing, ...)": 1,
    }
    assert functions["feed (hface/protocols/http1/_httptools.py)"] == 7
    assert functions["send_data (h2/connection.py)"] == 3


@pytest.mark.parametrize(
    ("path", "layer"),
    [
        (f"{SITE}/anyio/_backends/_asyncio.py", "anyio"),
        ("/py/lib/python3.11/asyncio/sslproto.py", "asyncio"),
        (f"{SITE}/aioquic/quic/connection.py", "aioquic"),
        (f"{SITE}/wsproto/frame_protocol.py", "wsproto"),
        ("/repo/packages/hface-core/src/hface/connections/_router.py", "hface.connections"),
        ("/repo/packages/hface-cli/src/hface/cli/_main.py", "hface (other)"),
        (f"{SITE}/uvicorn/protocols/http/httptools_impl.py", "uvicorn"),
    ],
)
def test_layers_by_file(profile_server: ModuleType, path: str, layer: str) -> None:
    assert profile_server.layer_of(path) == layer
