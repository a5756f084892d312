"""The ASGI ``http`` and ``lifespan`` specifications, message by message.

Each test is one row of the audit table of docs/asgi.rst: what the
specification (https://asgi.readthedocs.io/en/latest/specs/www.html and
lifespan.html, version 2.4) says of one message or scope key, checked on
every HTTP version and both backends. The applications are bare ASGI
callables, so that nothing of a framework stands between the test and the
server.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.protocols.http1 import HTTP1ServerFactory
from hface.server import ASGIServer
from tests.test_server.conftest import client, read_response, running, send_request

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
