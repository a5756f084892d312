"""ASGIServer semantics: scope, HEAD, errors, disconnects, trailers, hints, headers."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.server import ASGIServer, ClientDisconnected, Endpoint
from tests.test_server.conftest import client, fetch, read_response, running, send_request

pytestmark = pytest.mark.anyio

Scope = dict[str, Any]


def make_server(app: Any, tls_config: ServerTLSConfig) -> ASGIServer:
    server = ASGIServer(app)
    server.tls_config = tls_config
    return server


async def simple_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"body"})


async def test_scope(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(scope)
        await simple_app(scope, receive, send)

    async with running(make_server(app, server_tls_config)) as address:
        await fetch(
            http_version,
            address,
            client_tls_config,
            path=b"/caf%C3%A9/x?q=%20a&b",
            headers=[(b"x-one", b"1")],
        )
    scope = scopes[0]
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == http_version
    assert scope["method"] == "GET"
    assert scope["scheme"] == "https"
    assert scope["path"] == "/café/x"
    assert scope["raw_path"] == b"/caf%C3%A9/x"
    assert scope["query_string"] == b"q=%20a&b"
    assert scope["root_path"] == ""
    headers = [tuple(h) for h in scope["headers"]]
    assert (b"host", b"localhost") in headers
    assert (b"x-one", b"1") in headers
    assert not any(name.startswith(b":") for name, _ in headers)
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ("127.0.0.1", address[1])
    assert scope["state"] == {}
    assert set(scope["extensions"]) == {"http.response.trailers", "http.response.early_hint"}


async def test_scope_with_root_path(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """``root_path`` is given to the application and prefixed to ``path`` and ``raw_path``."""
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(scope)
        await simple_app(scope, receive, send)

    server = make_server(app, server_tls_config)
    server.root_path = "/api"
    async with running(server) as address:
        await fetch(http_version, address, client_tls_config, path=b"/a%2Fb%20c?x=%2F")
    scope = scopes[0]
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/a/b c"
    assert scope["raw_path"] == b"/api/a%2Fb%20c"
    assert scope["query_string"] == b"x=%2F"


@pytest.mark.parametrize("root_path", ["api", "/api/", "/"])
async def test_an_invalid_root_path_is_refused(root_path: str) -> None:
    server = ASGIServer(simple_app)
    server.root_path = root_path
    server.handle_signals = False
    with pytest.raises(ValueError, match="invalid root_path"):
        await server.run([Endpoint("http", "127.0.0.1", 0)])


@pytest.mark.parametrize(
    ("http_version", "host"),
    [("1.1", "127.0.0.1"), ("2", "127.0.0.1"), ("1.1", "::1"), ("2", "::1")],
    ids=["http1.1-ipv4", "http2-ipv4", "http1.1-ipv6", "http2-ipv6"],
)
async def test_scope_on_cleartext_endpoint(http_version: str, host: str) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(scope)
        await simple_app(scope, receive, send)

    server = ASGIServer(app)
    async with running(server, [Endpoint("http", host, 0)]) as address:
        response = await fetch(http_version, address, None, path=b"/x%3Fy?z")
    assert response.status == 200
    scope = scopes[0]
    assert scope["http_version"] == http_version
    assert scope["scheme"] == "http"
    assert scope["path"] == "/x?y"
    assert scope["raw_path"] == b"/x%3Fy"
    assert scope["query_string"] == b"z"
    assert scope["server"] == (host, address[1])
    client_host, client_port = scope["client"]
    assert client_host == host
    assert isinstance(client_port, int)
    assert client_port not in (0, address[1])


async def test_scope_on_ipv6(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(scope)
        await simple_app(scope, receive, send)

    endpoints = [Endpoint("https", "::1", 0)]
    async with running(make_server(app, server_tls_config), endpoints) as address:
        response = await fetch(http_version, address, client_tls_config)
    assert response.status == 200
    scope = scopes[0]
    assert scope["scheme"] == "https"
    assert scope["server"] == ("::1", address[1])
    assert scope["client"][0] == "::1"


async def test_default_headers(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    async with running(make_server(simple_app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config)
    assert response.header(b"server") == b"hface"
    date = response.header(b"date")
    assert date is not None
    assert date.endswith(b"GMT")
    assert response.header(b"content-length") == b"4"
    if http_version == "3":
        assert response.header(b"alt-svc") is None
    else:
        assert response.header(b"alt-svc") == f'h3=":{address[1]}"; ma=86400'.encode()


async def test_headers_configurable(
    client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = [(b"server", b"mine")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b""})

    server = make_server(app, server_tls_config)
    server.date_header = False
    server.alt_svc = False
    async with running(server) as address:
        response = await fetch("2", address, client_tls_config)
    assert [v for k, v in response.headers if k == b"server"] == [b"mine"]
    assert response.header(b"date") is None
    assert response.header(b"alt-svc") is None
    server = make_server(simple_app, server_tls_config)
    server.server_header = None
    async with running(server) as address:
        response = await fetch("2", address, client_tls_config)
    assert response.header(b"server") is None


@pytest.mark.parametrize("content_length", [False, True], ids=["no-length", "length"])
async def test_head_has_no_body(
    http_version: str,
    content_length: bool,
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = [(b"content-length", b"4")] if content_length else []
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"body"})

    async with running(make_server(app, server_tls_config)) as address:
        async with client(http_version, address, client_tls_config) as connection:
            for method in (b"HEAD", b"GET"):  # and the connection stays usable
                stream_id = await send_request(connection, method=method)
                with anyio.fail_after(5):
                    response = await read_response(connection, stream_id)
                assert response.status == 200
                if method == b"HEAD":
                    assert response.body == b""
                    if content_length:
                        assert response.header(b"content-length") == b"4"
                else:
                    assert response.body == b"body"
                    assert response.header(b"content-length") == b"4"


async def test_500_when_the_app_fails_early(
    http_version: str,
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise ValueError("boom")

    caplog.set_level(logging.INFO, logger="hface.server")
    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config)
    assert response.status == 500
    assert response.body == b"Internal Server Error\n"
    errors = [r for r in caplog.records if r.name == "hface.server" and r.exc_info]
    assert len(errors) == 1
    exc_info = errors[0].exc_info
    assert exc_info is not None
    assert "boom" in str(exc_info[1])
    access = [r for r in caplog.records if r.name == "hface.server.access"]
    assert len(access) == 1
    assert f'"GET / HTTP/{http_version}" 500' in access[0].getMessage()


async def test_reset_when_the_app_fails_after_starting(
    http_version: str,
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            raise ValueError("late boom")

    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config)
    assert response.status == 200
    assert response.body == b"part"
    # HTTP/1.1 has no stream reset: the connection is closed mid-body.
    assert response.reset is not None or response.terminated
    errors = [r for r in caplog.records if r.name == "hface.server" and r.exc_info]
    assert len(errors) == 1


async def test_disconnect_on_client_reset(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    received: list[dict[str, Any]] = []
    started = anyio.Event()
    done = anyio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            while True:
                message = await receive()
                received.append(message)
                started.set()
                if message["type"] == "http.disconnect":
                    break
            with pytest.raises(ClientDisconnected):
                await send({"type": "http.response.start", "status": 200, "headers": []})
        finally:
            done.set()

    async with running(make_server(app, server_tls_config)) as address:
        async with client(http_version, address, client_tls_config) as connection:
            stream_id = connection.get_available_stream_id()
            request = [
                (b":method", b"POST"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", b"/"),
            ]
            await connection.send_headers(stream_id, request)
            await connection.send_data(stream_id, b"some")
            with anyio.fail_after(5):
                await started.wait()
            if http_version == "1.1":  # no stream reset: the client closes the connection
                await connection.aclose()
            else:
                await connection.send_stream_reset(stream_id, connection.error_codes.cancel)
            with anyio.fail_after(5):
                await done.wait()
    assert received[0] == {"type": "http.request", "body": b"some", "more_body": True}
    assert received[-1] == {"type": "http.disconnect"}


async def test_receive_after_response_is_disconnect(
    client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    messages: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            messages.append(await receive())
            await simple_app(scope, receive, send)
            messages.append(await receive())

    async with running(make_server(app, server_tls_config)) as address:
        await fetch("2", address, client_tls_config, method=b"POST", body=b"x")
    assert messages == [
        {"type": "http.request", "body": b"x", "more_body": False},
        {"type": "http.disconnect"},
    ]


async def test_trailers(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            start = {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}
            await send(start)
            await send({"type": "http.response.body", "body": b"data"})
            await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})

    async with running(make_server(app, server_tls_config)) as address:
        # Trailers go to clients that ask for them (test_asgi_spec.py).
        headers = [(b"te", b"trailers")]
        response = await fetch(http_version, address, client_tls_config, headers=headers)
    assert response.status == 200
    assert response.body == b"data"
    assert response.trailers == [(b"x-checksum", b"abc")]


async def test_early_hints(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            links = [b"</style.css>; rel=preload; as=style"]
            await send({"type": "http.response.early_hint", "links": links})
            await simple_app(scope, receive, send)

    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config)
    assert response.status == 200
    assert len(response.interim) == 1
    assert (b":status", b"103") in response.interim[0]
    assert (b"link", b"</style.css>; rel=preload; as=style") in response.interim[0]


async def test_streaming_request_body(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        total = 0
        chunks = 0
        while True:
            message = await receive()
            total += len(message["body"])
            chunks += 1
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": f"{total} {chunks}".encode()})

    body = b"x" * (3 * 1024 * 1024 + 17)
    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch(http_version, address, client_tls_config, method=b"PUT", body=body)
    total, chunks = response.body.split()
    assert int(total) == len(body)
    assert int(chunks) > 1  # streamed in pieces (more_body), not buffered whole


async def test_access_log_off(
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hface.server.access")
    server = make_server(simple_app, server_tls_config)
    server.access_log = False
    async with running(server) as address:
        await fetch("2", address, client_tls_config)
    assert not [r for r in caplog.records if r.name == "hface.server.access"]


async def test_lifespan_state_and_failure(server_tls_config: ServerTLSConfig) -> None:
    async def failing(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    server = make_server(failing, server_tls_config)
    server.handle_signals = False
    with pytest.raises(RuntimeError, match="no database"):
        await server.run([Endpoint("https", "127.0.0.1", 0)])


async def test_app_without_lifespan(
    client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"  # raises on lifespan
        await simple_app(scope, receive, send)

    async with running(make_server(app, server_tls_config)) as address:
        response = await fetch("1.1", address, client_tls_config)
    assert response.body == b"body"


async def test_http1_framing_and_keep_alive() -> None:
    """HTTP/1.1 responses get a content-length when the body is known, else chunked
    encoding; bodyless ones get neither; the connection is kept alive throughout."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        status = 204 if scope["path"] == "/empty" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        if scope["path"] == "/stream":
            await send({"type": "http.response.body", "body": b"ab", "more_body": True})
            await send({"type": "http.response.body", "body": b"cd", "more_body": True})
        await send({"type": "http.response.body", "body": b"" if status == 204 else b"ef"})

    server = ASGIServer(app)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        stream = await anyio.connect_tcp(*address)
        async with stream:
            received = b""

            async def exchange(path: str, end: bytes) -> bytes:
                nonlocal received
                await stream.send(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                with anyio.fail_after(5):
                    while end not in received:
                        received += await stream.receive()
                answer, _, received = received.partition(end)
                return answer + end

            fixed = await exchange("/fixed", b"\r\n\r\nef")
            chunked = await exchange("/stream", b"\r\n0\r\n\r\n")
            empty = await exchange("/empty", b"\r\n\r\n")
            again = await exchange("/fixed", b"\r\n\r\nef")
    assert fixed.startswith(b"HTTP/1.1 200 ")
    assert b"\r\ncontent-length: 2\r\n" in fixed.lower()
    assert b"transfer-encoding" not in fixed.lower()
    assert chunked.startswith(b"HTTP/1.1 200 ")
    assert b"\r\ntransfer-encoding: chunked\r\n" in chunked.lower()
    assert b"content-length" not in chunked.lower()
    assert chunked.endswith(b"\r\n\r\n2\r\nab\r\n2\r\ncd\r\n2\r\nef\r\n0\r\n\r\n")
    assert empty.startswith(b"HTTP/1.1 204 ")
    assert b"content-length" not in empty.lower()
    assert b"transfer-encoding" not in empty.lower()
    assert b"connection: close" not in (fixed + chunked + empty).lower()
    assert again.startswith(b"HTTP/1.1 200 ")
