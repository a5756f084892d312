"""ASGIServer bounds what a client can make it hold.

A client uploading to an application that never calls ``receive()`` gets
no further than the flow-control window (HTTP/2, HTTP/3) or
:attr:`ASGIServer.max_buffered_data` (HTTP/1.1, which has no flow
control: the server stops reading), and the server holds no more than
that; once the application answers, the connection serves on.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.connections import HTTPConnection
from hface.errors import LocalProtocolError, TransportError
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived, StreamReset
from hface.protocols.http2 import HTTP2ServerFactory
from hface.protocols.http3 import HTTP3ServerFactory
from hface.server import ASGIServer
from tests.test_server.conftest import client, read_response, running, send_request

pytestmark = pytest.mark.anyio

#: The per-stream receive window the server advertises in these tests.
STREAM_WINDOW = 256 * 1024
#: The per-connection receive window the server advertises in these tests.
CONNECTION_WINDOW = 1024 * 1024
#: Request body bytes the server may hold per HTTP/1.1 request in these tests.
HTTP1_BUFFER = 256 * 1024
#: What each client tries to upload: far more than any of the bounds.
UPLOAD_SIZE = 32 * 1024 * 1024
CHUNK = b"u" * 65536


def held_bytes(server: ASGIServer) -> int:
    """Request body bytes the server holds for applications that did not take them."""
    return sum(connection.buffered_data for connection in server.connections)


class NonReadingApp:
    """Counts its requests; answers each only once released, never calling receive()."""

    def __init__(self) -> None:
        self.requests = 0
        self.release = anyio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.requests += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ignored your body"})


def make_server(app: NonReadingApp, tls_config: ServerTLSConfig) -> ASGIServer:
    server = ASGIServer(app)
    server.tls_config = tls_config
    server.http2_factory = HTTP2ServerFactory(
        initial_window_size=STREAM_WINDOW, connection_window_size=CONNECTION_WINDOW
    )
    server.http3_factory = HTTP3ServerFactory(
        stream_receive_window=STREAM_WINDOW, connection_receive_window=CONNECTION_WINDOW
    )
    server.max_buffered_data = HTTP1_BUFFER
    server.graceful_timeout = 2.0
    return server


class Upload:
    """Uploads :data:`UPLOAD_SIZE` bytes on one stream, counting what got sent."""

    def __init__(self, connection: HTTPConnection) -> None:
        self.connection = connection
        self.stream_id = -1
        self.sent = 0

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        headers = [(b"content-length", str(UPLOAD_SIZE).encode())]
        if self.connection.http_version != "1.1":
            headers = []  # the end of the stream ends the body
        self.stream_id = self.connection.get_available_stream_id()
        request = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/upload"),
            *headers,
        ]
        await self.connection.send_headers(self.stream_id, request)
        task_group.start_soon(self._send)

    async def _send(self) -> None:
        try:
            while self.sent < UPLOAD_SIZE:
                await self.connection.send_data(self.stream_id, CHUNK)
                self.sent += len(CHUNK)
        except (LocalProtocolError, TransportError):
            pass  # the server answered and ended the stream, or closed the connection


async def wait_until_stalled(uploads: list[Upload]) -> int:
    """Wait until the uploads make no progress for a second; return what they sent.

    Gives up after 15 seconds (the caller's bounds then fail, with the numbers).
    """
    last = -1
    with anyio.move_on_after(15):
        while True:
            sent = sum(upload.sent for upload in uploads)
            if sent == last:
                break
            last = sent
            await anyio.sleep(1.0)
    return sum(upload.sent for upload in uploads)


async def test_an_upload_is_held_back_by_the_window(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    app = NonReadingApp()
    server = make_server(app, server_tls_config)
    async with running(server) as address:
        async with client(http_version, address, client_tls_config) as connection:
            async with anyio.create_task_group() as task_group:
                upload = Upload(connection)
                await upload.start(task_group)
                sent = await wait_until_stalled([upload])
                held = held_bytes(server)
                assert app.requests == 1
                if http_version == "1.1":
                    # The server stops reading once over its buffer; the
                    # kernel's socket buffers hold the rest of what was sent.
                    assert HTTP1_BUFFER <= held <= HTTP1_BUFFER + len(CHUNK), held
                    assert sent < UPLOAD_SIZE / 2, sent
                else:
                    assert 0 < held <= STREAM_WINDOW, held
                    assert sent <= 2 * STREAM_WINDOW, sent
                app.release.set()
                with anyio.fail_after(10):
                    response = await read_response(connection, upload.stream_id)
                assert response.status == 200
                task_group.cancel_scope.cancel()
            if http_version != "1.1":  # the unread body was credited back: serve on
                stream_id = await send_request(connection, method=b"POST", body=b"x" * 500_000)
                with anyio.fail_after(10):
                    response = await read_response(connection, stream_id)
                assert response.status == 200
        with anyio.fail_after(5):
            # The connection's handler ends, and with it all that it held.
            while server.connections:  # noqa: ASYNC110 (polls the server's state)
                await anyio.sleep(0.05)


@pytest.mark.parametrize("http_version", ["2", "3"], ids=["http2", "http3"])
async def test_uploads_on_many_streams_are_held_back_by_the_connection_window(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    app = NonReadingApp()
    server = make_server(app, server_tls_config)
    async with running(server) as address:
        async with client(http_version, address, client_tls_config) as connection:
            async with anyio.create_task_group() as task_group:
                uploads = [Upload(connection) for _ in range(8)]
                for upload in uploads:
                    await upload.start(task_group)
                sent = await wait_until_stalled(uploads)
                held = held_bytes(server)
                assert app.requests == 8
                # Each stream alone could take 256 KiB; together, no more than 1 MiB.
                assert STREAM_WINDOW < held <= CONNECTION_WINDOW, held
                assert sent <= CONNECTION_WINDOW + 8 * STREAM_WINDOW, sent
                app.release.set()
                with anyio.fail_after(10):
                    statuses = await read_statuses(connection, len(uploads))
                assert statuses == {upload.stream_id: 200 for upload in uploads}
                task_group.cancel_scope.cancel()


async def read_statuses(connection: HTTPConnection, count: int) -> dict[int, int]:
    """Read events until ``count`` streams have ended; return each one's status."""
    statuses: dict[int, int] = {}
    ended: set[int] = set()
    while len(ended) < count:
        event = await connection.receive_event()
        assert not isinstance(event, ConnectionTerminated)
        if isinstance(event, HeadersReceived):
            status = dict(event.headers).get(b":status")
            if status is not None:
                statuses[event.stream_id] = int(status)
        match event:
            case StreamReset() | HeadersReceived(end_stream=True) | DataReceived(end_stream=True):
                ended.add(event.stream_id)
    return statuses
