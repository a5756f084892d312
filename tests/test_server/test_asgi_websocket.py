"""The ASGI ``websocket`` scope on every version: handshake, messages, close codes, limits.

HTTP/1.1 runs on a cleartext endpoint, HTTP/2 and HTTP/3 on TLS; the
client is :mod:`tests.helpers.ws_client` (wsproto frames over the RFC 6455
upgrade, or over an extended CONNECT stream), and for HTTP/1.1 also the
``websockets`` library, an independent implementation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig
from hface.server import ASGIServer, ClientDisconnected, Endpoint, ServerTimeouts
from tests.helpers.ws_client import websocket
from tests.helpers.ws_h3_client import h3_websocket
from tests.test_server.conftest import running

pytestmark = pytest.mark.anyio

VERSIONS = ("1.1", "2", "3")


async def starlette_echo(ws: WebSocket) -> None:
    await ws.accept(subprotocol="echo" if "echo" in ws.scope["subprotocols"] else None)
    await ws.send_text("version " + ws.scope["http_version"])
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            else:
                await ws.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


async def starlette_deny(ws: WebSocket) -> None:
    await ws.close()


ECHO = Starlette(
    routes=[WebSocketRoute("/ws", starlette_echo), WebSocketRoute("/deny", starlette_deny)]
)


class Recorder:
    """A raw ASGI app: records what it receives; behaviour by path."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.done = anyio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            if scope["type"] == "lifespan":
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"http"})
            return
        self.scopes.append(scope)
        path = scope["path"]
        try:
            self.received.append(await receive())
            if path == "/respond":
                await send(
                    {
                        "type": "websocket.http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"text/plain")],
                    }
                )
                await send({"type": "websocket.http.response.body", "body": b"who are you"})
                return
            if path == "/fail-early":
                raise RuntimeError("boom")
            if path == "/slow-accept":
                await anyio.sleep(30)
            await send({"type": "websocket.accept", "headers": [(b"x-app", b"1")]})
            if path == "/close-4000":
                await send({"type": "websocket.close", "code": 4000, "reason": "app says bye"})
                return
            if path == "/fail":
                raise RuntimeError("boom")
            while True:
                message = await receive()
                self.received.append(message)
                if message["type"] == "websocket.disconnect":
                    return
                data = {k: v for k, v in message.items() if k in ("text", "bytes")}
                await send({"type": "websocket.send", **data})
        finally:
            self.done.set()


