"""The QUIC listener's address validation over loopback: Retry, refused tokens, the cap.

Clients are aioquic ``QuicConnection`` objects on UDP sockets of their own,
driven by hand, so that a test can relay a client's packet from another
address, late, or altered. The handlers only keep the streams (no QUIC
server behind them): what is checked is what the listener does with each
new Initial. The end-to-end round trips (hface's client, ngtcp2's) are in
``tests/test_connections``.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import pytest
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicProtocolVersion
from anyio.abc import SocketAttribute, UDPSocket

from hface.common import AddressType
from hface.networking import QUICAttribute, QUICHandshakeLimits, QUICListener, QUICRetry, QUICStream
from hface.protocols.http3 import sniff_quic_packet

pytestmark = pytest.mark.anyio

VERSIONS = (QuicProtocolVersion.VERSION_1,)
INVALID_TOKEN = 0x0B
#: The first bytes of every connection ID the listener's generator makes.
PREFIX = b"\xc1\xd0"


def generator() -> bytes:
    return PREFIX + os.urandom(6)


class Server:
    """A listener serving on loopback, and the streams its handler was given."""

    def __init__(self, listener: QUICListener, address: AddressType) -> None:
        self.listener = listener
        self.address = address
        self.streams: list[QUICStream] = []
        self.release = anyio.Event()
        self._new, self._handled = anyio.create_memory_object_stream[QUICStream](100)

    async def handle(self, stream: QUICStream) -> None:
        self.streams.append(stream)
        with suppress(anyio.ClosedResourceError):
            self._new.send_nowait(stream)
        await self.release.wait()

    def close(self) -> None:
        self._new.close()
        self._handled.close()

    async def next_stream(self) -> QUICStream:
        """The next stream handed to the handler (within 3 seconds)."""
        with anyio.fail_after(3):
            return await self._handled.receive()


@asynccontextmanager
async def serving(**limits: Any) -> AsyncIterator[Server]:
    socket = await anyio.create_udp_socket(local_host="127.0.0.1")
    listener = QUICListener(
        socket,
        connection_id_length=8,
        supported_versions=VERSIONS,
        handshake_limits=QUICHandshakeLimits(**limits),
        connection_id_generator=generator,
    )
    server = Server(listener, ("127.0.0.1", listener.extra(SocketAttribute.local_port)))
    with anyio.fail_after(15):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(listener.serve, server.handle)
            try:
                yield server
            finally:
                server.release.set()
                server.close()
                await listener.aclose()


class Client:
    """An aioquic client on a UDP socket of its own, driven by hand."""

    def __init__(self, socket: UDPSocket, server: AddressType, token: bytes = b"") -> None:
        configuration = QuicConfiguration(
            is_client=True, alpn_protocols=["h3"], server_name="localhost", token=token
        )
        self.socket = socket
        self.server = server
        self.quic = QuicConnection(configuration=configuration)
        self.quic.connect(server, now=time.monotonic())

    def datagrams(self) -> list[bytes]:
        return [data for data, _ in self.quic.datagrams_to_send(now=time.monotonic())]

    async def send(self, datagrams: list[bytes], socket: UDPSocket | None = None) -> None:
        for data in datagrams:
            await (socket or self.socket).send((data, self.server))

    async def receive(self, socket: UDPSocket | None = None, *, wait: float = 3.0) -> bytes | None:
        """The next datagram from the server, or None if none comes within ``wait`` seconds."""
        with anyio.move_on_after(wait):
            data, _ = await (socket or self.socket).receive()
            return data
        return None

    def take(self, data: bytes) -> None:
        self.quic.receive_datagram(data, self.server, now=time.monotonic())

    def closed_with(self) -> int | None:
        self.quic.handle_timer(now=time.monotonic() + 60)  # past the draining period
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, quic_events.ConnectionTerminated):
                return event.error_code
        return None


@asynccontextmanager
async def client(server: Server, token: bytes = b"") -> AsyncIterator[Client]:
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as socket:
        yield Client(socket, server.address, token)


def packet_type(data: bytes) -> str:
    """The type of a QUIC version 1 long header packet (RFC 9000 §17.2)."""
    assert data[0] & 0x80, "a long header"
    return ("initial", "0-rtt", "handshake", "retry")[(data[0] & 0x30) >> 4]


async def retried(client: Client) -> tuple[bytes, bytes]:
    """Send the client's first Initial, take the Retry; return its first ID and next Initial."""
    [initial] = client.datagrams()
    await client.send([initial])
    answer = await client.receive()
    assert answer is not None
    assert packet_type(answer) == "retry"
    client.take(answer)
    [again] = client.datagrams()
    return sniff_quic_packet(initial, connection_id_length=8).destination_connection_id, again


