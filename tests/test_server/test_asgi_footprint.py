"""ASGIServer's memory per request in flight, and what ``hface server`` imports.

A server may hold thousands of slow requests at once (1,000 concurrent
HTTP/2 streams is a case the benchmark measures), so what each in-flight
request costs the server facade is bounded here, measured with
:mod:`tracemalloc` on a real connection: the request's :class:`ASGIStream`,
its scope, its worker task and what hangs off them. The import test keeps
modules that a server started from the command line does not need
(``importlib.metadata``, httptools when h11 is chosen, the client, wsproto
until a WebSocket comes, ``logging.config`` without ``--log-config``,
aioquic and cryptography until an HTTP/3 datagram comes) out of its
process, since every module stays resident.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived
from hface.server import ASGIServer
from tests.test_server.conftest import client, read_response, running, send_request

pytestmark = pytest.mark.anyio

#: Requests held in flight at once (the server's default stream limit).
IN_FLIGHT = 100
#: The most the server facade may allocate per request in flight, in bytes.
#: Measured (anyio 4.16, CPython 3.11): about 4.5 KB on asyncio and 5.8 KB
#: on Trio; before, with a dict per ASGIStream, an empty deque and a cancel
#: scope per request and (asyncio) a task of anyio's task group per
#: request, 9.6 and 8.6 KB.
MAX_BYTES_PER_REQUEST = 7500
#: Frames kept per allocation: enough to see the server's frame under
#: anyio's and asyncio's own (far deeper stacks make tracemalloc slow the
#: asyncio run so much that the requests do not all arrive in time).
TRACEBACK_FRAMES = 8


class HoldingApp:
    """Answers each request once :attr:`release` is set; counts the requests waiting."""

    def __init__(self) -> None:
        self.waiting = 0
        self.all_waiting = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/hold":
            self.waiting += 1
            if self.waiting == IN_FLIGHT:
                self.all_waiting.set()
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})


def _server_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes allocated with a frame of hface.server on the stack (not the client's)."""
    server_only = tracemalloc.Filter(True, "*/hface/server/*", all_frames=True)
    return sum(stat.size for stat in snapshot.filter_traces([server_only]).statistics("filename"))


async def test_memory_per_request_in_flight(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = HoldingApp()
    server = ASGIServer(app)
    server.tls_config = server_tls_config
    server.access_log = False
    tracemalloc.start(TRACEBACK_FRAMES)
    try:
        async with (
            running(server) as address,
            client("2", address, client_tls_config) as connection,
        ):
            # A first request makes what a connection makes once.
            warm_up = await send_request(connection, path=b"/")
            assert (await read_response(connection, warm_up)).status == 200
            before = _server_bytes(tracemalloc.take_snapshot())
            stream_ids = [await send_request(connection, path=b"/hold") for _ in range(IN_FLIGHT)]
            with anyio.move_on_after(30):
                await app.all_waiting.wait()
            assert app.waiting == IN_FLIGHT
            during = _server_bytes(tracemalloc.take_snapshot())
            app.release.set()
            ended: set[int] = set()
            with anyio.fail_after(10):
                while len(ended) < IN_FLIGHT:
                    event = await connection.receive_event()
                    assert not isinstance(event, ConnectionTerminated)
                    if isinstance(event, HeadersReceived | DataReceived) and event.end_stream:
                        ended.add(event.stream_id)
            assert ended == set(stream_ids)
    finally:
        tracemalloc.stop()
    per_request = (during - before) / IN_FLIGHT
    assert 0 < per_request <= MAX_BYTES_PER_REQUEST, f"{per_request:.0f} bytes per request"


def test_server_command_imports_only_what_it_serves_with(
    server_tls_config: ServerTLSConfig,
) -> None:
    """A server as ``hface server --http1 h11 --cert ...`` makes imports no module it does not use.

    It listens on TCP and QUIC, without a client: aioquic comes with the
    first HTTP/3 datagram.
    """
    code = textwrap.dedent(
        """
        import sys
        import anyio
        from hface.cli._main import build_parser, http1_factory
        from hface.cli._run import check_certificate
        from hface.common import ServerTLSConfig
        from hface.server import ASGIServer, Endpoint

        build_parser()
        check_certificate(sys.argv[1], sys.argv[2])
        server = ASGIServer(lambda scope, receive, send: None)
        server.http1_factory = http1_factory("h11")
        server.tls_config = ServerTLSConfig(certfile=sys.argv[1], keyfile=sys.argv[2])
        server.handle_signals = False

        async def main():
            async with anyio.create_task_group() as task_group:
                await task_group.start(server.run, [Endpoint("https", "127.0.0.1", 0)])
                await anyio.sleep(0.2)
                task_group.cancel_scope.cancel()

        anyio.run(main)
        unwanted = ("importlib.metadata", "httptools", "hface.client", "wsproto", "logging.config")
        unwanted += ("aioquic", "cryptography")
        print(" ".join(name for name in unwanted if name in sys.modules))
        """
    )
    files = [str(server_tls_config.certfile), str(server_tls_config.keyfile)]
    result = subprocess.run(
        [sys.executable, "-c", code, *files], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


#: Idle HTTP/2 connections held open by :func:`test_memory_per_idle_http2_connection`.
IDLE_CONNECTIONS = 20
#: The most the server may keep per idle HTTP/2 connection (one request
#: served), in bytes, TLS layer's buffers aside. Measured (anyio 4.16, h2
#: 4.2, CPython 3.11): about 32 KB on asyncio and 29 KB on Trio; before,
#: with h2's settings in deques (11 KB) and the last request's objects kept
#: by its worker, 42.5 and 39 KB.
MAX_BYTES_PER_IDLE_CONNECTION = 36_000


def _server_side_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes allocated for the server's connections: from its handler down, hface.server up."""
    handler = tracemalloc.Filter(True, "*/hface/connections/_listeners.py", all_frames=True)
    server_only = tracemalloc.Filter(True, "*/hface/server/*", all_frames=True)
    stats = snapshot.filter_traces([handler, server_only]).statistics("filename")
    return sum(stat.size for stat in stats)


async def test_memory_per_idle_http2_connection(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    server = ASGIServer(HoldingApp())
    server.tls_config = server_tls_config
    server.access_log = False
    tracemalloc.start(TRACEBACK_FRAMES)
    try:
        async with running(server) as address, AsyncExitStack() as stack:
            # A first connection makes what the server makes once.
            first = await stack.enter_async_context(client("2", address, client_tls_config))
            assert (await read_response(first, await send_request(first, path=b"/"))).status == 200
            before = _server_side_bytes(tracemalloc.take_snapshot())
            for _ in range(IDLE_CONNECTIONS):
                connection = await stack.enter_async_context(
                    client("2", address, client_tls_config)
                )
                stream_id = await send_request(connection, path=b"/")
                assert (await read_response(connection, stream_id)).status == 200
            await anyio.sleep(0.2)  # the workers are back waiting for a request
            idle = _server_side_bytes(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    per_connection = (idle - before) / IDLE_CONNECTIONS
    assert 0 < per_connection <= MAX_BYTES_PER_IDLE_CONNECTION, (
        f"{per_connection:.0f} bytes per idle connection"
    )
