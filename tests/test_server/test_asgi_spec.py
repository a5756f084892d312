"""The ASGI ``http`` and ``lifespan`` specifications, message by message.

Each test is one row of the audit table of docs/asgi.rst: what the
specification (https://asgi.readthedocs.io/en/latest/specs/www.html and
lifespan.html, version 2.4) says of one message or scope key, checked on
every HTTP version and both backends. The applications are bare ASGI
callables, so that nothing of a framework stands between the test and the
server.
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import Any

import anyio
import anyio.abc
import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.protocols.http1 import HTTP1ServerFactory
from hface.server import ASGIServer, Endpoint
from tests.test_server.conftest import client, fetch, read_response, running, send_request

pytestmark = pytest.mark.anyio

Scope = dict[str, Any]
Message = dict[str, Any]

#: A body big enough to come in many pieces on every version (Django's 1 MiB POST).
MIB = 1024 * 1024


def make_server(app: Any, tls_config: ServerTLSConfig) -> ASGIServer:
    server = ASGIServer(app)
    server.tls_config = tls_config
    return server


async def read_body(receive: Any) -> tuple[bytes, list[Message]]:
    """Receive until ``more_body`` is false; the body and every message received."""
    messages: list[Message] = []
    body = b""
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return body, messages
        body += message["body"]
        if not message.get("more_body", False):
            return body, messages


# -- http.request, then http.disconnect ---------------------------------------------------


@pytest.mark.parametrize(
    ("http_version", "h11"),
    [("1.1", False), ("1.1", True), ("2", False), ("3", False)],
    ids=["http1.1-httptools", "http1.1-h11", "http2", "http3"],
)
async def test_after_the_body_only_disconnect_once_the_response_ended(
    http_version: str,
    h11: bool,
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
) -> None:
    """After ``more_body: False``, ``receive()`` waits; then ``http.disconnect`` (no 2nd body).

    As Django does: read the body, then listen for the disconnect while
    answering. An empty ``http.request`` there is a protocol error (Django
    answers 500).
    """
    after_body: list[tuple[str, bool]] = []
    bodies: list[bytes] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body, _ = await read_body(receive)
        bodies.append(body)
        response_done = False
        listening = anyio.Event()

        async def listen() -> None:
            listening.set()
            message = await receive()
            after_body.append((message["type"], response_done))

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(listen)
            await listening.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            response_done = True

    server = make_server(app, server_tls_config)
    if h11:
        server.http1_factory = HTTP1ServerFactory()
    body = bytes(range(256)) * (MIB // 256)
    async with (
        running(server) as address,
        client(http_version, address, client_tls_config) as connection,
    ):
        for _ in range(2):  # the second on a connection that already served one
            stream_id = await send_request(connection, method=b"POST", body=body)
            response = await read_response(connection, stream_id)
            assert response.status == 200
            assert response.body == b"ok"
    assert bodies == [body, body]
    assert after_body == [("http.disconnect", True), ("http.disconnect", True)]


async def test_a_bodyless_request_is_one_empty_http_request(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """A GET: one ``http.request`` (``body`` ``b""``, ``more_body`` false), then disconnect."""
    received: list[Message] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        received.append(await receive())
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})
        received.append(await receive())
        received.append(await receive())  # and again: the response has ended

    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config)
    assert response.status == 204
    assert received == [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
        {"type": "http.disconnect"},
    ]


async def test_disconnect_when_the_client_goes_after_the_body(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """The body whole, then the client goes: ``http.disconnect``; ``send()`` raises an OSError.

    Gone: the stream reset on HTTP/2 and HTTP/3, the connection lost on
    HTTP/1.1 (a TCP reset). An HTTP/1.1 client's end of stream after a
    whole request is a half-close, not a departure: it still gets its
    response (see hface.protocols.http1).
    """
    received: list[Message] = []
    errors: list[BaseException] = []
    waiting = anyio.Event()
    done = anyio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            _, messages = await read_body(receive)
            received.extend(messages)
            waiting.set()
            received.append(await receive())  # waits: the client is still there
            try:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"late"})
            except OSError as error:  # ASGI 2.4: a server-specific subclass of OSError
                errors.append(error)
        finally:
            done.set()

    server = make_server(app, server_tls_config)
    if http_version == "1.1":
        async with (
            running(server, [Endpoint("http", "127.0.0.1", 0)]) as address,
            await anyio.connect_tcp("127.0.0.1", address[1]) as tcp,
        ):
            await tcp.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nwhole")
            with anyio.fail_after(5):
                await waiting.wait()
            raw = tcp.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await tcp.aclose()  # a reset
            with anyio.fail_after(5):
                await done.wait()
    else:
        async with (
            running(server) as address,
            client(http_version, address, client_tls_config) as connection,
        ):
            stream_id = await send_request(connection, method=b"POST", body=b"whole")
            with anyio.fail_after(5):
                await waiting.wait()
            await connection.send_stream_reset(stream_id, connection.error_codes.cancel)
            with anyio.fail_after(5):
                await done.wait()
    assert received == [
        {"type": "http.request", "body": b"whole", "more_body": False},
        {"type": "http.disconnect"},
    ]
    assert len(errors) == 1


# -- the scope -------------------------------------------------------------------------


async def test_scope_keys_and_types(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """Every key of the ``http`` scope, with the type the specification gives it."""
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(scope)
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body"})

    async with running(make_server(app, server_tls_config)) as address:
        await fetch(
            http_version,
            address,
            client_tls_config,
            method=b"OPTIONS",
            path=b"/a%20b/%E2%82%AC?x=%20&y=%E2%82%AC",
        )
    (scope,) = scopes
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == http_version
    assert scope["method"] == "OPTIONS"
    assert scope["scheme"] == "https"
    assert scope["path"] == "/a b/€"  # percent-decoded, UTF-8 decoded
    assert scope["raw_path"] == b"/a%20b/%E2%82%AC"  # as received
    assert scope["query_string"] == b"x=%20&y=%E2%82%AC"  # still percent-encoded
    assert scope["root_path"] == ""
    for name, value in scope["headers"]:
        assert (type(name), type(value)) == (bytes, bytes)
        assert name == name.lower()
        assert not name.startswith(b":")
    host, port = scope["client"]
    assert (type(host), type(port)) == (str, int)
    assert scope["server"] == ("127.0.0.1", address[1])
    assert scope["state"] == {}
    assert set(scope["extensions"]) == {"http.response.trailers", "http.response.early_hint"}


async def test_header_duplicates_and_order_are_kept(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """Duplicates stay apart and in order; ``:authority`` becomes ``host``, first."""
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(scope)
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body"})

    headers = [(b"x-dup", b"one"), (b"accept", b"*/*"), (b"x-dup", b"two"), (b"x-dup", b"3")]
    async with running(make_server(app, server_tls_config)) as address:
        await fetch(http_version, address, client_tls_config, headers=headers)
    fields = [tuple(field) for field in scopes[0]["headers"]]
    assert fields[0] == (b"host", b"localhost")
    assert [value for name, value in fields if name == b"x-dup"] == [b"one", b"two", b"3"]
    assert [name for name, _ in fields if name == b"host"] == [b"host"]


@pytest.mark.parametrize("http_version", ["2", "3"], ids=["http2", "http3"])
async def test_authority_replaces_host(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """A request with ``:authority`` and ``host``: one ``host``, ``:authority``'s, first."""
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(scope)
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body"})

    headers = [(b"accept", b"*/*"), (b"host", b"localhost")]
    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config, headers=headers)
    assert response.status == 200
    fields = [tuple(field) for field in scopes[0]["headers"]]
    assert fields == [(b"host", b"localhost"), (b"accept", b"*/*")]


