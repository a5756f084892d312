"""HTTP/3 through a CONNECT-UDP proxy (RFC 9298): QUIC inside HTTP Datagrams.

The proxy is hface's ``ProxyServer``, reached over HTTP/2 (DATAGRAM
capsules) or HTTP/3 (QUIC DATAGRAM frames); the origin speaks HTTP/3.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest

from hface.client import Client, ClientProtocol, ProxyClient, Request
from hface.client.errors import ProxyError
from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig

from .conftest import hface_server, pattern
from .test_proxy import running_proxy

pytestmark = pytest.mark.anyio

UDP_PROXY_PROTOCOLS = [ClientProtocol.HTTP2, ClientProtocol.HTTP3]


@contextmanager
def udp_echo() -> Iterator[AddressType]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(data.upper(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()
    finally:
        stop.set()
        thread.join(5)
        sock.close()


@pytest.mark.parametrize("proxy_protocol", UDP_PROXY_PROTOCOLS, ids=lambda p: f"proxy-{p.name}")
async def test_connect_udp_is_a_datagram_stream(
    proxy_protocol: ClientProtocol,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    with udp_echo() as target, anyio.fail_after(20):
        async with running_proxy(server_tls_config) as proxy_url:
            proxy = ProxyClient(proxy_url, tls_config=client_tls_config, protocol=proxy_protocol)
            async with proxy.session() as session:
                tunnel = await session.connect_udp(target)
                async with tunnel:
                    for number in range(20):
                        await tunnel.send((b"datagram %d" % number, target))
                        assert await tunnel.receive() == (b"DATAGRAM %d" % number, target)


async def test_connect_udp_refused(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    with anyio.fail_after(20):
        async with running_proxy(server_tls_config, allow_private_targets=False) as proxy_url:
            proxy = ProxyClient(
                proxy_url, tls_config=client_tls_config, protocol=ClientProtocol.HTTP3
            )
            async with proxy.session() as session:
                with pytest.raises(ProxyError, match="status 403") as error:
                    await session.connect_udp(("127.0.0.1", 9))
                assert error.value.status == 403


async def test_connect_udp_over_http1_is_not_supported(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    with anyio.fail_after(20):
        async with running_proxy(server_tls_config) as proxy_url:
            proxy = ProxyClient(
                proxy_url, tls_config=client_tls_config, protocol=ClientProtocol.HTTP1
            )
            async with proxy.session() as session:
                with pytest.raises(NotImplementedError, match="HTTP/2 or HTTP/3"):
                    await session.connect_udp(("127.0.0.1", 9))


@pytest.mark.parametrize("proxy_protocol", UDP_PROXY_PROTOCOLS, ids=lambda p: f"proxy-{p.name}")
async def test_http3_origin_through_a_connect_udp_proxy(
    proxy_protocol: ClientProtocol,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    with anyio.fail_after(60):
        async with (
            hface_server("3", server_tls_config) as server,
            running_proxy(server_tls_config) as proxy_url,
        ):
            client = Client(
                tls_config=client_tls_config,
                protocol=ClientProtocol.HTTP3,
                proxy_origin=proxy_url,
                proxy_protocol=proxy_protocol,
            )
            async with client.session() as session:
                response = await session.dispatch(Request("GET", server.url + "/"))
                assert (response.status, response.content) == (200, b"hello 3")
                assert response.http_version == "3"
                body = b"y" * 300000
                response = await session.dispatch(
                    Request("POST", server.url + "/echo", content=body)
                )
                assert response.content == body
                response = await session.dispatch(Request("GET", f"{server.url}/bytes/2000000"))
                assert response.content == pattern(2000000)
                assert session.connections_opened == 1
