"""HTTP/2 conformance of the server protocol, modelled on h2spec's case list.

Each case drives :class:`HTTP2ServerProtocol` with raw frames (built by hand
or with hyperframe and hpack), reads back what it sent with hyperframe, and
checks the answer RFC 9113 (and RFC 7541 for HPACK) asks for, as h2spec
does: a connection error is a GOAWAY with the code plus a
``ConnectionTerminated``; a stream error is an RST_STREAM with the code and
the connection goes on (h2spec also accepts a GOAWAY, and so do we only
where RFC 9113 allows a connection error too); an ignored frame leaves the
connection answering PING. The test ids are h2spec's case numbers, which
are the RFC section numbers (RFC 9113 renumbered a few of RFC 7540's: the
docstring of each group names the RFC 9113 section where it differs).

The flood cases (RFC 9113 §10.5) are not in h2spec: they check that the
protocol gives up early with GOAWAY(ENHANCE_YOUR_CALM) and that its work
stays bounded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
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

from hface.common import HTTP2_ERROR_CODES, HeadersType
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HeadersReceived,
    StreamResetReceived,
    StreamResetSent,
)
from hface.protocols import ConnectionState
from hface.protocols.http2 import HTTP2ClientFactory, HTTP2ServerFactory, HTTP2ServerProtocol
from tests.helpers.pairs import Chunker, one_byte, random_chunks

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 §6) and flags.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20

# Error codes (RFC 9113 §7).
NO_ERROR = HTTP2_ERROR_CODES.no_error
PROTOCOL_ERROR = HTTP2_ERROR_CODES.protocol_error
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = HTTP2_ERROR_CODES.refused_stream
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

REQUEST: HeadersType = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/"),
]
POST: HeadersType = [
    (b":method", b"POST"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/upload"),
]
RESPONSE: HeadersType = [(b":status", b"200")]


def frame(type_: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """Serialize a frame by hand, so that it may break any rule (RFC 9113 §4.1)."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([type_, flags])
        + struct.pack(">I", stream_id)
        + payload
    )


def settings(*pairs: tuple[int, int], flags: int = 0, stream_id: int = 0) -> bytes:
    """A SETTINGS frame with these (identifier, value) pairs (RFC 9113 §6.5.1)."""
    payload = b"".join(struct.pack(">HI", key, value) for key, value in pairs)
    return frame(SETTINGS, flags, stream_id, payload)


def ping(data: bytes = b"hface-ok", *, flags: int = 0, stream_id: int = 0) -> bytes:
    """A PING frame (RFC 9113 §6.7)."""
    return frame(PING, flags, stream_id, data)


def window_update(stream_id: int, increment: int) -> bytes:
    """A WINDOW_UPDATE frame (RFC 9113 §6.9)."""
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def priority(stream_id: int, depends_on: int, *, weight: int = 15) -> bytes:
    """A PRIORITY frame (RFC 9113 §6.3)."""
    return frame(PRIORITY, 0, stream_id, struct.pack(">IB", depends_on, weight))


def parse_frames(data: bytes) -> list[Frame]:
    """Split the bytes the server sent into frames."""
    frames = []
    view = memoryview(data)
    while view:
        parsed, length = Frame.parse_frame_header(view[:9])
        parsed.parse_body(view[9 : 9 + length])
        frames.append(parsed)
        view = view[9 + length :]
    return frames


class Peer:
    """A raw HTTP/2 client in front of a sans-IO server protocol.

    It sends the client preface and an empty SETTINGS, then lets a test send
    raw bytes and read back the frames and events that followed.
    """

    def __init__(self, **options: Any) -> None:
        self.server: HTTP2ServerProtocol = HTTP2ServerFactory(**options)()
        self.encoder = Encoder()
        self.server.bytes_received(PREFACE + settings())
        first = self.frames()
        assert isinstance(first[0], SettingsFrame)
        assert "ACK" not in first[0].flags
        assert self.events() == []

    def send(self, *chunks: bytes) -> None:
        """Feed bytes to the server, in one ``bytes_received`` call."""
        self.server.bytes_received(b"".join(chunks))

    def frames(self) -> list[Frame]:
        """Return the frames the server sent since the last call."""
        return parse_frames(self.server.bytes_to_send())

    def events(self) -> list[Event]:
        """Return the events the server emitted since the last call."""
        events = []
        while (event := self.server.next_event()) is not None:
            events.append(event)
        return events

    def block(self, headers: HeadersType) -> bytes:
        """Encode a header block with the connection's HPACK encoder."""
        return bytes(self.encoder.encode(list(headers)))

    def headers(
        self,
        stream_id: int,
        headers: HeadersType = REQUEST,
        *,
        end_stream: bool = True,
        end_headers: bool = True,
    ) -> bytes:
        """A HEADERS frame carrying ``headers``."""
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        return frame(HEADERS, flags, stream_id, self.block(headers))

    def open(self, stream_id: int, headers: HeadersType = REQUEST, *, end_stream: bool) -> None:
        """Open a stream with a valid request and forget what followed."""
        self.send(self.headers(stream_id, headers, end_stream=end_stream))
        events = self.events()
        assert isinstance(events[0], HeadersReceived)
        self.frames()


# -- verifications, after h2spec's ------------------------------------------


def expect_connection_error(peer: Peer, error_code: int) -> None:
    """The server sent GOAWAY(error_code) and reported the end of the connection."""
    goaways = [f for f in peer.frames() if isinstance(f, GoAwayFrame)]
    assert [g.error_code for g in goaways] == [error_code]
    terminated = [e for e in peer.events() if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in terminated] == [error_code]
    assert peer.server.has_expired()


def expect_stream_error(
    peer: Peer, stream_id: int, error_code: int, *, goaway_allowed: bool = False
) -> None:
    """RST_STREAM(error_code) on the stream, the connection alive.

    With ``goaway_allowed``, GOAWAY(error_code) passes too (h2spec accepts either).
    """
    frames = peer.frames()
    resets = [f for f in frames if isinstance(f, RstStreamFrame)]
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    if goaways and goaway_allowed:
        assert [g.error_code for g in goaways] == [error_code]
        assert not resets
        return
    assert not goaways
    # The first reset carries the code; frames the peer sent on after it
    # may each earn a STREAM_CLOSED (RFC 9113 §5.1).
    codes = [(r.stream_id, r.error_code) for r in resets]
    assert codes[:1] == [(stream_id, error_code)]
    assert set(codes[1:]) <= {(stream_id, STREAM_CLOSED)}
    events = peer.events()
    assert not [e for e in events if isinstance(e, ConnectionTerminated)]
    if [e for e in events if isinstance(e, HeadersReceived)]:
        # A request reported before its error is reset for the layer above.
        assert events[-1] == StreamResetSent(stream_id=stream_id, error_code=error_code)
    assert not peer.server.has_expired()
    expect_alive(peer)


def expect_alive(peer: Peer) -> None:
    """No error was sent and the connection still answers PING (RFC 9113 §6.7)."""
    frames = peer.frames()
    assert not [f for f in frames if isinstance(f, (GoAwayFrame, RstStreamFrame))]
    assert not [e for e in peer.events() if isinstance(e, ConnectionTerminated)]
    peer.send(ping(b"liveness"))
    acks = [f for f in peer.frames() if isinstance(f, PingFrame)]
    assert len(acks) == 1
    assert "ACK" in acks[0].flags
    assert acks[0].opaque_data == b"liveness"


# -- connection errors -------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A violation: what to set up and send, and the error code expected."""

    #: Sends the violation (and any setup before it).
    send: Callable[[Peer], None]
    #: The error code RFC 9113 asks for.
    error_code: int
    #: For a stream error: whether RFC 9113 allows a connection error too.
    goaway_allowed: bool = False


