"""The QUIC listener: routing by connection ID, new connections, version negotiation.

Clients are aioquic ``QuicConnection`` objects on plain UDP sockets, so the
listener sees genuine Initial packets; one test runs a whole handshake
against an aioquic server connection living in the listener's handler.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicProtocolVersion
from anyio.abc import Listener, SocketAttribute, UDPSocket

from hface.common import AddressType, DatagramType
from hface.networking import NowaitDatagramStream, QUICListener, QUICStream, SystemNetworking
from hface.protocols.http3 import sniff_quic_packet
from tests.helpers.certs import TLSFiles
from tests.helpers.network import LOOPBACK_HOSTS

pytestmark = pytest.mark.anyio

CID_LENGTH = 8
VERSIONS = (QuicProtocolVersion.VERSION_1,)
Handler = Callable[[QUICStream], Coroutine[Any, Any, None]]


def client_initial(
    server_address: AddressType, *, cafile: str | None = None
) -> tuple[QuicConnection, bytes]:
    """A fresh aioquic client and the first datagram it sends (a genuine Initial)."""
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=["h3"], server_name="localhost"
    )
    if cafile is not None:
        configuration.load_verify_locations(cafile)
    client = QuicConnection(configuration=configuration)
    client.connect(server_address, now=time.monotonic())
    datagrams = client.datagrams_to_send(now=time.monotonic())
    return client, datagrams[0][0]


def unknown_version_packet(*, dcid: bytes, scid: bytes, size: int = 1200) -> bytes:
    """A long header packet of a version nobody supports (a reserved one, RFC 9000 §15)."""
    header = bytes([0xC0]) + (0x1A2A3A4A).to_bytes(4, "big")
    header += bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    return header + bytes(size - len(header))


def parse_version_negotiation(data: bytes) -> tuple[bytes, bytes, list[int]]:
    """Destination and source connection IDs and versions of a VN packet (RFC 9000 §17.2.1)."""
    assert data[0] & 0x80
    assert data[1:5] == bytes(4)  # version 0: Version Negotiation
    dcid_end = 6 + data[5]
    dcid = data[6:dcid_end]
    scid = data[dcid_end + 1 : dcid_end + 1 + data[dcid_end]]
    rest = data[dcid_end + 1 + len(scid) :]
    versions = [int.from_bytes(rest[i : i + 4], "big") for i in range(0, len(rest), 4)]
    return dcid, scid, versions


def short_header_packet(dcid: bytes) -> bytes:
    return bytes([0x40]) + dcid + os.urandom(32)


@asynccontextmanager
async def quic_server(
    handler: Handler, *, host: str = "127.0.0.1", queue_size: int | None = None
) -> AsyncIterator[tuple[Listener[QUICStream], AddressType, UDPSocket]]:
    """Serve QUIC for the block; yield the listener, its address and a client socket."""
    listener: Listener[QUICStream]
    if queue_size is None:
        listener = await SystemNetworking().listen_quic(
            (host, 0), quic_connection_id_length=CID_LENGTH, quic_supported_versions=VERSIONS
        )
    else:
        socket = await anyio.create_udp_socket(local_host=host)
        listener = QUICListener(
            socket,
            connection_id_length=CID_LENGTH,
            supported_versions=VERSIONS,
            receive_queue_size=queue_size,
        )
    port = listener.extra(SocketAttribute.local_port)
    assert port != 0
    assert listener.extra(SocketAttribute.local_address) == (host, port)
    with anyio.fail_after(10):
        async with (
            await anyio.create_udp_socket(local_host=host) as client_socket,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(listener.serve, handler)
            yield listener, (host, port), client_socket
            await listener.aclose()


async def sync_with_listener(client_socket: UDPSocket, server_address: AddressType) -> None:
    """Return once the listener has handled every datagram sent before.

    Sends a packet that gets a Version Negotiation answer and waits for the
    answer; loopback keeps the order of datagrams.
    """
    marker = os.urandom(8)
    probe = unknown_version_packet(dcid=os.urandom(8), scid=marker)
    await client_socket.send((probe, server_address))
    while True:
        data, _ = await client_socket.receive()
        if parse_version_negotiation(data)[0] == marker:
            return


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_new_connection(host: str) -> None:
    send, receive = anyio.create_memory_object_stream[tuple[DatagramType, object]](1)

    async def handler(stream: QUICStream) -> None:
        async with send:
            await send.send((await stream.receive(), stream.extra(SocketAttribute.remote_address)))

    async with quic_server(handler, host=host) as (_, server_address, client_socket):
        _, initial = client_initial(server_address)
        await client_socket.send((initial, server_address))
        async with receive:
            (data, address), remote_address = await receive.receive()
        client_address = client_socket.extra(SocketAttribute.local_address)
        assert data == initial
        assert address == remote_address == client_address


async def test_handshake_with_aioquic(tls_files: TLSFiles) -> None:
    """A whole QUIC handshake and a stream echo: routing follows the server's connection IDs."""

    async def handler(stream: QUICStream) -> None:
        configuration = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
        configuration.load_cert_chain(tls_files.server_cert_file, tls_files.server_key_file)
        first, address = await stream.receive()
        server = QuicConnection(
            configuration=configuration,
            original_destination_connection_id=sniff_quic_packet(
                first, connection_id_length=CID_LENGTH
            ).destination_connection_id,
        )
        server.receive_datagram(first, address, now=time.monotonic())
        connection_ids: set[bytes] = set()
        while True:
            with anyio.move_on_after(_timeout(server)):
                try:
                    data, address = await stream.receive()
                except anyio.EndOfStream:  # the listener closed
                    return
                server.receive_datagram(data, address, now=time.monotonic())
            timer = server.get_timer()
            if timer is not None and timer <= time.monotonic():
                server.handle_timer(now=time.monotonic())
            while (event := server.next_event()) is not None:
                if isinstance(event, events.ConnectionIdIssued):
                    connection_ids.add(event.connection_id)
                elif isinstance(event, events.ConnectionIdRetired):
                    connection_ids.discard(event.connection_id)
                elif isinstance(event, events.StreamDataReceived):
                    server.send_stream_data(event.stream_id, event.data.upper(), end_stream=True)
                elif isinstance(event, events.ConnectionTerminated):
                    return
            stream.update_connection_ids([server.host_cid, *connection_ids])
            for datagram in server.datagrams_to_send(now=time.monotonic()):
                try:
                    await stream.send(datagram)
                except anyio.BrokenResourceError:  # the listener closed
                    return

    async with quic_server(handler) as (_, server_address, client_socket):
        client, initial = client_initial(server_address, cafile=tls_files.ca_file)
        await client_socket.send((initial, server_address))
        echoed = b""
        finished = False
        while not finished:
            for datagram in client.datagrams_to_send(now=time.monotonic()):
                await client_socket.send(datagram)
            with anyio.move_on_after(_timeout(client)):
                data, address = await client_socket.receive()
                client.receive_datagram(data, address, now=time.monotonic())
            timer = client.get_timer()
            if timer is not None and timer <= time.monotonic():
                client.handle_timer(now=time.monotonic())
            while (event := client.next_event()) is not None:
                if isinstance(event, events.HandshakeCompleted):
                    client.send_stream_data(0, b"hello over quic", end_stream=True)
                elif isinstance(event, events.StreamDataReceived):
                    echoed += event.data
                    if event.end_stream:
                        client.close()
            if client._close_pending or echoed.endswith(b"QUIC"):
                for datagram in client.datagrams_to_send(now=time.monotonic()):
                    await client_socket.send(datagram)
                break
        assert echoed == b"HELLO OVER QUIC"


