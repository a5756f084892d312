"""HTTPStream: each stream's own events, credit for unread data, in-flight count, idle clock.

Real TLS sockets on loopback (QUIC for HTTP/3), every HTTP version, asyncio
and Trio. Each test is bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import ssl
import time

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import StreamType
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from hface.common import AddressType, ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.connections import (
    HTTPConnection,
    HTTPOverQUICOpener,
    HTTPOverTCPOpener,
    HTTPStream,
)
from hface.errors import LocalProtocolError
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HeadersReceived,
    StreamReset,
)
from hface.protocols.http2 import HTTP2ClientFactory
from hface.protocols.http3 import HTTP3ClientFactory
from tests.helpers.h3_raw import REQUEST, headers_frame, settings_frame
from tests.helpers.pairs import HTTP_VERSIONS

from .conftest import connect, read_response, request, serving

pytestmark = pytest.mark.anyio

#: A small receive window (per stream; the connection's is twice as large),
#: so that data nobody credits back stops the sender quickly.
WINDOW = 64 * 1024
CHUNK = b"x" * 16384
#: The idle timeout of the idle tests, and how late it may fire on a busy machine.
IDLE = 0.3
SLACK = 1.0


def header(headers: HeadersType, name: bytes) -> bytes | None:
    return next((value for key, value in headers if key == name), None)


async def echo(stream: HTTPStream) -> None:
    """Answer a stream with the size of its request body, and its path as the body."""
    async with stream:
        event = await stream.receive_event()
        assert isinstance(event, HeadersReceived)
        assert header(event.headers, b":method") is not None  # the request comes first
        path = header(event.headers, b":path") or b"/"
        size = 0
        ended = event.end_stream
        while not ended:
            event = await stream.receive_event()
            if isinstance(event, DataReceived):
                size += len(event.data)
            elif not isinstance(event, HeadersReceived):
                return  # reset, or the end
            ended = event.end_stream
        await stream.send_headers([(b":status", b"200"), (b"x-size", str(size).encode())])
        await stream.send_data(path, end_stream=True)


async def serve_streams(connection: HTTPConnection) -> None:
    """Serve every stream of a connection in a task of its own, with :func:`echo`."""
    async with anyio.create_task_group() as task_group:
        while (stream := await connection.accept_stream()) is not None:
            task_group.start_soon(echo, stream)


async def exchange(connection: HTTPConnection, path: bytes, body: bytes) -> tuple[bytes, bytes]:
    """One request on a stream of its own; returns the response's x-size and body."""
    stream = connection.open_stream()
    async with stream:
        headers = request(path, b"POST", len(body))
        await stream.send_headers(headers, end_stream=not body)
        for start in range(0, len(body), len(CHUNK)):
            end = start + len(CHUNK) >= len(body)
            await stream.send_data(body[start : start + len(CHUNK)], end_stream=end)
        response, data = await read_response(stream)
    return header(response, b"x-size") or b"", data


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_each_stream_gets_its_own_events(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    count = 3 if http_version == "1.1" else 20
    results: dict[int, tuple[bytes, bytes]] = {}

    async def one(number: int, connection: HTTPConnection) -> None:
        results[number] = await exchange(connection, b"/%d" % number, b"b" * (number * 5000))

    with anyio.fail_after(20):
        async with serving(http_version, server_tls_config, serve_streams) as address:
            async with await connect(http_version, address, client_tls_config) as connection:
                if connection.multiplexed:
                    async with anyio.create_task_group() as task_group:
                        for number in range(count):
                            task_group.start_soon(one, number, connection)
                else:
                    for number in range(count):
                        await one(number, connection)
                assert connection.in_flight == 0
    assert results == {n: (str(n * 5000).encode(), b"/%d" % n) for n in range(count)}


async def _connect_with_small_windows(
    http_version: str, address: AddressType, tls_config: ClientTLSConfig
) -> HTTPConnection:
    if http_version == "3":
        factory = HTTP3ClientFactory(
            stream_receive_window=WINDOW, connection_receive_window=2 * WINDOW
        )
        opener3 = HTTPOverQUICOpener(factory, tls_config=tls_config)
        return await opener3(address, tls=True, server_name="localhost")
    factory2 = HTTP2ClientFactory(initial_window_size=WINDOW, connection_window_size=2 * WINDOW)
    opener = HTTPOverTCPOpener(factory2, tls_config=tls_config)
    return await opener(address, tls=True, server_name="localhost")


def _small_windows(http_version: str) -> dict[str, int]:
    """The factory options of a server with small windows (HTTP/2, HTTP/3)."""
    if http_version == "2":
        return {"initial_window_size": WINDOW, "connection_window_size": 2 * WINDOW}
    if http_version == "3":
        return {"stream_receive_window": WINDOW, "connection_receive_window": 2 * WINDOW}
    return {}


@pytest.mark.parametrize("http_version", ["2", "3"])
async def test_a_server_stream_closed_unread_credits_its_data_back(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """The data queued when the stream closes, and all that comes after, reopen the windows."""

    async def drop_the_first(connection: HTTPConnection) -> None:
        first = await connection.accept_stream()
        assert first is not None
        while first.buffered_data < WINDOW // 2:  # noqa: ASYNC110 (some data waits, unread)
            await anyio.sleep(0.01)
        await first.aclose()
        await serve_streams(connection)

    upload = b"u" * (16 * WINDOW)  # eight times the connection's window
    with anyio.fail_after(20):
        async with serving(
            http_version, server_tls_config, drop_the_first, **_small_windows(http_version)
        ) as address:
            async with await connect(http_version, address, client_tls_config) as connection:
                stream = connection.open_stream()
                await stream.send_headers(request(b"/dropped", b"POST"))
                for start in range(0, len(upload), len(CHUNK)):
                    await stream.send_data(upload[start : start + len(CHUNK)])
                await stream.send_data(b"", end_stream=True)  # all of it got through
                size, body = await exchange(connection, b"/next", b"n" * (4 * WINDOW))
    assert (size, body) == (str(4 * WINDOW).encode(), b"/next")


@pytest.mark.parametrize("http_version", ["2", "3"])
async def test_a_client_stream_closed_unread_credits_its_data_back(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    sent = anyio.Event()

    async def big_then_echo(connection: HTTPConnection) -> None:
        first = await connection.accept_stream()
        assert first is not None
        await first.send_headers([(b":status", b"200")])
        await first.send_data(b"d" * (16 * WINDOW), end_stream=True)  # unread by the client
        sent.set()
        await serve_streams(connection)

    with anyio.fail_after(20):
        async with serving(http_version, server_tls_config, big_then_echo) as address:
            connection = await _connect_with_small_windows(http_version, address, client_tls_config)
            async with connection:
                stream = connection.open_stream()
                await stream.send_headers(request(b"/big"), end_stream=True)
                event = await stream.receive_event()
                assert isinstance(event, HeadersReceived)
                await stream.aclose()  # the body still coming: nobody reads it
                await sent.wait()
                assert await exchange(connection, b"/next", b"") == (b"0", b"/next")


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_the_idle_timeout_counts_from_the_open(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    waited: list[float] = []

    async def handler(connection: HTTPConnection) -> None:
        # The connection opened before the handler ran: by the end of this
        # sleep it has been idle for longer than IDLE. A clock started by
        # the call would wait IDLE more; the open's has run out already.
        await anyio.sleep(IDLE)
        start = anyio.current_time()
        with pytest.raises(TimeoutError):
            await connection.accept_stream(idle_timeout=IDLE)
        waited.append(anyio.current_time() - start)

    with anyio.fail_after(20):
        async with serving(http_version, server_tls_config, handler) as address:
            async with await connect(http_version, address, client_tls_config) as connection:
                # The client says nothing; the handler returns, which closes the connection.
                with anyio.move_on_after(10):
                    await connection.wait_terminated()
    assert len(waited) == 1
    assert waited[0] < IDLE * 0.9, waited


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_the_idle_timeout_waits_for_the_streams_in_flight(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """No timeout while a stream is in flight; then counted from the close of the last one."""
    after_close: list[float] = []

    async def handler(connection: HTTPConnection) -> None:
        # The first stream's wait is not under test: a slow machine may take
        # longer than IDLE to bring it after the handshake.
        stream = await connection.accept_stream(idle_timeout=10.0)
        assert stream is not None
        closed_at = anyio.current_time() + 10.0

        async def another() -> None:
            with pytest.raises(TimeoutError):
                await connection.accept_stream(idle_timeout=IDLE)
            after_close.append(anyio.current_time() - closed_at)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(another)
            await anyio.sleep(3 * IDLE)  # in flight, longer than the idle timeout
            await stream.send_headers([(b":status", b"204")], end_stream=True)
            closed_at = anyio.current_time()
            await stream.aclose()

    with anyio.fail_after(20):
        async with serving(http_version, server_tls_config, handler) as address:
            async with await connect(http_version, address, client_tls_config) as connection:
                stream = connection.open_stream()
                await stream.send_headers(request(), end_stream=True)
                headers, _ = await read_response(stream)
                assert header(headers, b":status") == b"204"
                with anyio.move_on_after(10):
                    await connection.wait_terminated()
    assert len(after_close) == 1
    assert IDLE * 0.9 <= after_close[0] < IDLE + SLACK, after_close


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_the_in_flight_count(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    count = 1 if http_version == "1.1" else 3
    seen: list[int] = []

    async def handler(connection: HTTPConnection) -> None:
        seen.append(connection.in_flight)
        streams = [await connection.accept_stream()]
        while connection.in_flight < count:  # noqa: ASYNC110 (counted before being accepted)
            await anyio.sleep(0.01)
        streams += [await connection.accept_stream() for _ in range(count - 1)]
        seen.append(connection.in_flight)
        for stream in streams:
            assert stream is not None
            await stream.send_headers([(b":status", b"204")], end_stream=True)
            await stream.aclose()
            seen.append(connection.in_flight)
        assert await connection.accept_stream() is None  # the client closed

    with anyio.fail_after(20):
        async with serving(http_version, server_tls_config, handler) as address:
            async with await connect(http_version, address, client_tls_config) as connection:
                streams = []
                for _ in range(count):
                    stream = connection.open_stream()
                    await stream.send_headers(request(), end_stream=True)
                    streams.append(stream)
                assert connection.in_flight == count
                for stream in streams:
                    await read_response(stream)
                    stream.close()
                assert connection.in_flight == 0
                with pytest.raises(LocalProtocolError, match="the stream was closed"):
                    await streams[0].receive_event()
    assert seen == [0, count, *range(count - 1, -1, -1)]


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_accept_stream_ends_once_expired_with_no_stream_in_flight(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    returned: list[float] = []

    async def handler(connection: HTTPConnection) -> None:
        stream = await connection.accept_stream()
        assert stream is not None
        await connection.send_goaway()
        assert connection.has_expired()

        async def accept_more() -> None:
            assert await connection.accept_stream() is None
            returned.append(anyio.current_time())

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(accept_more)
            await anyio.sleep(0.2)
            assert not returned  # a stream is in flight: accept_stream waits
            await stream.send_headers([(b":status", b"204")], end_stream=True)
            closed_at = anyio.current_time()
            await stream.aclose()
        assert returned[0] - closed_at < SLACK

    with anyio.fail_after(20):
        async with serving(http_version, server_tls_config, handler) as address:
            async with await connect(http_version, address, client_tls_config) as connection:
                stream = connection.open_stream()
                await stream.send_headers(request(), end_stream=True)
                await read_response(stream)
                with anyio.move_on_after(10):
                    await connection.wait_terminated()
                # GOAWAY (Connection: close) received: no new stream, with no reader of events.
                assert connection.has_expired()
                assert not connection.is_available()
    assert len(returned) == 1


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_connection_terminated_reaches_every_stream(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    count = 1 if http_version == "1.1" else 3
    ends: list[Event] = []

    async def accept_then_close(connection: HTTPConnection) -> None:
        for _ in range(count):
            assert await connection.accept_stream() is not None
        await connection.aclose(connection.error_codes.internal_error)

    with anyio.fail_after(20):
        async with serving(http_version, server_tls_config, accept_then_close) as address:
            async with await connect(http_version, address, client_tls_config) as connection:
                streams = []
                for _ in range(count):
                    stream = connection.open_stream()
                    await stream.send_headers(request(), end_stream=True)  # never answered
                    streams.append(stream)
                for stream in streams:
                    event = await stream.receive_event()
                    while not isinstance(event, ConnectionTerminated):
                        event = await stream.receive_event()
                    assert await stream.receive_event() == event  # every call after
                    assert stream.receive_event_nowait() == event
                    ends.append(event)
    assert len(ends) == count


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_mixing_the_ways_of_reading_is_refused(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    refused: list[str] = []
    done = anyio.Event()

    async def handler(connection: HTTPConnection) -> None:
        stream = await connection.accept_stream()
        assert stream is not None
        with pytest.raises(LocalProtocolError, match=r"accept_stream\(\).*receive_event\(\)"):
            await connection.receive_event()
        with pytest.raises(LocalProtocolError, match="cannot be mixed"):
            connection.open_stream()
        refused.append("server")
        await stream.send_headers([(b":status", b"204")], end_stream=True)
        await stream.aclose()
        await done.wait()

    with anyio.fail_after(20):
        async with serving(http_version, server_tls_config, handler) as address:
            async with await connect(http_version, address, client_tls_config) as connection:
                stream_id = connection.get_available_stream_id()
                await connection.send_headers(stream_id, request(), end_stream=True)
                assert isinstance(await connection.receive_event(), HeadersReceived)
                with pytest.raises(LocalProtocolError, match="cannot be mixed"):
                    connection.open_stream()
                with pytest.raises(LocalProtocolError, match="cannot be mixed"):
                    await connection.accept_stream()
                refused.append("client")
                done.set()
    assert refused == ["server", "client"]


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_an_observer_sees_the_peer_leave_while_nobody_reads(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """It sees each event as it arrives; the data it turns away is credited back at once."""
    seen: list[type[Event]] = []
    left = anyio.Event()

    def observer(event: Event) -> bool:
        seen.append(type(event))
        if isinstance(event, StreamReset | ConnectionTerminated):
            left.set()
        return not isinstance(event, DataReceived)

    async def handler(connection: HTTPConnection) -> None:
        stream = await connection.accept_stream()
        assert stream is not None
        assert isinstance(stream.receive_event_nowait(), HeadersReceived)
        stream.observe(observer)
        await left.wait()
        assert stream.buffered_data == 0

    upload = b"u" * (16 * WINDOW)
    with anyio.fail_after(20):
        async with serving(
            http_version,
            server_tls_config,
            handler,
            **_small_windows(http_version),
        ) as address:
            async with await connect(http_version, address, client_tls_config) as connection:
                stream = connection.open_stream()
                # Never finished: on HTTP/1.1 the client leaves in the middle of its body.
                await stream.send_headers(request(b"/", b"PUT", 2 * len(upload)))
                for start in range(0, len(upload), len(CHUNK)):
                    await stream.send_data(upload[start : start + len(CHUNK)])
                if connection.multiplexed:
                    await stream.send_reset()
                else:  # no reset on HTTP/1.1: the client leaves
                    await connection.aclose()
            await left.wait()
    assert seen[0] is DataReceived
    assert issubclass(seen[-1], StreamReset | ConnectionTerminated), seen[-1]


async def test_no_task_outlives_a_connection_read_per_stream(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    before = {task.id for task in anyio.get_running_tasks()}

    async def handler(connection: HTTPConnection) -> None:
        async with anyio.create_task_group() as task_group:
            while (stream := await connection.accept_stream(idle_timeout=30)) is not None:
                task_group.start_soon(echo, stream)

    with anyio.fail_after(30):
        for http_version in HTTP_VERSIONS:
            async with serving(http_version, server_tls_config, handler) as address:
                async with await connect(http_version, address, client_tls_config) as connection:
                    assert await exchange(connection, b"/", b"abc") == (b"3", b"/")
    await anyio.lowlevel.checkpoint()
    after = {task.id for task in anyio.get_running_tasks()}
    assert after <= before, [t for t in anyio.get_running_tasks() if t.id not in before]


async def test_http3_requests_that_arrive_out_of_order_are_all_accepted(
    server_tls_config: ServerTLSConfig,
) -> None:
    """Stream 4's request may come before stream 0's (QUIC does not order streams)."""
    accepted: list[int] = []
    both = anyio.Event()

    async def handler(connection: HTTPConnection) -> None:
        while (stream := await connection.accept_stream()) is not None:
            accepted.append(stream.stream_id)
            if len(accepted) == 2:
                both.set()
            await stream.send_headers([(b":status", b"204")], end_stream=True)
            await stream.aclose()

    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=["h3"], server_name="localhost", verify_mode=ssl.CERT_NONE
    )
    quic = QuicConnection(configuration=configuration)
    with anyio.fail_after(20):
        async with serving("3", server_tls_config, handler) as address:
            async with await anyio.create_connected_udp_socket(*address) as udp:

                async def exchange_datagrams(seconds: float) -> None:
                    for data, _ in quic.datagrams_to_send(now=time.monotonic()):
                        await udp.send(data)
                    with anyio.move_on_after(seconds):
                        while True:
                            datagram = await udp.receive()
                            quic.receive_datagram(datagram, address, now=time.monotonic())
                            for data, _ in quic.datagrams_to_send(now=time.monotonic()):
                                await udp.send(data)

                quic.connect(address, now=time.monotonic())
                await exchange_datagrams(0.5)  # the handshake
                control = quic.get_next_available_stream_id(is_unidirectional=True)
                settings = encode_uint_var(StreamType.CONTROL) + settings_frame()
                quic.send_stream_data(control, settings)
                quic.send_stream_data(0, b"")  # opened first (aioquic wants that), sent later
                quic.send_stream_data(4, headers_frame(REQUEST, 4), end_stream=True)
                await exchange_datagrams(0.3)
                assert accepted == [4]
                quic.send_stream_data(0, headers_frame(REQUEST, 0), end_stream=True)
                await exchange_datagrams(0.3)
                await both.wait()
    assert accepted == [4, 0]