def _send(*chunks: bytes) -> Callable[[Peer], None]:
    return lambda peer: peer.send(*chunks)


def _headers_then(second: Callable[[Peer], bytes]) -> Callable[[Peer], None]:
    """HEADERS on stream 1 without END_HEADERS, then another frame."""

    def send(peer: Peer) -> None:
        peer.send(peer.headers(1, end_headers=False), second(peer))

    return send


def _invalid_block(block: bytes) -> Callable[[Peer], None]:
    """A HEADERS frame whose block is invalid HPACK (RFC 7541)."""
    return _send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))


def _open_then(*chunks: bytes, end_stream: bool = True) -> Callable[[Peer], None]:
    def send(peer: Peer) -> None:
        peer.open(1, end_stream=end_stream)
        peer.send(*chunks)

    return send


def _closed_then(build: Callable[[Peer], bytes]) -> Callable[[Peer], None]:
    """Stream 1 completed both ways (closed, RFC 9113 §5.1), then a frame on it."""

    def send(peer: Peer) -> None:
        peer.open(1, end_stream=True)
        peer.server.submit_headers(1, RESPONSE, end_stream=True)
        peer.frames()
        peer.send(build(peer))

    return send


def _settings_with_bad_value(key: int, value: int) -> Callable[[Peer], None]:
    return _send(settings((key, value)))


def _lower_stream_id(peer: Peer) -> None:
    peer.open(5, end_stream=True)
    peer.send(peer.headers(3))


def _window_overflow(peer: Peer) -> None:
    peer.send(window_update(0, 2**31 - 1))  # 65,535 + 2**31-1 > 2**31-1


