"""TCP listeners and connections of SystemNetworking, on real loopback sockets.

Every test that takes ``networking`` runs over each stream implementation
(see conftest.py): the event loop's transports and anyio's streams.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute

from hface.errors import TransportError
from hface.networking import ByteStream, NowaitByteStream, SystemNetworking
from hface.networking._asyncio_streams import WRITE_HIGH_WATER, AsyncioByteStream
from tests.helpers.network import LOOPBACK_HOSTS, NetworkingFactory

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
async def test_echo(host: str, networking: NetworkingFactory) -> None:
    system = networking()
    listener = await system.listen_tcp((host, 0))
    port = listener.extra(SocketAttribute.local_port)
    assert port != 0
    assert listener.extra(SocketAttribute.local_address) == (host, port)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            async with await system.connect_tcp((host, port)) as stream:
                assert stream.extra(SocketAttribute.remote_address) == (host, port)
                await stream.send(b"hello")
                assert await stream.receive() == b"hello"
            await listener.aclose()


async def test_aclose_ends_serve_and_leaves_handlers_running(networking: NetworkingFactory) -> None:
    system = networking()
    listener = await system.listen_tcp(("127.0.0.1", 0))
    address = ("127.0.0.1", listener.extra(SocketAttribute.local_port))
    served = False

    async def serve() -> None:
        nonlocal served
        await listener.serve(echo)
        served = True

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            async with await system.connect_tcp(address) as stream:
                await stream.send(b"before")
                assert await stream.receive() == b"before"
                await listener.aclose()
                # The accepted connection outlives the listener...
                await stream.send(b"after")
                assert await stream.receive() == b"after"
                # ...but nothing new is accepted.
                with pytest.raises(TransportError):
                    await system.connect_tcp(address)
                assert not served  # serve() waits for its handlers
        assert served


async def test_serve_with_external_task_group(networking: NetworkingFactory) -> None:
    system = networking()
    listener = await system.listen_tcp(("localhost", 0))
    port = listener.extra(SocketAttribute.local_port)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo, tg)
            async with await system.connect_tcp(("localhost", port)) as stream:
                await stream.send(b"x")
                assert await stream.receive() == b"x"
            await listener.aclose()


async def test_connection_refused(networking: NetworkingFactory) -> None:
    # A bound socket that does not listen refuses connections.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        message = rf"cannot connect to 127\.0\.0\.1:{port}: "
        with pytest.raises(TransportError, match=message) as info:
            await networking().connect_tcp(("127.0.0.1", port))
    assert isinstance(info.value.__cause__, OSError)


async def test_listen_on_taken_port(networking: NetworkingFactory) -> None:
    system = networking()
    async with await system.listen_tcp(("127.0.0.1", 0)) as listener:
        port = listener.extra(SocketAttribute.local_port)
        with pytest.raises(TransportError, match=rf"cannot listen on 127\.0\.0\.1:{port}: "):
            await system.listen_tcp(("127.0.0.1", port))


async def read_until_the_end(stream: ByteStream) -> None:
    """Receive until an exception ends the stream."""
    while True:
        await stream.receive()


@asynccontextmanager
async def serving(
    networking: NetworkingFactory, handler: Callable[[ByteStream], Awaitable[None]]
) -> AsyncIterator[tuple[SystemNetworking, tuple[str, int]]]:
    """Serve TCP with ``handler`` on a free port for the duration of the block."""
    system = networking()
    listener = await system.listen_tcp(("127.0.0.1", 0))
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        yield system, ("127.0.0.1", listener.extra(SocketAttribute.local_port))
        await listener.aclose()


async def test_attributes_of_both_ends(networking: NetworkingFactory) -> None:
    seen: list[tuple[object, ...]] = []

    async def report(stream: ByteStream) -> None:
        async with stream:
            seen.append(
                (
                    stream.extra(SocketAttribute.local_address),
                    stream.extra(SocketAttribute.remote_address),
                    stream.extra(SocketAttribute.family),
                )
            )
            await stream.send(b"done")

    with anyio.fail_after(5):
        async with serving(networking, report) as (system, address):
            async with await system.connect_tcp(address) as stream:
                assert await stream.receive() == b"done"
                local = stream.extra(SocketAttribute.local_address)
                assert stream.extra(SocketAttribute.local_port) == local[1]
                assert stream.extra(SocketAttribute.remote_port) == address[1]
                raw = stream.extra(SocketAttribute.raw_socket)
                assert raw.getsockname()[:2] == local
                assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert seen == [(address, local, socket.AF_INET)]


async def test_receive_respects_max_bytes(networking: NetworkingFactory) -> None:
    async def send_100(stream: ByteStream) -> None:
        async with stream:
            await stream.send(bytes(range(100)))
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()

    with anyio.fail_after(5):
        async with serving(networking, send_100) as (system, address):
            async with await system.connect_tcp(address) as stream:
                received = b""
                while len(received) < 100:
                    chunk = await stream.receive(7)
                    assert 0 < len(chunk) <= 7
                    received += chunk
                assert received == bytes(range(100))
                with pytest.raises(ValueError, match="max_bytes"):
                    await stream.receive(0)


async def test_half_close(networking: NetworkingFactory) -> None:
    """send_eof() ends what the peer reads; the other direction stays open."""

    async def count_then_answer(stream: ByteStream) -> None:
        async with stream:
            size = 0
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    size += len(await stream.receive())
            await stream.send(f"{size}".encode())

    with anyio.fail_after(5):
        async with serving(networking, count_then_answer) as (system, address):
            async with await system.connect_tcp(address) as stream:
                await stream.send(b"x" * 300_000)
                await stream.send_eof()
                assert await stream.receive() == b"300000"
                with pytest.raises(anyio.EndOfStream):
                    await stream.receive()


#: Bytes the flow-control test writes: far more than the kernel's socket buffers
#: hold, even autotuned (Linux's tcp_rmem maximum is often 32 MiB).
FLOOD_SIZE = 128 * 1024 * 1024


async def test_a_reader_that_stops_stops_the_writer(networking: NetworkingFactory) -> None:
    """Buffering is bounded: a peer that does not read blocks send(), then it resumes."""
    sent = 0
    done = anyio.Event()

    async def flood(stream: ByteStream) -> None:
        nonlocal sent
        chunk = b"z" * 65536
        async with stream:
            while sent < FLOOD_SIZE:
                await stream.send(chunk)
                sent += len(chunk)
            done.set()

    with anyio.fail_after(20):
        async with serving(networking, flood) as (system, address):
            async with await system.connect_tcp(address) as stream:
                assert await stream.receive(1) == b"z"
                await anyio.sleep(0.3)
                stalled_at = sent
                await anyio.sleep(0.2)
                # Nothing is read: the writer waits, the buffers stopped growing.
                assert not done.is_set()
                assert sent == stalled_at < FLOOD_SIZE // 2
                received = 1
                with contextlib.suppress(anyio.EndOfStream):
                    while True:
                        data = await stream.receive()
                        received += len(data)
                        assert data.count(b"z") == len(data)
                assert received == FLOOD_SIZE
                await done.wait()


async def test_a_reset_breaks_the_stream(networking: NetworkingFactory) -> None:
    async def reset(stream: ByteStream) -> None:
        await stream.receive()
        raw = stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    with anyio.fail_after(5):
        async with serving(networking, reset) as (system, address):
            async with await system.connect_tcp(address) as stream:
                await stream.send(b"hello")
                with pytest.raises(anyio.BrokenResourceError):
                    await read_until_the_end(stream)
                with pytest.raises(anyio.BrokenResourceError):
                    await stream.send(b"more")


async def test_a_closed_stream_refuses_everything(networking: NetworkingFactory) -> None:
    async def wait_for_end(stream: ByteStream) -> None:
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while True:
                    await stream.receive()

    with anyio.fail_after(5):
        async with serving(networking, wait_for_end) as (system, address):
            stream = await system.connect_tcp(address)
            await stream.aclose()
            await stream.aclose()  # twice is fine
            with pytest.raises(anyio.ClosedResourceError):
                await stream.receive()
            with pytest.raises(anyio.ClosedResourceError):
                await stream.send(b"x")


async def test_aclose_wakes_a_blocked_receive(networking: NetworkingFactory) -> None:
    async def wait_for_end(stream: ByteStream) -> None:
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while True:
                    await stream.receive()

    with anyio.fail_after(5):
        async with serving(networking, wait_for_end) as (system, address):
            stream = await system.connect_tcp(address)
            async with anyio.create_task_group() as tg:

                async def receive() -> None:
                    with pytest.raises(anyio.ClosedResourceError):
                        await stream.receive()

                tg.start_soon(receive)
                await anyio.sleep(0.1)
                await stream.aclose()


async def test_written_data_survives_aclose(networking: NetworkingFactory) -> None:
    """What send() accepted reaches the peer even when the stream is closed at once."""
    digests: list[str] = []
    digested = anyio.Event()

    async def digest(stream: ByteStream) -> None:
        hashed = hashlib.sha256()
        async with stream:
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    hashed.update(await stream.receive())
        digests.append(hashed.hexdigest())
        digested.set()

    payload = bytes(range(256)) * 4096  # 1 MiB
    with anyio.fail_after(5):
        async with serving(networking, digest) as (system, address):
            async with await system.connect_tcp(address) as stream:
                await stream.send(payload)
            await digested.wait()
    assert digests == [hashlib.sha256(payload).hexdigest()]


async def test_send_nowait_writes_only_what_send_would_not_wait_for(
    networking: NetworkingFactory, stream_path: tuple[object, bool]
) -> None:
    """The event loop's streams write without an await while the buffer has room.

    Where ``send()`` would wait first (a paused writer) or raise (closed),
    ``send_nowait()`` writes nothing and says so.
    anyio's streams (and so Trio) have no such method: the connection layer
    then always awaits ``send()``.
    """
    received: list[bytes] = []
    read = anyio.Event()  # the peer may read now
    got_end = anyio.Event()

    async def reader(stream: ByteStream) -> None:
        async with stream:
            await read.wait()
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while True:
                    received.append(await stream.receive())
                    if b"".join(received).endswith(b"<end>"):
                        got_end.set()

    with anyio.fail_after(10):
        async with serving(networking, reader) as (system, address):
            stream = await system.connect_tcp(address)
            async with stream:
                if not stream_path[1]:
                    assert not isinstance(stream, NowaitByteStream)
                    read.set()
                    return
                assert isinstance(stream, NowaitByteStream)
                assert stream.send_nowait(b"small")
                # Over the high-water mark, on an empty buffer: written, as send()
                # would write it at once too (and wait only after).
                big = b"b" * (WRITE_HIGH_WATER + 1)
                assert stream.send_nowait(big)
                # The peer does not read yet: fill the buffers until send() waits.
                chunk = b"f" * 65536
                filled = 0
                with anyio.move_on_after(0.5):
                    while True:
                        await stream.send(chunk)
                        filled += len(chunk)
                # A paused writer: no write, however small.
                assert not stream.send_nowait(b"x")
                read.set()
                await stream.send(b"<end>")
                await got_end.wait()
            assert not stream.send_nowait(b"x")  # closed
    data = b"".join(received)
    # Nothing of what send_nowait() refused went out.
    fill = len(data) - len(b"small<end>") - len(big)
    assert data == b"small" + big + b"f" * fill + b"<end>"
    assert fill >= filled


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_reads_share_one_buffer_and_keep_their_bytes() -> None:
    """The transports read into one buffer (no 256 KiB ``bytes`` per read); each read is copied."""
    first, second = AsyncioByteStream(), AsyncioByteStream()
    buffer = first.get_buffer(-1)
    assert second.get_buffer(-1) is buffer
    assert len(buffer) >= 64 * 1024
    for stream, data in ((first, b"one"), (second, b"two"), (first, b"three")):
        stream.get_buffer(len(data))[: len(data)] = data
        stream.buffer_updated(len(data))
    assert await first.receive() == b"onethree"
    assert await second.receive() == b"two"
