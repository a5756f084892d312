"""Fetching the right bytes from hface's own server, hypercorn and h2o, on every version."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import aclosing

import anyio
import anyio.lowlevel
import pytest

from hface.client import Client, ClientProtocol, Request
from hface.common import ClientTLSConfig, ServerTLSConfig

from .conftest import PeerServer, hface_server, pattern

pytestmark = pytest.mark.anyio

PROTOCOLS = {"1.1": ClientProtocol.HTTP1, "2": ClientProtocol.HTTP2, "3": ClientProtocol.HTTP3}
VERSIONS = list(PROTOCOLS)


@pytest.mark.parametrize("version", VERSIONS)
async def test_hface_server(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with hface_server(version, server_tls_config) as server:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        async with client.session() as session:
            response = await session.dispatch(Request("GET", server.url + "/"))
            assert (response.status, response.content) == (200, f"hello {version}".encode())
            assert response.http_version == version
            response = await session.dispatch(Request("GET", server.url + "/bytes/300000"))
            assert response.content == pattern(300000)
            assert response.get_header("Content-Length") == b"300000"
            body = b"x" * 200000
            response = await session.dispatch(Request("POST", server.url + "/echo", content=body))
            assert response.content == body
        # Keep-alive / multiplexing: one connection for all three.
        assert server.connections == 1


async def test_alpn_chooses_http2(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with hface_server("2", server_tls_config) as server:
        async with Client(tls_config=client_tls_config).session() as session:
            response = await session.dispatch(Request("GET", server.url + "/"))
    assert response.http_version == "2"


@pytest.mark.parametrize("protocol", list(ClientProtocol))
async def test_hypercorn(
    protocol: ClientProtocol, hypercorn_server: PeerServer, client_tls_config: ClientTLSConfig
) -> None:
    expected = {ClientProtocol.HTTP1: "1.1", ClientProtocol.HTTP3: "3"}.get(protocol, "2")
    async with Client(tls_config=client_tls_config, protocol=protocol).session() as session:
        response = await session.dispatch(Request("GET", hypercorn_server.url + "/"))
        assert response.status == 200
        assert response.http_version == expected
        assert response.content == f"hello {expected}".encode()
        response = await session.dispatch(Request("GET", hypercorn_server.url + "/bytes/1000000"))
        assert response.content == pattern(1000000)
        response = await session.dispatch(
            Request("PUT", hypercorn_server.url + "/echo", content=b"abc" * 50000)
        )
        assert response.content == b"abc" * 50000


@pytest.mark.peer("h2o")
@pytest.mark.parametrize("protocol", [ClientProtocol.HTTP1, ClientProtocol.HTTP2])
async def test_h2o(
    protocol: ClientProtocol, h2o_server: PeerServer, client_tls_config: ClientTLSConfig
) -> None:
    async with Client(tls_config=client_tls_config, protocol=protocol).session() as session:
        response = await session.dispatch(Request("GET", h2o_server.url + "/index.html"))
        assert (response.status, response.content) == (200, b"hello from h2o\n")
        assert response.http_version == ("1.1" if protocol is ClientProtocol.HTTP1 else "2")
        response = await session.dispatch(Request("GET", h2o_server.url + "/big.bin"))
        assert response.content == pattern(1024 * 1024)
        response = await session.dispatch(Request("GET", h2o_server.url + "/missing"))
        assert response.status == 404


async def test_streaming_both_ways(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    chunks = [bytes([index]) * 10000 for index in range(50)]

    async def produce() -> AsyncIterator[bytes]:
        for chunk in chunks:
            await anyio.lowlevel.checkpoint()
            yield chunk

    async with hface_server("2", server_tls_config) as server:
        async with Client(tls_config=client_tls_config).session() as session:
            request = Request("POST", server.url + "/echo", content=produce())
            async with session.stream(request) as response:
                assert response.status == 200
                received = b"".join([chunk async for chunk in response.aiter_bytes()])
            assert received == b"".join(chunks)
            # Leaving a streamed response unread resets the stream; the session goes on.
            async with session.stream(Request("GET", server.url + "/bytes/5000000")) as response:
                async with aclosing(response.aiter_bytes()) as body:
                    async for _chunk in body:
                        break
            response = await session.dispatch(Request("GET", server.url + "/"))
            assert response.content == b"hello 2"


@pytest.mark.parametrize("version", ["2", "3"])
async def test_200_concurrent_on_one_connection(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    results: list[bytes] = []
    async with hface_server(version, server_tls_config, max_concurrent_streams=250) as server:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        async with client.session() as session:

            async def fetch(index: int) -> None:
                response = await session.dispatch(Request("GET", f"{server.url}/bytes/{index}"))
                assert response.content == pattern(index)
                results.append(response.content)

            async with anyio.create_task_group() as task_group:
                for index in range(200):
                    task_group.start_soon(fetch, index)
            # The server counts a request once its last write returned,
            # which may be after the client has the whole response.
            await server.wait_until(lambda: server.requests == 200)
        assert server.connections == 1
    assert len(results) == 200


@pytest.mark.parametrize("version", ["2", "3"])
async def test_full_connection_opens_another(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with hface_server(version, server_tls_config, max_concurrent_streams=5) as server:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        async with client.session() as session:
            # The first request lets the client learn the server's limit.
            await session.dispatch(Request("GET", server.url + "/"))
            # 20 requests of 0.5 s at once, 5 per connection: 4 connections.
            async with anyio.create_task_group() as task_group:
                for _ in range(20):
                    request = Request("GET", server.url + "/sleep/500")
                    task_group.start_soon(session.dispatch, request)
            assert session.connections_opened == 4
            await server.wait_until(lambda: server.requests == 21)
        assert server.connections == 4


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
async def test_50_mib(
    version: str, hypercorn_server: PeerServer, client_tls_config: ClientTLSConfig
) -> None:
    size = 50 * 1024 * 1024
    digest = hashlib.sha256()
    received = 0
    client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
    async with client.session() as session:
        request = Request("GET", f"{hypercorn_server.url}/bytes/{size}")
        async with session.stream(request) as response:
            assert response.http_version == version
            async for chunk in response.aiter_bytes():
                digest.update(chunk)
                received += len(chunk)
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(pattern(size)).hexdigest()
