"""Server limits and timeouts (``server.limits``, ``server.timeouts``) on real loopback sockets.

Each limit and each timeout is driven past its bound by a client that
misbehaves on purpose (a raw socket where no client library would do it)
and must end the way :class:`~hface.server.ServerLimits` and
:class:`~hface.server.ServerTimeouts` document: a status where one can
still be sent, else a reset stream or a closed connection (GOAWAY on
HTTP/2 and HTTP/3). Timeouts are short (a fraction of a second); each test
also checks that the bound, not something else, ended the exchange.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig
from hface.connections import HTTPConnection
from hface.errors import LocalProtocolError, TransportError
from hface.events import ConnectionTerminated, Event, GoawayReceived, HeadersReceived
from hface.server import (
    ASGIServer,
    BaseServer,
    ClientDisconnected,
    Endpoint,
    ProxyServer,
    ServerLimits,
    ServerTimeouts,
)
from tests.test_server.conftest import Response, client, read_response, send_request

pytestmark = pytest.mark.anyio

Scope = dict[str, Any]

#: The timeout under test, in seconds.
SHORT = 0.3
#: How long any bounded wait in these tests may take before it is a failure.
PATIENCE = 5.0


class App:
    """Answers 200 after reading the whole body; records what receive() and send() gave."""

    def __init__(self, *, stream_forever: bool = False) -> None:
        self.stream_forever = stream_forever
        self.calls = 0
        self.messages: list[dict[str, Any]] = []
        self.send_error: BaseException | None = None
        self.done = anyio.Event()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        try:
            if self.stream_forever:
                await self._stream(send)
                return
            while True:
                message = await receive()
                self.messages.append(message)
                if message["type"] == "http.disconnect" or not message.get("more_body"):
                    break
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        finally:
            self.done.set()

    async def _stream(self, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 65536
        try:
            for _ in range(100_000):  # bounded: far more than any window or buffer
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except ClientDisconnected as error:
            self.send_error = error


@asynccontextmanager
async def running(
    server: BaseServer, endpoints: list[Endpoint] | None = None
) -> AsyncIterator[AddressType]:
    """Run ``server`` (by default on ``https://127.0.0.1:0``); yield its first address."""
    server.handle_signals = False
    async with anyio.create_task_group() as task_group:
        addresses = await task_group.start(
            server.run, endpoints or [Endpoint("https", "127.0.0.1", 0)]
        )
        try:
            yield addresses[0]
        finally:
            task_group.cancel_scope.cancel()


def make_server(
    app: App, tls_config: ServerTLSConfig, **settings: float | int | None
) -> ASGIServer:
    """An ASGIServer whose limits and timeouts are its defaults but ``settings``."""
    server = ASGIServer(app)
    server.tls_config = tls_config
    server.access_log = False
    server.graceful_timeout = 1.0
    for name, value in settings.items():
        target = server.limits if hasattr(server.limits, name) else server.timeouts
        setattr(target, name, value)
    return server


async def wait_for_close(connection: HTTPConnection) -> tuple[float, bool]:
    """Read events until the connection ends; return when, and whether GOAWAY came first."""
    goaway = False
    with anyio.fail_after(PATIENCE):
        while True:
            event = await connection.receive_event()
            if isinstance(event, GoawayReceived):
                goaway = True
            if isinstance(event, ConnectionTerminated):
                return anyio.current_time(), goaway


async def events_until_close(connection: HTTPConnection) -> list[Event]:
    """Every event until the connection ends, ``ConnectionTerminated`` included."""
    events: list[Event] = []
    with anyio.fail_after(PATIENCE):
        while not isinstance(event := await connection.receive_event(), ConnectionTerminated):
            events.append(event)
    return [*events, event]


async def raw_exchange(address: AddressType, data: bytes) -> tuple[bytes, float]:
    """Send ``data`` on a TCP connection and read until the server closes it.

    :returns: all that came back, and how long the server took to close.
    """
    answer = b""
    async with await anyio.connect_tcp(*address) as stream:
        start = anyio.current_time()
        if data:
            await stream.send(data)
        with (
            anyio.fail_after(PATIENCE),
            contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError),
        ):
            while True:
                answer += await stream.receive()
        return answer, anyio.current_time() - start


# -- configuration ------------------------------------------------------------------


