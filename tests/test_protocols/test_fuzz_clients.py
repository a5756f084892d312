"""Fuzzing hface's client protocols with hostile responses (issue 8: a fuzz target per protocol).

A client has sent a request; the "server" answers with random bytes, with
random frames, or with a valid response mutated (bits flipped, bytes
inserted, deleted, the rest cut off). Whatever it sends, the client
protocol raises nothing from ``bytes_received``, ``eof_received`` or
``datagram_received`` (bad input becomes events: RFC 9112 §2.2, RFC 9113
§5.4, RFC 9114 §8), emits only hface events, emits ``ConnectionTerminated``
at most once and nothing after it, and, if it says it can take another
request, takes one. The server side is fuzzed in ``test_common.py`` and
``test_http3_fuzz.py``.

Each target runs a bounded, derandomized number of examples (reproducible
in CI) and takes a few seconds.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence

import pylsqpack
import pytest
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import FrameType, StreamType, encode_frame
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from hpack import Encoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hface.common import ClientTLSConfig, HeadersType
from hface.events import ConnectionTerminated, Event
from hface.protocols import HTTPOverQUICProtocol, HTTPOverTCPProtocol
from hface.protocols.http1 import HTTP1ClientFactory
from hface.protocols.http2 import HTTP2ClientFactory
from hface.protocols.http3 import HTTP3ClientFactory, sniff_quic_packet
from tests.helpers.quic_pair import CLIENT_ADDRESS, SERVER_ADDRESS, certificates

_FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

REQUEST: HeadersType = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]


@st.composite
def _mutations(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few bytes flipped, inserted or deleted, or cut short."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip":
            data[position] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        else:
            del data[position:]
    return bytes(data)


def _split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """Cut ``data`` at these offsets (taken modulo its length) into pieces."""
    if not data:
        return [data]
    points = sorted({cut % len(data) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _drain(protocol: HTTPOverTCPProtocol | HTTPOverQUICProtocol, events: list[Event]) -> None:
    while (event := protocol.next_event()) is not None:
        events.append(event)


def _check_events(events: list[Event], internal_error: int | None = None) -> None:
    """Only hface events; at most one ``ConnectionTerminated``, and it is the last.

    The HTTP/2 and HTTP/3 protocols turn an exception of their own (or of
    h2 or aioquic) into a close with ``internal_error``: that is an
    unhandled exception too, so it fails the test.
    """
    for event in events:
        assert isinstance(event, Event), event
    ends = [index for index, event in enumerate(events) if isinstance(event, ConnectionTerminated)]
    assert len(ends) <= 1, events
    if ends:
        assert ends[0] == len(events) - 1, events
        end = events[ends[0]]
        assert isinstance(end, ConnectionTerminated)
        assert internal_error is None or end.error_code != internal_error, end


def _check_next_request(protocol: HTTPOverTCPProtocol | HTTPOverQUICProtocol) -> None:
    """A protocol that says it is available takes another request."""
    if protocol.is_available():
        stream_id = protocol.get_available_stream_id()
        protocol.submit_headers(stream_id, REQUEST, end_stream=True)


# --- HTTP/1.1 --------------------------------------------------------------------------

_H1_RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nuntil the end",
]


def _run_http1(pieces: Sequence[bytes], eof: bool, method: bytes) -> None:
    client = HTTP1ClientFactory()()
    stream_id = client.get_available_stream_id()
    client.submit_headers(stream_id, [(b":method", method), *REQUEST[1:]], end_stream=True)
    client.bytes_to_send()
    events: list[Event] = []
    for piece in pieces:
        client.bytes_received(piece)
        _drain(client, events)
        client.bytes_to_send()
    if eof:
        client.eof_received()
        _drain(client, events)
    _check_events(events)
    _check_next_request(client)


@_FUZZ
@given(
    pieces=st.lists(st.binary(max_size=600), min_size=1, max_size=5),
    eof=st.booleans(),
    method=st.sampled_from([b"GET", b"HEAD", b"CONNECT"]),
)
def test_http1_client_survives_random_bytes(pieces: list[bytes], eof: bool, method: bytes) -> None:
    """RFC 9112 §2.2: any bytes as a response end in events, never an exception."""
    _run_http1(pieces, eof, method)


@_FUZZ
@given(data=st.data(), eof=st.booleans(), method=st.sampled_from([b"GET", b"HEAD"]))
def test_http1_client_survives_mutated_responses(
    data: st.DataObject, eof: bool, method: bytes
) -> None:
    """Valid responses, mutated and cut anywhere, end in events, never an exception."""
    response = data.draw(_mutations(data.draw(st.sampled_from(_H1_RESPONSES))))
    cuts = data.draw(st.lists(st.integers(0, 10_000), max_size=4))
    _run_http1(_split(response, cuts), eof, method)


# --- HTTP/2 ----------------------------------------------------------------------------


def _h2_frame(type_: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([type_, flags])
        + struct.pack(">I", stream_id)
        + payload
    )


_H2_SETTINGS = _h2_frame(0x4, 0, 0, struct.pack(">HI", 0x3, 100))


def _h2_response() -> bytes:
    encoder = Encoder()
    return (
        _H2_SETTINGS
        + _h2_frame(0x4, 0x1, 0)  # SETTINGS ACK
        + _h2_frame(0x8, 0, 0, struct.pack(">I", 1000))  # WINDOW_UPDATE
        + _h2_frame(0x1, 0x4, 1, encoder.encode([(b":status", b"200"), (b"x-a", b"1")]))
        + _h2_frame(0x0, 0, 1, b"hello")
        + _h2_frame(0x1, 0x5, 1, encoder.encode([(b"x-trailer", b"1")]))
        + _h2_frame(0x6, 0, 0, b"12345678")  # PING
        + _h2_frame(0x7, 0, 0, struct.pack(">II", 1, 0))  # GOAWAY
    )


_h2_frames = st.builds(
    _h2_frame,
    st.sampled_from([*range(0xA), 0xB, 0x10, 0xFF]),
    st.integers(0, 255),
    st.sampled_from([0, 1, 2, 3, 5, 2**31 - 1]),
    st.binary(max_size=80),
)


def _run_http2(pieces: Sequence[bytes], eof: bool) -> None:
    client = HTTP2ClientFactory()()
    stream_id = client.get_available_stream_id()
    client.submit_headers(stream_id, REQUEST, end_stream=True)
    client.bytes_to_send()
    events: list[Event] = []
    for piece in pieces:
        client.bytes_received(piece)
        _drain(client, events)
        client.bytes_to_send()
    if eof:
        client.eof_received()
        _drain(client, events)
    _check_events(events, internal_error=0x2)
    _check_next_request(client)


@_FUZZ
@given(
    pieces=st.lists(st.binary(max_size=600), min_size=1, max_size=5),
    settings_first=st.booleans(),
    eof=st.booleans(),
)
def test_http2_client_survives_random_bytes(
    pieces: list[bytes], settings_first: bool, eof: bool
) -> None:
    """RFC 9113 §5.4: any bytes from the server end in events, never an exception."""
    if settings_first:
        pieces = [_H2_SETTINGS, *pieces]
    _run_http2(pieces, eof)


@_FUZZ
@given(frames=st.lists(_h2_frames, min_size=1, max_size=12), eof=st.booleans())
def test_http2_client_survives_random_frames(frames: list[bytes], eof: bool) -> None:
    """Well-framed nonsense (any type, flags, stream and payload) after a valid SETTINGS."""
    _run_http2([_H2_SETTINGS, *frames], eof)


@_FUZZ
@given(data=st.data(), eof=st.booleans())
def test_http2_client_survives_mutated_responses(data: st.DataObject, eof: bool) -> None:
    """A valid response, mutated and cut anywhere, ends in events, never an exception."""
    response = data.draw(_mutations(_h2_response()))
    cuts = data.draw(st.lists(st.integers(0, 10_000), max_size=4))
    _run_http2(_split(response, cuts), eof)


# --- HTTP/3 ----------------------------------------------------------------------------


class RawH3Server:
    """aioquic's QUIC server with no HTTP/3 layer, answering an hface HTTP/3 client.

    Datagrams move in memory; the test writes raw HTTP/3 bytes onto the
    request stream or the server's control stream.
    """

    def __init__(self) -> None:
        cafile, certfile, keyfile = certificates()
        self.now = 1000.0
        self.events: list[Event] = []
        self.client = HTTP3ClientFactory()(
            remote_address=SERVER_ADDRESS,
            server_name="localhost",
            tls_config=ClientTLSConfig(cafile=cafile),
        )
        self.client.clock(self.now)
        first = self.client.datagrams_to_send()
        info = sniff_quic_packet(first[0][0], connection_id_length=8)
        configuration = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
        configuration.load_cert_chain(certfile, keyfile)
        self.quic = QuicConnection(
            configuration=configuration,
            original_destination_connection_id=info.destination_connection_id,
        )
        for data, _ in first:
            self.quic.receive_datagram(data, CLIENT_ADDRESS, now=self.now)
        self.transfer()
        assert self.client.handshake_completed

    def transfer(self, rounds: int = 300) -> None:
        """Exchange datagrams until both sides are quiet, or ``rounds`` have passed."""
        for _ in range(rounds):
            moved = False
            for data, _ in self.quic.datagrams_to_send(now=self.now):
                self.client.clock(self.now)
                self.client.datagram_received((data, SERVER_ADDRESS))
                moved = True
            for data, _ in self.client.datagrams_to_send():
                self.quic.receive_datagram(data, CLIENT_ADDRESS, now=self.now)
                moved = True
            _drain(self.client, self.events)
            while self.quic.next_event() is not None:
                pass
            if not moved:
                timers = [t for t in (self.quic.get_timer(), self.client.get_timer()) if t]
                if not timers or min(timers) > self.now + 0.05:
                    return
                self.now = max(self.now, min(timers))
                self.client.clock(self.now)
                server_timer = self.quic.get_timer()
                if server_timer is not None and server_timer <= self.now:
                    self.quic.handle_timer(self.now)

    def open_control(self, data: bytes = b"") -> int:
        """Open the server's control stream: SETTINGS, then ``data``."""
        stream_id = self.quic.get_next_available_stream_id(is_unidirectional=True)
        settings_frame = encode_frame(FrameType.SETTINGS, b"")
        self.quic.send_stream_data(
            stream_id, encode_uint_var(StreamType.CONTROL) + settings_frame + data
        )
        return stream_id


