"""The TLS handshake timeout of SystemNetworking's TLS listener, on loopback sockets.

A client that connects and never finishes its handshake (says nothing, or
stops halfway) is disconnected after ``tls_handshake_timeout`` seconds and
never reaches the handler; a client that does finish it is served as usual.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

from hface.common import ServerTLSConfig
from hface.networking import TLS_HANDSHAKE_TIMEOUT, ByteStream, SystemNetworking
from tests.helpers.certs import TLSFiles
from tests.helpers.network import NetworkingFactory

pytestmark = pytest.mark.anyio

#: The handshake timeout under test, in seconds.
TIMEOUT = 0.3
#: How long any bounded wait may take before it is a failure.
PATIENCE = 5.0


@asynccontextmanager
async def tls_server(
    tls_config: ServerTLSConfig, handled: list[ByteStream], networking: NetworkingFactory
) -> AsyncIterator[tuple[str, int]]:
    """Serve TLS with a short handshake timeout; yield the address. Handlers echo once."""

    async def handler(stream: ByteStream) -> None:
        handled.append(stream)
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                await stream.send(await stream.receive())

    listener = await networking(tls_handshake_timeout=TIMEOUT).listen_tcp_tls(
        ("127.0.0.1", 0), tls_config=tls_config, alpn_protocols=["http/1.1"]
    )
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handler)
        try:
            yield "127.0.0.1", listener.extra(SocketAttribute.local_port)
        finally:
            await listener.aclose()
            task_group.cancel_scope.cancel()


async def seconds_until_closed(address: tuple[str, int], data: bytes) -> float:
    """Connect, send ``data`` (maybe nothing), and wait for the server to close."""
    async with await anyio.connect_tcp(*address) as stream:
        start = anyio.current_time()
        if data:
            await stream.send(data)
        with (
            anyio.fail_after(PATIENCE),
            contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError),
        ):
            while True:
                assert not await stream.receive(), "the server answered a silent client"
        return anyio.current_time() - start


#: The first bytes of a TLS ClientHello record, and no more.
PARTIAL_CLIENT_HELLO = bytes.fromhex("160301020001")


@pytest.mark.parametrize("data", [b"", PARTIAL_CLIENT_HELLO], ids=["silent", "halfway"])
async def test_a_handshake_not_finished_in_time_is_dropped(
    data: bytes, server_tls_config: ServerTLSConfig, networking: NetworkingFactory
) -> None:
    handled: list[ByteStream] = []
    async with tls_server(server_tls_config, handled, networking) as address:
        took = await seconds_until_closed(address, data)
    assert TIMEOUT * 0.9 <= took < PATIENCE
    assert handled == []


async def test_a_handshake_in_time_is_served(
    server_tls_config: ServerTLSConfig, tls_files: TLSFiles, networking: NetworkingFactory
) -> None:
    handled: list[ByteStream] = []
    async with tls_server(server_tls_config, handled, networking) as address:
        context = ssl.create_default_context(cafile=tls_files.ca_file)
        tcp = await anyio.connect_tcp(*address)
        async with await TLSStream.wrap(
            tcp, hostname="localhost", ssl_context=context, standard_compatible=False
        ) as stream:
            await anyio.sleep(TIMEOUT * 2)  # past the handshake timeout: it no longer applies
            await stream.send(b"ping")
            with anyio.fail_after(PATIENCE):
                assert await stream.receive() == b"ping"
    assert len(handled) == 1


def test_the_default_and_bad_values() -> None:
    assert TLS_HANDSHAKE_TIMEOUT == 30.0
    SystemNetworking(tls_handshake_timeout=None)  # no limit
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="tls_handshake_timeout"):
            SystemNetworking(tls_handshake_timeout=bad)
