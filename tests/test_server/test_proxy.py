"""ProxyServer over real loopback sockets: CONNECT on HTTP/1.1, HTTP/2 and HTTP/3.

Clients are hface connections; targets are small TCP servers run by the
tests on loopback. Everything runs on asyncio and Trio.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hface.common import AddressType, ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.connections import HTTPConnection, HTTPOverQUICOpener, HTTPOverTCPOpener
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HeadersReceived,
    StreamEvent,
    StreamReset,
)
from hface.protocols.http1 import HTTP1ClientFactory
from hface.protocols.http2 import HTTP2ClientFactory
from hface.protocols.http3 import HTTP3ClientFactory
from hface.server import Endpoint, ProxyServer

pytestmark = pytest.mark.anyio

HTTP_VERSIONS = ("1.1", "2", "3")
MULTIPLEXED = ("2", "3")
MiB = 1024 * 1024

TargetHandler = Callable[[SocketStream], Awaitable[None]]


# -- the proxy and its clients ------------------------------------------------


@asynccontextmanager
async def running_proxy(
    tls_config: ServerTLSConfig, scheme: str = "https", **attributes: Any
) -> AsyncIterator[AddressType]:
    """Run a ProxyServer on 127.0.0.1 (https: HTTP/1.1, HTTP/2 and HTTP/3); yield its address."""
    proxy = ProxyServer()
    proxy.tls_config = tls_config
    proxy.handle_signals = False
    for name, value in attributes.items():
        setattr(proxy, name, value)
    async with anyio.create_task_group() as task_group:
        addresses = await task_group.start(proxy.run, [Endpoint(scheme, "127.0.0.1", 0)])
        yield addresses[0]
        task_group.cancel_scope.cancel()


async def connect(
    http_version: str, address: AddressType, tls_config: ClientTLSConfig
) -> HTTPConnection:
    """An unopened client connection of one HTTP version to the proxy."""
    if http_version == "3":
        opener3 = HTTPOverQUICOpener(HTTP3ClientFactory(), tls_config=tls_config)
        return await opener3(address, tls=True, server_name="localhost")
    factory = HTTP1ClientFactory() if http_version == "1.1" else HTTP2ClientFactory()
    opener = HTTPOverTCPOpener(factory, tls_config=tls_config)
    return await opener(address, tls=True, server_name="localhost")


def header(headers: HeadersType, name: bytes) -> bytes | None:
    return next((value for key, value in headers if key == name), None)


class Tunnel(anyio.abc.ByteStream):
    """One CONNECT stream of a :class:`ProxyClient`, as a byte stream."""

    def __init__(
        self,
        connection: HTTPConnection,
        stream_id: int,
        events: MemoryObjectReceiveStream[StreamEvent],
    ) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.events = events
        self.eof = False

    async def next_event(self) -> Event:
        try:
            return await self.events.receive()
        except anyio.EndOfStream:
            return ConnectionTerminated()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self.eof:
            event = await self.next_event()
            if isinstance(event, DataReceived):
                self.eof = event.end_stream
                if event.data:
                    return event.data
            elif isinstance(event, HeadersReceived) and event.end_stream:
                self.eof = True
            elif isinstance(event, StreamReset | ConnectionTerminated):
                raise anyio.BrokenResourceError(repr(event))
        raise anyio.EndOfStream

    async def read_all(self) -> bytes:
        data = bytearray()
        while True:
            try:
                data += await self.receive()
            except anyio.EndOfStream:
                return bytes(data)

    async def send(self, item: bytes) -> None:
        await self.connection.send_data(self.stream_id, item)

    async def send_eof(self) -> None:
        await self.connection.send_data(self.stream_id, b"", end_stream=True)

    async def aclose(self) -> None:
        self.events.close()


class ProxyClient:
    """Opens CONNECT streams on one connection; a reader task routes events by stream."""

    def __init__(self, connection: HTTPConnection) -> None:
        self.connection = connection
        self.queues: dict[int, MemoryObjectSendStream[StreamEvent]] = {}
        self.tunnels: list[Tunnel] = []
        self.terminated = anyio.Event()

    def close(self) -> None:
        for queue in self.queues.values():
            queue.close()
        for tunnel in self.tunnels:
            tunnel.events.close()

    async def read_events(self) -> None:
        while True:
            event = await self.connection.receive_event()
            if isinstance(event, ConnectionTerminated):
                for queue in self.queues.values():
                    queue.close()
                self.terminated.set()
                return
            if isinstance(event, StreamEvent) and event.stream_id in self.queues:
                with contextlib.suppress(anyio.BrokenResourceError):
                    self.queues[event.stream_id].send_nowait(event)

    async def request(self, headers: HeadersType, end_stream: bool = False) -> Tunnel:
        stream_id = self.connection.get_available_stream_id()
        sender, receiver = anyio.create_memory_object_stream[StreamEvent](math.inf)
        self.queues[stream_id] = sender
        tunnel = Tunnel(self.connection, stream_id, receiver)
        self.tunnels.append(tunnel)
        await self.connection.send_headers(stream_id, headers, end_stream=end_stream)
        return tunnel

    async def open_tunnel(
        self, authority: str, extra: HeadersType = ()
    ) -> tuple[HeadersType, Tunnel]:
        """Send CONNECT; return the response headers and the stream."""
        headers = [(b":method", b"CONNECT"), (b":authority", authority.encode()), *extra]
        tunnel = await self.request(headers)
        while True:
            event = await tunnel.next_event()
            if isinstance(event, HeadersReceived):
                return event.headers, tunnel
            if isinstance(event, StreamReset | ConnectionTerminated):
                raise AssertionError(f"no response to CONNECT: {event}")


@asynccontextmanager
async def proxy_client(
    http_version: str, address: AddressType, tls_config: ClientTLSConfig
) -> AsyncIterator[ProxyClient]:
    async with await connect(http_version, address, tls_config) as connection:
        client = ProxyClient(connection)
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(client.read_events)
                yield client
                task_group.cancel_scope.cancel()
        finally:
            client.close()


def status(headers: HeadersType) -> int:
    value = header(headers, b":status")
    assert value is not None
    return int(value)


# -- targets ------------------------------------------------------------------


class Target:
    """A TCP server on 127.0.0.1 that counts the connections it accepted."""

    def __init__(self, handler: TargetHandler) -> None:
        self.handler = handler
        self.accepted = 0
        self.finished = 0
        self.closed = anyio.Event()
        self.address: AddressType = ("127.0.0.1", 0)

    @property
    def authority(self) -> str:
        return f"127.0.0.1:{self.address[1]}"

    async def handle(self, stream: SocketStream) -> None:
        self.accepted += 1
        try:
            async with stream:
                await self.handler(stream)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            self.finished += 1
            self.closed.set()


@asynccontextmanager
async def running_target(handler: TargetHandler) -> AsyncIterator[Target]:
    target = Target(handler)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    target.address = ("127.0.0.1", listener.extra(anyio.abc.SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, target.handle)
        yield target
        task_group.cancel_scope.cancel()


async def echo(stream: SocketStream) -> None:
    """Send back what arrives; half-close after the peer's EOF."""
    while True:
        try:
            data = await stream.receive()
        except anyio.EndOfStream:
            await stream.send_eof()
            return
        await stream.send(data)


