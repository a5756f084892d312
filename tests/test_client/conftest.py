"""Servers for the client tests: hface's own connection layer, hypercorn and h2o."""

from __future__ import annotations

import math
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from hface.common import AddressType, ServerTLSConfig
from hface.connections import HTTPConnection
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    GoawayReceived,
    HeadersReceived,
    StreamReset,
)
from tests.helpers.certs import TLSFiles
from tests.helpers.peers import find_peer, free_port, spawn, udp_port_is_bound, write_h2o_config
from tests.test_connections.conftest import serving

from .asgi_app import pattern

#: Test bodies: ``/bytes/N`` gives N bytes of :func:`pattern`.
__all__ = ("HFaceServer", "hface_server", "pattern")


@dataclass
class HFaceServer:
    """What an hface test server saw."""

    address: AddressType
    #: Connections accepted so far.
    connections: int = 0
    #: Connections open now.
    open_connections: int = 0
    #: Requests answered so far.
    requests: int = 0
    #: Paths of the requests in arrival order.
    paths: list[str] = field(default_factory=list)
    #: Response body bytes handed to the connection so far.
    bytes_sent: int = 0
    #: Set when a ``/stall`` request starts its pause.
    stalled: anyio.Event = field(default_factory=anyio.Event)
    _changed: anyio.Event = field(default_factory=anyio.Event, repr=False)

    def notify(self) -> None:
        """Wake up :meth:`wait_until` (called on every change of the counts)."""
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` is true; raise TimeoutError after 5 s."""
        with anyio.fail_after(5):
            while not predicate():
                await self._changed.wait()

    @property
    def url(self) -> str:
        _host, port = self.address
        return f"https://localhost:{port}"


async def _respond(
    connection: HTTPConnection, stream_id: int, path: str, body: bytes, server: HFaceServer
) -> None:
    if path == "/slow":
        await anyio.sleep_forever()
    if path.startswith("/sleep/"):
        await anyio.sleep(int(path.removeprefix("/sleep/")) / 1000)
    if path.startswith("/bytes/"):
        size = int(path.removeprefix("/bytes/"))
        headers = [(b":status", b"200"), (b"content-length", str(size).encode())]
        await connection.send_headers(stream_id, headers)
        sent = 0
        while sent < size:
            chunk = pattern(min(65536, size - sent))
            sent += len(chunk)
            await connection.send_data(stream_id, chunk, end_stream=sent == size)
            server.bytes_sent += len(chunk)
        if size == 0:
            await connection.send_data(stream_id, b"", end_stream=True)
        return
    if path.startswith("/trickle/"):
        # N chunks of one byte, 0.1 s apart: each read is quick, the whole is not.
        count = int(path.removeprefix("/trickle/"))
        headers = [(b":status", b"200"), (b"content-length", str(count).encode())]
        await connection.send_headers(stream_id, headers)
        for index in range(count):
            await anyio.sleep(0.1)
            await connection.send_data(stream_id, b"t", end_stream=index == count - 1)
        return
    if path == "/reset":
        await connection.send_stream_reset(stream_id, connection.error_codes.internal_error)
        return
    if path == "/echo":
        content = body
    elif path.startswith("/stall"):
        content = str(len(body)).encode()
    else:
        content = f"hello {connection.http_version}".encode()
    headers = [(b":status", b"200"), (b"content-length", str(len(content)).encode())]
    await connection.send_headers(stream_id, headers)
    await connection.send_data(stream_id, content, end_stream=True)


def make_handler(
    server: HFaceServer,
    *,
    goaway_after: int | None = None,
    idle_close: float | None = None,
    stall: float = 0.0,
) -> object:
    """A handler answering every stream concurrently; see :func:`_respond`.

    ``goaway_after``: send GOAWAY once this many requests were answered on a connection.
    ``idle_close``: close a connection idle (no request in progress) this many seconds.
    ``stall``: on a ``/stall`` request, stop reading for this many seconds
    after its headers (the body then answers with its length).
    """

    async def handler(connection: HTTPConnection) -> None:
        server.connections += 1
        server.open_connections += 1
        server.notify()
        try:
            await serve_connection(connection)
        finally:
            server.open_connections -= 1
            server.notify()

    async def serve_connection(connection: HTTPConnection) -> None:
        paths: dict[int, str] = {}
        bodies: dict[int, bytearray] = {}
        answered = 0
        in_flight = 0
        last_active = anyio.current_time()
        async with anyio.create_task_group() as task_group:

            async def respond(stream_id: int) -> None:
                nonlocal answered, in_flight, last_active
                try:
                    await _respond(
                        connection,
                        stream_id,
                        paths.pop(stream_id),
                        bytes(bodies.pop(stream_id)),
                        server,
                    )
                except Exception:  # the client went away
                    return
                finally:
                    in_flight -= 1
                    last_active = anyio.current_time()
                server.requests += 1
                server.notify()
                answered += 1
                if goaway_after is not None and answered == goaway_after:
                    await connection.send_goaway()

            while True:
                event = None
                with anyio.move_on_after(math.inf if idle_close is None else 0.05):
                    event = await connection.receive_event()
                if event is None:
                    assert idle_close is not None
                    if in_flight == 0 and anyio.current_time() - last_active >= idle_close:
                        break  # idle too long: leaving the handler closes the connection
                    continue
                last_active = anyio.current_time()
                if isinstance(event, ConnectionTerminated):
                    task_group.cancel_scope.cancel()
                    break
                if isinstance(event, GoawayReceived | StreamReset):
                    continue
                if isinstance(event, HeadersReceived):
                    path = dict(event.headers).get(b":path", b"/").decode()
                    paths[event.stream_id] = path
                    bodies[event.stream_id] = bytearray()
                    server.paths.append(path)
                    server.notify()
                    in_flight += 1
                    if path.startswith("/stall") and stall:
                        server.stalled.set()
                        await anyio.sleep(stall)
                    if event.end_stream:
                        task_group.start_soon(respond, event.stream_id)
                elif isinstance(event, DataReceived) and event.stream_id in bodies:
                    bodies[event.stream_id] += event.data
                    if event.end_stream:
                        task_group.start_soon(respond, event.stream_id)
                if connection.has_expired() and not paths:
                    break

    return handler


@asynccontextmanager
async def hface_server(
    http_version: str,
    tls_config: ServerTLSConfig,
    *,
    goaway_after: int | None = None,
    idle_close: float | None = None,
    stall: float = 0.0,
    **options: object,
) -> AsyncIterator[HFaceServer]:
    """Run hface's connection-layer server of one version while the block runs.

    See :func:`make_handler` for ``goaway_after``, ``idle_close`` and ``stall``;
    ``options`` go to the protocol factory (HTTP/2 and HTTP/3).
    """
    server = HFaceServer(("127.0.0.1", 0))
    handler = make_handler(server, goaway_after=goaway_after, idle_close=idle_close, stall=stall)
    async with serving(http_version, tls_config, handler, **options) as address:  # type: ignore[arg-type]  # handler is a Handler
        server.address = address
        yield server


@dataclass(frozen=True)
class PeerServer:
    """An external server: its port (TCP and, for hypercorn, UDP)."""

    port: int

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"


def _wait_tcp(port: int, process: object, log_file: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"server did not start: {log_file.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def hypercorn_server(
    tls_files: TLSFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PeerServer]:
    """hypercorn serving :mod:`asgi_app` on HTTP/1.1, HTTP/2 (TCP) and HTTP/3 (QUIC)."""
    port = free_port()
    log_file = tmp_path_factory.mktemp("hypercorn") / "hypercorn.log"
    bind = f"127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "hypercorn",
        "--bind",
        bind,
        "--quic-bind",
        bind,
        "--certfile",
        tls_files.server_cert_file,
        "--keyfile",
        tls_files.server_key_file,
        "tests.test_client.asgi_app:app",
    ]
    with spawn(argv, log_file=log_file, cwd=Path(__file__).parents[2]) as process:
        _wait_tcp(port, process, log_file)
        deadline = time.monotonic() + 10
        while not udp_port_is_bound("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield PeerServer(port)


@pytest.fixture(scope="session")
def h2o_server(
    tls_files: TLSFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PeerServer]:
    """h2o serving a directory with ``index.html`` and ``big.bin`` (1 MiB of the pattern)."""
    executable = find_peer("h2o")
    if executable is None:
        pytest.skip("h2o is not installed (Debian package h2o)")
    directory = tmp_path_factory.mktemp("h2o")
    root = directory / "www"
    root.mkdir()
    (root / "index.html").write_bytes(b"hello from h2o\n")
    (root / "big.bin").write_bytes(pattern(1024 * 1024))
    port = free_port()
    config = write_h2o_config(
        directory,
        port=port,
        cert_file=tls_files.server_cert_file,
        key_file=tls_files.server_key_file,
        document_root=root,
    )
    log_file = directory / "h2o.log"
    with spawn([executable, "-c", str(config)], log_file=log_file) as process:
        _wait_tcp(port, process, log_file)
        yield PeerServer(port)
