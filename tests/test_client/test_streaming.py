"""Streamed bodies: upload from an async iterable, download as an async iterator, backpressure."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import aclosing

import anyio
import pytest

from hface.client import Client, ClientProtocol, Request, Response
from hface.common import ClientTLSConfig, ServerTLSConfig

from .conftest import hface_server, pattern

pytestmark = pytest.mark.anyio

PROTOCOLS = {"1.1": ClientProtocol.HTTP1, "2": ClientProtocol.HTTP2, "3": ClientProtocol.HTTP3}
MiB = 1024 * 1024
#: ``(version, body size, bound)``: the bound is what may be in flight while
#: the other side stops reading: flow-control windows (256 KiB per stream on
#: HTTP/2 and HTTP/3, plus what the sender's connection may hold) or socket
#: and connection buffers (HTTP/1.1, several MiB on loopback).
CASES = [("1.1", 24 * MiB, 12 * MiB), ("2", 8 * MiB, 2 * MiB), ("3", 8 * MiB, 2 * MiB)]
CASE_IDS = [version for version, _size, _bound in CASES]
CHUNK = 65536


@pytest.mark.parametrize(("version", "size", "bound"), CASES, ids=CASE_IDS)
async def test_download_backpressure(
    version: str,
    size: int,
    bound: int,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    digest = hashlib.sha256()
    received = 0
    async with hface_server(version, server_tls_config) as server:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        async with client.session() as session:
            request = Request("GET", f"{server.url}/bytes/{size}")
            async with session.stream(request) as response:
                async with aclosing(response.aiter_bytes()) as body:
                    async for chunk in body:
                        if not received:
                            # A consumer that stops reading stops the server.
                            await anyio.sleep(0.5)
                            stalled_at = server.bytes_sent
                            await anyio.sleep(0.3)
                            assert server.bytes_sent == stalled_at
                            assert stalled_at < bound
                        digest.update(chunk)
                        received += len(chunk)
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(pattern(size)).hexdigest()


@pytest.mark.parametrize(("version", "size", "bound"), CASES, ids=CASE_IDS)
async def test_upload_backpressure(
    version: str,
    size: int,
    bound: int,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    produced = 0

    async def produce() -> AsyncIterator[bytes]:
        nonlocal produced
        while produced < size:
            produced += CHUNK
            yield pattern(CHUNK)

    responses: list[Response] = []
    async with hface_server(version, server_tls_config, stall=1.5) as server:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        async with client.session() as session:

            async def upload() -> None:
                request = Request("POST", server.url + "/stall", content=produce())
                responses.append(await session.dispatch(request))

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(upload)
                # The server reads nothing for 1.5 s: the producer must stop.
                await server.stalled.wait()
                await anyio.sleep(0.6)
                stalled_at = produced
                await anyio.sleep(0.3)
                assert produced == stalled_at
                assert stalled_at < bound
    assert responses[0].status == 200
    assert responses[0].content == str(size).encode()


@pytest.mark.parametrize("version", list(PROTOCOLS))
async def test_no_task_left_after_cancelled_upload(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async def produce() -> AsyncIterator[bytes]:
        while True:  # never ends: only the cancellation stops it
            yield pattern(CHUNK)

    async with hface_server(version, server_tls_config, stall=1.0) as server:
        await anyio.wait_all_tasks_blocked()  # the server's listener tasks are up
        before = len(anyio.get_running_tasks())
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        async with client.session() as session:
            with anyio.move_on_after(0.5) as scope:
                await session.dispatch(Request("POST", server.url + "/stall", content=produce()))
            assert scope.cancelled_caught
            assert server.stalled.is_set()  # cancelled midway through the upload
            response = await session.dispatch(Request("GET", server.url + "/"))
            assert response.status == 200
        # The server's tasks for the closed connections end soon; a task of
        # the client left running would keep the count up for good.
        for _ in range(100):
            if len(anyio.get_running_tasks()) == before:
                break
            await anyio.sleep(0.05)
        assert len(anyio.get_running_tasks()) == before


@pytest.mark.parametrize("version", ["1.1", "2"])
async def test_cancel_upload_to_server_that_never_reads(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """A cancelled streamed upload ends at once though the server never reads a byte."""

    async def produce() -> AsyncIterator[bytes]:
        while True:  # never ends: only the cancellation stops it
            yield pattern(CHUNK)

    before = len(anyio.get_running_tasks())
    async with hface_server(version, server_tls_config, stall=3600) as server:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        with anyio.fail_after(5):  # a hang fails here, not at the 120 s test timeout
            async with client.session() as session:
                with anyio.CancelScope() as scope:
                    # No deadline: cancelled from outside, as a task group would.
                    async with anyio.create_task_group() as task_group:

                        async def upload() -> None:
                            request = Request("POST", server.url + "/stall", content=produce())
                            await session.dispatch(request)

                        task_group.start_soon(upload)
                        await server.wait_until(server.stalled.is_set)
                        await anyio.sleep(0.5)  # the client's buffers fill up
                        scope.cancel()
                assert scope.cancelled_caught
    # The server (stalled for good) is stopped too: every task is gone.
    assert len(anyio.get_running_tasks()) == before