def _h3_response() -> bytes:
    encoder = pylsqpack.Encoder()
    _, head = encoder.encode(0, [(b":status", b"200"), (b"x-a", b"1")])
    _, trailers = encoder.encode(0, [(b"x-trailer", b"1")])
    return (
        encode_frame(FrameType.HEADERS, head)
        + encode_frame(FrameType.DATA, b"hello")
        + encode_frame(0x21, b"reserved")
        + encode_frame(FrameType.HEADERS, trailers)
    )


_h3_frames = st.tuples(
    st.sampled_from([0x0, 0x1, 0x3, 0x4, 0x5, 0x7, 0xD, 0x2, 0x6, 0x21, 0x40]),
    st.integers(min_value=0, max_value=70),
    st.binary(max_size=64),
).map(lambda f: bytes([f[0], f[1]]) + f[2])
_h3_stream_data = st.one_of(
    st.binary(max_size=1500), st.lists(_h3_frames, max_size=8).map(b"".join)
)


def _run_http3(response: bytes, end_stream: bool, control: bytes) -> None:
    server = RawH3Server()
    client = server.client
    stream_id = client.get_available_stream_id()
    client.submit_headers(stream_id, REQUEST, end_stream=True)
    server.transfer()
    server.open_control(control)
    server.quic.send_stream_data(stream_id, response, end_stream)
    server.transfer()
    _check_events(server.events, internal_error=0x102)
    _check_next_request(client)
    server.transfer()