CONNECTION_ERRORS = [
    # §4.2: frame size.
    pytest.param(
        Case(
            _send(frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x00" * (2**16 + 1))),
            FRAME_SIZE_ERROR,
        ),
        id="4.2/3 HEADERS larger than SETTINGS_MAX_FRAME_SIZE",
    ),
    # §4.3: header compression and decompression.
    pytest.param(
        Case(_invalid_block(b"\xbe"), COMPRESSION_ERROR),
        id="4.3/1 invalid header block fragment",
    ),
    pytest.param(
        Case(_headers_then(lambda peer: priority(1, 0)), PROTOCOL_ERROR),
        id="4.3/2 PRIORITY inside a header block",
    ),
    pytest.param(
        Case(_headers_then(lambda peer: peer.headers(3)), PROTOCOL_ERROR),
        id="4.3/3 HEADERS to another stream inside a header block",
    ),
    # §5.1: stream states.
    pytest.param(
        Case(_send(frame(DATA, 0, 1, b"x")), PROTOCOL_ERROR), id="5.1/1 DATA on an idle stream"
    ),
    pytest.param(
        Case(_send(frame(RST_STREAM, 0, 1, struct.pack(">I", 8))), PROTOCOL_ERROR),
        id="5.1/2 RST_STREAM on an idle stream",
    ),
    pytest.param(
        Case(_send(window_update(1, 100)), PROTOCOL_ERROR),
        id="5.1/3 WINDOW_UPDATE on an idle stream",
    ),
    pytest.param(
        Case(
            lambda peer: peer.send(frame(CONTINUATION, END_HEADERS, 1, peer.block(REQUEST))),
            PROTOCOL_ERROR,
        ),
        id="5.1/4 CONTINUATION on an idle stream",
    ),
    pytest.param(
        Case(
            _closed_then(lambda peer: frame(CONTINUATION, END_HEADERS, 1, peer.block(REQUEST))),
            PROTOCOL_ERROR,
        ),
        id="5.1/13 CONTINUATION on a closed stream",
    ),
    # §5.1.1: stream identifiers.
    pytest.param(
        Case(lambda peer: peer.send(peer.headers(2)), PROTOCOL_ERROR),
        id="5.1.1/1 even-numbered stream identifier",
    ),
    pytest.param(Case(_lower_stream_id, PROTOCOL_ERROR), id="5.1.1/2 decreasing stream identifier"),
    # §5.5: extending HTTP/2.
    pytest.param(
        Case(_headers_then(lambda peer: frame(0x42, 0, 1, b"ext")), PROTOCOL_ERROR),
        id="5.5/2 unknown frame inside a header block",
    ),
    # §6.1 DATA.
    pytest.param(Case(_send(frame(DATA, 0, 0, b"x")), PROTOCOL_ERROR), id="6.1/1 DATA on stream 0"),
    pytest.param(
        Case(_open_then(frame(DATA, PADDED, 1, b"\x06abc"), end_stream=False), PROTOCOL_ERROR),
        id="6.1/3 DATA with a pad length over the payload",
    ),
    # §6.2 HEADERS.
    pytest.param(
        Case(_headers_then(lambda peer: priority(1, 0)), PROTOCOL_ERROR),
        id="6.2/1 HEADERS without END_HEADERS then PRIORITY",
    ),
    pytest.param(
        Case(_headers_then(lambda peer: peer.headers(3)), PROTOCOL_ERROR),
        id="6.2/2 HEADERS to another stream while a block is open",
    ),
    pytest.param(
        Case(lambda peer: peer.send(peer.headers(0)), PROTOCOL_ERROR),
        id="6.2/3 HEADERS on stream 0",
    ),
    pytest.param(
        Case(
            lambda peer: peer.send(
                frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1, b"\xff" + peer.block(REQUEST))
            ),
            PROTOCOL_ERROR,
        ),
        id="6.2/4 HEADERS with a pad length over the payload",
    ),
    # §6.3 PRIORITY.
    pytest.param(Case(_send(priority(0, 1)), PROTOCOL_ERROR), id="6.3/1 PRIORITY on stream 0"),
    # §6.4 RST_STREAM.
    pytest.param(
        Case(_send(frame(RST_STREAM, 0, 0, struct.pack(">I", 8))), PROTOCOL_ERROR),
        id="6.4/1 RST_STREAM on stream 0",
    ),
    pytest.param(
        Case(_send(frame(RST_STREAM, 0, 3, struct.pack(">I", 8))), PROTOCOL_ERROR),
        id="6.4/2 RST_STREAM on an idle stream",
    ),
    pytest.param(
        Case(
            _open_then(frame(RST_STREAM, 0, 1, b"\x00\x00\x00\x08\x00"), end_stream=False),
            FRAME_SIZE_ERROR,
        ),
        id="6.4/3 RST_STREAM with a length other than 4",
    ),
    # §6.5 SETTINGS.
    pytest.param(
        Case(_send(settings((0x3, 100), flags=ACK)), FRAME_SIZE_ERROR),
        id="6.5/1 SETTINGS ACK with a payload",
    ),
    pytest.param(
        Case(_send(settings((0x3, 100), stream_id=1)), PROTOCOL_ERROR),
        id="6.5/2 SETTINGS on a stream",
    ),
    pytest.param(
        Case(_send(frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00")), FRAME_SIZE_ERROR),
        id="6.5/3 SETTINGS length not a multiple of 6",
    ),
    # §6.5.2 defined settings.
    pytest.param(
        Case(_settings_with_bad_value(0x2, 2), PROTOCOL_ERROR),
        id="6.5.2/1 SETTINGS_ENABLE_PUSH not 0 or 1",
    ),
    pytest.param(
        Case(_settings_with_bad_value(0x4, 2**31), FLOW_CONTROL_ERROR),
        id="6.5.2/2 SETTINGS_INITIAL_WINDOW_SIZE over 2**31-1",
    ),
    pytest.param(
        Case(_settings_with_bad_value(0x5, 2**14 - 1), PROTOCOL_ERROR),
        id="6.5.2/3 SETTINGS_MAX_FRAME_SIZE under 2**14",
    ),
    pytest.param(
        Case(_settings_with_bad_value(0x5, 2**24), PROTOCOL_ERROR),
        id="6.5.2/4 SETTINGS_MAX_FRAME_SIZE over 2**24-1",
    ),
    # §6.7 PING.
    pytest.param(Case(_send(ping(stream_id=1)), PROTOCOL_ERROR), id="6.7/3 PING on a stream"),
    pytest.param(
        Case(_send(frame(PING, 0, 0, b"123456")), FRAME_SIZE_ERROR),
        id="6.7/4 PING with a length other than 8",
    ),
    # §6.8 GOAWAY.
    pytest.param(
        Case(_send(frame(GOAWAY, 0, 1, struct.pack(">II", 0, 0))), PROTOCOL_ERROR),
        id="6.8/1 GOAWAY on a stream",
    ),
    # §6.9 WINDOW_UPDATE.
    pytest.param(
        Case(_send(window_update(0, 0)), PROTOCOL_ERROR),
        id="6.9/1 WINDOW_UPDATE of 0 on the connection",
    ),
    pytest.param(
        Case(_send(frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01")), FRAME_SIZE_ERROR),
        id="6.9/3 WINDOW_UPDATE with a length other than 4",
    ),
    # §6.9.1 the flow-control window.
    pytest.param(
        Case(_window_overflow, FLOW_CONTROL_ERROR), id="6.9.1/2 connection window over 2**31-1"
    ),
    # §6.9.2 initial flow-control window size.
    pytest.param(
        Case(_settings_with_bad_value(0x4, 2**31), FLOW_CONTROL_ERROR),
        id="6.9.2/3 SETTINGS_INITIAL_WINDOW_SIZE over the maximum",
    ),
    # §6.10 CONTINUATION.
    pytest.param(
        Case(_headers_then(lambda peer: frame(DATA, 0, 1, b"x")), PROTOCOL_ERROR),
        id="6.10/2 CONTINUATION missing, DATA instead",
    ),
    pytest.param(
        Case(_headers_then(lambda peer: frame(CONTINUATION, END_HEADERS, 0, b"")), PROTOCOL_ERROR),
        id="6.10/3 CONTINUATION on stream 0",
    ),
    pytest.param(
        Case(
            lambda peer: peer.send(
                peer.headers(1, end_stream=False), frame(CONTINUATION, END_HEADERS, 1, b"")
            ),
            PROTOCOL_ERROR,
        ),
        id="6.10/4 CONTINUATION after END_HEADERS",
    ),
    pytest.param(
        Case(
            lambda peer: peer.send(
                peer.headers(1, end_stream=False, end_headers=False),
                frame(CONTINUATION, END_HEADERS, 1, b""),
                frame(CONTINUATION, END_HEADERS, 1, b""),
            ),
            PROTOCOL_ERROR,
        ),
        id="6.10/5 CONTINUATION after a CONTINUATION with END_HEADERS",
    ),
    pytest.param(
        Case(
            _open_then(
                frame(DATA, 0, 1, b"x"), frame(CONTINUATION, END_HEADERS, 1, b""), end_stream=False
            ),
            PROTOCOL_ERROR,
        ),
        id="6.10/6 CONTINUATION after DATA",
    ),
    # RFC 9113 §8.4 (h2spec 8.2): a client cannot push.
    pytest.param(
        Case(
            _open_then(frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2)), end_stream=False),
            PROTOCOL_ERROR,
        ),
        id="8.2/1 PUSH_PROMISE from a client",
    ),
    # RFC 7541 (h2spec hpack): invalid header blocks are COMPRESSION_ERROR (RFC 9113 §4.3).
    pytest.param(
        Case(_invalid_block(b"\xbe"), COMPRESSION_ERROR),
        id="hpack/2.3.3/1 indexed field with an index past the tables",
    ),
    pytest.param(
        Case(_invalid_block(b"\x7e\x01a"), COMPRESSION_ERROR),
        id="hpack/2.3.3/2 literal with an indexed name past the tables",
    ),
    pytest.param(
        Case(
            lambda peer: peer.send(
                frame(HEADERS, END_STREAM | END_HEADERS, 1, peer.block(REQUEST) + b"\x20")
            ),
            COMPRESSION_ERROR,
        ),
        id="hpack/4.2/1 dynamic table size update at the end of a block",
    ),
    pytest.param(
        Case(_invalid_block(b"\x00\x84\xff\xff\xff\xff\x01a"), COMPRESSION_ERROR),
        id="hpack/5.2/1 Huffman string with the EOS symbol",
    ),
    pytest.param(
        Case(_invalid_block(b"\x00\x82\x1f\xff\x01a"), COMPRESSION_ERROR),
        id="hpack/5.2/2 Huffman padding longer than 7 bits",
    ),
    pytest.param(
        Case(_invalid_block(b"\x00\x81\x18\x01a"), COMPRESSION_ERROR),
        id="hpack/5.2/3 Huffman padding not a prefix of EOS",
    ),
    pytest.param(
        Case(_invalid_block(b"\x80"), COMPRESSION_ERROR),
        id="hpack/6.1/1 indexed field with index 0",
    ),
    pytest.param(
        Case(_invalid_block(b"\x3f\xe2\x1f"), COMPRESSION_ERROR),
        id="hpack/6.3/1 dynamic table size update over SETTINGS_HEADER_TABLE_SIZE",
    ),
]


@pytest.mark.parametrize("case", CONNECTION_ERRORS)
def test_connection_error(case: Case) -> None:
    """RFC 9113 §5.4.1: GOAWAY with the code, then the connection ends."""
    peer = Peer()
    case.send(peer)
    expect_connection_error(peer, case.error_code)
    # Nothing more is processed or sent after a connection error.
    peer.send(peer.headers(101), ping())
    assert peer.frames() == []
    assert peer.events() == []


def test_invalid_preface() -> None:
    """3.5/2 (RFC 9113 §3.4): an invalid preface is a PROTOCOL_ERROR."""
    server = HTTP2ServerFactory()()
    server.bytes_to_send()
    server.bytes_received(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings())
    goaways = [f for f in parse_frames(server.bytes_to_send()) if isinstance(f, GoAwayFrame)]
    assert [g.error_code for g in goaways] == [PROTOCOL_ERROR]
    event = server.next_event()
    assert isinstance(event, ConnectionTerminated)
    assert event.error_code == PROTOCOL_ERROR


def test_valid_preface() -> None:
    """3.5/1 (RFC 9113 §3.4): the server sends SETTINGS and acknowledges the client's."""
    peer = Peer()
    peer.send(settings((0x3, 10)))
    frames = peer.frames()
    assert [type(f) for f in frames] == [SettingsFrame]
    assert "ACK" in frames[0].flags
    expect_alive(peer)


# -- stream errors -----------------------------------------------------------


def _half_closed_then(build: Callable[[Peer], bytes]) -> Callable[[Peer], None]:
    """Stream 1 ended by the client (half-closed (remote), RFC 9113 §5.1), then a frame."""

    def send(peer: Peer) -> None:
        peer.open(1, end_stream=True)
        peer.send(build(peer))

    return send


def _reset_then(build: Callable[[Peer], bytes]) -> Callable[[Peer], None]:
    """Stream 1 reset by the client (closed, RFC 9113 §5.1), then a frame on it."""

    def send(peer: Peer) -> None:
        peer.open(1, end_stream=False)
        peer.send(frame(RST_STREAM, 0, 1, struct.pack(">I", 8)))
        assert peer.events() == [StreamResetReceived(stream_id=1, error_code=8)]
        peer.send(build(peer))

    return send


def _with_content_length(declared: int, *chunks: bytes) -> Callable[[Peer], None]:
    def send(peer: Peer) -> None:
        headers = [*POST, (b"content-length", b"%d" % declared)]
        peer.send(peer.headers(1, headers, end_stream=False))
        for index, chunk in enumerate(chunks):
            peer.send(frame(DATA, END_STREAM if index == len(chunks) - 1 else 0, 1, chunk))

    return send


def _request(*headers: tuple[bytes, bytes]) -> Callable[[Peer], None]:
    return lambda peer: peer.send(peer.headers(1, list(headers)))


_M, _S, _A, _P = (
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/"),
)

STREAM_ERRORS = [
    # §4.2 frame size.
    pytest.param(
        Case(
            _open_then(frame(DATA, 0, 1, b"x" * (2**16 + 1)), end_stream=False),
            FRAME_SIZE_ERROR,
            goaway_allowed=True,  # §4.2: a frame too large may be a connection error
        ),
        id="4.2/2 DATA larger than SETTINGS_MAX_FRAME_SIZE",
    ),
    # §5.1 stream states: half-closed (remote).
    pytest.param(
        Case(_open_then(frame(DATA, 0, 1, b"x")), STREAM_CLOSED),
        id="5.1/5 DATA on a half-closed (remote) stream",
    ),
    pytest.param(
        Case(_half_closed_then(lambda peer: peer.headers(1)), STREAM_CLOSED),
        id="5.1/6 HEADERS on a half-closed (remote) stream",
    ),
    # Closed by RST_STREAM.
    pytest.param(
        Case(_reset_then(lambda peer: frame(DATA, 0, 1, b"x")), STREAM_CLOSED),
        id="5.1/8 DATA after RST_STREAM",
    ),
    pytest.param(
        Case(_reset_then(lambda peer: peer.headers(1)), STREAM_CLOSED),
        id="5.1/9 HEADERS after RST_STREAM",
    ),
    # Closed after END_STREAM both ways.
    pytest.param(
        Case(_closed_then(lambda peer: frame(DATA, 0, 1, b"x")), STREAM_CLOSED),
        id="5.1/11 DATA on a closed stream",
    ),
    pytest.param(
        Case(
            _closed_then(lambda peer: peer.headers(1)),
            STREAM_CLOSED,
            goaway_allowed=True,  # §5.1: closed by END_STREAM, a connection error may be
        ),
        id="5.1/12 HEADERS on a closed stream",
    ),
    # §5.3.1 (RFC 7540; RFC 9113 §5.3.1 keeps the self-dependency rule).
    pytest.param(
        Case(
            lambda peer: peer.send(
                frame(
                    HEADERS,
                    END_STREAM | END_HEADERS | PRIORITY_FLAG,
                    1,
                    struct.pack(">IB", 1, 15) + peer.block(REQUEST),
                )
            ),
            PROTOCOL_ERROR,
        ),
        id="5.3.1/1 HEADERS depending on itself",
    ),
    pytest.param(
        Case(_send(priority(1, 1)), PROTOCOL_ERROR), id="5.3.1/2 PRIORITY depending on itself"
    ),
    # §6.1 DATA.
    pytest.param(
        Case(_open_then(frame(DATA, 0, 1, b"x")), STREAM_CLOSED),
        id="6.1/2 DATA on a stream not open",
    ),
    # §6.3 PRIORITY.
    pytest.param(
        Case(
            _open_then(frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00\x0f\x00"), end_stream=False),
            FRAME_SIZE_ERROR,
        ),
        id="6.3/2 PRIORITY with a length other than 5",
    ),
    # §6.9 WINDOW_UPDATE.
    pytest.param(
        Case(_open_then(window_update(1, 0), end_stream=False), PROTOCOL_ERROR),
        id="6.9/2 WINDOW_UPDATE of 0 on a stream",
    ),
    # §6.9.1 the flow-control window.
    pytest.param(
        Case(_open_then(window_update(1, 2**31 - 1), end_stream=False), FLOW_CONTROL_ERROR),
        id="6.9.1/3 stream window over 2**31-1",
    ),
    # RFC 9113 §8.1 (h2spec 8.1): a second HEADERS that does not end the stream.
    pytest.param(
        Case(
            lambda peer: peer.send(
                peer.headers(1, POST, end_stream=False),
                peer.headers(1, [(b"x-trailer", b"1")], end_stream=False),
            ),
            PROTOCOL_ERROR,
        ),
        id="8.1/1 trailers without END_STREAM",
    ),
    # RFC 9113 §8.2 (h2spec 8.1.2): field names are lower case.
    pytest.param(
        Case(_request(_M, _S, _A, _P, (b"X-Upper", b"1")), PROTOCOL_ERROR),
        id="8.1.2/1 upper-case field name",
    ),
    # RFC 9113 §8.3 (h2spec 8.1.2.1): pseudo-header fields.
    pytest.param(
        Case(_request(_M, _S, _A, _P, (b":unknown", b"1")), PROTOCOL_ERROR),
        id="8.1.2.1/1 unknown pseudo-header",
    ),
    pytest.param(
        Case(_request(_M, _S, _A, _P, (b":status", b"200")), PROTOCOL_ERROR),
        id="8.1.2.1/2 response pseudo-header in a request",
    ),
    pytest.param(
        Case(
            lambda peer: peer.send(
                peer.headers(1, POST, end_stream=False), peer.headers(1, [(b":path", b"/x")])
            ),
            PROTOCOL_ERROR,
        ),
        id="8.1.2.1/3 pseudo-header in trailers",
    ),
    pytest.param(
        Case(_request(_M, _S, (b"x-field", b"1"), _A, _P), PROTOCOL_ERROR),
        id="8.1.2.1/4 pseudo-header after a regular field",
    ),
    # RFC 9113 §8.2.2 (h2spec 8.1.2.2): connection-specific fields.
    pytest.param(
        Case(_request(_M, _S, _A, _P, (b"connection", b"keep-alive")), PROTOCOL_ERROR),
        id="8.1.2.2/1 connection-specific field",
    ),
    pytest.param(
        Case(_request(_M, _S, _A, _P, (b"te", b"gzip")), PROTOCOL_ERROR),
        id="8.1.2.2/2 TE other than trailers",
    ),
    # RFC 9113 §8.3.1 (h2spec 8.1.2.3): request pseudo-headers.
    pytest.param(
        Case(_request(_M, _S, _A, (b":path", b"")), PROTOCOL_ERROR), id="8.1.2.3/1 empty :path"
    ),
    pytest.param(Case(_request(_S, _A, _P), PROTOCOL_ERROR), id="8.1.2.3/2 no :method"),
    pytest.param(Case(_request(_M, _A, _P), PROTOCOL_ERROR), id="8.1.2.3/3 no :scheme"),
    pytest.param(Case(_request(_M, _S, _A), PROTOCOL_ERROR), id="8.1.2.3/4 no :path"),
    pytest.param(
        Case(_request(_M, _M, _S, _A, _P), PROTOCOL_ERROR), id="8.1.2.3/5 duplicate :method"
    ),
    pytest.param(
        Case(_request(_M, _S, _S, _A, _P), PROTOCOL_ERROR), id="8.1.2.3/6 duplicate :scheme"
    ),
    pytest.param(
        Case(_request(_M, _S, _A, _P, _P), PROTOCOL_ERROR), id="8.1.2.3/7 duplicate :path"
    ),
    # RFC 9113 §8.1.1 (h2spec 8.1.2.6): content-length must match the DATA.
    pytest.param(
        Case(_with_content_length(1, b"too long"), PROTOCOL_ERROR),
        id="8.1.2.6/1 content-length and one DATA frame disagree",
    ),
    pytest.param(
        Case(_with_content_length(1, b"one", b"two"), PROTOCOL_ERROR),
        id="8.1.2.6/2 content-length and several DATA frames disagree",
    ),
]


@pytest.mark.parametrize("case", STREAM_ERRORS)
def test_stream_error(case: Case) -> None:
    """RFC 9113 §5.4.2: RST_STREAM with the code; the connection goes on."""
    peer = Peer()
    case.send(peer)
    expect_stream_error(peer, 1, case.error_code, goaway_allowed=case.goaway_allowed)


def test_stream_error_spares_the_other_streams() -> None:
    """RFC 9113 §5.4.2: a malformed request ends its stream; one in flight is answered."""
    peer = Peer()
    peer.open(1, end_stream=True)
    peer.send(peer.headers(3, [_M, _S, _A, _P, (b"connection", b"close")]), peer.headers(5))
    events = peer.events()
    assert [type(e) for e in events] == [HeadersReceived]
    assert isinstance(events[0], HeadersReceived)
    assert events[0].stream_id == 5
    peer.server.submit_headers(1, RESPONSE, end_stream=True)
    peer.server.submit_headers(5, RESPONSE, end_stream=True)
    frames = peer.frames()
    assert [(type(f), f.stream_id) for f in frames if not isinstance(f, SettingsFrame)] == [
        (RstStreamFrame, 3),
        (HeadersFrame, 1),
        (HeadersFrame, 5),
    ]
    expect_alive(peer)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([_M, _S, _A, _P, (b"X-Upper", b"1")], id="8.1.2/1 upper-case name"),
        pytest.param([_S, _A, _P], id="8.1.2.3/2 no :method"),
        pytest.param([_M, _M, _S, _A, _P], id="8.1.2.3/5 duplicate :method"),
        pytest.param([_M, _S, _A, _P, (b"bad name", b"1")], id="8.1.2/1 space in a name"),
        pytest.param([_M, _S, _A, _P, (b"x-value", b"a\r\nb")], id="8.2.1 CRLF in a value"),
    ],
)
def test_malformed_request_is_never_delivered(headers: HeadersType) -> None:
    """RFC 9113 §8.1.1: a malformed request never reaches the application."""
    peer = Peer()
    peer.send(peer.headers(1, headers))
    events = peer.events()
    assert not [e for e in events if isinstance(e, HeadersReceived)]
    codes = [f.error_code for f in peer.frames() if isinstance(f, (GoAwayFrame, RstStreamFrame))]
    assert codes == [PROTOCOL_ERROR]


# -- frames that must be ignored or accepted ---------------------------------


IGNORED = [
    pytest.param(frame(0x42, 0, 0, b"extension"), None, id="4.1/1 unknown frame type"),
    pytest.param(ping(flags=0x16 | 0x80), PingFrame, id="4.1/2 undefined flags"),
    pytest.param(
        b"\x00\x00\x08\x06\x00\x80\x00\x00\x00hface-ok", PingFrame, id="4.1/3 reserved bit set"
    ),
    pytest.param(frame(0x42, 0, 1, b"extension"), None, id="5.5/1 unknown extension frame"),
    pytest.param(settings((0xFF, 1)), SettingsFrame, id="6.5.2/5 unknown setting"),
    pytest.param(ping(flags=ACK), None, id="6.7/2 PING ACK is not answered"),
    pytest.param(priority(9, 0), None, id="5.3/1 PRIORITY on an idle stream"),
]


@pytest.mark.parametrize(("data", "answer"), IGNORED)
def test_ignored(data: bytes, answer: type[Frame] | None) -> None:
    """RFC 9113 §4.1, §5.5: unknown types, flags, bits and settings are ignored."""
    peer = Peer()
    peer.send(data)
    frames = peer.frames()
    # A PING is still answered, and SETTINGS acknowledged (§6.5.3, §6.7).
    assert [type(f) for f in frames] == ([answer] if answer else [])
    assert all("ACK" in f.flags for f in frames)
    assert peer.events() == []
    expect_alive(peer)


def test_ping_is_acknowledged() -> None:
    """6.7/1 (RFC 9113 §6.7): a PING gets a PING ACK with the same payload."""
    peer = Peer()
    peer.send(ping(b"abcdefgh"))
    frames = peer.frames()
    assert len(frames) == 1
    assert isinstance(frames[0], PingFrame)
    assert set(frames[0].flags) == {"ACK"}
    assert frames[0].opaque_data == b"abcdefgh"


def test_settings_are_acknowledged() -> None:
    """6.5.3/2 (RFC 9113 §6.5.3): SETTINGS without ACK gets a SETTINGS ACK."""
    peer = Peer()
    peer.send(settings((0x4, 100), (0x4, 1)))
    frames = peer.frames()
    assert len(frames) == 1
    assert isinstance(frames[0], SettingsFrame)
    assert set(frames[0].flags) == {"ACK"}
    assert frames[0].settings == {}


def test_data_of_the_minimum_max_frame_size() -> None:
    """4.2/1 (RFC 9113 §4.2): a 2**14 octet DATA frame is always allowed."""
    peer = Peer()
    peer.open(1, POST, end_stream=False)
    peer.send(frame(DATA, END_STREAM, 1, b"x" * 2**14))
    assert peer.events() == [DataReceived(stream_id=1, data=b"x" * 2**14, end_stream=True)]
    expect_alive(peer)


def test_continuation_frames() -> None:
    """6.10/1 (RFC 9113 §6.10): a block split over CONTINUATION frames is one request."""
    peer = Peer()
    block = peer.block([*REQUEST, (b"x-long", b"v" * 300)])
    pieces = [block[i : i + 100] for i in range(0, len(block), 100)]
    chunks = [frame(HEADERS, END_STREAM, 1, pieces[0])]
    chunks += [frame(CONTINUATION, 0, 1, piece) for piece in pieces[1:-1]]
    chunks.append(frame(CONTINUATION, END_HEADERS, 1, pieces[-1]))
    peer.send(*chunks)
    assert peer.events() == [
        HeadersReceived(stream_id=1, headers=[*REQUEST, (b"x-long", b"v" * 300)], end_stream=True)
    ]
    expect_alive(peer)


def test_initial_window_size_of_one() -> None:
    """6.9.1/1 (RFC 9113 §6.9.1): the server sends no more than the window allows."""
    peer = Peer()
    peer.send(settings((0x4, 1)))
    peer.open(1, end_stream=True)
    peer.server.submit_headers(1, RESPONSE)
    peer.server.submit_data(1, b"abc", end_stream=True)
    data = [f for f in peer.frames() if isinstance(f, DataFrame)]
    assert [(f.data, set(f.flags)) for f in data] == [(b"a", set())]
    assert peer.server.get_pending_data_size(1) == 2


def test_initial_window_size_change_applies_to_open_streams() -> None:
    """6.9.2/1 and 6.9.2/2 (RFC 9113 §6.9.2): windows follow SETTINGS, even below 0."""
    peer = Peer()
    peer.send(settings((0x4, 3)))
    peer.open(1, end_stream=True)
    peer.server.submit_headers(1, RESPONSE)
    peer.server.submit_data(1, b"abcdef", end_stream=True)
    assert [f.data for f in peer.frames() if isinstance(f, DataFrame)] == [b"abc"]
    peer.send(settings((0x4, 1)))  # the stream window is now 1 - 3 = -2
    peer.send(window_update(1, 3))  # ... and 1: one more byte may go
    assert [f.data for f in peer.frames() if isinstance(f, DataFrame)] == [b"d"]
    peer.send(settings((0x4, 10)))  # +9: the rest goes, with END_STREAM
    data = [f for f in peer.frames() if isinstance(f, DataFrame)]
    assert [(f.data, "END_STREAM" in f.flags) for f in data] == [(b"ef", True)]


def test_max_concurrent_streams() -> None:
    """5.1.2/1 (RFC 9113 §5.1.2): a stream past the limit is refused, the connection stays.

    RST_STREAM(REFUSED_STREAM), as nginx and h2o answer: the client may
    retry the request (§8.7), and the streams already open go on.
    """
    peer = Peer(max_concurrent_streams=2)
    peer.send(peer.headers(1, end_stream=False), peer.headers(3, end_stream=False))
    assert len([e for e in peer.events() if isinstance(e, HeadersReceived)]) == 2
    peer.send(peer.headers(5, end_stream=False))
    frames = peer.frames()
    assert [(type(f), f.stream_id, getattr(f, "error_code", None)) for f in frames] == [
        (RstStreamFrame, 5, REFUSED_STREAM)
    ]
    assert peer.events() == []
    # Data for the refused stream is dropped; the open streams carry on.
    peer.send(frame(DATA, END_STREAM, 5, b"late"), frame(DATA, END_STREAM, 1, b"body"))
    assert peer.events() == [DataReceived(stream_id=1, data=b"body", end_stream=True)]
    peer.server.submit_headers(1, RESPONSE, end_stream=True)
    peer.frames()
    # A stream is free again: the next one is served, and HPACK stayed in step.
    peer.send(peer.headers(7, end_stream=True))
    events = peer.events()
    assert [type(e) for e in events] == [HeadersReceived]
    assert isinstance(events[0], HeadersReceived)
    assert events[0].stream_id == 7
    assert not peer.server.has_expired()


def test_burst_past_max_concurrent_streams() -> None:
    """RFC 9113 §5.1.2: 1,000 streams at once, limit 100: the excess refused, the rest answered.

    As h2o does: RST_STREAM(REFUSED_STREAM) for the 900 (the client may
    retry them), no GOAWAY, and the 100 accepted get their responses.
    """
    peer = Peer(max_concurrent_streams=100)
    peer.send(*(peer.headers(2 * index + 1) for index in range(1000)))
    accepted = [e.stream_id for e in peer.events() if isinstance(e, HeadersReceived)]
    assert accepted == list(range(1, 201, 2))
    frames = peer.frames()
    assert not [f for f in frames if isinstance(f, GoAwayFrame)]
    refused = [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)]
    assert refused == [(stream_id, REFUSED_STREAM) for stream_id in range(201, 2001, 2)]
    for stream_id in accepted:
        peer.server.submit_headers(stream_id, RESPONSE, end_stream=True)
    answered = [f.stream_id for f in peer.frames() if isinstance(f, HeadersFrame)]
    assert answered == accepted
    assert not peer.server.has_expired()
    expect_alive(peer)