async def test_cookie_crumbs_are_joined(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """Several ``cookie`` fields become one, joined with ``"; "`` (RFC 9113 §8.2.3).

    HTTP/2 and HTTP/3 clients may send a cookie per field; frameworks read
    one field (Starlette the first, Django all of them joined with commas).
    """
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(scope)
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body"})

    headers = [(b"cookie", b"a=1"), (b"accept", b"*/*"), (b"cookie", b"b=2; c=3")]
    async with running(make_server(app, server_tls_config)) as address:
        await fetch(http_version, address, client_tls_config, headers=headers)
    fields = [tuple(field) for field in scopes[0]["headers"]]
    assert [field for field in fields if field[0] == b"cookie"] == [(b"cookie", b"a=1; b=2; c=3")]
    assert (b"accept", b"*/*") in fields


async def test_http1_header_names_come_lowercase() -> None:
    """Field names as a client spells them (``X-Mixed-Case``) reach the scope lowercase."""
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(scope)
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body"})

    server = ASGIServer(app)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        async with await anyio.connect_tcp("127.0.0.1", address[1]) as stream:
            await stream.send(
                b"GET / HTTP/1.1\r\nHost: a\r\nX-Mixed-Case: 1\r\nConnection: close\r\n\r\n"
            )
            with anyio.fail_after(5):
                while True:
                    try:
                        await stream.receive()
                    except anyio.EndOfStream:
                        break
    fields = [tuple(field) for field in scopes[0]["headers"]]
    assert fields == [(b"host", b"a"), (b"x-mixed-case", b"1")]


async def test_state_is_a_shallow_copy_of_the_lifespan_state(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """Each request gets a copy of the lifespan ``state``: its own keys, the same objects."""
    seen: list[tuple[str, list[int]]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["name"] = "startup"
            scope["state"]["shared"] = []
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        state = scope["state"]
        seen.append((state["name"], list(state["shared"])))
        state["name"] = "changed by a request"  # not seen by the next request
        state["shared"].append(len(seen))  # seen: the same list
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body"})

    async with running(make_server(app, server_tls_config)) as address:
        for _ in range(2):
            await fetch(http_version, address, client_tls_config)
    assert seen == [("startup", []), ("startup", [1])]


async def test_root_path(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """``root_path`` as configured, and in front of ``path`` and ``raw_path`` (as uvicorn)."""
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(scope)
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body"})

    server = make_server(app, server_tls_config)
    server.root_path = "/mount"
    async with running(server) as address:
        await fetch(http_version, address, client_tls_config, path=b"/x%2Fy?q")
    scope = scopes[0]
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        "/mount",
        "/mount/x/y",
        b"/mount/x%2Fy",
    )


# -- the response -------------------------------------------------------------------------


async def test_response_keys_default(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """``headers``, ``body`` and ``more_body`` may be left out: an empty, complete response."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body"})

    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config)
    assert (response.status, response.body) == (200, b"")
    assert response.header(b"content-length") == b"0"


async def test_response_body_in_pieces(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """``more_body`` true: the pieces are concatenated; an empty last piece ends the body."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for piece in (b"one ", b"", b"two"):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "more_body": False})

    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config)
    assert (response.status, response.body) == (200, b"one two")


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
async def test_messages_after_the_response_are_ignored(
    http_version: str,
    method: bytes,
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once complete, "any further messages on the channel will be ignored".

    A streamed answer to HEAD is complete at its first piece: the pieces
    after it are ignored, not an error.
    """
    returned = anyio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})
        await send({"type": "http.response.body", "body": b"ignored"})
        returned.set()

    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config, method=method)
        with anyio.fail_after(5):
            await returned.wait()
    assert response.status == 200
    assert response.body == (b"ab" if method == b"GET" else b"")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_start_without_a_body_then_return_is_500(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """``http.response.start`` must be followed by a body message: else the server answers 500."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200})

    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config)
    assert response.status == 500


async def test_an_error_after_the_response_started_resets_it(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """Body sent, then the application fails: no 500 (too late); the response is cut short."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"half", "more_body": True})
            raise ValueError("the application failed")

    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config)
    assert response.status == 200
    assert response.reset is not None or response.terminated


# -- extensions ----------------------------------------------------------------------------


@pytest.mark.parametrize("te_trailers", [True, False], ids=["te-trailers", "no-te"])
async def test_trailers_only_for_a_client_that_takes_them(
    http_version: str,
    te_trailers: bool,
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
) -> None:
    """Trailers (in pieces: ``more_trailers``) reach a client that sent ``TE: trailers``.

    The extension: "The ASGI server will only send the trailing headers in
    case the client has sent the ``TE: trailers`` header in the request."
    """

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        start = {"type": "http.response.start", "status": 200, "trailers": True}
        await send({**start, "headers": [(b"trailer", b"x-one, x-two")]})
        await send({"type": "http.response.body", "body": b"data"})
        one = [(b"x-one", b"1")]
        await send({"type": "http.response.trailers", "headers": one, "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-two", b"2")]})

    headers = [(b"te", b"trailers")] if te_trailers else []
    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config, headers=headers)
    assert (response.status, response.body) == (200, b"data")
    expected = [(b"x-one", b"1"), (b"x-two", b"2")] if te_trailers else []
    assert response.trailers == expected


async def test_early_hints(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """``http.response.early_hint`` before the start: a 103 with the links."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            links = [b"</a.css>; rel=preload; as=style", b"</b.js>; rel=preload; as=script"]
            await send({"type": "http.response.early_hint", "links": links})
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"page"})

    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config)
    assert (response.status, response.body) == (200, b"page")
    (hint,) = response.interim
    assert [value for name, value in hint if name == b"link"] == [
        b"</a.css>; rel=preload; as=style",
        b"</b.js>; rel=preload; as=script",
    ]


# -- lifespan ------------------------------------------------------------------------------


async def test_lifespan_messages_in_order_once(
    client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """The lifespan scope, startup before the first request, shutdown after the last."""
    events: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            events.append((scope["type"], scope["asgi"], type(scope["state"])))
            while True:
                message = await receive()
                events.append(message["type"])
                kind = message["type"].replace("lifespan.", "")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        events.append("request")
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body"})

    async with running(make_server(app, server_tls_config)) as address:
        await fetch("2", address, client_tls_config)
    assert events == [
        ("lifespan", {"version": "3.0", "spec_version": "2.0"}, dict),
        "lifespan.startup",
        "request",
        "lifespan.shutdown",
    ]


async def test_lifespan_startup_failed_stops_the_server(server_tls_config: ServerTLSConfig) -> None:
    """``lifespan.startup.failed``: its message is raised, nothing is served, no shutdown."""
    events: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        events.append((await receive())["type"])
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        events.append((await receive())["type"])  # never: the server does not go on

    server = make_server(app, server_tls_config)
    server.handle_signals = False
    with pytest.raises(RuntimeError, match="no database"):
        await server.run([Endpoint("https", "127.0.0.1", 0)])
    assert events == ["lifespan.startup"]


@pytest.mark.parametrize("when", ["scope", "startup"])
async def test_lifespan_unsupported_the_server_goes_on(
    when: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """An application that raises on the scope or on startup: served without lifespan events."""
    lifespan_calls: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            lifespan_calls.append("scope")
            if when == "startup":
                await receive()
            raise RuntimeError("no lifespan here")
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"served"})

    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch("1.1", address, client_tls_config)
    assert response.body == b"served"
    assert lifespan_calls == ["scope"]  # called once, never sent lifespan.shutdown


async def test_lifespan_shutdown_failed_is_logged(
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``lifespan.shutdown.failed``: its message is logged as an error."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.failed", "message": "the pool hung"})
            return
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body"})

    async with running(make_server(app, server_tls_config)) as address:
        await fetch("1.1", address, client_tls_config)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("the pool hung" in message for message in errors)
