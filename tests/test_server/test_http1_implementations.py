"""ASGIServer on each HTTP/1.1 implementation: h11, and httptools (the default when installed)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from hface.common import ServerTLSConfig
from hface.protocols import HTTPOverTCPFactory
from hface.protocols.http1 import HTTP1ServerFactory
from hface.protocols.http1._httptools import HTTPToolsServerFactory
from hface.server import ASGIServer, Endpoint, ProxyServer
from hface.server.examples import asgi_echo
from tests.helpers.certs import TLSFiles
from tests.test_server.conftest import running

pytestmark = pytest.mark.anyio

FACTORIES = [
    pytest.param(HTTP1ServerFactory, id="h11"),
    pytest.param(HTTPToolsServerFactory, id="httptools"),
]


def test_httptools_is_the_default_when_installed() -> None:
    assert isinstance(ASGIServer(asgi_echo.application).http1_factory, HTTPToolsServerFactory)
    assert isinstance(ProxyServer().http1_factory, HTTPToolsServerFactory)


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_requests_with_bodies_and_keep_alive(
    factory: type[HTTPOverTCPFactory],
    tls: bool,
    tls_files: TLSFiles,
    server_tls_config: ServerTLSConfig,
) -> None:
    """Uploads of known and unknown length, on one kept-alive connection, through httpx."""
    server = ASGIServer(asgi_echo.application)
    server.http1_factory = factory()
    server.tls_config = server_tls_config
    endpoint = Endpoint("https" if tls else "http", "127.0.0.1", 0)
    async with running(server, [endpoint]) as address:
        verify = ssl.create_default_context(cafile=tls_files.ca_file) if tls else False
        base = f"{endpoint.scheme}://localhost:{address[1]}"

        async def chunks() -> AsyncIterator[bytes]:
            for piece in (b"one ", b"two ", b"three"):
                yield piece

        async with httpx.AsyncClient(verify=verify, http2=False) as http:
            first = await http.post(f"{base}/a?x=1", content=b"x" * 100_000)
            second = await http.post(f"{base}/b", content=chunks())
            third = await http.get(f"{base}/c")
    for response in (first, second, third):
        assert response.status_code == 200
        assert response.http_version == "HTTP/1.1"
    assert len(first.content) >= 100_000
    assert b"one two three" in second.content


@pytest.mark.parametrize("factory", FACTORIES)
async def test_pipelined_requests_are_answered_in_order(
    factory: type[HTTPOverTCPFactory],
) -> None:
    server = ASGIServer(asgi_echo.application)
    server.http1_factory = factory()
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        async with await anyio.connect_tcp("127.0.0.1", address[1]) as stream:
            await stream.send(
                b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            received = b""
            with anyio.fail_after(10):
                while True:
                    try:
                        received += await stream.receive()
                    except anyio.EndOfStream:
                        break
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert received.index(b"/1") < received.index(b"/2") < received.index(b"/3")
