"""Connection reuse: the HTTP/1.1 keep-alive pool and connections the server retires."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from hface.client import Client, ClientProtocol, Request
from hface.common import ClientTLSConfig, ServerTLSConfig

from .conftest import HFaceServer, hface_server, pattern

pytestmark = pytest.mark.anyio

PROTOCOLS = {"1.1": ClientProtocol.HTTP1, "2": ClientProtocol.HTTP2, "3": ClientProtocol.HTTP3}


async def wait_until_open(server: HFaceServer, count: int) -> None:
    """Wait (at most 5 s) until the server has ``count`` connections open."""
    await server.wait_until(lambda: server.open_connections == count)


async def test_http1_keep_alive_pool(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with hface_server("1.1", server_tls_config) as server:
        client = Client(tls_config=client_tls_config, protocol=ClientProtocol.HTTP1)
        client.max_idle_connections = 2
        async with client.session() as session:
            # One after another: one keep-alive connection carries them all.
            for _ in range(3):
                response = await session.dispatch(Request("GET", server.url + "/"))
                assert response.content == b"hello 1.1"
            assert server.connections == 1

            # Five at once need five connections (one request each at a time)...
            async with anyio.create_task_group() as task_group:
                for _ in range(5):
                    request = Request("GET", server.url + "/sleep/300")
                    task_group.start_soon(session.dispatch, request)
            await server.wait_until(lambda: server.requests == 8)
            assert server.connections == 5
            assert session.connections_opened == 5
            # ...and once idle, only two of them are kept.
            await wait_until_open(server, 2)

            # The kept ones carry the next two at once: no new connection.
            async with anyio.create_task_group() as task_group:
                for _ in range(2):
                    request = Request("GET", server.url + "/sleep/100")
                    task_group.start_soon(session.dispatch, request)
            await server.wait_until(lambda: server.requests == 10)
            assert server.connections == 5
        await wait_until_open(server, 0)


@pytest.mark.parametrize("version", list(PROTOCOLS))
async def test_idle_close_replaces_connection(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async def produce() -> AsyncIterator[bytes]:
        for index in range(5):
            yield bytes([index]) * 1000

    async with hface_server(version, server_tls_config, idle_close=0.3) as server:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        async with client.session() as session:
            response = await session.dispatch(Request("GET", server.url + "/"))
            assert response.status == 200
            await wait_until_open(server, 0)  # the server closed the idle connection
            await anyio.sleep(0.1)
            # A streamed body cannot be sent twice: this passes only if the
            # client never tries the closed connection.
            request = Request("POST", server.url + "/echo", content=produce())
            response = await session.dispatch(request)
            assert response.content == b"".join(bytes([index]) * 1000 for index in range(5))
            await wait_until_open(server, 0)
            response = await session.dispatch(Request("GET", server.url + "/"))
            assert response.content == f"hello {version}".encode()
            assert session.connections_opened == 3
            await server.wait_until(lambda: server.requests == 3)
    assert server.connections == 3


async def test_http1_connection_waits_for_its_exchange_to_end(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    # The first response is parsed whole while its body is still unread:
    # its connection is ready for a new request at the protocol level, yet
    # the pool must not give it to another exchange before the first ends.
    async with hface_server("1.1", server_tls_config) as server:
        client = Client(tls_config=client_tls_config, protocol=ClientProtocol.HTTP1)
        async with client.session() as session:
            async with session.stream(Request("GET", server.url + "/bytes/1000")) as first:
                await anyio.sleep(0.2)  # the body arrives, unread
                second = await session.dispatch(Request("GET", server.url + "/bytes/2000"))
                assert second.content == pattern(2000)
                assert b"".join([chunk async for chunk in first.aiter_bytes()]) == pattern(1000)
            assert session.connections_opened == 2


@pytest.mark.parametrize("version", list(PROTOCOLS))
async def test_a_response_left_unread_does_not_reach_the_next_request(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """A body never read (``hface client -f``) is not taken for the next response's.

    A small response arrives whole with its headers: HTTP/1.1 has then
    finished the exchange, and the connection would go on with its events
    still queued.
    """
    async with hface_server(version, server_tls_config) as server:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        async with client.session() as session:
            for size in (10, 20, 30):
                request = Request("GET", f"{server.url}/bytes/{size}")
                async with session.stream(request) as response:
                    assert response.status == 200  # and the body is left unread
            response = await session.dispatch(Request("GET", f"{server.url}/bytes/40"))
            assert response.content == pattern(40)
