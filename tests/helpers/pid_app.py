"""An ASGI application for worker tests: says which process answered.

``GET /`` answers the worker's pid; ``GET /slow`` the same after
:data:`SLOW_SECONDS`; ``GET /block`` the same after blocking the worker's
event loop (it accepts nothing meanwhile) until the file ``release``
exists in the directory ``HFACE_TEST_BLOCK_DIR`` names, having first made
the file ``blocking`` there (at most :data:`BLOCK_SECONDS`). Lifespan
startup and shutdown are appended to the
file ``HFACE_TEST_LIFESPAN_LOG`` names, if set, as ``startup PID`` and
``shutdown PID`` lines, and each ``/slow`` request as a ``slow PID`` line
when it starts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio

#: How long ``/slow`` takes.
SLOW_SECONDS = 2.0
#: How long ``/block`` blocks at most.
BLOCK_SECONDS = 20.0


def _note(event: str) -> None:
    path = os.environ.get("HFACE_TEST_LIFESPAN_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"{event} {os.getpid()}\n")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            event = message["type"].rpartition(".")[2]
            _note(event)
            await send({"type": f"{message['type']}.complete"})
            if event == "shutdown":
                return
    if scope["path"] == "/slow":
        _note("slow")  # in flight: a test may signal the server now
        await anyio.sleep(SLOW_SECONDS)
    elif scope["path"] == "/block":
        _block(Path(os.environ["HFACE_TEST_BLOCK_DIR"]))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


def _block(directory: Path) -> None:
    """Block the event loop until ``directory/release`` exists (see the module docstring)."""
    (directory / "blocking").write_text(str(os.getpid()))
    deadline = time.monotonic() + BLOCK_SECONDS
    while not (directory / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def make_server() -> object:
    """An ASGIServer of :func:`app` with the certificate ``HFACE_TEST_CERT`` names (for
    ``run_workers``)."""
    from hface.server import ASGIServer

    server = ASGIServer(app)
    server.tls_config.certfile = os.environ["HFACE_TEST_CERT"]
    server.tls_config.keyfile = os.environ["HFACE_TEST_KEY"]
    server.access_log = False
    return server