@asynccontextmanager
async def serving(
    app: Any, http_version: str, server_tls_config: ServerTLSConfig, **options: Any
) -> AsyncIterator[AddressType]:
    server = ASGIServer(app)
    server.tls_config = server_tls_config
    for name, value in options.items():
        setattr(server, name, value)
    endpoint = Endpoint("http" if http_version == "1.1" else "https", "127.0.0.1", 0)
    async with running(server, [endpoint]) as address:
        yield address


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_starlette_echo(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with (
        serving(ECHO, http_version, server_tls_config) as address,
        websocket(http_version, address, client_tls_config, subprotocols=("echo",)) as ws,
    ):
        assert ws.handshake.status == (101 if http_version == "1.1" else 200)
        assert ws.handshake.header(b"sec-websocket-protocol") == b"echo"
        with anyio.fail_after(10):
            assert await ws.receive() == "version " + http_version
            await ws.send_text("héllo")
            assert await ws.receive() == "héllo"
            big = bytes(range(256)) * 4096  # 1 MiB
            await ws.send_bytes(big)
            assert await ws.receive() == big
            close = await ws.close(1000, "bye")
            assert isinstance(close, CloseConnection)
            assert close.code == 1000


async def test_websockets_library_over_http1(server_tls_config: ServerTLSConfig) -> None:
    """An independent client (the ``websockets`` library, in a thread) over HTTP/1.1."""
    from websockets.sync.client import connect

    def talk(port: int) -> list[Any]:
        with connect(f"ws://127.0.0.1:{port}/ws", max_size=None, open_timeout=10) as ws:
            got: list[Any] = [ws.recv(timeout=10)]
            ws.send("text")
            got.append(ws.recv(timeout=10))
            ws.send(b"\x00" * (1024 * 1024))
            got.append(ws.recv(timeout=10))
            return got

    async with serving(ECHO, "1.1", server_tls_config) as address:
        got = await anyio.to_thread.run_sync(talk, address[1])
    assert got == ["version 1.1", "text", b"\x00" * (1024 * 1024)]


async def test_aioquic_client_over_http3(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """An independent client (aioquic's HTTP/3 and wsproto, RFC 9220): the app sees "3"."""
    assert client_tls_config.cafile is not None
    async with (
        serving(ECHO, "3", server_tls_config) as address,
        h3_websocket(address, client_tls_config.cafile, "/ws") as ws,
    ):
        assert ws.status == 200
        with anyio.fail_after(10):
            assert await ws.receive() == "version 3"
            await ws.send(TextMessage(data="over QUIC"))
            assert await ws.receive() == "over QUIC"
            big = bytes(range(256)) * 4096  # 1 MiB
            await ws.send(BytesMessage(data=big))
            assert await ws.receive() == big
            await ws.send(CloseConnection(code=1000))
            close = await ws.receive()
        assert isinstance(close, CloseConnection)
        assert close.code == 1000


async def test_aioquic_client_denied(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    assert client_tls_config.cafile is not None
    async with (
        serving(ECHO, "3", server_tls_config) as address,
        h3_websocket(address, client_tls_config.cafile, "/deny") as ws,
    ):
        assert ws.status == 403


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_scope(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = Recorder()
    async with (
        serving(app, http_version, server_tls_config) as address,
        websocket(
            http_version, address, client_tls_config, "/echo?x=1", subprotocols=("a", "b")
        ) as ws,
    ):
        assert ws.handshake.header(b"x-app") == b"1"
        await ws.close()
    (scope,) = app.scopes
    assert scope["type"] == "websocket"
    assert scope["http_version"] == http_version
    assert scope["scheme"] == ("ws" if http_version == "1.1" else "wss")
    assert scope["path"] == "/echo"
    assert scope["query_string"] == b"x=1"
    assert scope["subprotocols"] == ["a", "b"]
    assert "method" not in scope
    assert "websocket.http.response" in scope["extensions"]
    assert app.received[0] == {"type": "websocket.connect"}


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_bare_close_before_accept_is_403(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with (
        serving(ECHO, http_version, server_tls_config) as address,
        websocket(http_version, address, client_tls_config, "/deny") as ws,
    ):
        assert ws.handshake.status == 403


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_app_denies_with_its_own_response(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = Recorder()
    async with (
        serving(app, http_version, server_tls_config) as address,
        websocket(http_version, address, client_tls_config, "/respond") as ws,
    ):
        assert ws.handshake.status == 401
        assert ws.handshake.header(b"content-type") == b"text/plain"
        if http_version != "1.1":
            assert ws.handshake.body == b"who are you"


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_app_failing_before_accept_is_500(
    http_version: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, "hface.server")
    app = Recorder()
    async with (
        serving(app, http_version, server_tls_config) as address,
        websocket(http_version, address, client_tls_config, "/fail-early") as ws,
    ):
        assert ws.handshake.status == 500


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_handshake_timeout(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = Recorder()
    async with (
        serving(app, http_version, server_tls_config, ws_handshake_timeout=0.2) as address,
        websocket(http_version, address, client_tls_config, "/slow-accept") as ws,
    ):
        assert ws.handshake.status == 500


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_client_close_code_reaches_the_app(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = Recorder()
    async with (
        serving(app, http_version, server_tls_config) as address,
        websocket(http_version, address, client_tls_config) as ws,
    ):
        close = await ws.close(4321, "client bye")
        assert isinstance(close, CloseConnection)
        assert close.code == 4321  # echoed (RFC 6455 §5.5.1)
        with anyio.fail_after(5):
            await app.done.wait()
    assert app.received[-1] == {"type": "websocket.disconnect", "code": 4321}


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_app_close_code_and_reason(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = Recorder()
    async with (
        serving(app, http_version, server_tls_config) as address,
        websocket(http_version, address, client_tls_config, "/close-4000") as ws,
    ):
        with anyio.fail_after(5):
            close = await ws.receive()
            assert isinstance(close, CloseConnection)
            assert (close.code, close.reason) == (4000, "app says bye")
            await ws.send(close.response())
            assert await ws.receive() is None  # then the server ends the stream


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_app_failing_after_accept_is_1011(
    http_version: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, "hface.server")
    app = Recorder()
    async with (
        serving(app, http_version, server_tls_config) as address,
        websocket(http_version, address, client_tls_config, "/fail") as ws,
    ):
        with anyio.fail_after(5):
            close = await ws.receive()
        assert isinstance(close, CloseConnection)
        assert close.code == 1011


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_message_over_max_size_is_1009(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = Recorder()
    async with (
        serving(app, http_version, server_tls_config, ws_max_size=1000) as address,
        websocket(http_version, address, client_tls_config) as ws,
    ):
        await ws.send_bytes(b"x" * 1000)
        with anyio.fail_after(5):
            assert await ws.receive() == b"x" * 1000
            await ws.send_bytes(b"x" * 1001)
            close = await ws.receive()
        assert isinstance(close, CloseConnection)
        assert close.code == 1009
        with anyio.fail_after(5):
            await app.done.wait()
    assert app.received[-1] == {"type": "websocket.disconnect", "code": 1009}


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_permessage_deflate(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = Recorder()
    async with (
        serving(app, http_version, server_tls_config, ws_max_size=100_000) as address,
        websocket(http_version, address, client_tls_config, deflate=True) as ws,
    ):
        assert ws.handshake.header(b"sec-websocket-extensions") is not None
        with anyio.fail_after(5):
            await ws.send_text("a" * 100_000)
            assert await ws.receive() == "a" * 100_000
            # A bomb: some 100 bytes on the wire, 10 MB inflated.
            await ws.send_bytes(b"\x00" * 10_000_000)
            close = await ws.receive()
        assert isinstance(close, CloseConnection)
        assert close.code == 1009


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_no_deflate_when_disabled(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = Recorder()
    async with (
        serving(app, http_version, server_tls_config, ws_per_message_deflate=False) as address,
        websocket(http_version, address, client_tls_config, deflate=True) as ws,
    ):
        assert ws.handshake.header(b"sec-websocket-extensions") is None
        await ws.close()


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_keepalive_ping_timeout_is_1011(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = Recorder()
    async with (
        serving(
            app, http_version, server_tls_config, ws_ping_interval=0.1, ws_ping_timeout=0.2
        ) as address,
        websocket(http_version, address, client_tls_config) as ws,
    ):
        # This client reads raw and never answers the ping.
        with anyio.fail_after(5):
            while True:
                data = await ws.receive_raw()
                assert data
                ws.ws.receive_data(data)
                events = list(ws.ws.events())
                closes = [e for e in events if isinstance(e, CloseConnection)]
                if closes:
                    assert closes[0].code == 1011
                    break


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_keepalive_pings_answered_keep_it_open(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = Recorder()
    async with (
        serving(
            app, http_version, server_tls_config, ws_ping_interval=0.05, ws_ping_timeout=1
        ) as address,
        websocket(http_version, address, client_tls_config) as ws,
    ):
        await anyio.sleep(0.4)  # the client answers pings as it reads
        with anyio.fail_after(5):
            await ws.send_text("still here")
            assert await ws.receive() == "still here"


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_shutdown_closes_with_1001(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = Recorder()
    server = ASGIServer(app)
    server.tls_config = server_tls_config
    server.handle_signals = False
    endpoint = Endpoint("http" if http_version == "1.1" else "https", "127.0.0.1", 0)
    server_scope = anyio.CancelScope()

    async def serve(*, task_status: Any) -> None:
        with server_scope:
            await server.run([endpoint], task_status=task_status)

    async with anyio.create_task_group() as task_group:
        (address, *_) = await task_group.start(serve)
        async with websocket(http_version, address, client_tls_config) as ws:
            await ws.send_text("hi")
            assert await ws.receive() == "hi"
            server_scope.cancel()  # graceful shutdown
            with anyio.fail_after(5):
                close = await ws.receive()
                assert isinstance(close, CloseConnection)
                assert close.code == 1001
                await ws.send(close.response())
    assert app.received[-1] == {"type": "websocket.disconnect", "code": 1001}


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_http_requests_still_served(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """Other extended CONNECT protocols and plain CONNECT keep 501 (see test_malformed_requests)."""
    app = Recorder()
    async with (
        serving(app, http_version, server_tls_config) as address,
        websocket(http_version, address, client_tls_config) as ws,
    ):
        await ws.send_text("x")
        assert await ws.receive() == "x"


class Flood:
    """Accepts; on /flood sends 64 KiB messages while it can; on /sink never receives."""

    def __init__(self) -> None:
        self.sent = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        if scope["path"] == "/flood":
            chunk = b"x" * 65536
            with anyio.move_on_after(30):
                while True:
                    await send({"type": "websocket.send", "bytes": chunk})
                    self.sent += len(chunk)
        else:
            await anyio.sleep(30)


#: More than the windows, buffers and queues hold on any version.
_BOUND = 24 * 1024 * 1024


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_a_client_that_does_not_read_makes_send_wait(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = Flood()
    async with (
        serving(app, http_version, server_tls_config) as address,
        websocket(http_version, address, client_tls_config, "/flood"),
    ):
        await anyio.sleep(1.5)  # the client reads nothing
        sent = app.sent
        await anyio.sleep(0.5)
        assert app.sent == sent  # send() waits
        assert 0 < sent < _BOUND


class FloodUntilRefused:
    """Sends 64 KiB messages until ``send()`` raises; keeps what it raised."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.done = anyio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        chunk = b"x" * 65536
        try:
            while True:
                await send({"type": "websocket.send", "bytes": chunk})
        except Exception as error:
            self.error = error
        finally:
            self.done.set()


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_a_client_that_does_not_read_times_out_the_send(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """As for an HTTP response: ``timeouts.write``, then the stream is reset and send() raises."""
    app = FloodUntilRefused()
    timeouts = ServerTimeouts(write=0.5)
    async with (
        serving(app, http_version, server_tls_config, timeouts=timeouts) as address,
        websocket(http_version, address, client_tls_config, "/"),
    ):
        with anyio.fail_after(10):  # the client reads nothing
            await app.done.wait()
    assert isinstance(app.error, ClientDisconnected), app.error


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_an_app_that_does_not_receive_stops_the_reads(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = Flood()
    sent = 0
    async with (
        serving(app, http_version, server_tls_config) as address,
        websocket(http_version, address, client_tls_config, "/sink") as ws,
    ):
        chunk = b"y" * 65536
        with anyio.move_on_after(2):
            while sent < 4 * _BOUND:
                await ws.send_bytes(chunk)
                sent += len(chunk)
    assert 0 < sent < _BOUND


class AnswerThenWait:
    """Answers the first message once the second is queued, then waits, not in receive()."""

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        first = await receive()
        await anyio.sleep(0.5)  # the second message arrives meanwhile
        await send({"type": "websocket.send", "text": "got " + first["text"]})
        await self.release.wait()


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_an_answer_goes_out_while_the_app_waits_elsewhere(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """A frame sent while messages are queued is written on receive(), or at once if none comes."""
    app = AnswerThenWait()
    async with (
        serving(app, http_version, server_tls_config) as address,
        websocket(http_version, address, client_tls_config, "/") as ws,
    ):
        await ws.send_text("one")
        await ws.send_text("two")
        try:
            with anyio.fail_after(3):
                assert await ws.receive() == "got one"
        finally:
            app.release.set()


@pytest.mark.parametrize("http_version", VERSIONS)
async def test_access_log_has_one_line_per_websocket(
    http_version: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "hface.server.access")
    app = Recorder()
    async with (
        serving(app, http_version, server_tls_config) as address,
        websocket(http_version, address, client_tls_config, "/chat?room=1") as ws,
    ):
        await ws.send_text("one")
        assert await ws.receive() == "one"
        await ws.close(4001)
        with anyio.fail_after(5):
            await app.done.wait()
            for _ in range(500):  # the line comes as the session ends
                if [r for r in caplog.records if r.name == "hface.server.access"]:
                    break
                await anyio.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "hface.server.access"]
    status = 101 if http_version == "1.1" else 200
    assert len(lines) == 1
    assert f'"WEBSOCKET /chat?room=1 HTTP/{http_version}" {status} 4001' in lines[0]
