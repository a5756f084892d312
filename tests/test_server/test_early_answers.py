"""Uploads answered early (413) on one HTTP/2 connection: the client is never cut off.

The server answers 413 once a body passes ``max_body_size``, then resets the
stream with NO_ERROR (RFC 9113 §8.1) while the client is still uploading.
The DATA frames the client had on their way are ignored (§5.1), not
answered with a reset each: such resets spend the connection's reset
budget (§10.5), and a client doing nothing wrong would get
GOAWAY(ENHANCE_YOUR_CALM) after a few uploads.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.connections import HTTPConnection
from hface.errors import LocalProtocolError, TransportError
from hface.protocols.http2 import HTTP2ServerFactory
from hface.server import ASGIServer
from tests.test_server.conftest import client, read_response, running, send_request

pytestmark = pytest.mark.anyio

#: Uploads in a row on one connection, and the reset budget they must not spend.
UPLOADS = 30
BUDGET = 5
CHUNK = b"u" * 16384
POST = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"x"), (b":path", b"/")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, then answers 200."""
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"read it all"})


async def upload(connection: HTTPConnection, stream_id: int) -> None:
    """Upload far more than the limit, until the server's reset stops it."""
    with contextlib.suppress(LocalProtocolError, TransportError):
        for _ in range(64):
            await connection.send_data(stream_id, CHUNK)


async def test_uploads_answered_413_do_not_spend_the_reset_budget(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    server = ASGIServer(app)
    server.tls_config = server_tls_config
    server.limits.max_body_size = 1000
    server.http2_factory = HTTP2ServerFactory(max_reset_streams=BUDGET)
    async with running(server) as address, client("2", address, client_tls_config) as c:
        for index in range(UPLOADS):
            stream_id = c.get_available_stream_id()
            await c.send_headers(stream_id, POST)
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(upload, c, stream_id)
                with anyio.fail_after(10):
                    response = await read_response(c, stream_id)
                task_group.cancel_scope.cancel()
            assert not response.terminated, f"upload {index}: the connection ended"
            assert response.status == 413, index
        # The connection serves on.
        with anyio.fail_after(10):
            response = await read_response(c, await send_request(c))
        assert response.status == 200
        assert response.body == b"read it all"
