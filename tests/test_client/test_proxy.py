"""Requests and raw tunnels through hface's ``ProxyServer``, reached over HTTP/1.1, 2 and 3."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from hface.client import Client, ClientProtocol, Origin, ProxyClient, Request
from hface.client.errors import ProxyError, TLSVerificationError
from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.server import Endpoint, ProxyServer

from .conftest import PeerServer, hface_server, pattern

pytestmark = pytest.mark.anyio

PROXY_PROTOCOLS = [ClientProtocol.HTTP1, ClientProtocol.HTTP2, ClientProtocol.HTTP3]


def _proxy_id(protocol: ClientProtocol) -> str:
    return f"proxy-{protocol.name}"


@asynccontextmanager
async def running_proxy(tls_config: ServerTLSConfig, **attributes: Any) -> AsyncIterator[str]:
    """Run a ProxyServer on 127.0.0.1 (HTTP/1.1, HTTP/2 and HTTP/3); yield its https URL."""
    proxy = ProxyServer()
    proxy.tls_config = tls_config
    proxy.handle_signals = False
    for name, value in attributes.items():
        setattr(proxy, name, value)
    async with anyio.create_task_group() as task_group:
        addresses = await task_group.start(proxy.run, [Endpoint("https", "127.0.0.1", 0)])
        _host, port = addresses[0]
        try:
            yield f"https://127.0.0.1:{port}"
        finally:
            task_group.cancel_scope.cancel()


async def _tunnel_get(stream: Any, host: str, body_end: bytes) -> bytes:
    """Send a GET by hand; read until the end of the stream or of the expected body."""
    request = f"GET /index.html HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    await stream.send(request.encode())
    received = b""
    # hface's connection-layer test server does not close after
    # ``Connection: close`` on its own, so stop at the body's end.
    while not received.endswith(body_end):
        try:
            received += await stream.receive()
        except anyio.EndOfStream:
            break
    return received


@pytest.mark.peer("h2o")
@pytest.mark.parametrize("origin_protocol", [ClientProtocol.HTTP1, ClientProtocol.TCP])
@pytest.mark.parametrize("proxy_protocol", PROXY_PROTOCOLS, ids=_proxy_id)
async def test_h2o_through_proxy(
    proxy_protocol: ClientProtocol,
    origin_protocol: ClientProtocol,
    h2o_server: PeerServer,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    async with running_proxy(server_tls_config) as proxy_url:
        client = Client(
            tls_config=client_tls_config,
            protocol=origin_protocol,
            proxy_origin=Origin.parse(proxy_url),
            proxy_protocol=proxy_protocol,
        )
        async with client.session() as session:
            response = await session.dispatch(Request("GET", h2o_server.url + "/index.html"))
            assert (response.status, response.content) == (200, b"hello from h2o\n")
            expected = "1.1" if origin_protocol is ClientProtocol.HTTP1 else "2"
            assert response.http_version == expected
            response = await session.dispatch(Request("GET", h2o_server.url + "/big.bin"))
            assert response.content == pattern(1024 * 1024)
            # The tunnel is the connection to the origin: reused, not reopened.
            assert session.connections_opened == 1


@pytest.mark.parametrize("version", ["1.1", "2"])
@pytest.mark.parametrize("proxy_protocol", PROXY_PROTOCOLS, ids=_proxy_id)
async def test_hface_origin_through_proxy(
    proxy_protocol: ClientProtocol,
    version: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    protocol = ClientProtocol.HTTP1 if version == "1.1" else ClientProtocol.HTTP2
    async with (
        hface_server(version, server_tls_config) as server,
        running_proxy(server_tls_config) as proxy_url,
    ):
        client = Client(
            tls_config=client_tls_config,
            protocol=protocol,
            proxy_origin=proxy_url,
            proxy_protocol=proxy_protocol,
        )
        async with client.session() as session:
            response = await session.dispatch(Request("GET", server.url + "/"))
            assert (response.status, response.content) == (200, f"hello {version}".encode())
            body = b"y" * 300000
            response = await session.dispatch(Request("POST", server.url + "/echo", content=body))
            assert response.content == body

            async def fetch(index: int) -> None:
                response = await session.dispatch(Request("GET", f"{server.url}/bytes/{index}"))
                assert response.content == pattern(index)

            async with anyio.create_task_group() as task_group:
                for index in range(10):
                    task_group.start_soon(fetch, 1000 * index)
            await server.wait_until(lambda: server.requests == 12)


@pytest.mark.peer("h2o")
@pytest.mark.parametrize("proxy_protocol", PROXY_PROTOCOLS, ids=_proxy_id)
async def test_connect_tcp_tls_carries_raw_bytes(
    proxy_protocol: ClientProtocol,
    h2o_server: PeerServer,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    async with running_proxy(server_tls_config) as proxy_url:
        proxy_client = ProxyClient(proxy_url, tls_config=client_tls_config)
        proxy_client.protocol = proxy_protocol
        async with proxy_client.session() as session:
            # Two tunnels at once, sharing the connection to the proxy on HTTP/2 and HTTP/3.
            first = await session.connect_tcp_tls(("localhost", h2o_server.port))
            second = await session.connect_tcp_tls(("localhost", h2o_server.port))
            for stream in (first, second):
                received = await _tunnel_get(stream, "localhost", b"hello from h2o\n")
                await stream.aclose()
                assert received.startswith(b"HTTP/1.1 200 OK\r\n"), received[:200]
                assert received.endswith(b"\r\n\r\nhello from h2o\n")


@pytest.mark.parametrize("proxy_protocol", PROXY_PROTOCOLS, ids=_proxy_id)
async def test_connect_tcp_tls_to_hface_origin(
    proxy_protocol: ClientProtocol,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    async with (
        hface_server("1.1", server_tls_config) as server,
        running_proxy(server_tls_config) as proxy_url,
    ):
        proxy_client = ProxyClient(proxy_url, tls_config=client_tls_config)
        proxy_client.protocol = proxy_protocol
        async with proxy_client.session() as session:
            stream = await session.connect_tcp_tls(server.address, server_name="localhost")
            received = await _tunnel_get(stream, "localhost", b"hello 1.1")
            await stream.aclose()
    assert received.startswith(b"HTTP/1.1 200 "), received[:200]
    assert received.endswith(b"\r\n\r\nhello 1.1")


@pytest.mark.parametrize("proxy_protocol", PROXY_PROTOCOLS, ids=_proxy_id)
async def test_proxy_credentials(
    proxy_protocol: ClientProtocol,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    credentials = ("alice", "p@ss:word")
    async with (
        hface_server("2", server_tls_config) as server,
        running_proxy(server_tls_config, credentials=credentials) as proxy_url,
    ):
        # Percent-encoded in the URL, decoded before Basic encoding.
        with_auth = proxy_url.replace("https://", "https://alice:p%40ss%3Aword@")
        client = Client(
            tls_config=client_tls_config, proxy_origin=with_auth, proxy_protocol=proxy_protocol
        )
        assert client.proxy_auth == credentials
        async with client.session() as session:
            response = await session.dispatch(Request("GET", server.url + "/"))
            assert response.status == 200

        for url in (proxy_url, proxy_url.replace("https://", "https://alice:wrong@")):
            client = Client(
                tls_config=client_tls_config, proxy_origin=url, proxy_protocol=proxy_protocol
            )
            async with client.session() as session:
                with pytest.raises(ProxyError, match="status 407") as info:
                    await session.dispatch(Request("GET", server.url + "/"))
            assert info.value.status == 407
            assert info.value.origin == proxy_url
            assert f"the proxy {proxy_url} refused a tunnel" in str(info.value)

        proxy_client = ProxyClient(with_auth, tls_config=client_tls_config)
        proxy_client.protocol = proxy_protocol
        async with proxy_client.session() as proxy_session:
            stream = await proxy_session.connect_tcp(server.address)
            await stream.aclose()


@pytest.mark.parametrize("proxy_protocol", PROXY_PROTOCOLS, ids=_proxy_id)
async def test_origin_tls_verified_inside_tunnel(
    proxy_protocol: ClientProtocol,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    async with (
        hface_server("2", server_tls_config) as server,
        running_proxy(server_tls_config) as proxy_url,
    ):
        proxy_client = ProxyClient(proxy_url, tls_config=client_tls_config)
        proxy_client.protocol = proxy_protocol
        async with proxy_client.session() as session:
            # The proxy is trusted; the origin checked against the system CAs is not.
            with pytest.raises(TLSVerificationError, match="through the proxy"):
                await session.connect_tcp_tls(
                    server.address, server_name="localhost", tls_config=ClientTLSConfig()
                )
