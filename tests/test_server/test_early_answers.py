"""Uploads answered early (413) on one connection: the client is never cut off.

The server answers 413 once a body passes ``max_body_size``, then asks the
client to stop uploading while it still is: on HTTP/2 RST_STREAM(NO_ERROR)
(RFC 9113 §8.1), on HTTP/3 STOP_SENDING(H3_NO_ERROR) (RFC 9114 §4.1).
What the client does next must not spend the connection's reset budget
(rapid reset, RFC 9113 §10.5, RFC 9114 §10.5), or a client doing nothing
wrong would be cut off after a few uploads:
- HTTP/2: the DATA frames it had on their way are ignored (§5.1), not
  answered with a reset each;
- HTTP/3: its RESET_STREAM, which QUIC makes the answer to STOP_SENDING
  (RFC 9000 §3.5), is not counted as a reset of its own.
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
from hface.protocols.http3 import HTTP3ServerFactory
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


@pytest.mark.parametrize("http_version", ["2", "3"], ids=["http2", "http3"])
async def test_uploads_answered_413_do_not_spend_the_reset_budget(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    server = ASGIServer(app)
    server.tls_config = server_tls_config
    server.limits.max_body_size = 1000
    server.http2_factory = HTTP2ServerFactory(max_reset_streams=BUDGET)
    server.http3_factory = HTTP3ServerFactory(max_reset_streams=BUDGET)
    async with running(server) as address, client(http_version, address, client_tls_config) as c:
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