def test_refusal_flood_calms_the_peer_and_answers_the_accepted() -> None:
    """RFC 9113 §10.5, §6.8: refusals past their budget get GOAWAY(ENHANCE_YOUR_CALM).

    The GOAWAY names the last stream accepted, whose response still goes
    out; a peer that floods on past twice the budget is cut off.
    """
    peer = Peer(max_concurrent_streams=2)  # a budget of 20 refusals
    peer.send(peer.headers(1), peer.headers(3))
    assert len(peer.events()) == 2
    peer.send(*(peer.headers(2 * index + 5) for index in range(21)))
    frames = peer.frames()
    refused = [f for f in frames if isinstance(f, RstStreamFrame)]
    assert {f.error_code for f in refused} == {REFUSED_STREAM}
    assert len(refused) == 21
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert [(g.error_code, g.last_stream_id) for g in goaways] == [(ENHANCE_YOUR_CALM, 3)]
    assert peer.events() == []
    # The accepted streams are answered.
    peer.server.submit_headers(1, RESPONSE, end_stream=True)
    peer.server.submit_headers(3, RESPONSE, end_stream=True)
    assert [f.stream_id for f in peer.frames() if isinstance(f, HeadersFrame)] == [1, 3]
    # Flooding on ends the connection.
    stream_id = 47
    while stream_id < 400 and peer.server.state is not ConnectionState.CLOSED:
        peer.send(peer.headers(stream_id))
        stream_id += 2
    assert stream_id == 47 + 2 * 22  # the two completed streams earned two back
    terminated = [e for e in peer.events() if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in terminated] == [ENHANCE_YOUR_CALM]