def _timeout(connection: QuicConnection) -> float:
    timer = connection.get_timer()
    return 0.5 if timer is None else max(0.0, timer - time.monotonic())


async def test_version_negotiation() -> None:
    async def handler(stream: QUICStream) -> None:
        pytest.fail("no connection should be made")

    async with quic_server(handler) as (_, server_address, client_socket):
        dcid, scid = os.urandom(8), os.urandom(5)
        # Too small to deserve an answer (RFC 9000 §14.1), then large enough.
        small = unknown_version_packet(dcid=dcid, scid=b"small", size=100)
        await client_socket.send((small, server_address))
        await client_socket.send((unknown_version_packet(dcid=dcid, scid=scid), server_address))
        data, address = await client_socket.receive()
        assert address == server_address
        assert parse_version_negotiation(data) == (scid, dcid, list(VERSIONS))


async def test_unknown_short_header_and_garbage_are_dropped() -> None:
    async def handler(stream: QUICStream) -> None:
        pytest.fail("no connection should be made")

    async with quic_server(handler) as (_, server_address, client_socket):
        await client_socket.send((short_header_packet(os.urandom(CID_LENGTH)), server_address))
        await client_socket.send((b"", server_address))
        await client_socket.send((b"\xc0\x00", server_address))
        _, initial = client_initial(server_address)
        await client_socket.send((initial[:1000], server_address))  # an Initial under 1200 bytes
        await sync_with_listener(client_socket, server_address)