def test_the_defaults_are_documented_values() -> None:
    limits, timeouts = ServerLimits(), ServerTimeouts()
    assert (limits.max_connections, limits.max_header_count) == (1000, 100)
    assert (limits.max_path_length, limits.max_body_size) == (8192, None)
    assert (timeouts.tls_handshake, timeouts.header_read, timeouts.keep_alive) == (10, 60, 5)
    assert (timeouts.body_read, timeouts.write, timeouts.graceful_shutdown) == (60, 60, 10)
    server = ASGIServer(App())
    assert server.graceful_timeout == 10
    server.graceful_timeout = 3
    assert server.timeouts.graceful_shutdown == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_connections", 0),
        ("max_body_size", -1),
        ("keep_alive", 0),
        ("write", -1.0),
        ("graceful_shutdown", -1.0),
    ],
)
async def test_a_bad_setting_is_a_clear_error(
    name: str, value: float, server_tls_config: ServerTLSConfig
) -> None:
    server = make_server(App(), server_tls_config, **{name: value})
    with pytest.raises(ValueError, match=name):
        await server.run([Endpoint("https", "127.0.0.1", 0)])


# -- connection timeouts --------------------------------------------------------


async def test_a_tls_handshake_that_never_starts_is_dropped(
    server_tls_config: ServerTLSConfig,
) -> None:
    app = App()
    server = make_server(app, server_tls_config, tls_handshake=SHORT, header_read=None)
    async with running(server, [Endpoint("https", "127.0.0.1", 0)]) as address:
        answer, took = await raw_exchange(address, b"")
    assert answer == b""
    assert SHORT * 0.9 <= took < PATIENCE
    assert app.calls == 0