async def digest(stream: SocketStream) -> None:
    """Read until EOF, then answer the size and sha256 of what came."""
    hashed = hashlib.sha256()
    size = 0
    while True:
        try:
            data = await stream.receive()
        except anyio.EndOfStream:
            break
        hashed.update(data)
        size += len(data)
    await stream.send(f"{size} {hashed.hexdigest()}".encode())


async def reset_at_once(stream: SocketStream) -> None:
    """Close with an RST (SO_LINGER 0) after the first bytes."""
    await stream.receive()
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- tunnels ------------------------------------------------------------------


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_a_tunnel_relays_bytes_both_ways(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with (
        running_target(echo) as target,
        running_proxy(server_tls_config) as address,
        proxy_client(http_version, address, client_tls_config) as client,
    ):
        headers, tunnel = await client.open_tunnel(target.authority)
        assert status(headers) == 200
        assert header(headers, b"content-length") is None
        for message in (b"hello", b"proxied", b"world" * 1000):
            await tunnel.send(message)
            received = b""
            while len(received) < len(message):
                received += await tunnel.receive()
            assert received == message
        if http_version != "1.1":  # an HTTP/1.1 client over TLS cannot half-close
            await tunnel.send_eof()
            assert await tunnel.read_all() == b""


async def greet_and_close(stream: SocketStream) -> None:
    await stream.send(b"bye")


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_the_target_closing_ends_the_stream(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with (
        running_target(greet_and_close) as target,
        running_proxy(server_tls_config) as address,
        proxy_client(http_version, address, client_tls_config) as client,
    ):
        headers, tunnel = await client.open_tunnel(target.authority)
        assert status(headers) == 200
        with anyio.fail_after(10):
            assert await tunnel.read_all() == b"bye"


@pytest.mark.parametrize("http_version", MULTIPLEXED)
async def test_half_close_lets_the_target_answer(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    payload = os.urandom(300_000)
    async with (
        running_target(digest) as target,
        running_proxy(server_tls_config) as address,
        proxy_client(http_version, address, client_tls_config) as client,
    ):
        headers, tunnel = await client.open_tunnel(target.authority)
        assert status(headers) == 200
        await tunnel.send(payload)
        await tunnel.send_eof()  # the target answers only after our EOF
        answer = await tunnel.read_all()
        assert answer == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()


async def read_until(stream: anyio.abc.ByteStream, delimiter: bytes) -> bytes:
    data = b""
    while delimiter not in data:
        data += await stream.receive()
    return data


async def test_half_close_over_http1(server_tls_config: ServerTLSConfig) -> None:
    """A raw HTTP/1.1 client on a cleartext endpoint half-closes with a TCP FIN."""
    payload = os.urandom(300_000)
    async with (
        running_target(digest) as target,
        running_proxy(server_tls_config, scheme="http") as address,
        await anyio.connect_tcp(*address) as stream,
    ):
        request = f"CONNECT {target.authority} HTTP/1.1\r\nHost: {target.authority}\r\n\r\n"
        await stream.send(request.encode())
        with anyio.fail_after(10):
            head = await read_until(stream, b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            await stream.send(payload)
            await stream.send_eof()
            answer = head.partition(b"\r\n\r\n")[2]
            while True:
                try:
                    answer += await stream.receive()
                except anyio.EndOfStream:
                    break
    assert answer == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()


@pytest.mark.slow
@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_a_large_transfer_both_ways(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    size = 20 * MiB
    chunk = os.urandom(256 * 1024)
    sent = hashlib.sha256()
    received = hashlib.sha256()
    received_size = 0
    progress = anyio.Event()
    # The HTTP/1.1 *client* (HTTPConnection) cannot read while one of its
    # writes is blocked (its transport task waits for the send lock after
    # each read), so with both directions full it would deadlock; keep what
    # is in flight small enough there. HTTP/2 and HTTP/3 run unthrottled.
    in_flight = 1 * MiB if http_version == "1.1" else size
    async with (
        running_target(echo) as target,
        running_proxy(server_tls_config) as address,
        proxy_client(http_version, address, client_tls_config) as client,
    ):
        headers, tunnel = await client.open_tunnel(target.authority)
        assert status(headers) == 200

        async def upload() -> None:
            nonlocal progress
            for index in range(size // len(chunk)):
                while index * len(chunk) - received_size >= in_flight:
                    await progress.wait()
                    progress = anyio.Event()
                sent.update(chunk)
                await tunnel.send(chunk)

        with anyio.fail_after(90):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(upload)
                while received_size < size:
                    data = await tunnel.receive()
                    received.update(data)
                    received_size += len(data)
                    progress.set()
    assert received_size == size
    assert received.hexdigest() == sent.hexdigest()


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_a_target_that_does_not_read_holds_the_client_back(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    # A listening socket that never accepts: the kernel completes the
    # handshake and buffers what arrives, up to the socket's buffer size.
    # (anyio's asyncio streams would read everything into memory.)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        authority = f"127.0.0.1:{listener.getsockname()[1]}"
        await _send_until_held_back(http_version, server_tls_config, client_tls_config, authority)


async def _send_until_held_back(
    http_version: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
    authority: str,
) -> None:
    chunk = bytes(64 * 1024)
    accepted = 0
    # The stuck tunnel would otherwise hold the proxy's shutdown for 10 s.
    async with (
        running_proxy(server_tls_config, graceful_timeout=0.5) as address,
        proxy_client(http_version, address, client_tls_config) as client,
    ):
        headers, tunnel = await client.open_tunnel(authority)
        assert status(headers) == 200
        with anyio.move_on_after(3):
            while accepted < 256 * MiB:
                await tunnel.send(chunk)
                accepted += len(chunk)
    # Kernel buffers on both sides, flow-control windows and the proxy's
    # buffers hold a few MiB at most; without backpressure this would be 256.
    assert accepted < 24 * MiB


@pytest.mark.parametrize("http_version", MULTIPLEXED)
async def test_many_tunnels_on_one_connection(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with (
        running_target(digest) as target,
        running_proxy(server_tls_config) as address,
        proxy_client(http_version, address, client_tls_config) as client,
    ):
        results: dict[int, bytes] = {}

        async def one(index: int) -> None:
            headers, tunnel = await client.open_tunnel(target.authority)
            assert status(headers) == 200
            payload = os.urandom(10_000 * (index + 1))
            await tunnel.send(payload)
            await tunnel.send_eof()
            answer = await tunnel.read_all()
            expected = f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()
            results[index] = answer
            assert answer == expected

        with anyio.fail_after(30):
            async with anyio.create_task_group() as task_group:
                for index in range(8):
                    task_group.start_soon(one, index)
        assert len(results) == 8
        assert target.accepted == 8


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_a_client_that_vanishes_closes_the_target(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with (
        running_target(echo) as target,
        running_proxy(server_tls_config) as address,
    ):
        async with proxy_client(http_version, address, client_tls_config) as client:
            headers, tunnel = await client.open_tunnel(target.authority)
            assert status(headers) == 200
            await tunnel.send(b"ping")
            assert await tunnel.receive() == b"ping"
        # The client connection is closed without ending the tunnel.
        with anyio.fail_after(10):
            await target.closed.wait()


@pytest.mark.parametrize("http_version", MULTIPLEXED)
async def test_a_client_reset_closes_the_target_only(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with (
        running_target(echo) as target,
        running_proxy(server_tls_config) as address,
        proxy_client(http_version, address, client_tls_config) as client,
    ):
        _, first = await client.open_tunnel(target.authority)
        _, second = await client.open_tunnel(target.authority)
        await client.connection.send_stream_reset(
            first.stream_id, client.connection.error_codes.cancel
        )
        with anyio.fail_after(10):
            await target.closed.wait()
        await second.send(b"still here")
        assert await second.receive() == b"still here"


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_a_target_failure_resets_the_stream(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with (
        running_target(reset_at_once) as target,
        running_proxy(server_tls_config) as address,
        proxy_client(http_version, address, client_tls_config) as client,
    ):
        headers, tunnel = await client.open_tunnel(target.authority)
        assert status(headers) == 200
        await tunnel.send(b"boom")
        with anyio.fail_after(10):
            if http_version == "1.1":  # HTTP/1.1 can only close the connection
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await _receive_forever(tunnel)
                return
            while True:
                event = await tunnel.next_event()
                if isinstance(event, StreamReset):
                    break
        assert event.error_code == client.connection.error_codes.connect_error


async def _receive_forever(tunnel: Tunnel) -> None:
    while True:
        await tunnel.receive()


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_an_idle_tunnel_is_closed(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with (
        running_target(echo) as target,
        running_proxy(server_tls_config, idle_timeout=0.5) as address,
        proxy_client(http_version, address, client_tls_config) as client,
    ):
        headers, tunnel = await client.open_tunnel(target.authority)
        assert status(headers) == 200
        await tunnel.send(b"ping")
        assert await tunnel.receive() == b"ping"
        with anyio.fail_after(5):
            await target.closed.wait()
            if http_version == "1.1":  # the connection is closed
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await _receive_forever(tunnel)
            else:
                event = await tunnel.next_event()
                assert isinstance(event, StreamReset)


# -- refusals -----------------------------------------------------------------


async def _refused(
    http_version: str,
    address: AddressType,
    tls_config: ClientTLSConfig,
    headers: HeadersType,
    end_stream: bool = False,
) -> tuple[HeadersType, bytes]:
    async with proxy_client(http_version, address, tls_config) as client:
        tunnel = await client.request(headers, end_stream=end_stream)
        with anyio.fail_after(15):
            response: HeadersType = []
            while not response:
                event = await tunnel.next_event()
                if isinstance(event, HeadersReceived):
                    response = event.headers
                    if event.end_stream:
                        return response, b""
                elif isinstance(event, StreamReset | ConnectionTerminated):
                    raise AssertionError(f"no response: {event}")
            return response, await tunnel.read_all()


def _connect(authority: str, *extra: tuple[bytes, bytes]) -> HeadersType:
    return [(b":method", b"CONNECT"), (b":authority", authority.encode()), *extra]


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_an_unreachable_target_gets_502(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with running_proxy(server_tls_config) as address:
        authority = f"127.0.0.1:{closed_port()}"
        headers, body = await _refused(
            http_version, address, client_tls_config, _connect(authority)
        )
    assert status(headers) == 502
    assert header(headers, b"content-type") == b"text/plain; charset=utf-8"
    assert b"cannot reach" in body


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_an_unknown_host_gets_502(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with running_proxy(server_tls_config, connect_timeout=5) as address:
        headers, body = await _refused(
            http_version, address, client_tls_config, _connect("no-such-host.invalid:443")
        )
    assert status(headers) == 502
    assert body


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
@pytest.mark.parametrize(
    "authority",
    [
        "localhost",
        "localhost:",
        "localhost:0",
        "localhost:99999",
        "localhost:8o",
        "a!b:80",
        "[::1:80",
        "[nothere]:80",
        "-bad.example:443",
        "::1:80",
    ],
)
async def test_a_malformed_target_gets_400(
    http_version: str,
    authority: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    async with running_proxy(server_tls_config) as address:
        headers, body = await _refused(
            http_version, address, client_tls_config, _connect(authority)
        )
    assert status(headers) == 400
    # The proxy's explanation, the same on every version (HTTP/1.1 leaves
    # the CONNECT target to the proxy rather than refusing it itself).
    assert header(headers, b"content-type") == b"text/plain; charset=utf-8"
    assert body.startswith(f"malformed target {authority!r}: ".encode())


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_other_methods_get_405(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    request = [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"example.com"),
        (b":path", b"/"),
    ]
    async with running_proxy(server_tls_config) as address:
        headers, body = await _refused(
            http_version, address, client_tls_config, request, end_stream=True
        )
    assert status(headers) == 405
    assert header(headers, b"allow") == b"CONNECT"
    assert body


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
@pytest.mark.parametrize(
    "authorization",
    [None, b"Basic " + b"dXNlcjp3cm9uZw==", b"Bearer abc", b"Basic !!!", b"Basic"],
)
async def test_missing_or_wrong_credentials_get_407(
    http_version: str,
    authorization: bytes | None,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    async with (
        running_target(echo) as target,
        running_proxy(server_tls_config, credentials=("user", "secret")) as address,
    ):
        extra = [] if authorization is None else [(b"proxy-authorization", authorization)]
        headers, _ = await _refused(
            http_version, address, client_tls_config, _connect(target.authority, *extra)
        )
    assert status(headers) == 407
    assert header(headers, b"proxy-authenticate") == b'Basic realm="hface"'
    assert target.accepted == 0


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_the_connection_serves_a_retry_after_407(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with (
        running_target(echo) as target,
        running_proxy(server_tls_config, credentials=("user", "secret")) as address,
        proxy_client(http_version, address, client_tls_config) as client,
    ):
        headers, tunnel = await client.open_tunnel(target.authority)
        assert status(headers) == 407
        assert await tunnel.read_all() == b"proxy authentication required\n"
        authorization = (b"proxy-authorization", b"Basic dXNlcjpzZWNyZXQ=")
        headers, tunnel = await client.open_tunnel(target.authority, [authorization])
        assert status(headers) == 200
        await tunnel.send(b"ok")
        assert await tunnel.receive() == b"ok"


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_right_credentials_open_the_tunnel(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with (
        running_target(echo) as target,
        running_proxy(server_tls_config, credentials=("user", "secret")) as address,
        proxy_client(http_version, address, client_tls_config) as client,
    ):
        authorization = (b"proxy-authorization", b"Basic dXNlcjpzZWNyZXQ=")  # user:secret
        headers, tunnel = await client.open_tunnel(target.authority, [authorization])
        assert status(headers) == 200
        await tunnel.send(b"ok")
        assert await tunnel.receive() == b"ok"


# -- the target policy --------------------------------------------------------


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "[::ffff:127.0.0.1]",
        "127.0.0.2",
        "10.0.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "[::1]",
        "[fd00::1]",
        # Other IPv6 forms of private IPv4 addresses: the IPv4 address inside is judged.
        "[::127.0.0.1]",  # IPv4-compatible
        "[::ffff:0:7f00:1]",  # IPv4-translated (SIIT)
        "[64:ff9b::a00:1]",  # NAT64 to 10.0.0.1
        "[64:ff9b:1::a00:1]",  # local-use NAT64
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "[2002:c0a8:101::1]",  # 6to4 of 192.168.1.1
    ],
)
async def test_the_non_loopback_policy_refuses_private_targets(
    http_version: str,
    host: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    async with (
        running_target(echo) as target,
        running_proxy(server_tls_config, allow_private_targets=False) as address,
    ):
        authority = f"{host}:{target.address[1]}"
        with anyio.fail_after(5):  # refused at once: no connection attempt
            headers, body = await _refused(
                http_version, address, client_tls_config, _connect(authority)
            )
        await anyio.sleep(0.1)
    assert status(headers) == 403
    assert b"not allowed" in body
    assert target.accepted == 0


@pytest.mark.parametrize("http_version", ["1.1", "2"])
async def test_a_loopback_proxy_reaches_local_targets_by_default(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with (
        running_target(echo) as target,
        running_proxy(server_tls_config) as address,
        proxy_client(http_version, address, client_tls_config) as client,
    ):
        headers, _ = await client.open_tunnel(f"localhost:{target.address[1]}")
        assert status(headers) == 200
    assert target.accepted == 1


# -- lifecycle ----------------------------------------------------------------


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_shutdown_does_not_wait_for_idle_connections(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    proxy = ProxyServer()
    proxy.tls_config = server_tls_config
    proxy.handle_signals = False
    proxy.graceful_timeout = 30
    async with anyio.create_task_group() as task_group:
        stopped = anyio.Event()
        scope, addresses = await _start(task_group, proxy, stopped)
        async with await connect(http_version, addresses[0], client_tls_config):
            await anyio.sleep(0.2)
            scope.cancel()
            with anyio.fail_after(5):  # not graceful_timeout: nothing is in flight
                await stopped.wait()


async def _start(
    task_group: anyio.abc.TaskGroup, proxy: ProxyServer, stopped: anyio.Event
) -> tuple[anyio.CancelScope, Sequence[AddressType]]:
    """Start ``proxy`` in a scope of its own: cancelling it shuts the proxy down only."""
    scope = anyio.CancelScope()

    async def serve(*, task_status: anyio.abc.TaskStatus[Sequence[AddressType]]) -> None:
        with scope:
            await proxy.run([Endpoint("https", "127.0.0.1", 0)], task_status=task_status)
        stopped.set()

    addresses = await task_group.start(serve)
    return scope, addresses


async def test_shutdown_lets_tunnels_finish(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    proxy = ProxyServer()
    proxy.tls_config = server_tls_config
    proxy.handle_signals = False
    stopped = anyio.Event()
    async with running_target(digest) as target, anyio.create_task_group() as task_group:
        scope, addresses = await _start(task_group, proxy, stopped)
        async with proxy_client("2", addresses[0], client_tls_config) as client:
            headers, tunnel = await client.open_tunnel(target.authority)
            assert status(headers) == 200
            scope.cancel()  # shuts down gracefully, in the background
            await anyio.sleep(0.2)
            assert not stopped.is_set()
            await tunnel.send(b"after shutdown began")
            await tunnel.send_eof()
            with anyio.fail_after(10):
                answer = await tunnel.read_all()
    assert answer.startswith(b"20 ")


async def test_a_proxy_on_an_inherited_loopback_socket_reaches_loopback_targets(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """The default target policy follows an ``fd`` endpoint's socket (as a worker's is)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        proxy = ProxyServer()
        proxy.tls_config = server_tls_config
        proxy.handle_signals = False
        async with (
            running_target(echo) as target,
            anyio.create_task_group() as task_group,
        ):
            addresses = await task_group.start(proxy.run, [Endpoint("fd+tls", "", sock.fileno())])
            async with proxy_client("2", addresses[0], client_tls_config) as client:
                headers, _ = await client.open_tunnel(target.authority)
            task_group.cancel_scope.cancel()
    assert status(headers) == 200