@_FUZZ
@given(response=_h3_stream_data, end_stream=st.booleans())
def test_http3_client_survives_random_responses(response: bytes, end_stream: bool) -> None:
    """RFC 9114 §8: any bytes on the request stream end in events, never an exception."""
    _run_http3(response, end_stream, b"")


@_FUZZ
@given(data=st.data(), end_stream=st.booleans())
def test_http3_client_survives_mutated_responses(data: st.DataObject, end_stream: bool) -> None:
    """A valid response, mutated and cut anywhere, ends in events, never an exception."""
    _run_http3(data.draw(_mutations(_h3_response())), end_stream, b"")


@_FUZZ
@given(control=_h3_stream_data)
def test_http3_client_survives_random_control_frames(control: bytes) -> None:
    """RFC 9114 §6.2.1: any bytes after the server's SETTINGS end in events or a close."""
    _run_http3(_h3_response(), True, control)


@pytest.mark.parametrize("flood", [b"\x21\x00" * 5000, encode_frame(FrameType.DATA, b"") * 5000])
def test_http3_client_is_not_flooded(flood: bytes) -> None:
    """The client's flood guard ends a response of reserved or empty frames (RFC 9114 §10.5)."""
    server = RawH3Server()
    client = server.client
    stream_id = client.get_available_stream_id()
    client.submit_headers(stream_id, REQUEST, end_stream=True)
    server.transfer()
    server.open_control()
    _, head = pylsqpack.Encoder().encode(0, [(b":status", b"200")])
    server.quic.send_stream_data(stream_id, encode_frame(FrameType.HEADERS, head) + flood, False)
    server.transfer(rounds=2000)
    closed = [e for e in server.events if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in closed] == [0x107]  # H3_EXCESSIVE_LOAD