async def test_slowloris_on_http1_is_closed_after_the_header_timeout(
    server_tls_config: ServerTLSConfig,
) -> None:
    app = App()
    server = make_server(app, server_tls_config, header_read=SHORT)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        answer, took = await raw_exchange(address, b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: ")
    # RFC 9110 §15.5.9: 408, and the connection closes.
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    assert lines[0] == b"http/1.1 408 request timeout", answer
    assert b"connection: close" in lines
    assert body == b"Request Timeout\n"
    assert SHORT * 0.9 <= took < PATIENCE
    assert app.calls == 0


@pytest.mark.parametrize("kind", ["asgi", "proxy"])
async def test_a_partial_second_request_gets_408_after_the_keep_alive_timeout(
    kind: str, server_tls_config: ServerTLSConfig
) -> None:
    server: BaseServer = ProxyServer() if kind == "proxy" else make_server(App(), server_tls_config)
    server.timeouts.keep_alive = SHORT
    first = (
        b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n"  # refused: 403 or 502
        if kind == "proxy"
        else b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        answer, took = await raw_exchange(address, first + b"GET / HTTP/1.1\r\nHost: ")
    assert answer.count(b"HTTP/1.1 ") == 2, answer
    last = answer[answer.rindex(b"HTTP/1.1 ") :]
    assert last.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert SHORT * 0.9 <= took < PATIENCE


async def test_a_silent_http1_connection_is_closed_without_a_word(
    server_tls_config: ServerTLSConfig,
) -> None:
    """An unasked-for 408 could be read as the answer to a request sent meanwhile."""
    server = make_server(App(), server_tls_config, header_read=SHORT)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        answer, took = await raw_exchange(address, b"")
    assert answer == b""
    assert SHORT * 0.9 <= took < PATIENCE


async def test_a_connection_without_a_request_is_closed_after_the_header_timeout(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    server = make_server(App(), server_tls_config, header_read=SHORT, keep_alive=PATIENCE * 2)
    async with running(server) as address, client(http_version, address, client_tls_config) as c:
        start = anyio.current_time()
        closed, goaway = await wait_for_close(c)
    assert SHORT * 0.9 <= closed - start < PATIENCE
    assert goaway == (http_version != "1.1")


async def test_an_idle_keep_alive_connection_is_closed(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    server = make_server(App(), server_tls_config, header_read=PATIENCE * 2, keep_alive=SHORT)
    async with running(server) as address, client(http_version, address, client_tls_config) as c:
        for _ in range(2):  # the timer starts over after each request
            response = await read_response(c, await send_request(c))
            assert response.status == 200
            await anyio.sleep(SHORT / 2)
        start = anyio.current_time()
        closed, goaway = await wait_for_close(c)
    assert SHORT * 0.4 <= closed - start < PATIENCE
    assert goaway == (http_version != "1.1")


@pytest.mark.parametrize("http_version", ["1.1", "2", "3"], ids=["http1", "http2", "http3"])
async def test_a_proxy_connection_without_a_request_is_closed(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    proxy = ProxyServer()
    proxy.tls_config = server_tls_config
    proxy.timeouts.header_read = SHORT
    async with running(proxy) as address, client(http_version, address, client_tls_config) as c:
        start = anyio.current_time()
        closed, goaway = await wait_for_close(c)
    assert SHORT * 0.9 <= closed - start < PATIENCE
    assert goaway == (http_version != "1.1")


# -- request timeouts ---------------------------------------------------------------


async def test_a_stalled_request_body_gets_408(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = App()
    server = make_server(app, server_tls_config, body_read=SHORT)
    async with running(server) as address, client(http_version, address, client_tls_config) as c:
        stream_id = c.get_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/"),
            (b"content-length", b"10"),
        ]
        await c.send_headers(stream_id, headers)
        await c.send_data(stream_id, b"abc")
        start = anyio.current_time()
        with anyio.fail_after(PATIENCE):
            response = await read_response(c, stream_id)
            await app.done.wait()
    assert response.status == 408
    assert anyio.current_time() - start >= SHORT * 0.9
    assert [m["type"] for m in app.messages] == ["http.request", "http.disconnect"]
    assert app.messages[0]["body"] == b"abc"


async def test_a_client_that_stops_reading_is_reset_and_send_raises(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = App(stream_forever=True)
    server = make_server(app, server_tls_config, write=SHORT)
    async with running(server) as address:
        async with client(http_version, address, client_tls_config) as c:
            await send_request(c)
            # Never read: HTTP/2 and HTTP/3 windows stay shut, HTTP/1.1's socket fills.
            with anyio.fail_after(PATIENCE * 4):
                await app.done.wait()
        assert isinstance(app.send_error, ClientDisconnected)
        # The server serves on.
        app.stream_forever = False
        async with client(http_version, address, client_tls_config) as c:
            response = await read_response(c, await send_request(c))
    assert response.status == 200


# -- limits ----------------------------------------------------------------------


async def test_a_body_declared_over_the_limit_gets_413_without_the_application(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = App()
    server = make_server(app, server_tls_config, max_body_size=10)
    async with running(server) as address, client(http_version, address, client_tls_config) as c:
        stream_id = c.get_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/"),
            (b"content-length", b"11"),
        ]
        await c.send_headers(stream_id, headers)
        with anyio.fail_after(PATIENCE):
            response = await read_response(c, stream_id)
    assert response.status == 413
    assert app.calls == 0


async def test_a_streamed_body_over_the_limit_gets_413(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = App()
    server = make_server(app, server_tls_config, max_body_size=20)
    async with running(server) as address, client(http_version, address, client_tls_config) as c:
        stream_id = c.get_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/"),
        ]
        await c.send_headers(stream_id, headers)

        async def upload() -> None:
            with contextlib.suppress(LocalProtocolError, TransportError):
                for _ in range(5):  # 40 bytes: twice the limit
                    await c.send_data(stream_id, b"12345678")
                    await anyio.sleep(0.05)
                await c.send_data(stream_id, b"", end_stream=True)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(upload)
            with anyio.fail_after(PATIENCE):
                response = await read_response(c, stream_id)
                await app.done.wait()
    assert response.status == 413
    assert app.messages[-1]["type"] == "http.disconnect"
    assert sum(len(m.get("body", b"")) for m in app.messages) <= 20


@pytest.mark.parametrize(
    ("settings", "extra", "status"),
    [
        ({"max_header_count": 10}, [(b"x-field", b"1")] * 11, 431),
        ({"max_path_length": 64}, [], 414),
    ],
    ids=["header-count", "path-length"],
)
async def test_requests_over_header_limits_are_refused(
    http_version: str,
    settings: dict[str, int],
    extra: list[tuple[bytes, bytes]],
    status: int,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    app = App()
    server = make_server(app, server_tls_config, **settings)
    path = b"/" + b"p" * 100
    async with running(server) as address, client(http_version, address, client_tls_config) as c:
        with anyio.fail_after(PATIENCE):
            response = await read_response(c, await send_request(c, path=path, headers=extra))
    assert response.status == status
    assert app.calls == 0


async def test_header_count_counts_the_fields_the_client_sent(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """98 fields (and Host on HTTP/1.1) pass a limit of 100: pseudo-headers do not count."""
    app = App()
    server = make_server(app, server_tls_config, max_header_count=100)
    extra = [(b"x-field-%d" % index, b"1") for index in range(98)]
    async with running(server) as address, client(http_version, address, client_tls_config) as c:
        with anyio.fail_after(PATIENCE):
            response = await read_response(c, await send_request(c, headers=extra))
    assert response.status == 200
    assert app.calls == 1


async def test_connections_over_the_limit_are_refused(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """At the limit with every connection busy, one more is refused (503, GOAWAY)."""
    app = App()
    server = make_server(app, server_tls_config, max_connections=1)
    async with running(server) as address:
        async with client(http_version, address, client_tls_config) as first:
            # A request in flight: the rest of its body is still to come.
            stream_id = first.get_available_stream_id()
            head = [
                (b":method", b"POST"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", b"/"),
                (b"content-length", b"8"),
            ]
            await first.send_headers(stream_id, head)
            await first.send_data(stream_id, b"part")
            async with client(http_version, address, client_tls_config) as second:
                with anyio.fail_after(PATIENCE):
                    try:
                        refused_id = await send_request(second)
                    except TransportError:
                        # HTTP/2, HTTP/3: the server's GOAWAY and close can come
                        # before the request goes out; HTTP/1.1 waits for it.
                        assert http_version != "1.1"
                    else:
                        events = await events_until_close(second)  # and closed
                        statuses = [
                            dict(event.headers)[b":status"]
                            for event in events
                            if isinstance(event, HeadersReceived) and event.stream_id == refused_id
                        ]
                        assert statuses == ([b"503"] if http_version == "1.1" else [])
                        if http_version == "2":  # HTTP/3 may close before its GOAWAY is read
                            assert any(isinstance(event, GoawayReceived) for event in events)
            # The first connection goes on.
            await first.send_data(stream_id, b"more", end_stream=True)
            response = await read_response(first, stream_id)
            assert response.status == 200
        # Once it has gone (the server notices soon), another connection is served.
        with anyio.fail_after(PATIENCE):
            response = Response()
            while response.status != 200:
                with contextlib.suppress(TransportError, LocalProtocolError):
                    async with client(http_version, address, client_tls_config) as third:
                        response = await read_response(third, await send_request(third))
                await anyio.sleep(0.05)
    assert app.calls == 2


async def test_idle_connection_gives_way_at_the_limit(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """At the limit, a connection idle between requests is closed for a new one."""
    app = App()
    server = make_server(app, server_tls_config, max_connections=1)
    async with running(server) as address:
        async with client(http_version, address, client_tls_config) as first:
            response = await read_response(first, await send_request(first))
            assert response.status == 200  # and now idle
            async with client(http_version, address, client_tls_config) as second:
                with anyio.fail_after(PATIENCE):
                    response = await read_response(second, await send_request(second))
                    assert response.status == 200
                    _, goaway = await wait_for_close(first)
            if http_version == "2":
                assert goaway
    assert app.calls == 2


# -- graceful shutdown ----------------------------------------------------------


class SlowApp:
    """A request that outlasts any grace period; lifespan events in order."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.started = anyio.Event()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.log.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        self.started.set()
        try:
            await anyio.sleep(PATIENCE * 10)
        finally:
            self.log.append("request ended")


async def test_shutdown_waits_out_the_grace_period_then_cancels_and_runs_lifespan_last(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    app = SlowApp()
    server = ASGIServer(app)
    server.tls_config = server_tls_config
    server.handle_signals = False
    server.timeouts.graceful_shutdown = SHORT
    async with anyio.create_task_group() as task_group:
        scope = anyio.CancelScope()

        async def serve(*, task_status: anyio.abc.TaskStatus[Sequence[AddressType]]) -> None:
            with scope:
                await server.run([Endpoint("https", "127.0.0.1", 0)], task_status=task_status)

        address = (await task_group.start(serve))[0]
        async with client(http_version, address, client_tls_config) as c:
            await send_request(c)
            with anyio.fail_after(PATIENCE):
                await app.started.wait()
            start = anyio.current_time()
            scope.cancel()  # as a task group ending would
            with anyio.fail_after(PATIENCE):
                _, goaway = await wait_for_close(c)
    took = anyio.current_time() - start
    assert SHORT * 0.9 <= took < PATIENCE
    assert goaway == (http_version != "1.1")
    assert app.log == ["lifespan.startup", "request ended", "lifespan.shutdown"]