def test_refused_streams_among_completed_ones_are_tolerated() -> None:
    """A client that sometimes races past the limit, and completes streams, is never cut off."""
    peer = Peer(max_concurrent_streams=1, max_reset_streams=3)
    for index in range(30):
        stream_id = 1 + 4 * index
        peer.send(peer.headers(stream_id, end_stream=True), peer.headers(stream_id + 2))
        peer.server.submit_headers(stream_id, RESPONSE, end_stream=True)
        frames = peer.frames()
        assert (RstStreamFrame, stream_id + 2) in [(type(f), f.stream_id) for f in frames]
    assert not peer.server.has_expired()


def test_connection_error_ends_the_connection() -> None:
    """5.4.1/1 and 5.4.1/2 (RFC 9113 §5.4.1): GOAWAY names the last stream processed."""
    peer = Peer()
    peer.open(1, end_stream=True)
    peer.send(ping(b"1234"))
    frames = peer.frames()
    assert [type(f) for f in frames] == [GoAwayFrame]
    goaway = frames[0]
    assert isinstance(goaway, GoAwayFrame)
    assert goaway.error_code == FRAME_SIZE_ERROR
    assert goaway.last_stream_id == 1
    terminated = [e for e in peer.events() if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in terminated] == [FRAME_SIZE_ERROR]
    assert peer.server.has_expired()


