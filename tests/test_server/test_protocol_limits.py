"""The protocol limits of :class:`~hface.server.ServerLimits` take effect on a real server.

``max_header_size``, ``max_concurrent_streams``, ``header_table_size`` and
``max_reset_streams`` are options of the protocol factories; a server
applies them to the factories it made itself. Each test drives a limit past
its bound on loopback, with raw HTTP/2 frames where hface's own client would
not break the rule (built by hand, read with hyperframe), or with hface's
connections where a well-behaved client shows the limit (HTTP/3 stream
credit), and checks the outcome the field's docstring promises.
"""

from __future__ import annotations

import contextlib
import ssl
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio
import anyio.abc
import pytest
from aioquic._buffer import Buffer, BufferReadError
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from anyio.streams.tls import TLSStream
from hpack import Encoder
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig
from hface.connections import HTTPConnection
from hface.errors import LocalProtocolError
from hface.events import ConnectionTerminated, HeadersReceived
from hface.protocols.http2 import HTTP2ServerFactory
from hface.server import ASGIServer, Endpoint, ProxyServer, ServerLimits
from tests.test_server.conftest import client, read_response, running, send_request

pytestmark = pytest.mark.anyio

#: How long any bounded wait here may take before it is a failure.
PATIENCE: Final = 5.0

_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADERS, _RST_STREAM, _SETTINGS, _PING = 0x1, 0x3, 0x4, 0x6
_END_STREAM, _END_HEADERS = 0x1, 0x4
# RFC 9113 §6.5.2 setting codes, §7 error codes.
_HEADER_TABLE_SIZE, _MAX_CONCURRENT_STREAMS, _MAX_HEADER_LIST_SIZE = 0x1, 0x3, 0x6
_REFUSED_STREAM, _COMPRESSION_ERROR, _ENHANCE_YOUR_CALM = 0x7, 0x9, 0xB
_H3_EXCESSIVE_LOAD: Final = 0x107

_REQUEST: Final = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]


class HoldingApp:
    """Answers 200, but only once :attr:`release` is set; counts requests in flight."""

    def __init__(self) -> None:
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = anyio.Event()
        self._arrived = anyio.Event()

    async def wait_for_calls(self, count: int) -> None:
        """Wait until ``count`` requests have reached the application."""
        while self.calls < count:
            await self._arrived.wait()
            self._arrived = anyio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        self._arrived.set()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        finally:
            self.in_flight -= 1


def make_server(app: Any, tls_config: ServerTLSConfig, **limits: int) -> ASGIServer:
    """An ASGIServer with its default limits but ``limits``."""
    server = ASGIServer(app)
    server.tls_config = tls_config
    server.access_log = False
    server.graceful_timeout = 0.5
    for name, value in limits.items():
        setattr(server.limits, name, value)
    return server