async def test_bounded_queue() -> None:
    send, receive = anyio.create_memory_object_stream[QUICStream](1)
    done = anyio.Event()

    async def handler(stream: QUICStream) -> None:
        async with send:
            await send.send(stream)
        await done.wait()

    async with quic_server(handler, queue_size=4) as (_, server_address, client_socket):
        _, initial = client_initial(server_address)
        for _ in range(10):
            await client_socket.send((initial, server_address))
        await sync_with_listener(client_socket, server_address)
        async with receive:
            stream = await receive.receive()
        received = 0
        with anyio.move_on_after(0.2):
            while True:
                await stream.receive()
                received += 1
        assert received == 4
        done.set()


async def test_update_connection_ids_and_close() -> None:
    streams = anyio.create_memory_object_stream[QUICStream](10)
    done = anyio.Event()

    async def handler(stream: QUICStream) -> None:
        await streams[0].send(stream)
        await done.wait()

    cid_a, cid_b = b"A" * CID_LENGTH, b"B" * CID_LENGTH
    async with quic_server(handler) as (_, server_address, client_socket):
        _, initial = client_initial(server_address)
        await client_socket.send((initial, server_address))
        stream = await streams[1].receive()
        assert (await stream.receive())[0] == initial

        stream.update_connection_ids([cid_a])
        await client_socket.send((short_header_packet(cid_a), server_address))
        assert (await stream.receive())[0][1:9] == cid_a

        stream.update_connection_ids([cid_b])
        await client_socket.send((short_header_packet(cid_a), server_address))  # dropped
        # The Initial's ID stays routed: a retransmission reaches the same stream.
        await client_socket.send((initial, server_address))
        await client_socket.send((short_header_packet(cid_b), server_address))
        assert (await stream.receive())[0] == initial
        assert (await stream.receive())[0][1:9] == cid_b

        # Closing unregisters every ID: the same Initial now opens a new connection.
        await stream.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await stream.send((b"x", server_address))
        await client_socket.send((initial, server_address))
        second = await streams[1].receive()
        assert (await second.receive())[0] == initial
        second.update_connection_ids([cid_b])  # free again
        await client_socket.send((short_header_packet(cid_b), server_address))
        assert (await second.receive())[0][1:9] == cid_b
        streams[0].close()
        streams[1].close()
        done.set()


async def test_aclose_ends_serve_and_streams() -> None:
    results: list[str] = []

    async def handler(stream: QUICStream) -> None:
        await stream.receive()
        await stream.send((b"reply", stream.extra(SocketAttribute.remote_address)))  # type: ignore[arg-type]
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
        with pytest.raises(anyio.BrokenResourceError):
            await stream.send((b"too late", ("127.0.0.1", 9)))
        results.append("handler done")

    socket = await anyio.create_udp_socket(local_host="127.0.0.1")
    listener = QUICListener(socket, connection_id_length=CID_LENGTH, supported_versions=VERSIONS)
    server_address = ("127.0.0.1", listener.extra(SocketAttribute.local_port))

    async def serve() -> None:
        await listener.serve(handler)
        results.append("serve returned")

    with anyio.fail_after(5):
        async with (
            await anyio.create_udp_socket(local_host="127.0.0.1") as client_socket,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(serve)
            _, initial = client_initial(server_address)
            await client_socket.send((initial, server_address))
            assert (await client_socket.receive())[0] == b"reply"
            await listener.aclose()
    assert results == ["handler done", "serve returned"]


async def test_receive_nowait() -> None:
    """A stream hands over what it holds without an await; None when empty or closed."""
    streams = anyio.create_memory_object_stream[QUICStream](1)
    done = anyio.Event()

    async def handler(stream: QUICStream) -> None:
        await streams[0].send(stream)
        await done.wait()

    async with streams[0], streams[1], quic_server(handler) as (_, server_address, client_socket):
        _, initial = client_initial(server_address)
        await client_socket.send((initial, server_address))
        stream = await streams[1].receive()
        assert isinstance(stream, NowaitDatagramStream)
        await sync_with_listener(client_socket, server_address)
        client_address = client_socket.extra(SocketAttribute.local_address)
        assert stream.receive_nowait() == (initial, client_address)
        assert stream.receive_nowait() is None
        await client_socket.send((initial, server_address))  # routed to the same stream
        await sync_with_listener(client_socket, server_address)
        await stream.aclose()
        assert stream.receive_nowait() is None
        done.set()