# -- floods (RFC 9113 §10.5) ----------------------------------------------------

FLOOD_FRAMES = 100_000
BATCH = 1000


def flood(
    peer: Peer, make: Callable[[int], bytes], count: int = FLOOD_FRAMES
) -> tuple[int, list[Frame], list[Event]]:
    """Send ``make(0)``, ``make(1)``, ... in batches until ``count`` or the server gives up.

    :return: how many units were sent, and every frame and event that followed.
    """
    frames: list[Frame] = []
    events: list[Event] = []
    sent = 0
    while sent < count and not peer.server.has_expired():
        peer.send(b"".join(make(index) for index in range(sent, sent + BATCH)))
        sent += BATCH
        frames += peer.frames()
        events += peer.events()
    return sent, frames, events


def assert_calmed(sent: int, frames: list[Frame], events: list[Event]) -> None:
    """The server ended the connection early with ENHANCE_YOUR_CALM."""
    assert sent < FLOOD_FRAMES // 10
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert [g.error_code for g in goaways] == [ENHANCE_YOUR_CALM]
    terminated = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in terminated] == [ENHANCE_YOUR_CALM]


def test_rapid_reset() -> None:
    """RFC 9113 §10.5 (CVE-2023-44487): streams opened and reset at once are bounded."""
    peer = Peer()

    def open_and_reset(index: int) -> bytes:
        stream_id = 2 * index + 1
        return peer.headers(stream_id, end_stream=False) + frame(
            RST_STREAM, 0, stream_id, struct.pack(">I", 8)
        )

    sent, frames, events = flood(peer, open_and_reset)
    assert_calmed(sent, frames, events)
    # The application saw a bounded number of streams: the budget and a batch.
    started = [e for e in events if isinstance(e, HeadersReceived)]
    assert 200 <= len(started) <= 200 + 64


def test_streams_reset_by_the_server_for_errors() -> None:
    """RFC 9113 §10.5: a peer that keeps breaking its streams runs out of resets too."""
    peer = Peer()

    def broken_stream(index: int) -> bytes:
        stream_id = 2 * index + 1
        # RFC 9113 §6.9.1: a stream window over 2**31-1 is a stream error.
        return peer.headers(stream_id, end_stream=False) + window_update(stream_id, 2**31 - 1)

    sent, frames, events = flood(peer, broken_stream)
    assert_calmed(sent, frames, events)
    resets = [f for f in frames if isinstance(f, RstStreamFrame)]
    assert 200 <= len(resets) <= 200 + 64


