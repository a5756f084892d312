"""What ASGIServer logs: each application failure once, client misbehaviour never as an error."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.events import HeadersReceived
from hface.server import ASGIServer, Endpoint
from tests.test_server.conftest import client, fetch, running, send_request

pytestmark = pytest.mark.anyio

Scope = dict[str, Any]


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Records at ERROR or above, or carrying a traceback at WARNING or above."""
    return [
        record
        for record in caplog.records
        if record.levelno >= logging.ERROR
        or (record.levelno >= logging.WARNING and record.exc_info)
    ]


async def endless(scope: Scope, receive: Any, send: Any) -> None:
    """Streams a body until the client goes away."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while True:
        await send({"type": "http.response.body", "body": b"x" * 16384, "more_body": True})


async def test_a_client_leaving_mid_response_is_no_error(
    http_version: str,
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hface")
    server = ASGIServer(endless)
    server.tls_config = server_tls_config
    async with running(server) as address:
        for leave in ("reset", "close"):
            async with client(http_version, address, client_tls_config) as connection:
                stream_id = await send_request(connection)
                with anyio.fail_after(5):
                    while not isinstance(await connection.receive_event(), HeadersReceived):
                        pass
                if leave == "reset":
                    await connection.send_stream_reset(stream_id, connection.error_codes.cancel)
            # Let the server notice, cancel the application and log what it logs.
            with anyio.fail_after(5):
                while server.connections:  # noqa: ASYNC110 (polls the server's state)
                    await anyio.sleep(0.05)
    assert not problems(caplog), problems(caplog)
    access = [r for r in caplog.records if r.name == "hface.server.access"]
    assert len(access) == 2  # one line per request, even an abandoned one


@pytest.mark.parametrize(
    "garbage",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: nope\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x04\x99\x00\x00\x00\x00\x01junk",
        b"\x16\x03\x01\x00\x05hello",  # TLS on a cleartext port
    ],
    ids=["not-http", "bad-length", "bad-h2-frame", "tls-on-cleartext"],
)
async def test_malformed_input_is_no_error(
    garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hface")
    requests: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            requests.append(scope)

    server = ASGIServer(app)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        stream = await anyio.connect_tcp(*address)
        async with stream:
            await stream.send(garbage)
            answer = b""
            with anyio.fail_after(5):
                try:
                    while chunk := await stream.receive():
                        answer += chunk
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass  # the server closed the connection, as it should
        if answer.startswith(b"HTTP/1.1"):
            assert answer.startswith(b"HTTP/1.1 400"), answer
    assert requests == []  # the application never saw it
    assert not problems(caplog), problems(caplog)


async def test_an_exception_after_the_response_is_logged_once(
    http_version: str,
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"fine"})
            raise KeyError("after the fact")

    server = ASGIServer(app)
    server.tls_config = server_tls_config
    async with running(server) as address:
        response = await fetch(http_version, address, client_tls_config)
    assert (response.status, response.body) == (200, b"fine")
    errors = [r for r in caplog.records if r.exc_info]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert errors[0].exc_info is not None
    assert "after the fact" in str(errors[0].exc_info[1])


async def test_an_app_that_never_responds_gets_a_500_and_one_error(
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        pass  # returns without a response (and ignores lifespan)

    server = ASGIServer(app)
    server.tls_config = server_tls_config
    async with running(server) as address:
        response = await fetch("2", address, client_tls_config)
    assert response.status == 500
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "the ASGI application returned without starting a response"
    ]


async def test_lifespan_shutdown_failure_is_logged(
    server_tls_config: ServerTLSConfig, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "could not flush"})

    server = ASGIServer(app)
    server.tls_config = server_tls_config
    async with running(server):
        pass
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["ASGI lifespan shutdown failed: could not flush"]


async def test_a_lifespan_crash_after_startup_is_logged_once(
    server_tls_config: ServerTLSConfig, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError("crash in shutdown")

    server = ASGIServer(app)
    server.tls_config = server_tls_config
    server.lifespan_timeout = 5
    with anyio.fail_after(10):  # no wait for an answer that never comes
        async with running(server):
            pass
    errors = [r for r in caplog.records if r.exc_info]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert "crash in shutdown" in str(errors[0].exc_info[1])


async def test_lifespan_state_reaches_requests(
    client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    events: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            events.append(message["type"])
            scope["state"]["pool"] = "the pool"
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            events.append(message["type"])
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = f"{scope['state']['pool']} {sorted(scope['state'])}".encode()
        scope["state"]["request-local"] = True  # must not leak into other requests
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    server = ASGIServer(app)
    server.tls_config = server_tls_config
    async with running(server) as address:
        assert events == ["lifespan.startup"]
        for version in ("1.1", "2", "3"):
            response = await fetch(version, address, client_tls_config)
            assert response.body == b"the pool ['pool']"
    assert events == ["lifespan.startup", "lifespan.shutdown"]


async def test_an_invalid_response_header_is_the_applications_error(
    http_version: str,
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = [(b"bad header\r\nx-injected", b"1")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"never sent"})

    server = ASGIServer(app)
    server.tls_config = server_tls_config
    async with running(server) as address:
        with anyio.fail_after(5):
            response = await fetch(http_version, address, client_tls_config)
    assert response.status == 500
    assert response.header(b"x-injected") is None
    errors = [r for r in caplog.records if r.exc_info]
    assert len(errors) == 1
    assert errors[0].getMessage() == "exception in the ASGI application"