async def test_a_client_that_follows_the_retry_is_served_validated() -> None:
    async with serving(retry=QUICRetry.ALWAYS) as server, client(server) as raw:
        original, again = await retried(raw)
        info = sniff_quic_packet(again, connection_id_length=8)
        assert info.token
        # The Retry's connection ID is the server's own scheme's (steering finds it).
        assert info.destination_connection_id.startswith(PREFIX)
        await raw.send([again])
        stream = await server.next_stream()
        assert server.streams == [stream]
        assert stream.extra(QUICAttribute.original_destination_connection_id) == original
        assert stream.extra(QUICAttribute.retry_source_connection_id) == (
            info.destination_connection_id
        )
        assert (await stream.receive())[0] == again
        assert server.listener.half_open_handshakes == 1
        stream.mark_handshake_complete()
        assert server.listener.half_open_handshakes == 0


async def _relay_from_another_port(raw: Client, again: bytes) -> bytes | None:
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as elsewhere:
        await raw.send([again], elsewhere)
        return await raw.receive(elsewhere)


async def _relay_late(raw: Client, again: bytes) -> bytes | None:
    await anyio.sleep(0.5)  # the token lives 0.2 s
    await raw.send([again])
    return await raw.receive()


async def _relay_altered(raw: Client, again: bytes) -> bytes | None:
    info = sniff_quic_packet(again, connection_id_length=8)
    at = again.index(info.token) + len(info.token) - 1
    forged = again[:at] + bytes([again[at] ^ 1]) + again[at + 1 :]  # the tag's last byte
    await raw.send([forged])
    return await raw.receive()


@pytest.mark.parametrize(
    "relay",
    [_relay_from_another_port, _relay_late, _relay_altered],
    ids=["wrong-address", "expired", "forged"],
)
async def test_an_invalid_token_is_refused_with_invalid_token(relay: Any) -> None:
    """RFC 9000 §8.1.2: no connection, and a close the client can read at once."""
    async with (
        serving(retry=QUICRetry.ALWAYS, retry_token_lifetime=0.2) as server,
        client(server) as raw,
    ):
        _, again = await retried(raw)
        answer = await relay(raw, again)
        assert answer is not None
        assert packet_type(answer) == "initial"
        raw.take(answer)
        assert raw.closed_with() == INVALID_TOKEN
        assert server.streams == []
        assert server.listener.half_open_handshakes == 0


async def test_a_token_not_of_ours_leaves_the_client_unvalidated() -> None:
    """RFC 9000 §8.1.3: a NEW_TOKEN of another server gets a Retry, not a refusal."""
    async with (
        serving(retry=QUICRetry.ALWAYS) as server,
        client(server, token=b"someone else's token") as raw,
    ):
        await raw.send(raw.datagrams())
        answer = await raw.receive()
        assert answer is not None
        assert packet_type(answer) == "retry"


async def test_auto_switches_to_retry_at_the_threshold() -> None:
    async with serving(retry_threshold=3) as server:
        for _ in range(3):
            async with client(server) as raw:
                await raw.send(raw.datagrams())
            await server.next_stream()
        assert server.listener.half_open_handshakes == 3
        for stream in server.streams:
            assert stream.extra(QUICAttribute.original_destination_connection_id, None) is None
        async with client(server) as raw:
            await raw.send(raw.datagrams())
            answer = await raw.receive()
            assert answer is not None
            assert packet_type(answer) == "retry"
        assert len(server.streams) == 3


async def test_below_the_threshold_connections_open_at_once() -> None:
    async with serving(retry_threshold=3) as server:
        for _ in range(6):
            async with client(server) as raw:
                await raw.send(raw.datagrams())
            stream = await server.next_stream()
            assert server.listener.half_open_handshakes == 1
            stream.mark_handshake_complete()  # completed: no longer half-open
        assert server.listener.half_open_handshakes == 0


async def test_the_cap_drops_new_connections_without_retry() -> None:
    async with serving(retry=QUICRetry.NEVER, retry_threshold=2, max_half_open=3) as server:
        for _ in range(3):
            async with client(server) as raw:
                await raw.send(raw.datagrams())
            await server.next_stream()
        async with client(server) as raw:
            await raw.send(raw.datagrams())
            assert await raw.receive(wait=0.5) is None  # not a word
        assert len(server.streams) == 3
        assert server.listener.half_open_handshakes == 3
        # A handshake that ends (here: its stream closes) frees its place.
        await server.streams[0].aclose()
        assert server.listener.half_open_handshakes == 2
        async with client(server) as raw:
            await raw.send(raw.datagrams())
        await server.next_stream()