def test_frames_on_closed_streams_flood() -> None:
    """RFC 9113 §10.5: each frame on a closed stream costs an RST_STREAM; bounded too.

    (Not on a stream the server reset: those frames are ignored, see test_http2_resets.)
    """
    peer = Peer()
    peer.open(1, end_stream=True)
    peer.server.submit_headers(1, RESPONSE, end_stream=True)
    peer.frames()
    peer.events()
    sent, frames, events = flood(peer, lambda index: frame(DATA, 0, 1, b"x"))
    assert_calmed(sent, frames, events)
    resets = [f for f in frames if isinstance(f, RstStreamFrame)]
    assert 200 <= len(resets) <= 200 + 64  # the budget, within one batch of frames


def test_completed_streams_earn_resets_back() -> None:
    """A client that cancels some requests among many completed ones is never cut off."""
    peer = Peer(max_reset_streams=10)
    for index in range(100):
        stream_id = 4 * index + 1
        peer.send(peer.headers(stream_id), peer.headers(stream_id + 2, end_stream=False))
        peer.server.submit_headers(stream_id, RESPONSE, end_stream=True)
        peer.send(frame(RST_STREAM, 0, stream_id + 2, struct.pack(">I", 8)))
    assert not peer.server.has_expired()
    events = peer.events()
    assert len([e for e in events if isinstance(e, StreamResetReceived)]) == 100
    expect_alive(peer)


CONTROL_FLOODS = [
    pytest.param(lambda index: settings(), id="SETTINGS flood"),
    pytest.param(lambda index: ping(b"%08d" % (index % 10**8)), id="PING flood"),
    pytest.param(lambda index: priority(2 * index + 101, 0), id="PRIORITY flood"),
    pytest.param(lambda index: frame(0x42, 0, 0, b""), id="unknown frame flood"),
    pytest.param(lambda index: ping(flags=ACK), id="PING ACK flood"),
    pytest.param(
        lambda index: frame(RST_STREAM, 0, 1, struct.pack(">I", 8)), id="RST_STREAM flood"
    ),
]


@pytest.mark.parametrize("make", CONTROL_FLOODS)
def test_control_frame_flood(make: Callable[[int], bytes]) -> None:
    """RFC 9113 §10.5: frames without requests or data are bounded per connection."""
    peer = Peer(max_control_frames=500)
    peer.open(1, end_stream=True)
    sent, frames, events = flood(peer, make)
    assert_calmed(sent, frames, events)
    # At most the budget was answered (SETTINGS and PING ACKs).
    assert len([f for f in frames if "ACK" in f.flags]) <= 500


@pytest.mark.parametrize("padded", [False, True], ids=["empty DATA", "padding-only DATA"])
def test_empty_data_flood(padded: bool) -> None:
    """RFC 9113 §10.5: DATA frames that carry nothing are bounded."""
    peer = Peer(max_control_frames=500)
    peer.open(1, POST, end_stream=False)
    unit = frame(DATA, PADDED, 1, b"\x10" + bytes(16)) if padded else frame(DATA, 0, 1)
    sent, frames, events = flood(peer, lambda index: unit)
    assert_calmed(sent, frames, events)
    assert not [e for e in events if isinstance(e, DataReceived)]


def test_requests_earn_control_frames_back() -> None:
    """A busy client that sends a PING per request is never cut off."""
    peer = Peer(max_control_frames=10)
    for index in range(500):
        stream_id = 2 * index + 1
        peer.send(ping(), peer.headers(stream_id))
        peer.server.submit_headers(stream_id, RESPONSE, end_stream=True)
    assert not peer.server.has_expired()
    assert len([e for e in peer.events() if isinstance(e, HeadersReceived)]) == 500
    expect_alive(peer)


def test_paced_pings_on_a_long_request_live_for_ever() -> None:
    """RFC 9113 §10.5: the flood budget comes back with time (a controlled clock).

    A client holds one long request and sends a PING every 3 seconds,
    waiting for each ACK (a stream of server-sent events with keep-alive
    PINGs): 5,000 PINGs, ten times the budget, over some four hours, and
    never a GOAWAY.
    """
    peer = Peer(max_control_frames=500)
    peer.open(1, end_stream=True)
    peer.server.submit_headers(1, RESPONSE)
    peer.frames()
    now = 1000.0
    for index in range(5000):
        now += 3.0
        peer.server.clock(now)
        peer.send(ping(b"%08d" % index))
        frames = peer.frames()
        assert [type(f) for f in frames] == [PingFrame]
        assert isinstance(frames[0], PingFrame)
        assert frames[0].opaque_data == b"%08d" % index
    assert not peer.server.has_expired()
    peer.server.submit_data(1, b"still here", end_stream=True)
    assert [f.data for f in peer.frames() if isinstance(f, DataFrame)] == [b"still here"]


@pytest.mark.parametrize("make", CONTROL_FLOODS)
def test_control_frame_flood_with_a_clock(make: Callable[[int], bytes]) -> None:
    """RFC 9113 §10.5: with the time told, a flood within a window is still cut."""
    peer = Peer(max_control_frames=500)
    peer.open(1, end_stream=True)
    now = 1000.0
    peer.server.clock(now)

    def paced(index: int) -> bytes:
        peer.server.clock(now + index * 0.001)  # 1,000 frames a second
        return make(index)

    sent, frames, events = flood(peer, paced)
    assert_calmed(sent, frames, events)


def test_continuation_flood() -> None:
    """RFC 9113 §10.5 (CVE-2024-27316 and kin): an endless header block is cut short."""
    peer = Peer()
    peer.send(peer.headers(1, end_headers=False))
    sent, frames, events = flood(peer, lambda index: frame(CONTINUATION, 0, 1, b""))
    assert_calmed(sent, frames, events)
    assert not [e for e in events if isinstance(e, HeadersReceived)]


def test_large_header_block_is_cut_short() -> None:
    """RFC 9113 §10.5.1: a header block far over the header list limit is refused early."""
    peer = Peer(max_header_list_size=1000)
    peer.send(peer.headers(1, end_headers=False))
    garbage = frame(CONTINUATION, 0, 1, b"\x00" * 1500)
    peer.send(garbage)
    assert peer.frames() == []
    peer.send(garbage, garbage)
    expect_connection_error(peer, ENHANCE_YOUR_CALM)


def test_hpack_bomb() -> None:
    """RFC 9113 §10.5.1, RFC 7541 §7.3: references to a large entry cannot blow up."""
    peer = Peer()  # 64 KiB header lists at most
    big = (b"x-bomb", b"b" * 4000)
    # The first block adds the entry to the dynamic table (literal with
    # incremental indexing); then each one-byte reference (index 62)
    # would decode to 4 KB: 16,000 of them to 64 MB.
    first = peer.block([*REQUEST, big])
    peer.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, first))
    assert len(peer.events()) == 1
    block = peer.block(REQUEST) + b"\xbe" * 16_000
    peer.send(frame(HEADERS, END_STREAM | END_HEADERS, 3, block))
    expect_connection_error(peer, ENHANCE_YOUR_CALM)


def test_data_beyond_the_window() -> None:
    """RFC 9113 §6.9.1: a peer cannot make us hold more than the windows we gave."""
    peer = Peer(initial_window_size=1000)
    peer.open(1, POST, end_stream=False)
    peer.send(frame(DATA, 0, 1, b"x" * 1000))
    assert peer.events() == [DataReceived(stream_id=1, data=b"x" * 1000)]
    peer.send(frame(DATA, 0, 1, b"y"))  # not acknowledged: the window is 0
    frames = peer.frames()
    codes = [f.error_code for f in frames if isinstance(f, (RstStreamFrame, GoAwayFrame))]
    assert codes == [FLOW_CONTROL_ERROR]
    assert not [e for e in peer.events() if isinstance(e, DataReceived)]


