"""Writes on HTTP/1.1 and HTTP/2 connections: no deadlock, no cut frame, no late close.

Real TLS (or cleartext TCP) sockets on loopback, asyncio and Trio. Each test
is bounded by ``anyio.fail_after``: a deadlock fails it with ``TimeoutError``.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc
import pytest

from hface.common import AddressType, ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.connections import HTTPConnection, HTTPOverTCPListener, HTTPOverTCPOpener
from hface.errors import TransportError
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HeadersReceived,
    StreamResetSent,
)
from hface.networking import ByteStream, SystemNetworking
from hface.protocols import HTTPOverTCPFactory
from hface.protocols.http1 import HTTP1ClientFactory, HTTP1ServerFactory
from hface.protocols.http2 import HTTP2ClientFactory

from .conftest import serving

pytestmark = pytest.mark.anyio

TCP_VERSIONS = ("1.1", "2")
CHUNK = 64 * 1024
#: HTTP/2 windows far larger than the socket buffers, so that writes block
#: on the sockets rather than on flow control (as HTTP/1.1 always does).
BIG_WINDOW = 64 * 1024 * 1024


def _request(path: str, method: bytes = b"POST") -> HeadersType:
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", path.encode()),
    ]


def _header(headers: HeadersType, name: bytes) -> bytes | None:
    return next((value for key, value in headers if key == name), None)


def _server_options(http_version: str) -> dict[str, object]:
    if http_version == "2":
        return {"initial_window_size": BIG_WINDOW, "connection_window_size": BIG_WINDOW}
    return {}


def _client_factory(http_version: str) -> HTTPOverTCPFactory:
    if http_version == "1.1":
        return HTTP1ClientFactory()
    return HTTP2ClientFactory(initial_window_size=BIG_WINDOW, connection_window_size=BIG_WINDOW)


async def _connect(
    http_version: str,
    address: AddressType,
    tls_config: ClientTLSConfig,
    networking: SystemNetworking | None = None,
) -> HTTPConnection:
    opener = HTTPOverTCPOpener(
        _client_factory(http_version), tls_config=tls_config, networking=networking
    )
    return await opener(address, tls=True, server_name="localhost")


async def digest_handler(connection: HTTPConnection) -> None:
    """Answer each request, once its body is complete, with the sha256 and size of the body."""
    bodies: dict[int, Any] = {}
    sizes: dict[int, int] = {}
    while True:
        event = await connection.receive_event()
        if isinstance(event, ConnectionTerminated):
            return
        if isinstance(event, HeadersReceived):
            bodies[event.stream_id] = hashlib.sha256()
            sizes[event.stream_id] = 0
        elif isinstance(event, DataReceived):
            bodies[event.stream_id].update(event.data)
            sizes[event.stream_id] += len(event.data)
        else:
            continue
        if event.end_stream:
            digest = bodies.pop(event.stream_id).hexdigest().encode()
            size = str(sizes.pop(event.stream_id)).encode()
            headers = [(b":status", b"200"), (b"x-sha256", digest), (b"x-size", size)]
            try:
                await connection.send_headers(event.stream_id, headers, end_stream=True)
            except TransportError:
                return


async def _responses(connection: HTTPConnection, count: int) -> dict[int, HeadersType]:
    """Read until ``count`` streams have their response headers."""
    responses: dict[int, HeadersType] = {}
    while len(responses) < count:
        event = await connection.receive_event()
        if isinstance(event, ConnectionTerminated):
            raise AssertionError(f"connection ended: {event}")
        if isinstance(event, HeadersReceived):
            responses[event.stream_id] = event.headers
    return responses


# -- 1. both directions full: the reading side must go on reading -------------------


async def echo_handler(connection: HTTPConnection) -> None:
    """Echo each request body back as it arrives, in the response body."""
    while True:
        event = await connection.receive_event()
        if isinstance(event, ConnectionTerminated):
            return
        try:
            if isinstance(event, HeadersReceived):
                await connection.send_headers(event.stream_id, [(b":status", b"200")])
            elif isinstance(event, DataReceived):
                await connection.send_data(event.stream_id, event.data, end_stream=event.end_stream)
        except TransportError:
            return


@pytest.mark.parametrize("http_version", TCP_VERSIONS)
async def test_full_duplex_echo_does_not_deadlock(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    # Each side writes while the other writes: once the socket buffers are
    # full, a writer blocks until the peer reads. A transport task that waits
    # for that writer before reading again deadlocks both ends.
    total = 24 * 1024 * 1024
    sent = hashlib.sha256()
    received = hashlib.sha256()
    received_size = 0
    options = _server_options(http_version)
    async with serving(http_version, server_tls_config, echo_handler, **options) as address:
        connection = await _connect(http_version, address, client_tls_config)
        async with connection:
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(stream_id, _request("/echo"))

            async def upload() -> None:
                rng = random.Random(total)
                offset = 0
                while offset < total:
                    chunk = rng.randbytes(CHUNK)
                    sent.update(chunk)
                    offset += len(chunk)
                    await connection.send_data(stream_id, chunk, end_stream=offset >= total)

            with anyio.fail_after(30):
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(upload)
                    while True:
                        event = await connection.receive_event()
                        assert not isinstance(event, ConnectionTerminated), event
                        if isinstance(event, DataReceived):
                            received.update(event.data)
                            received_size += len(event.data)
                            if event.end_stream:
                                break
    assert received_size == total
    assert received.hexdigest() == sent.hexdigest()


# -- 2. a writer cancelled in the middle of a write ---------------------------------


class PausingStream(anyio.abc.ByteStream):
    """A real stream whose large writes pause halfway, as a partial socket write does.

    Trio's socket writes (and any write to a full socket buffer) can stop
    after part of the bytes went out; this makes that moment last long
    enough for a test to cancel the writer there.
    """

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        #: Set while a write is paused halfway.
        self.halfway = anyio.Event()
        self.pause = 0.2

    async def send(self, item: bytes) -> None:
        if len(item) < CHUNK:
            await self._stream.send(item)
            return
        half = len(item) // 2
        await self._stream.send(item[:half])
        self.halfway.set()
        await anyio.sleep(self.pause)
        await self._stream.send(item[half:])

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._stream.receive(max_bytes)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._stream.extra_attributes


class PausingNetworking(SystemNetworking):
    """System networking whose TLS client streams are :class:`PausingStream`."""

    stream: PausingStream | None = None

    async def connect_tcp_tls(
        self,
        remote_address: AddressType,
        *,
        server_name: str | None = None,
        tls_config: ClientTLSConfig,
        alpn_protocols: Sequence[str],
    ) -> ByteStream:
        stream = await super().connect_tcp_tls(
            remote_address,
            server_name=server_name,
            tls_config=tls_config,
            alpn_protocols=alpn_protocols,
        )
        self.stream = PausingStream(stream)
        return self.stream


@pytest.mark.parametrize("how", ["cancel", "timeout"])
@pytest.mark.parametrize("http_version", TCP_VERSIONS)
async def test_cancelling_a_writer_mid_write_cuts_nothing(
    http_version: str,
    how: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    chunk = random.Random(7).randbytes(CHUNK)
    networking = PausingNetworking()
    async with serving(http_version, server_tls_config, digest_handler) as address:
        connection = await _connect(http_version, address, client_tls_config, networking)
        async with connection:
            assert networking.stream is not None
            first = connection.get_available_stream_id()
            await connection.send_headers(first, _request("/upload"))
            with anyio.fail_after(10):
                # The writer is cancelled while its write is halfway out.
                if how == "timeout":
                    with anyio.move_on_after(0.05) as scope:
                        await connection.send_data(first, chunk)
                else:
                    async with anyio.create_task_group() as task_group:
                        task_group.start_soon(connection.send_data, first, chunk)
                        await networking.stream.halfway.wait()
                        task_group.cancel_scope.cancel()
                    scope = task_group.cancel_scope
                assert scope.cancel_called
                # The connection goes on: the data the protocol took went out
                # whole, and other streams (HTTP/2) work too.
                await connection.send_data(first, b"", end_stream=True)
                count = 1
                if connection.multiplexed:
                    second = connection.get_available_stream_id()
                    await connection.send_headers(second, _request("/other"), end_stream=True)
                    count = 2
                responses = await _responses(connection, count)
    headers = responses[first]
    assert _header(headers, b"x-size") == str(CHUNK).encode()
    assert _header(headers, b"x-sha256") == hashlib.sha256(chunk).hexdigest().encode()
    if count == 2:
        assert _header(responses[second], b"x-size") == b"0"


@pytest.mark.parametrize("http_version", TCP_VERSIONS)
async def test_a_write_stuck_past_its_deadline_ends_the_connection(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    # A deadline gives a write in progress a grace period, not forever: past
    # it the write is cut, and the connection (whose stream is now broken)
    # ends with a clear reason; the caller sees its own timeout.
    networking = PausingNetworking()
    async with serving(http_version, server_tls_config, digest_handler) as address:
        connection = await _connect(http_version, address, client_tls_config, networking)
        async with connection:
            assert networking.stream is not None
            networking.stream.pause = 30.0
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(stream_id, _request("/upload"))
            started = anyio.current_time()
            with anyio.fail_after(10):
                with anyio.move_on_after(0.05) as scope:
                    await connection.send_data(stream_id, bytes(CHUNK))
                assert scope.cancelled_caught
                assert anyio.current_time() - started < 5
                events = [await connection.receive_event()]
                while not isinstance(events[-1], ConnectionTerminated):
                    events.append(await connection.receive_event())
            assert connection.has_expired()
            with pytest.raises(TransportError):
                await connection.send_data(stream_id, b"more")


@pytest.mark.parametrize("http_version", TCP_VERSIONS)
async def test_a_cancelled_sender_stops(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    # Shielded writes must leave a way in for the cancellation: a task
    # sending without end to a peer that reads everything still stops.
    chunk = bytes(CHUNK)
    async with serving(http_version, server_tls_config, digest_handler) as address:
        connection = await _connect(http_version, address, client_tls_config)
        async with connection:
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(stream_id, _request("/endless"))
            with anyio.fail_after(10):
                with anyio.move_on_after(0.3) as scope:
                    while True:
                        await connection.send_data(stream_id, chunk)
            assert scope.cancelled_caught


# -- 3. a close that starts on our side -----------------------------------------------


@pytest.mark.parametrize("http_version", TCP_VERSIONS)
async def test_a_local_reset_is_reported_without_waiting_for_the_peer(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    server_saw: list[Event] = []
    server_done = anyio.Event()

    async def silent_handler(connection: HTTPConnection) -> None:
        # Reads, never writes: nothing from the server can wake the client up.
        try:
            while True:
                event = await connection.receive_event()
                server_saw.append(event)
                if isinstance(event, ConnectionTerminated):
                    return
        finally:
            server_done.set()

    async with serving(http_version, server_tls_config, silent_handler) as address:
        connection = await _connect(http_version, address, client_tls_config)
        async with connection:
            stream_id = connection.get_available_stream_id()
            # A request whose body is still coming: an end of the connection
            # then is an error the server reports (not a half-close).
            await connection.send_headers(stream_id, _request("/upload"))
            await connection.send_data(stream_id, b"some of the body")
            await connection.send_stream_reset(stream_id, connection.error_codes.cancel)
            with anyio.fail_after(5):
                events = [await connection.receive_event()]
                if http_version == "1.1":
                    events.append(await connection.receive_event())
            assert isinstance(events[0], StreamResetSent)
            assert events[0].stream_id == stream_id
            if http_version == "1.1":
                # HTTP/1.1 cannot cancel one exchange: the connection ends, and
                # the server sees it end at once, not when we next write.
                assert isinstance(events[1], ConnectionTerminated)
                assert connection.has_expired()
                with anyio.fail_after(5):
                    await server_done.wait()
                assert isinstance(server_saw[-1], ConnectionTerminated)
            else:
                assert connection.is_available()


# -- the end of the peer's bytes ---------------------------------------------------------


async def test_a_half_closed_peer_costs_no_cpu() -> None:
    # The client sends a request and shuts its sending side down (EOF). The
    # server may still answer; until then its transport task must wait, not
    # read the finished socket again and again.
    answered = anyio.Event()

    async def slow_handler(connection: HTTPConnection) -> None:
        event = await connection.receive_event()
        assert isinstance(event, HeadersReceived)
        await anyio.sleep(1.1)
        await connection.send_headers(
            event.stream_id, [(b":status", b"200"), (b"content-length", b"2")]
        )
        await connection.send_data(event.stream_id, b"ok", end_stream=True)
        answered.set()

    listener = await HTTPOverTCPListener.create(
        HTTP1ServerFactory(), local_address=("127.0.0.1", 0)
    )
    host, port = listener.local_addresses[0]
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, slow_handler)
        try:
            with anyio.fail_after(10):
                async with await anyio.connect_tcp(host, port) as stream:
                    await stream.send(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
                    await stream.send_eof()
                    await anyio.sleep(0.1)
                    cpu = time.process_time()
                    await answered.wait()
                    cpu = time.process_time() - cpu
                    response = b""
                    with anyio.move_on_after(2):
                        while True:
                            try:
                                response += await stream.receive()
                            except anyio.EndOfStream:
                                break
        finally:
            await listener.aclose()
            task_group.cancel_scope.cancel()
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b"\r\n\r\nok")
    # About 1 s of waiting: a busy transport task would spend most of it.
    print(f"CPU time while the handler waited: {cpu:.3f} s")
    assert cpu < 0.25, cpu
