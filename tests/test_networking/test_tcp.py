"""TCP listeners and connections of SystemNetworking, on real loopback sockets."""

from __future__ import annotations

import socket

import anyio
import pytest
from anyio.abc import SocketAttribute

from hface.errors import TransportError
from hface.networking import ByteStream, SystemNetworking
from tests.helpers.network import LOOPBACK_HOSTS

pytestmark = pytest.mark.anyio


async def echo(stream: ByteStream) -> None:
    """Send back whatever arrives, until the peer closes."""
    async with stream:
        try:
            while True:
                await stream.send(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_echo(host: str) -> None:
    networking = SystemNetworking()
    listener = await networking.listen_tcp((host, 0))
    port = listener.extra(SocketAttribute.local_port)
    assert port != 0
    assert listener.extra(SocketAttribute.local_address) == (host, port)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            async with await networking.connect_tcp((host, port)) as stream:
                assert stream.extra(SocketAttribute.remote_address) == (host, port)
                await stream.send(b"hello")
                assert await stream.receive() == b"hello"
            await listener.aclose()


async def test_aclose_ends_serve_and_leaves_handlers_running() -> None:
    networking = SystemNetworking()
    listener = await networking.listen_tcp(("127.0.0.1", 0))
    address = ("127.0.0.1", listener.extra(SocketAttribute.local_port))
    served = False

    async def serve() -> None:
        nonlocal served
        await listener.serve(echo)
        served = True

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            async with await networking.connect_tcp(address) as stream:
                await stream.send(b"before")
                assert await stream.receive() == b"before"
                await listener.aclose()
                # The accepted connection outlives the listener...
                await stream.send(b"after")
                assert await stream.receive() == b"after"
                # ...but nothing new is accepted.
                with pytest.raises(TransportError):
                    await networking.connect_tcp(address)
                assert not served  # serve() waits for its handlers
        assert served


async def test_serve_with_external_task_group() -> None:
    networking = SystemNetworking()
    listener = await networking.listen_tcp(("localhost", 0))
    port = listener.extra(SocketAttribute.local_port)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo, tg)
            async with await networking.connect_tcp(("localhost", port)) as stream:
                await stream.send(b"x")
                assert await stream.receive() == b"x"
            await listener.aclose()


async def test_connection_refused() -> None:
    # A bound socket that does not listen refuses connections.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        message = rf"cannot connect to 127\.0\.0\.1:{port}: "
        with pytest.raises(TransportError, match=message) as info:
            await SystemNetworking().connect_tcp(("127.0.0.1", port))
    assert isinstance(info.value.__cause__, OSError)


async def test_listen_on_taken_port() -> None:
    networking = SystemNetworking()
    async with await networking.listen_tcp(("127.0.0.1", 0)) as listener:
        port = listener.extra(SocketAttribute.local_port)
        with pytest.raises(TransportError, match=rf"cannot listen on 127\.0\.0\.1:{port}: "):
            await networking.listen_tcp(("127.0.0.1", port))