def test_zero_window_stall_holds_only_what_was_submitted() -> None:
    """RFC 9113 §6.9: a peer that never opens its window stalls its own stream only.

    Held data is reported so the layer above stops producing (and times the
    stream out); other streams keep going once the connection window allows.
    """
    peer = Peer()
    peer.send(settings((0x4, 0)))  # every stream window starts at 0
    peer.open(1, end_stream=True)
    peer.open(3, end_stream=True)
    peer.server.submit_headers(1, RESPONSE)
    peer.server.submit_data(1, b"z" * 50_000, end_stream=True)
    assert peer.server.get_pending_data_size(1) == 50_000
    assert not [f for f in peer.frames() if isinstance(f, DataFrame)]
    peer.send(window_update(3, 10))
    peer.server.submit_headers(3, RESPONSE)
    peer.server.submit_data(3, b"ok", end_stream=True)
    data = [f for f in peer.frames() if isinstance(f, DataFrame)]
    assert [(f.stream_id, f.data) for f in data] == [(3, b"ok")]
    assert peer.server.get_pending_data_size(1) == 50_000
    # Resetting the stalled stream frees what it held.
    peer.server.submit_stream_reset(1, 0x8)
    assert peer.server.get_pending_data_size(1) == 0
    assert [(type(f), f.stream_id) for f in peer.frames()] == [(RstStreamFrame, 1)]
    expect_alive(peer)


@pytest.mark.parametrize(
    "options",
    [{"max_control_frames": 0}, {"max_reset_streams": 0}],
    ids=["max_control_frames", "max_reset_streams"],
)
def test_limits_must_be_positive(options: dict[str, Any]) -> None:
    """The flood limits are validated like the settings."""
    with pytest.raises(ValueError, match=next(iter(options))):
        HTTP2ServerFactory(**options)


@pytest.mark.parametrize("chunker", [one_byte, random_chunks(7, 50)], ids=["one-byte", "random"])
def test_frame_headers_split_between_calls(chunker: Chunker) -> None:
    """RFC 9113 §4.1: the checks see frame headers however the bytes arrive."""
    peer = Peer(max_control_frames=50)
    data = peer.headers(1, POST, end_stream=False) + frame(DATA, END_STREAM, 1, b"x" * 300)
    data += ping() * 10 + settings((0x3, 10)) + ping(flags=ACK)
    for chunk in chunker(data):
        peer.send(chunk)
    assert [type(e) for e in peer.events()] == [HeadersReceived, DataReceived]
    assert len([f for f in peer.frames() if "ACK" in f.flags]) == 11
    for chunk in chunker(ping() * 100):
        peer.send(chunk)
    acks = [f for f in peer.frames() if isinstance(f, PingFrame)]
    assert len(acks) < 100
    assert peer.server.has_expired()
    terminated = [e for e in peer.events() if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in terminated] == [ENHANCE_YOUR_CALM]


def test_oversized_frame_fails_on_its_header() -> None:
    """4.2/3 (RFC 9113 §4.2): a frame announcing too much fails before its payload."""
    peer = Peer()
    peer.send(frame(HEADERS, END_HEADERS, 1)[:9].replace(b"\x00\x00\x00", b"\x10\x00\x00", 1))
    expect_connection_error(peer, FRAME_SIZE_ERROR)


def test_settings_ack_with_payload_split_between_calls() -> None:
    """6.5/1 (RFC 9113 §6.5): the check holds with the header split in two."""
    peer = Peer()
    data = settings((0x3, 100), flags=ACK)
    peer.send(data[:4])
    assert peer.frames() == []
    peer.send(data[4:])
    expect_connection_error(peer, FRAME_SIZE_ERROR)


def test_client_side_is_guarded_too() -> None:
    """RFC 9113 §10.5: a server that floods a client gets ENHANCE_YOUR_CALM as well."""
    client = HTTP2ClientFactory(max_control_frames=100)()
    client.bytes_to_send()
    client.bytes_received(settings() + ping() * 1000)
    frames = parse_frames(client.bytes_to_send())
    acks = [f for f in frames if isinstance(f, PingFrame)]
    assert len(acks) <= 100 + 64
    assert [f.error_code for f in frames if isinstance(f, GoAwayFrame)] == [ENHANCE_YOUR_CALM]
    assert client.has_expired()
    event = client.next_event()
    assert isinstance(event, ConnectionTerminated)
    assert event.error_code == ENHANCE_YOUR_CALM


# -- HPACK dynamic table size (RFC 9113 §6.5.2, RFC 7541 §4.2, §6.3) ------------

#: A dynamic table size update to 4,096 (RFC 7541 §6.3: 001 prefix, 5-bit integer).
SIZE_UPDATE_4096 = b"\x3f\xe1\x1f"
#: A dynamic table size update to 1,024.
SIZE_UPDATE_1024 = b"\x3f\xe1\x07"


@pytest.mark.parametrize("side", ["server", "client"])
@pytest.mark.parametrize("size", [0, 1024, 4096, 65536])
def test_header_table_size_is_advertised(side: str, size: int) -> None:
    """6.5.2: SETTINGS_HEADER_TABLE_SIZE carries the ``header_table_size`` option."""
    factory = HTTP2ServerFactory if side == "server" else HTTP2ClientFactory
    protocol = factory(header_table_size=size)()
    data = protocol.bytes_to_send()
    if side == "client":
        assert data.startswith(PREFACE)
        data = data[len(PREFACE) :]
    first = parse_frames(data)[0]
    assert isinstance(first, SettingsFrame)
    assert first.settings[SettingsFrame.HEADER_TABLE_SIZE] == size


def test_table_size_update_within_our_setting() -> None:
    """RFC 7541 §4.2: an encoder shrinking its table to our setting is served."""
    peer = Peer(header_table_size=1024)
    block = SIZE_UPDATE_1024 + Encoder().encode(REQUEST)
    peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    events = peer.events()
    assert events == [HeadersReceived(stream_id=1, headers=REQUEST, end_stream=True)]


def test_table_size_update_above_our_setting() -> None:
    """RFC 7541 §6.3, RFC 9113 §4.3: a table larger than we allow is a COMPRESSION_ERROR."""
    peer = Peer(header_table_size=1024)
    block = SIZE_UPDATE_4096 + Encoder().encode(REQUEST)
    peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    goaway = [f for f in peer.frames() if isinstance(f, GoAwayFrame)]
    assert [f.error_code for f in goaway] == [COMPRESSION_ERROR]
    terminated = [e for e in peer.events() if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in terminated] == [COMPRESSION_ERROR]


def test_default_table_size_allows_4096() -> None:
    """6.5.2: the default is the protocol's initial 4,096 bytes, and one byte more is refused."""
    peer = Peer()
    block = SIZE_UPDATE_4096 + Encoder().encode(REQUEST)
    peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    assert [type(e) for e in peer.events()] == [HeadersReceived]
    # 4,097: 0x3f, then 4,097 - 31 = 4,066 as a 7-bit prefixed integer.
    block = b"\x3f\xe2\x1f" + Encoder().encode(REQUEST)
    peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, block))
    goaway = [f for f in peer.frames() if isinstance(f, GoAwayFrame)]
    assert [f.error_code for f in goaway] == [COMPRESSION_ERROR]


@pytest.mark.parametrize("size", [-1, 2**32])
def test_header_table_size_is_validated(size: int) -> None:
    """An out-of-range size is refused at once, naming the option."""
    for factory in (HTTP2ServerFactory, HTTP2ClientFactory):
        with pytest.raises(ValueError, match="header_table_size"):
            factory(header_table_size=size)
