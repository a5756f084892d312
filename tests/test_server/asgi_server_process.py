"""An ASGIServer in a process of its own, for tests of its memory and its signals.

Tests start it with :func:`server_process` and learn its port with :func:`read_port`.

Usage: ``python asgi_server_process.py BACKEND CERTFILE KEYFILE``. It serves
on one ``https`` endpoint on a free port of 127.0.0.1 (HTTP/1.1, HTTP/2 and
HTTP/3), prints the port on a line of its own once it accepts connections,
and runs until SIGTERM or SIGINT, then shuts down gracefully (requests in
flight get :data:`GRACE` seconds) and exits with status 0.

The application answers ``/small`` with ``ok``; ``/slow`` with
``tick`` four times half a second apart, then ``done`` (2 seconds in all);
and every other path with an endless body of 64 KiB chunks, sent as fast as
the client takes them. A WebSocket gets 200 MiB of 64 KiB messages.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from hface.server import ASGIServer, Endpoint

CHUNK = b"x" * 65536
#: Seconds requests in flight get at shutdown.
GRACE = 5.0


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/small``: ``ok``; ``/slow``: 2 seconds of ticks; anything else: a body that never ends.

    A WebSocket is accepted and sent 64 KiB messages, 200 MiB in all.
    """
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        for _ in range(200 * 16):
            await send({"type": "websocket.send", "bytes": CHUNK})
        return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/small":
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["path"] == "/slow":
        for _ in range(4):
            await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
            await anyio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"done\n"})
    else:
        while True:
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})


async def main(certfile: str, keyfile: str) -> None:
    """Serve until a signal; print the port once listening."""
    server = ASGIServer(application)
    server.tls_config.certfile = certfile
    server.tls_config.keyfile = keyfile
    server.graceful_timeout = GRACE
    server.access_log = False
    async with anyio.create_task_group() as task_group:
        addresses = await task_group.start(server.run, [Endpoint("https", "127.0.0.1", 0)])
        print(addresses[0][1], flush=True)


@contextmanager
def server_process(backend: str, certfile: str, keyfile: str) -> Iterator[subprocess.Popen[str]]:
    """Run this script; stop it (SIGTERM, then SIGKILL) if it still runs when the block ends."""
    argv = [sys.executable, str(Path(__file__)), backend, certfile, keyfile]
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=GRACE + 5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


async def read_port(process: subprocess.Popen[str]) -> int:
    """The port the server prints once it listens.

    :raises AssertionError: if it exits first (with its output) or takes over 30 seconds.
    """
    assert process.stdout is not None
    with anyio.fail_after(30):
        line = await anyio.to_thread.run_sync(process.stdout.readline)
    if not line:
        _, stderr = process.communicate(timeout=10)
        raise AssertionError(f"the server process exited early:\n{stderr}")
    return int(line)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    backend, certfile, keyfile = sys.argv[1:]
    anyio.run(main, certfile, keyfile, backend=backend)
