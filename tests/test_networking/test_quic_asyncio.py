"""The QUIC listener's socket on asyncio's own datagram transport (AsyncioUDPSocket).

On asyncio and uvloop, SystemNetworking's QUIC listener reads the event
loop's datagram transport and routes each datagram for a known
connection as it comes: its serve loop sees only those that may open a
connection. The listener's behaviour on every path is in test_quic.py
and test_quic_retry.py; here what is particular to this socket.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute

from hface.common import DatagramType
from hface.errors import TransportError
from hface.networking import QUICListener, QUICStream
from hface.networking._asyncio_quic import UDP_QUEUE_SIZE, AsyncioUDPSocket, bind_udp
from tests.helpers.network import NetworkingFactory
from tests.test_networking.test_quic import (
    CID_LENGTH,
    VERSIONS,
    client_initial,
    short_header_packet,
    sync_with_listener,
)

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.anyio


@pytest.fixture
def on_asyncio(stream_path: tuple[Any, bool]) -> None:
    if stream_path[0] == "trio":
        pytest.skip("AsyncioUDPSocket is asyncio's")


async def test_known_connections_bypass_the_serve_loop(
    networking: NetworkingFactory, stream_path: tuple[Any, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On asyncio's transport, datagrams for a known connection never reach serve()'s receive."""
    seen_by_serve: list[bytes] = []
    original = AsyncioUDPSocket.receive

    async def receive(self: AsyncioUDPSocket) -> DatagramType:
        datagram = await original(self)
        seen_by_serve.append(datagram[0])
        return datagram

    monkeypatch.setattr(AsyncioUDPSocket, "receive", receive)
    streams, new_streams = anyio.create_memory_object_stream[QUICStream](1)
    done = anyio.Event()

    async def handler(stream: QUICStream) -> None:
        await streams.send(stream)
        await done.wait()

    cid = os.urandom(CID_LENGTH)
    listener = await networking().listen_quic(
        ("127.0.0.1", 0), quic_connection_id_length=CID_LENGTH, quic_supported_versions=VERSIONS
    )
    address = ("127.0.0.1", listener.extra(SocketAttribute.local_port))
    with anyio.fail_after(10):
        async with (
            streams,
            new_streams,
            await anyio.create_udp_socket(local_host="127.0.0.1") as client_socket,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(listener.serve, handler)
            _, initial = client_initial(address)
            await client_socket.send((initial, address))
            stream = await new_streams.receive()
            assert (await stream.receive())[0] == initial
            stream.update_connection_ids([cid])
            packets = [short_header_packet(cid) for _ in range(20)]
            for packet in packets:
                await client_socket.send((packet, address))
            assert [(await stream.receive())[0] for _ in packets] == packets
            await sync_with_listener(client_socket, address)
            done.set()
            await listener.aclose()
    native = stream_path[0] != "trio" and stream_path[1]
    if native:
        assert initial in seen_by_serve
        assert not set(packets) & set(seen_by_serve)
    else:
        assert seen_by_serve == []  # anyio's socket


async def test_a_lost_transport_fails_serve_and_sends(on_asyncio: None) -> None:
    """The transport lost under the listener: serve() raises TransportError, sends fail."""
    socket = await bind_udp("127.0.0.1", 0)
    listener = QUICListener(socket, connection_id_length=CID_LENGTH, supported_versions=VERSIONS)
    address = ("127.0.0.1", listener.extra(SocketAttribute.local_port))
    streams, new_streams = anyio.create_memory_object_stream[QUICStream](1)

    failures: list[BaseException] = []

    async def handler(stream: QUICStream) -> None:
        await streams.send(stream)
        await anyio.sleep_forever()

    async def serve() -> None:
        try:
            await listener.serve(handler)
        except Exception as error:  # in the groups of serve()'s task groups
            failure: BaseException = error
            while isinstance(failure, BaseExceptionGroup) and len(failure.exceptions) == 1:
                failure = failure.exceptions[0]
            failures.append(failure)

    lost = OSError(errno.EIO, "I/O error")
    with anyio.fail_after(10):
        async with (
            streams,
            new_streams,
            await anyio.create_udp_socket(local_host="127.0.0.1") as client_socket,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(serve)
            _, initial = client_initial(address)
            await client_socket.send((initial, address))
            stream = await new_streams.receive()
            socket.connection_lost(lost)
            with pytest.raises(anyio.BrokenResourceError) as send_failed:
                await stream.send((b"x", address))
            assert send_failed.value.__cause__ is lost
    await listener.aclose()
    [failure] = failures
    assert isinstance(failure, TransportError)
    assert isinstance(failure.__cause__, anyio.BrokenResourceError)
    assert failure.__cause__.__cause__ is lost


async def test_routing_declined_datagrams_queue_in_order(on_asyncio: None) -> None:
    """Before a router, and when it declines, datagrams wait for receive(): bounded, in order."""
    async with await bind_udp("127.0.0.1", 0) as socket:
        port = socket.extra(SocketAttribute.local_port)
        assert socket.extra(SocketAttribute.local_address) == ("127.0.0.1", port)
        assert port != 0
        address = ("127.0.0.1", port)
        with anyio.fail_after(5):
            async with await anyio.create_udp_socket(local_host="127.0.0.1") as peer:
                peer_address = peer.extra(SocketAttribute.local_address)
                await peer.send((b"before", address))
                assert await socket.receive() == (b"before", peer_address)
                taken: list[bytes] = []

                def router(data: bytes, sender: object) -> bool:
                    if data.startswith(b"mine"):
                        taken.append(data)
                        return True
                    return False

                socket.route_with(router)
                for data in (b"mine 1", b"yours 1", b"mine 2", b"yours 2"):
                    await peer.send((data, address))
                assert await socket.receive() == (b"yours 1", peer_address)
                assert await socket.receive() == (b"yours 2", peer_address)
                assert taken == [b"mine 1", b"mine 2"]
                socket.route_with(lambda data, sender: False)
                for number in range(UDP_QUEUE_SIZE + 10):  # all queued before receive()
                    socket.datagram_received(b"%d" % number, peer_address)
                received = [socket._datagrams.popleft()[0] for _ in range(len(socket._datagrams))]
                assert received == [b"%d" % number for number in range(UDP_QUEUE_SIZE)]


async def test_senders_wait_while_writing_is_paused(on_asyncio: None) -> None:
    """Sends wait while the transport is above its high-water mark; aclose() ends the wait."""
    async with await bind_udp("127.0.0.1", 0) as socket:
        target = ("127.0.0.1", socket.extra(SocketAttribute.local_port))
        socket.error_received(OSError(errno.EHOSTUNREACH, "one peer's error"))  # ignored
        await socket.send((b"at once", target))
        socket.pause_writing()
        sent: list[str] = []

        async def send(name: str) -> None:
            await socket.send((name.encode(), target))
            sent.append(name)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send, "a")
                tg.start_soon(send, "b")
                await anyio.sleep(0.05)
                assert sent == []
                socket.resume_writing()
            assert sorted(sent) == ["a", "b"]
            socket.pause_writing()
            async with anyio.create_task_group() as tg:

                async def send_then_closed() -> None:
                    with pytest.raises(anyio.ClosedResourceError):
                        await socket.send((b"discarded", target))

                tg.start_soon(send_then_closed)
                await anyio.sleep(0.05)
                await socket.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await socket.receive()