def frame(type_: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """An HTTP/2 frame written by hand (RFC 9113 §4.1)."""
    return (
        struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", type_, flags, stream_id) + payload
    )


class RawH2:
    """A TLS connection speaking HTTP/2 frames by hand."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.encoder = Encoder()
        self._buffer = b""

    async def send(self, *frames: bytes) -> None:
        """Send ``frames`` at once."""
        await self.stream.send(b"".join(frames))

    def headers(self, stream_id: int, *, end_stream: bool = True, prefix: bytes = b"") -> bytes:
        """A HEADERS frame holding a GET of ``/``; ``prefix`` goes before the HPACK block."""
        flags = _END_HEADERS | (_END_STREAM if end_stream else 0)
        return frame(_HEADERS, flags, stream_id, prefix + self.encoder.encode(_REQUEST))

    async def next_frame(self) -> Frame | None:
        """The next frame from the server; None once it closed the connection."""
        while True:
            if len(self._buffer) >= 9:
                length = int.from_bytes(self._buffer[:3], "big")
                if len(self._buffer) >= 9 + length:
                    header, body = self._buffer[:9], self._buffer[9 : 9 + length]
                    self._buffer = self._buffer[9 + length :]
                    parsed, _ = Frame.parse_frame_header(memoryview(header))
                    parsed.parse_body(memoryview(body))
                    return parsed
            try:
                self._buffer += await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None

    async def until(self, kind: type[Frame], *, stream_id: int | None = None) -> Frame | None:
        """Read frames until one of ``kind`` (on ``stream_id``) or GOAWAY or the end."""
        with anyio.fail_after(PATIENCE):
            while (received := await self.next_frame()) is not None:
                if isinstance(received, GoAwayFrame):
                    return received
                if isinstance(received, kind) and stream_id in (None, received.stream_id):
                    return received
        return None


@asynccontextmanager
async def raw_h2(address: AddressType, tls_config: ClientTLSConfig) -> AsyncIterator[RawH2]:
    """A raw HTTP/2 connection (ALPN ``h2``) that has sent its preface and empty SETTINGS."""
    context = ssl.create_default_context(cafile=tls_config.cafile)
    context.set_alpn_protocols(["h2"])
    tcp = await anyio.connect_tcp(address[0], address[1])
    # Not standard_compatible: no close_notify dance with a server still sending.
    stream = await TLSStream.wrap(
        tcp, ssl_context=context, hostname="localhost", standard_compatible=False
    )
    async with stream:
        connection = RawH2(stream)
        await connection.send(_PREFACE + frame(_SETTINGS, 0, 0))
        yield connection


async def server_settings(connection: RawH2) -> dict[int, int]:
    """The settings of the server's first SETTINGS frame."""
    received = await connection.until(SettingsFrame)
    assert isinstance(received, SettingsFrame)
    return dict(received.settings)


@pytest.mark.parametrize(
    "limits",
    [
        {},
        {"max_concurrent_streams": 7, "header_table_size": 8192, "max_header_size": 12345},
    ],
    ids=["defaults", "set"],
)
async def test_http2_settings_carry_the_limits(
    limits: dict[str, int], server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """The server's SETTINGS carry max_concurrent_streams, header_table_size, max_header_size."""
    server = make_server(HoldingApp(), server_tls_config, **limits)
    expected = ServerLimits(**limits)
    async with running(server) as address, raw_h2(address, client_tls_config) as h2:
        settings = await server_settings(h2)
    assert settings[_MAX_CONCURRENT_STREAMS] == expected.max_concurrent_streams
    assert settings.get(_HEADER_TABLE_SIZE, 4096) == expected.header_table_size
    assert settings[_MAX_HEADER_LIST_SIZE] == expected.max_header_size


async def http3_settings(address: AddressType, tls_config: ClientTLSConfig) -> dict[int, int]:
    """The SETTINGS frame of the server's HTTP/3 control stream (RFC 9114 §6.2.1, §7.2.4).

    Read with aioquic's QUIC layer alone over a UDP socket.
    """
    configuration = QuicConfiguration(is_client=True, alpn_protocols=["h3"])
    assert tls_config.cafile is not None
    configuration.load_verify_locations(tls_config.cafile)
    configuration.server_name = "localhost"
    quic = QuicConnection(configuration=configuration)
    received: dict[int, bytes] = {}
    async with await anyio.create_connected_udp_socket(address[0], address[1]) as udp:
        quic.connect((address[0], address[1]), now=time.monotonic())
        with anyio.fail_after(PATIENCE):
            while True:
                for data, _ in quic.datagrams_to_send(now=time.monotonic()):
                    await udp.send(data)
                while (event := quic.next_event()) is not None:
                    if isinstance(event, quic_events.StreamDataReceived):
                        received[event.stream_id] = received.get(event.stream_id, b"") + event.data
                control = next((d for d in received.values() if d[:1] == b"\x00"), b"")
                settings = _parse_settings(control[1:])
                if settings is not None:
                    return settings
                with anyio.move_on_after(0.05):
                    quic.receive_datagram(await udp.receive(), address, now=time.monotonic())
                timer = quic.get_timer()
                if timer is not None and timer <= time.monotonic():
                    quic.handle_timer(time.monotonic())


def _parse_settings(data: bytes) -> dict[int, int] | None:
    """The settings of a whole SETTINGS frame at the start of ``data``, else None."""
    buffer = Buffer(data=data)
    try:
        frame_type, length = buffer.pull_uint_var(), buffer.pull_uint_var()
        if frame_type != 0x4 or buffer.capacity - buffer.tell() < length:
            return None
        end = buffer.tell() + length
        settings = {}
        while buffer.tell() < end:
            key = buffer.pull_uint_var()
            settings[key] = buffer.pull_uint_var()
    except BufferReadError:
        return None
    return settings


@pytest.mark.parametrize("table_size", [4096, 10_000, 0])
async def test_http3_settings_carry_the_qpack_table_capacity(
    table_size: int, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """SETTINGS_QPACK_MAX_TABLE_CAPACITY (0x1) is header_table_size."""
    server = make_server(HoldingApp(), server_tls_config, header_table_size=table_size)
    async with running(server) as address:
        settings = await http3_settings(address, client_tls_config)
    assert settings.get(0x1, 0) == table_size


async def test_http2_stream_past_max_concurrent_streams_is_refused(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """With max_concurrent_streams=2 the third stream gets RST_STREAM(REFUSED_STREAM)."""
    app = HoldingApp()
    server = make_server(app, server_tls_config, max_concurrent_streams=2)
    async with running(server) as address, raw_h2(address, client_tls_config) as h2:
        await h2.send(h2.headers(1), h2.headers(3), h2.headers(5))
        refused = await h2.until(RstStreamFrame, stream_id=5)
        assert isinstance(refused, RstStreamFrame), refused
        assert refused.error_code == _REFUSED_STREAM
        app.release.set()
        answered = await h2.until(HeadersFrame, stream_id=1)
        assert isinstance(answered, HeadersFrame)  # the connection serves on
    assert app.calls == 2


async def test_http3_peer_sees_max_concurrent_streams(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """With max_concurrent_streams=2 an HTTP/3 client can open two request streams, not three."""
    app = HoldingApp()
    server = make_server(app, server_tls_config, max_concurrent_streams=2)
    async with running(server) as address, client("3", address, client_tls_config) as c:
        stream_ids = [await send_request(c) for _ in range(2)]
        with pytest.raises(LocalProtocolError, match="no stream can be opened"):
            c.get_available_stream_id()  # the server's QUIC stream limit
        with anyio.fail_after(PATIENCE):
            await app.wait_for_calls(2)
            app.release.set()
            statuses = await read_statuses(c, stream_ids)
            # Credit comes back as QUIC frames, which raise no event: poll.
            while not c.is_available():  # noqa: ASYNC110
                await anyio.sleep(0.01)
            third = await read_response(c, await send_request(c))
    assert statuses == {stream_id: b"200" for stream_id in stream_ids}
    assert third.status == 200
    assert app.most_in_flight == 2


async def read_statuses(connection: HTTPConnection, stream_ids: list[int]) -> dict[int, bytes]:
    """The status of each of ``stream_ids``, once every one of their responses has ended."""
    statuses: dict[int, bytes] = {}
    ended: set[int] = set()
    while ended != set(stream_ids):
        event = await connection.receive_event()
        assert not isinstance(event, ConnectionTerminated), event
        if isinstance(event, HeadersReceived):
            statuses.setdefault(event.stream_id, dict(event.headers).get(b":status", b""))
        if getattr(event, "end_stream", False):
            ended.add(getattr(event, "stream_id", -1))
    return statuses


@pytest.mark.parametrize("http_version", ["1.1", "2"])
async def test_max_header_size_bounds_the_header_block(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """A header block under max_header_size is served; over it, 431 (HTTP/1.1) or GOAWAY."""
    app = HoldingApp()
    app.release.set()
    server = make_server(app, server_tls_config, max_header_size=4096)
    async with running(server) as address:
        async with client(http_version, address, client_tls_config) as c:
            small = [(b"x-field", b"a" * 3000)]
            with anyio.fail_after(PATIENCE):
                response = await read_response(c, await send_request(c, headers=small))
            assert response.status == 200
        async with client(http_version, address, client_tls_config) as c:
            large = [(b"x-field", b"a" * 5000)]
            with anyio.fail_after(PATIENCE):
                response = await read_response(c, await send_request(c, headers=large))
    if http_version == "1.1":
        assert response.status == 431
    else:
        assert response.status == 0
        assert response.terminated or response.reset is not None
    assert app.calls == 1


async def test_max_header_size_bounds_the_field_section_on_http3(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """HTTP/3: SETTINGS_MAX_FIELD_SECTION_SIZE (0x6) is max_header_size; over it, 431.

    The request never reaches the application, and the connection goes on
    (RFC 9114 §4.2.2).
    """
    app = HoldingApp()
    app.release.set()
    server = make_server(app, server_tls_config, max_header_size=4096)
    async with running(server) as address:
        settings = await http3_settings(address, client_tls_config)
        async with client("3", address, client_tls_config) as c:
            with anyio.fail_after(PATIENCE):
                large = await read_response(
                    c, await send_request(c, headers=[(b"x-field", b"a" * 5000)])
                )
                small = await read_response(
                    c, await send_request(c, headers=[(b"x-field", b"a" * 3000)])
                )
    assert settings.get(0x6) == 4096
    assert large.status == 431
    assert small.status == 200
    assert app.calls == 1


@pytest.mark.parametrize(
    ("table_size", "answered"), [(4096, False), (8192, True)], ids=["default", "raised"]
)
async def test_header_table_size_bounds_the_hpack_table(
    table_size: int,
    answered: bool,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    """A client's HPACK table size update over header_table_size is a COMPRESSION_ERROR."""
    app = HoldingApp()
    app.release.set()
    server = make_server(app, server_tls_config, header_table_size=table_size)
    # RFC 7541 §6.3: a dynamic table size update to 8,192 (5-bit prefix integer).
    update = b"\x3f\xe1\x3f"
    async with running(server) as address, raw_h2(address, client_tls_config) as h2:
        await h2.send(h2.headers(1, prefix=update))
        received = await h2.until(HeadersFrame, stream_id=1)
    if answered:
        assert isinstance(received, HeadersFrame), received
    else:
        assert isinstance(received, GoAwayFrame), received
        assert received.error_code == _COMPRESSION_ERROR


@pytest.mark.parametrize(("budget", "calmed"), [(5, True), (None, False)], ids=["5", "default"])
async def test_max_reset_streams_bounds_rapid_reset_on_http2(
    budget: int | None,
    calmed: bool,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    """100 streams opened and reset: over a budget of 5, GOAWAY(ENHANCE_YOUR_CALM).

    The default budget (200) takes them, and the connection answers PING.
    """
    app = HoldingApp()
    limits = {} if budget is None else {"max_reset_streams": budget}
    server = make_server(app, server_tls_config, **limits)
    cancel = struct.pack(">I", 0x8)
    async with running(server) as address, raw_h2(address, client_tls_config) as h2:
        resets = [
            h2.headers(stream_id) + frame(_RST_STREAM, 0, stream_id, cancel)
            for stream_id in range(1, 201, 2)
        ]
        await h2.send(*resets, frame(_PING, 0, 0, b"12345678"))
        received = await h2.until(GoAwayFrame if calmed else PingFrame)
    if calmed:
        assert isinstance(received, GoAwayFrame), received
        assert received.error_code == _ENHANCE_YOUR_CALM
    else:
        assert isinstance(received, PingFrame), received


async def test_max_reset_streams_bounds_rapid_reset_on_http3(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """HTTP/3 requests opened and reset past max_reset_streams close with H3_EXCESSIVE_LOAD."""
    app = HoldingApp()
    server = make_server(app, server_tls_config, max_reset_streams=5)
    async with running(server) as address, client("3", address, client_tls_config) as c:
        terminated = None
        with anyio.fail_after(PATIENCE):
            for _ in range(20):
                if c.has_expired():
                    break  # the server's close came in while we were sending
                stream_id = c.get_available_stream_id()
                await c.send_headers(stream_id, _REQUEST, end_stream=False)
                await c.send_stream_reset(stream_id, 0x10C)  # H3_REQUEST_CANCELLED
            while terminated is None:
                event = await c.receive_event()
                if isinstance(event, ConnectionTerminated):
                    terminated = event.error_code
    assert terminated == _H3_EXCESSIVE_LOAD


async def test_a_factory_set_in_place_keeps_its_own_options(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """Limits apply to the server's own factories; one the user set is left as it is."""
    server = make_server(HoldingApp(), server_tls_config, max_concurrent_streams=2)
    server.http2_factory = HTTP2ServerFactory(max_concurrent_streams=3)
    async with running(server) as address, raw_h2(address, client_tls_config) as h2:
        settings = await server_settings(h2)
    assert settings[_MAX_CONCURRENT_STREAMS] == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_concurrent_streams", 0),
        ("max_header_size", 0),
        ("max_header_size", True),
        ("header_table_size", -1),
        ("max_reset_streams", 2**31),
        ("max_concurrent_streams", None),
    ],
)
async def test_out_of_range_protocol_limits_are_refused(
    field: str, value: object, server_tls_config: ServerTLSConfig
) -> None:
    """The server refuses to start with a protocol limit out of its range, naming it."""
    server = make_server(HoldingApp(), server_tls_config)
    server.handle_signals = False
    setattr(server.limits, field, value)
    with pytest.raises(ValueError, match=f"limits.{field} must be an integer"):
        await server.run([Endpoint("https", "127.0.0.1", 0)])


def test_a_table_of_zero_bytes_is_allowed() -> None:
    """header_table_size=0 means no dynamic table (RFC 7541 §4.2), which is valid."""
    ServerLimits(header_table_size=0).check()


@pytest.mark.parametrize("limit", [1000, None], ids=["1000", "default"])
async def test_proxy_max_buffered_data_bounds_each_read_from_the_target(
    limit: int | None,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    """A tunnel holds at most max_buffered_data of the target's bytes: DATA frames no larger."""
    payload = bytes(10_000)

    async def target(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.send(payload)
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                await stream.receive()  # until the tunnel closes

    proxy = ProxyServer()
    proxy.tls_config = server_tls_config
    proxy.graceful_timeout = 0.5
    proxy.handle_signals = False
    if limit is not None:
        proxy.max_buffered_data = limit
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    sizes: list[int] = []
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, target)
        addresses = await task_group.start(proxy.run, [Endpoint("https", "127.0.0.1", 0)])
        async with raw_h2(addresses[0], client_tls_config) as h2:
            connect = [(b":method", b"CONNECT"), (b":authority", b"127.0.0.1:%d" % port)]
            await h2.send(frame(_HEADERS, _END_HEADERS, 1, h2.encoder.encode(connect)))
            with anyio.fail_after(PATIENCE):
                while sum(sizes) < len(payload):
                    received = await h2.next_frame()
                    assert received is not None
                    assert not isinstance(received, GoAwayFrame), received
                    if isinstance(received, DataFrame):
                        sizes.append(len(received.data))
        task_group.cancel_scope.cancel()
    assert sum(sizes) == len(payload)
    if limit is not None:
        assert max(sizes) <= limit
    else:
        assert max(sizes) > 1000  # 256 KiB reads: the 10 kB come in one or a few


@pytest.mark.parametrize("size", [0, -1, True])
async def test_proxy_max_buffered_data_must_be_positive(
    size: object, server_tls_config: ServerTLSConfig
) -> None:
    """The proxy refuses to start with a buffer size that is not a positive integer."""
    proxy = ProxyServer()
    proxy.tls_config = server_tls_config
    proxy.handle_signals = False
    proxy.max_buffered_data = size  # type: ignore[assignment]
    with pytest.raises(ValueError, match="max_buffered_data must be a positive integer"):
        await proxy.run([Endpoint("https", "127.0.0.1", 0)])
