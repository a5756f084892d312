"""Connected UDP sockets of SystemNetworking, on real loopback sockets.

Run on every stream path (see conftest.py): on asyncio and uvloop the
socket is the event loop's own datagram transport, on Trio anyio's socket.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute, UDPSocket

from hface.networking import NowaitDatagramStream
from tests.helpers.network import LOOPBACK_HOSTS, NetworkingFactory

pytestmark = pytest.mark.anyio


async def echo(socket: UDPSocket) -> None:
    async for data, address in socket:
        await socket.send((data.upper(), address))


def unbound_udp_port(host: str) -> int:
    """A UDP port of ``host`` where nothing listens (just released by the kernel)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as udp:
        udp.bind((host, 0))
        port: int = udp.getsockname()[1]
    return port


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_echo(host: str, networking: NetworkingFactory) -> None:
    with anyio.fail_after(5):
        async with (
            await anyio.create_udp_socket(local_host=host) as server,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(echo, server)
            server_address = (host, server.extra(SocketAttribute.local_port))
            async with await networking().connect_udp(server_address) as stream:
                assert stream.extra(SocketAttribute.remote_address) == server_address
                assert stream.extra(SocketAttribute.local_address)[0] == host
                await stream.send((b"ping", server_address))
                assert await stream.receive() == (b"PING", server_address)
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_port_unreachable_ends_receive_at_once(
    host: str, networking: NetworkingFactory
) -> None:
    """The kernel's ICMP port unreachable wakes a waiting receive(), which raises."""
    address = (host, unbound_udp_port(host))
    with anyio.fail_after(2):  # not a timeout of ours: the kernel answers at once
        async with await networking().connect_udp(address) as stream:
            async with anyio.create_task_group() as tg:

                async def send_later() -> None:
                    await anyio.sleep(0.05)  # the receiver waits first
                    await stream.send((b"anyone?", address))

                tg.start_soon(send_later)
                with pytest.raises(anyio.BrokenResourceError) as caught:
                    await stream.receive()
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


async def test_a_burst_is_not_dropped(networking: NetworkingFactory) -> None:
    """1000 datagrams sent before the reader reads all arrive (anyio's asyncio socket kept 100)."""
    count = 1000
    with anyio.fail_after(10):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as server:
            server_address = ("127.0.0.1", server.extra(SocketAttribute.local_port))
            async with await networking().connect_udp(server_address) as stream:
                await stream.send((b"hello", server_address))
                _, client_address = await server.receive()
                for number in range(count):
                    await server.send((number.to_bytes(4, "big") * 100, client_address))
                await anyio.sleep(0.2)  # all of them reach the client's socket meanwhile
                received = [int.from_bytes((await stream.receive())[0][:4], "big")]
                while len(received) < count:
                    received.append(int.from_bytes((await stream.receive())[0][:4], "big"))
    assert received == list(range(count))


async def test_closed_stream(networking: NetworkingFactory) -> None:
    address = ("127.0.0.1", unbound_udp_port("127.0.0.1"))
    stream = await networking().connect_udp(address)
    await stream.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await stream.receive()
    with pytest.raises(anyio.ClosedResourceError):
        await stream.send((b"x", address))


async def test_receive_nowait(networking: NetworkingFactory, stream_path: tuple[Any, bool]) -> None:
    """On asyncio the socket hands over a datagram it holds without an await."""
    with anyio.fail_after(5):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as server:
            server_address = ("127.0.0.1", server.extra(SocketAttribute.local_port))
            async with await networking().connect_udp(server_address) as stream:
                if stream_path[0] == "trio":  # anyio's socket
                    assert not isinstance(stream, NowaitDatagramStream)
                    return
                assert isinstance(stream, NowaitDatagramStream)
                assert stream.receive_nowait() is None
                await stream.send((b"hello", server_address))
                _, client_address = await server.receive()
                await server.send((b"one", client_address))
                for _ in range(200):  # until the transport has read it
                    datagram = stream.receive_nowait()
                    if datagram is not None:
                        break
                    await anyio.sleep(0.01)
                assert datagram == (b"one", server_address)
                assert stream.receive_nowait() is None
