"""ASGIServer answers over HTTP/1.1, HTTP/2 and HTTP/3, on https and http endpoints."""

from __future__ import annotations

import ssl

import httpx
import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.server import ASGIServer, Endpoint
from hface.server.examples import alt_svc, asgi_echo, hello
from tests.helpers.certs import TLSFiles
from tests.test_server.conftest import client, fetch, read_response, running, send_request

pytestmark = pytest.mark.anyio


async def test_hello(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    server = ASGIServer(hello.application)
    server.tls_config = server_tls_config
    async with running(server) as address:
        response = await fetch(http_version, address, client_tls_config)
    assert response.status == 200
    assert response.body == f"Hello from hface! (HTTP/{http_version})\n".encode()


@pytest.mark.parametrize("http_version", ["1.1", "2"], ids=["http1.1", "http2"])
async def test_hello_on_cleartext_endpoint(http_version: str) -> None:
    """``http://`` endpoints serve HTTP/1.1 and HTTP/2 with prior knowledge."""
    server = ASGIServer(hello.application)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        response = await fetch(http_version, address, None)
    assert response.status == 200
    assert response.body == f"Hello from hface! (HTTP/{http_version})\n".encode()


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
async def test_hello_with_httpx(
    http2: bool, tls_files: TLSFiles, server_tls_config: ServerTLSConfig
) -> None:
    server = ASGIServer(hello.application)
    server.tls_config = server_tls_config
    async with running(server) as address:
        context = ssl.create_default_context(cafile=tls_files.ca_file)
        async with httpx.AsyncClient(http2=http2, verify=context) as http:
            response = await http.get(f"https://localhost:{address[1]}/")
    assert response.status_code == 200
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert response.text.startswith("Hello from hface!")
    assert response.headers["server"] == "hface"
    assert response.headers["alt-svc"] == f'h3=":{address[1]}"; ma=86400'


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
async def test_httpx_on_cleartext_endpoint(http2: bool) -> None:
    server = ASGIServer(hello.application)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        async with httpx.AsyncClient(http1=not http2, http2=http2) as http:
            response = await http.get(f"http://127.0.0.1:{address[1]}/")
    assert response.status_code == 200
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert "alt-svc" not in response.headers  # no HTTP/3 served


async def test_keep_alive(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """Several requests, one after the other, on one connection."""
    server = ASGIServer(hello.application)
    server.tls_config = server_tls_config
    async with running(server) as address:
        async with client(http_version, address, client_tls_config) as connection:
            for _ in range(3):
                stream_id = await send_request(connection)
                response = await read_response(connection, stream_id)
                assert response.status == 200


async def test_echo_example(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    server = ASGIServer(asgi_echo.application)
    server.tls_config = server_tls_config
    async with running(server) as address:
        response = await fetch(
            http_version,
            address,
            client_tls_config,
            method=b"POST",
            path=b"/a%20b?x=1",
            body=b"hello body",
            headers=[(b"x-test", b"yes")],
        )
    assert response.status == 200
    first, rest = response.body.split(b"\r\n", 1)
    assert first == f"POST /a%20b?x=1 HTTP/{http_version}".encode()
    assert b"x-test: yes\r\n" in rest
    assert b"host: localhost\r\n" in rest
    assert rest.endswith(b"\r\n\r\nhello body")


async def test_alt_svc_example(
    client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """An application's own alt-svc is kept."""
    server = ASGIServer(alt_svc.application)
    server.tls_config = server_tls_config
    async with running(server) as address:
        response = await fetch("2", address, client_tls_config)
    assert response.header(b"alt-svc") == alt_svc.ALT_SVC
    assert [v for k, v in response.headers if k == b"alt-svc"] == [alt_svc.ALT_SVC]
