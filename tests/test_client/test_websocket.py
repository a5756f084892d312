"""Client WebSockets (``ClientSession.websocket``) on HTTP/1.1, HTTP/2 and HTTP/3.

Against hface's own server (in process), hypercorn (a subprocess) and the
``websockets`` library's server (HTTP/1.1, in a thread), both serving the
echo of :func:`tests.test_client.asgi_app.websocket`.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from websockets.sync.server import ServerConnection, serve

from hface.client import Client, ClientProtocol, WebSocketState
from hface.client.errors import WebSocketClosed, WebSocketRejected
from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.connections import HTTPStream
from hface.server import ASGIServer, Endpoint
from tests.helpers.certs import TLSFiles
from tests.test_server.conftest import running

from .asgi_app import app
from .conftest import PeerServer

pytestmark = pytest.mark.anyio

PROTOCOLS = {"1.1": ClientProtocol.HTTP1, "2": ClientProtocol.HTTP2, "3": ClientProtocol.HTTP3}
VERSIONS = list(PROTOCOLS)


@asynccontextmanager
async def hface_ws_server(server_tls_config: ServerTLSConfig) -> AsyncIterator[str]:
    """hface's ASGIServer serving :mod:`asgi_app` over TLS (all versions); its wss:// base."""
    server = ASGIServer(app)
    server.tls_config = server_tls_config
    server.access_log = False
    async with running(server, [Endpoint("https", "127.0.0.1", 0)]) as (_host, port):
        yield f"wss://localhost:{port}"


@pytest.mark.parametrize("version", VERSIONS)
async def test_echo_hface_server(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with hface_ws_server(server_tls_config) as base:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        async with client.session() as session:
            async with session.websocket(base + "/ws", subprotocols=["echo"]) as ws:
                assert ws.http_version == version
                assert ws.subprotocol == "echo"
                assert await ws.receive() == f"version {version}"
                await ws.send_text("héllo")
                assert await ws.receive() == "héllo"
                await ws.ping(b"are you there")
                await ws.send_bytes(b"\x00\xff" * 100_000)  # fragmented on the way
                assert await ws.receive() == b"\x00\xff" * 100_000
            assert ws.state is WebSocketState.CLOSED
            assert ws.close_code == 1000
            # The session goes on: a request after the WebSocket.
            response = await session.get(base.replace("wss", "https") + "/")
            assert response.text == f"hello {version}"


@pytest.mark.parametrize("version", VERSIONS)
async def test_server_closes(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with hface_ws_server(server_tls_config) as base:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        async with client.session() as session:
            async with session.websocket(base + "/close-4000") as ws:
                with pytest.raises(WebSocketClosed) as caught:
                    await ws.receive()
                assert (caught.value.code, caught.value.reason) == (4000, "bye")
                with pytest.raises(WebSocketClosed):
                    await ws.send_text("too late")
            messages = []
            async with session.websocket(base + "/ws") as ws:
                async for message in ws:
                    messages.append(message)
                    await ws.close()
            assert messages == [f"version {version}"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_burst_of_sends_is_one_write(
    version: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Messages sent in one turn of the event loop leave in one write, in order."""
    writes: list[bytes] = []
    watched: list[HTTPStream] = []
    send_data = HTTPStream.send_data

    async def counting(
        stream: HTTPStream,
        data: bytes,
        end_stream: bool = False,
        *,
        max_wait: float | None = None,
        checkpoint: bool = True,
    ) -> None:
        if stream in watched:
            writes.append(data)
        await send_data(stream, data, end_stream, max_wait=max_wait, checkpoint=checkpoint)

    monkeypatch.setattr(HTTPStream, "send_data", counting)
    async with hface_ws_server(server_tls_config) as base:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        async with client.session() as session, session.websocket(base + "/ws") as ws:
            assert await ws.receive() == f"version {version}"
            watched.append(ws._exchange.stream)
            messages = [f"message {index}" for index in range(20)]
            for message in messages:
                await ws.send_text(message)
            assert [await ws.receive() for _ in messages] == messages
            assert len(writes) == 1


async def test_error_in_block_is_raised_as_is(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """Not in an exception group (of the task that writes the frames)."""
    async with hface_ws_server(server_tls_config) as base:
        client = Client(tls_config=client_tls_config, protocol=ClientProtocol.HTTP2)
        async with client.session() as session:

            async def fail() -> None:
                async with session.websocket(base + "/ws") as ws:
                    await ws.send_text("unanswered")
                    raise KeyError("in the block")

            with pytest.raises(KeyError):
                await fail()
            response = await session.get(base.replace("wss", "https") + "/")
            assert response.status == 200


@pytest.mark.parametrize("version", VERSIONS)
async def test_refused(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with hface_ws_server(server_tls_config) as base:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        async with client.session() as session:
            with pytest.raises(WebSocketRejected) as caught:
                async with session.websocket(base + "/deny"):
                    raise AssertionError("not refused")
            assert caught.value.status == 403
            response = await session.get(base.replace("wss", "https") + "/")
            assert response.status == 200


async def test_cleartext_ws_url(client_tls_config: ClientTLSConfig) -> None:
    server = ASGIServer(app)
    server.access_log = False
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as (_host, port):
        async with Client().session() as session:
            async with session.websocket(f"ws://127.0.0.1:{port}/ws") as ws:
                assert ws.http_version == "1.1"
                assert await ws.receive() == "version 1.1"
                await ws.send_text("plain")
                assert await ws.receive() == "plain"


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()))
async def test_echo_hypercorn(
    protocol: ClientProtocol, hypercorn_server: PeerServer, client_tls_config: ClientTLSConfig
) -> None:
    url = f"wss://localhost:{hypercorn_server.port}/ws"
    async with Client(tls_config=client_tls_config, protocol=protocol).session() as session:
        async with session.websocket(url, subprotocols=["echo"]) as ws:
            assert ws.subprotocol == "echo"
            assert await ws.receive() == f"version {ws.http_version}"
            await ws.send_text("to hypercorn")
            assert await ws.receive() == "to hypercorn"
            await ws.send_bytes(b"x" * 70_000)
            assert await ws.receive() == b"x" * 70_000
        assert ws.close_code == 1000


def _echo(connection: ServerConnection) -> None:
    for message in connection:
        connection.send(message)


@pytest.fixture(scope="module")
def websockets_server(tls_files: TLSFiles) -> Iterator[int]:
    """The ``websockets`` library's echo server (HTTP/1.1, TLS), in a thread; its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.server_cert_file, tls_files.server_key_file)
    with serve(_echo, "127.0.0.1", 0, ssl=context) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.socket.getsockname()[1]
        finally:
            server.shutdown()
            thread.join(5)


async def test_echo_websockets_library(
    websockets_server: int, client_tls_config: ClientTLSConfig
) -> None:
    url = f"wss://localhost:{websockets_server}/"
    async with Client(tls_config=client_tls_config).session() as session:
        async with session.websocket(url) as ws:
            assert ws.http_version == "1.1"
            for message in ("one", b"two", "three" * 10_000):
                await ws.send(message)
                assert await ws.receive() == message
        assert ws.close_code == 1000
