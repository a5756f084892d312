"""A peer that vanishes ends the connection in ConnectionTerminated, never a hang."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig
from hface.connections import HTTPConnection, HTTPOverQUICOpener, HTTPOverTCPOpener
from hface.errors import TransportError
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived
from hface.protocols.http1 import HTTP1ClientFactory
from hface.protocols.http2 import HTTP2ClientFactory
from hface.protocols.http3 import HTTP3ClientFactory

from .conftest import serving

pytestmark = pytest.mark.anyio

REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]


async def _reset_after_first_bytes(stream: SocketStream) -> None:
    """Read what the client sends (preface and request), then abort with a TCP RST."""
    await stream.receive()
    with anyio.move_on_after(0.3):
        while True:
            await stream.receive()
    raw = stream.extra(SocketAttribute.raw_socket)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


@pytest.mark.parametrize("factory", [HTTP1ClientFactory, HTTP2ClientFactory])
async def test_tcp_reset_ends_the_connection(factory: type[HTTP1ClientFactory]) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, _reset_after_first_bytes)
        opener = HTTPOverTCPOpener(factory())
        with anyio.fail_after(5):
            async with await opener(("127.0.0.1", port)) as connection:
                stream_id = connection.get_available_stream_id()
                await connection.send_headers(stream_id, REQUEST, end_stream=True)
                event = await _last_event(connection)
        task_group.cancel_scope.cancel()
    assert isinstance(event, ConnectionTerminated)
    assert event.error_code != 0


async def _last_event(connection: HTTPConnection) -> ConnectionTerminated:
    while not isinstance(event := await connection.receive_event(), ConnectionTerminated):
        pass
    return event


@asynccontextmanager
async def udp_relay(target: AddressType) -> AsyncIterator[tuple[AddressType, anyio.Event]]:
    """Forward datagrams to ``target`` and back until the yielded event is set."""
    silent = anyio.Event()
    front = await anyio.create_udp_socket(local_host="127.0.0.1")
    back = await anyio.create_connected_udp_socket(target[0], target[1])
    client: list[AddressType] = []

    async def forward() -> None:
        async for data, address in front:
            client[:] = [address]
            if not silent.is_set():
                await back.send(data)

    async def backward() -> None:
        async for data in back:
            if client and not silent.is_set():
                await front.sendto(data, *client[0])

    async with front, back, anyio.create_task_group() as task_group:
        task_group.start_soon(forward)
        task_group.start_soon(backward)
        yield ("127.0.0.1", front.extra(SocketAttribute.local_port)), silent
        task_group.cancel_scope.cancel()


async def _answer(connection: HTTPConnection) -> None:
    while not isinstance(event := await connection.receive_event(), ConnectionTerminated):
        if isinstance(event, HeadersReceived):
            await connection.send_headers(event.stream_id, [(b":status", b"200")])
            await connection.send_data(event.stream_id, b"ok", end_stream=True)


async def test_a_silent_quic_peer_times_out(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with serving("3", server_tls_config, _answer) as address:
        async with udp_relay(address) as (relay_address, silent):
            opener = HTTPOverQUICOpener(
                HTTP3ClientFactory(idle_timeout=1.0), tls_config=client_tls_config
            )
            async with await opener(relay_address, server_name="localhost") as connection:
                stream_id = connection.get_available_stream_id()
                await connection.send_headers(stream_id, REQUEST, end_stream=True)
                while not (
                    isinstance(event := await connection.receive_event(), DataReceived)
                    and event.end_stream
                ):
                    pass
                # The server is still there, but nothing reaches it any more.
                silent.set()
                stream_id = connection.get_available_stream_id()
                await connection.send_headers(stream_id, REQUEST, end_stream=True)
                with anyio.fail_after(5):
                    event = await _last_event(connection)
                assert "idle timeout" in (event.message or "")


async def test_a_quic_server_that_never_answers_fails_the_open(
    client_tls_config: ClientTLSConfig,
) -> None:
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as black_hole:
        port = black_hole.extra(SocketAttribute.local_port)
        opener = HTTPOverQUICOpener(
            HTTP3ClientFactory(idle_timeout=1.0), tls_config=client_tls_config
        )
        connection = await opener(("127.0.0.1", port), server_name="localhost")
        with anyio.fail_after(5), pytest.raises(TransportError, match="handshake"):
            async with connection:
                pass
