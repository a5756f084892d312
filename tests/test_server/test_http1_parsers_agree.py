"""Where h11 and llhttp (httptools) used to differ, against a real ASGIServer on loopback.

Each request gets the same answer from either parser, at once: an unknown
method token reaches the application, a chunk size past 2**64-1 and a body
on an Upgrade request get 400, ``HTTP/1.2`` is served as HTTP/1.1. The
protocol-level cases are in tests/test_protocols/test_http1_malformed.py.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from hface.common import AddressType
from hface.protocols import HTTPOverTCPFactory
from hface.protocols.http1 import HTTP1ServerFactory
from hface.protocols.http1._httptools import HTTPToolsServerFactory
from hface.server import ASGIServer, Endpoint
from tests.test_server.conftest import running

pytestmark = pytest.mark.anyio

FACTORIES = [
    pytest.param(HTTP1ServerFactory, id="h11"),
    pytest.param(HTTPToolsServerFactory, id="httptools"),
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the method and the HTTP version it saw."""
    if scope["type"] != "http":
        return
    body = f"{scope['method']} {scope['http_version']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def exchange(address: AddressType, data: bytes) -> bytes:
    """Send ``data`` on a new connection; return what came back within 1 s, or by the close."""
    answer = b""
    async with await anyio.connect_tcp(*address) as stream:
        await stream.send(data)
        with anyio.move_on_after(1):
            try:
                while True:
                    answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    return answer


CASES = [
    pytest.param(b"FOO /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 200, b"FOO 1.1"),
    pytest.param(b"GET /x HTTP/1.2\r\nHost: a\r\nConnection: close\r\n\r\n", 200, b"GET 1.1"),
    pytest.param(
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nx",
        400,
        None,
    ),
    pytest.param(
        b"POST /x HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
        b"Content-Length: 5\r\n\r\nhello",
        400,
        None,
    ),
]


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize(("request_", "status", "body"), CASES)
async def test_both_parsers_answer_alike(
    factory: type[HTTPOverTCPFactory], request_: bytes, status: int, body: bytes | None
) -> None:
    server = ASGIServer(app)
    server.http1_factory = factory()
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        answer = await exchange(address, request_)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer
    if body is not None:
        assert answer.endswith(b"\r\n\r\n" + body), answer
