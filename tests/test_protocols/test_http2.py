"""HTTP/2 protocol (h2) tests on in-memory pairs and raw frames."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
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
    WindowUpdateFrame,
)

from hface.common import HTTP2_ERROR_CODES, HeadersType
from hface.errors import LocalProtocolError, TerminationReason
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoawayReceived,
    HeadersReceived,
    StreamResetReceived,
    StreamResetSent,
)
from hface.protocols import HTTP2Protocol, HTTPOverTCPFactory
from hface.protocols.http2 import (
    HTTP2ClientFactory,
    HTTP2ClientProtocol,
    HTTP2ServerFactory,
    HTTP2ServerProtocol,
)
from tests.helpers.pairs import Chunker, TCPProtocolPair, make_pair, one_byte, random_chunks, whole

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
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
CODES = HTTP2_ERROR_CODES


def tcp_pair(
    *,
    chunker: Chunker = whole,
    client: HTTP2ClientFactory | None = None,
    server: HTTP2ServerFactory | None = None,
) -> TCPProtocolPair:
    """A connected pair past the prefaces, with factories of our choosing."""
    pair = TCPProtocolPair(
        (client or HTTP2ClientFactory())(), (server or HTTP2ServerFactory())(), chunker=chunker
    )
    pair.transfer()
    assert pair.client_events() == []
    assert pair.server_events() == []
    return pair


def h2_pair(chunker: Chunker = whole) -> tuple[TCPProtocolPair, HTTP2Protocol, HTTP2Protocol]:
    pair = make_pair("2", chunker=chunker)
    assert isinstance(pair, TCPProtocolPair)
    assert isinstance(pair.client, HTTP2Protocol)
    assert isinstance(pair.server, HTTP2Protocol)
    return pair, pair.client, pair.server


def parse_frames(data: bytes) -> list[Frame]:
    """Split bytes a protocol sent into frames (without a client preface)."""
    if data.startswith(PREFACE):
        data = data[len(PREFACE) :]
    frames = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


def body_of(events: Sequence[Event], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


def raw_server(**options: Any) -> HTTP2ServerProtocol:
    """A server that has received a minimal client preface."""
    server = HTTP2ServerFactory(**options)()
    server.bytes_received(PREFACE + SettingsFrame(0).serialize())
    assert server.next_event() is None
    server.bytes_to_send()
    return server


def raw_headers(stream_id: int, headers: HeadersType, *, end_stream: bool) -> bytes:
    frame = HeadersFrame(stream_id)
    frame.data = Encoder().encode(list(headers))
    frame.flags.add("END_HEADERS")
    if end_stream:
        frame.flags.add("END_STREAM")
    return bytes(frame.serialize())


def assert_goaway(data: bytes, error_code: int) -> None:
    goaways = [f for f in parse_frames(data) if isinstance(f, GoAwayFrame)]
    assert goaways, "no GOAWAY was sent"
    assert goaways[-1].error_code == error_code


# -- factories ---------------------------------------------------------------


def test_factories() -> None:
    cases: list[tuple[HTTPOverTCPFactory, type]] = [
        (HTTP2ClientFactory(), HTTP2ClientProtocol),
        (HTTP2ServerFactory(), HTTP2ServerProtocol),
    ]
    for factory, cls in cases:
        assert isinstance(factory, HTTPOverTCPFactory)
        assert list(factory.alpn_protocols) == ["h2"]
        protocol = factory(tls_version="TLSv1.3", alpn_protocol="h2")
        assert isinstance(protocol, cls)
        assert isinstance(protocol, HTTP2Protocol)
        assert protocol.http_version == "2"
        assert protocol.multiplexed
        assert protocol.error_codes is HTTP2_ERROR_CODES
        assert not protocol.has_expired()


@pytest.mark.parametrize(
    "options",
    [
        {"max_concurrent_streams": 0},
        {"initial_window_size": 2**31},
        {"connection_window_size": 1000},
        {"max_frame_size": 1000},
        {"max_header_list_size": 0},
    ],
)
def test_factory_rejects_invalid_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        HTTP2ServerFactory(**options)


def test_settings_are_advertised() -> None:
    data = HTTP2ServerFactory(max_concurrent_streams=7, initial_window_size=1234)().bytes_to_send()
    settings = parse_frames(data)[0]
    assert isinstance(settings, SettingsFrame)
    assert settings.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 7
    assert settings.settings[SettingsFrame.INITIAL_WINDOW_SIZE] == 1234
    client = HTTP2ClientFactory()().bytes_to_send()
    assert client.startswith(PREFACE)
    frames = parse_frames(client)
    assert isinstance(frames[0], SettingsFrame)
    assert frames[0].settings[SettingsFrame.ENABLE_PUSH] == 0
    # The larger connection window is opened at once (RFC 9113 §6.9.2).
    assert isinstance(frames[1], WindowUpdateFrame)
    assert frames[1].stream_id == 0


# -- exchanges -----------------------------------------------------------------


@pytest.mark.parametrize(
    "chunker", [whole, one_byte, random_chunks(1)], ids=["whole", "one", "random"]
)
def test_get_without_body(chunker: Chunker) -> None:
    pair, client, server = h2_pair(chunker)
    assert client.is_available()
    stream_id = client.get_available_stream_id()
    assert stream_id == 1
    client.submit_headers(stream_id, REQUEST, end_stream=True)
    pair.transfer()
    assert pair.server_events() == [
        HeadersReceived(stream_id=1, headers=list(REQUEST), end_stream=True)
    ]
    server.submit_headers(1, [*RESPONSE, (b"content-length", b"0")], end_stream=True)
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(
            stream_id=1, headers=[*RESPONSE, (b"content-length", b"0")], end_stream=True
        )
    ]
    assert client.get_available_stream_id() == 3


@pytest.mark.parametrize("chunker", [whole, one_byte], ids=["whole", "one"])
def test_get_with_body(chunker: Chunker) -> None:
    pair, client, server = h2_pair(chunker)
    client.submit_headers(1, REQUEST, end_stream=True)
    pair.transfer()
    pair.server_events()
    server.submit_headers(1, RESPONSE)
    server.submit_data(1, b"hello, ")
    server.submit_data(1, b"world", end_stream=True)
    pair.transfer()
    events = pair.client_events()
    assert events[0] == HeadersReceived(stream_id=1, headers=list(RESPONSE), end_stream=False)
    assert body_of(events, 1) == b"hello, world"
    assert events[-1] == DataReceived(stream_id=1, data=b"world", end_stream=True) or (
        events[-1] == DataReceived(stream_id=1, data=b"", end_stream=True)
    )
    # The stream is closed on both sides: nothing more may be sent.
    with pytest.raises(LocalProtocolError):
        server.submit_data(1, b"more")


def test_post_body_in_random_chunks() -> None:
    pair, client, server = h2_pair(random_chunks(7, max_size=300))
    body = bytes(range(256)) * 2000  # 512,000 bytes: beyond the default windows
    client.submit_headers(1, POST)
    for offset in range(0, len(body), 10_000):
        client.submit_data(1, body[offset : offset + 10_000])
    client.submit_data(1, b"", end_stream=True)
    received = bytearray()
    ended = False
    for _ in range(100):
        pair.transfer()
        for event in pair.server_events():
            if isinstance(event, DataReceived):
                received += event.data
                server.acknowledge_received_data(1, len(event.data))
                ended = ended or event.end_stream
        if ended:
            break
    assert ended
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    assert client.get_pending_data_size(1) == 0


def test_response_trailers() -> None:
    pair, client, server = h2_pair()
    client.submit_headers(1, [*REQUEST, (b"te", b"trailers")], end_stream=True)
    pair.transfer()
    assert pair.server_events()[0] == HeadersReceived(
        stream_id=1, headers=[*REQUEST, (b"te", b"trailers")], end_stream=True
    )
    server.submit_headers(1, RESPONSE)
    server.submit_data(1, b"body")
    server.submit_headers(1, [(b"grpc-status", b"0")], end_stream=True)
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(stream_id=1, headers=list(RESPONSE)),
        DataReceived(stream_id=1, data=b"body"),
        HeadersReceived(stream_id=1, headers=[(b"grpc-status", b"0")], end_stream=True),
    ]


def test_informational_responses() -> None:
    pair, client, server = h2_pair()
    client.submit_headers(1, REQUEST, end_stream=True)
    pair.transfer()
    pair.server_events()
    server.submit_headers(1, [(b":status", b"103"), (b"link", b"</a.css>; rel=preload")])
    server.submit_headers(1, RESPONSE, end_stream=True)
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(
            stream_id=1, headers=[(b":status", b"103"), (b"link", b"</a.css>; rel=preload")]
        ),
        HeadersReceived(stream_id=1, headers=list(RESPONSE), end_stream=True),
    ]


def test_end_stream_alone_becomes_empty_data() -> None:
    pair, client, _server = h2_pair()
    client.submit_headers(1, POST)
    client.submit_data(1, b"abc")
    pair.transfer()
    client.submit_data(1, b"", end_stream=True)
    pair.transfer()
    assert pair.server_events() == [
        HeadersReceived(stream_id=1, headers=list(POST)),
        DataReceived(stream_id=1, data=b"abc"),
        DataReceived(stream_id=1, data=b"", end_stream=True),
    ]


def test_connection_specific_headers_are_stripped() -> None:
    pair, client, server = h2_pair()
    client.submit_headers(
        1,
        [
            *REQUEST,
            (b"connection", b"keep-alive"),
            (b"keep-alive", b"timeout=5"),
            (b"Proxy-Connection", b"close"),
            (b"transfer-encoding", b"chunked"),
            (b"upgrade", b"h2c"),
            (b"te", b"gzip"),
            (b"x-kept", b"1"),
        ],
        end_stream=True,
    )
    pair.transfer()
    assert pair.server_events() == [
        HeadersReceived(stream_id=1, headers=[*REQUEST, (b"x-kept", b"1")], end_stream=True)
    ]
    server.submit_headers(1, [*RESPONSE, (b"connection", b"close")], end_stream=True)
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(stream_id=1, headers=list(RESPONSE), end_stream=True)
    ]


# -- GOAWAY and resets ---------------------------------------------------------


def test_goaway_received() -> None:
    pair, client, server = h2_pair()
    client.submit_headers(1, REQUEST, end_stream=True)
    pair.transfer()
    pair.server_events()
    client.submit_headers(3, REQUEST, end_stream=True)  # crosses the GOAWAY
    server.submit_goaway()
    assert server.has_expired()
    assert not server.is_available()
    pair.transfer()
    assert pair.client_events() == [
        GoawayReceived(last_stream_id=1, error_code=0),
        StreamResetReceived(stream_id=3, error_code=CODES.refused_stream),
    ]
    assert pair.server_events() == []  # stream 3 came after the GOAWAY: ignored
    assert not client.is_available()
    assert client.has_expired()
    with pytest.raises(LocalProtocolError):
        client.get_available_stream_id()
    with pytest.raises(LocalProtocolError):
        client.submit_headers(5, REQUEST, end_stream=True)
    # Stream 1 goes on (RFC 9113 §6.8).
    server.submit_headers(1, RESPONSE)
    server.submit_data(1, b"still here", end_stream=True)
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(stream_id=1, headers=list(RESPONSE)),
        DataReceived(stream_id=1, data=b"still here", end_stream=True),
    ]
    client.eof_received()
    assert pair.client_events() == [
        ConnectionTerminated(error_code=0, message="the peer closed the connection")
    ]


def test_goaway_with_error_code_is_reported() -> None:
    pair, client, server = h2_pair()
    server.submit_close(CODES.internal_error)
    pair.transfer()
    assert pair.client_events() == [GoawayReceived(last_stream_id=0, error_code=2)]
    client.connection_lost()
    event = client.next_event()
    assert isinstance(event, ConnectionTerminated)
    assert event.error_code == CODES.internal_error
    assert client.next_event() is None


def test_client_resets_stream() -> None:
    pair, client, server = h2_pair()
    client.submit_headers(1, POST)
    client.submit_data(1, b"partial")
    pair.transfer()
    pair.server_events()
    server.submit_headers(1, RESPONSE)
    server.submit_data(1, b"late")  # crosses the reset
    client.submit_stream_reset(1, CODES.cancel)
    assert client.next_event() == StreamResetSent(stream_id=1, error_code=CODES.cancel)
    with pytest.raises(LocalProtocolError):
        client.submit_data(1, b"more")
    client.submit_stream_reset(1)  # already closed: nothing happens
    pair.transfer()
    assert pair.server_events() == [StreamResetReceived(stream_id=1, error_code=CODES.cancel)]
    assert pair.client_events() == []  # late data is ignored
    with pytest.raises(LocalProtocolError):
        server.submit_data(1, b"more")
    # The connection still works.
    client.submit_headers(3, REQUEST, end_stream=True)
    pair.transfer()
    assert pair.server_events() == [
        HeadersReceived(stream_id=3, headers=list(REQUEST), end_stream=True)
    ]


def test_server_resets_stream_and_drops_held_data() -> None:
    pair, client, server = h2_pair()
    client.submit_headers(1, REQUEST, end_stream=True)
    pair.transfer()
    pair.server_events()
    server.submit_headers(1, RESPONSE)
    server.submit_data(1, b"x" * 300_000)
    assert server.get_pending_data_size(1) > 0
    server.submit_stream_reset(1, CODES.internal_error)
    assert server.get_pending_data_size(1) == 0
    pair.transfer()
    events = pair.client_events()
    assert events[-1] == StreamResetReceived(stream_id=1, error_code=CODES.internal_error)


def test_reset_releases_unacknowledged_connection_window() -> None:
    pair = tcp_pair(client=HTTP2ClientFactory(connection_window_size=65_535))
    client, server = pair.client, pair.server
    client.submit_headers(1, REQUEST, end_stream=True)
    client.submit_headers(3, REQUEST, end_stream=True)
    pair.transfer()
    pair.server_events()
    server.submit_headers(1, RESPONSE)
    server.submit_data(1, b"a" * 65_535)
    server.submit_headers(3, RESPONSE)
    server.submit_data(3, b"b" * 1000, end_stream=True)
    pair.transfer()
    assert body_of(pair.client_events(), 3) == b""  # connection window used up by stream 1
    client.submit_stream_reset(1, CODES.cancel)  # never acknowledged: credited back
    pair.transfer()
    assert body_of(pair.client_events(), 3) == b"b" * 1000


# -- flow control --------------------------------------------------------------


def test_consumer_that_never_acknowledges_stops_the_sender() -> None:
    window = 65_536
    pair = tcp_pair(client=HTTP2ClientFactory(initial_window_size=window))
    client, server = pair.client, pair.server
    body = bytes(range(256)) * 1024  # 256 KiB
    client.submit_headers(1, REQUEST, end_stream=True)
    pair.transfer()
    pair.server_events()
    server.submit_headers(1, RESPONSE)
    server.submit_data(1, body, end_stream=True)
    received = bytearray()
    for _ in range(5):
        pair.transfer()
        received += body_of(pair.client_events(), 1)
    assert len(received) <= window
    assert server.get_pending_data_size(1) == len(body) - len(received)
    # The end of the stream was submitted (and deferred): no more data.
    with pytest.raises(LocalProtocolError):
        server.submit_data(1, b"more")
    ended = False
    for _ in range(100):
        client.acknowledge_received_data(1, len(received) or 1)
        pair.transfer()
        for event in pair.client_events():
            assert isinstance(event, DataReceived)
            received += event.data
            client.acknowledge_received_data(1, len(event.data))
            ended = ended or event.end_stream
        if ended:
            break
    assert ended
    assert server.get_pending_data_size(1) == 0
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()


def test_acknowledgements_reach_h2_once_per_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credit acknowledged frame by frame is handed to h2 at the next write, summed per stream."""
    pair = tcp_pair(server=HTTP2ServerFactory(initial_window_size=4096))
    client, server = pair.client, pair.server
    client.submit_headers(1, POST)
    for _ in range(8):
        client.submit_data(1, b"m" * 500)
    pair.transfer()
    frames = [e for e in pair.server_events() if isinstance(e, DataReceived)]
    assert len(frames) == 8
    handed: list[tuple[int, int]] = []
    h2 = vars(server)["_conn"]  # the h2 connection the protocol drives
    h2_acknowledge = h2.acknowledge_received_data

    def acknowledge(size: int, stream_id: int) -> None:
        handed.append((stream_id, size))
        h2_acknowledge(size, stream_id)

    monkeypatch.setattr(h2, "acknowledge_received_data", acknowledge)
    for event in frames:
        server.acknowledge_received_data(1, len(event.data))
    assert handed == []
    pair.transfer()
    assert handed == [(1, 4000)]
    # The window was reopened: the client sends a window's worth again.
    client.submit_data(1, b"n" * 4000, end_stream=True)
    pair.transfer()
    assert len(body_of(pair.server_events(), 1)) == 4000


def test_pending_data_grows_while_window_is_closed() -> None:
    pair = tcp_pair(client=HTTP2ClientFactory(initial_window_size=1000))
    client, server = pair.client, pair.server
    client.submit_headers(1, REQUEST, end_stream=True)
    pair.transfer()
    pair.server_events()
    server.submit_headers(1, RESPONSE)
    server.submit_data(1, b"a" * 1500)
    assert server.get_pending_data_size(1) == 500
    server.submit_data(1, b"b" * 700)
    assert server.get_pending_data_size(1) == 1200
    pair.transfer()
    assert body_of(pair.client_events(), 1) == b"a" * 1000
    client.acknowledge_received_data(1, 10**9)  # clamped to what was delivered
    client.acknowledge_received_data(99, 100)  # unknown stream: ignored
    pair.transfer()
    assert body_of(pair.client_events(), 1) == b"a" * 500 + b"b" * 500
    assert server.get_pending_data_size(1) == 200


def test_deferred_end_stream_and_trailers_keep_order() -> None:
    pair = tcp_pair(server=HTTP2ServerFactory(initial_window_size=100))
    client, server = pair.client, pair.server
    client.submit_headers(1, POST)
    client.submit_data(1, b"x" * 250)
    client.submit_data(1, b"y" * 10)
    client.submit_headers(1, [(b"x-checksum", b"abc")], end_stream=True)
    assert client.get_pending_data_size(1) == 160
    with pytest.raises(LocalProtocolError):
        client.submit_data(1, b"z")  # trailers ended the stream
    client.submit_headers(3, POST)
    client.submit_data(3, b"w" * 150, end_stream=True)
    events: list[Event] = []
    for _ in range(10):
        pair.transfer()
        for event in pair.server_events():
            events.append(event)
            if isinstance(event, DataReceived):
                server.acknowledge_received_data(event.stream_id, len(event.data))
    stream1 = [e for e in events if e.stream_id == 1]  # type: ignore[attr-defined]
    assert stream1[0] == HeadersReceived(stream_id=1, headers=list(POST))
    assert body_of(stream1, 1) == b"x" * 250 + b"y" * 10
    assert stream1[-1] == HeadersReceived(
        stream_id=1, headers=[(b"x-checksum", b"abc")], end_stream=True
    )
    assert all(not getattr(e, "end_stream", False) for e in stream1[:-1])
    stream3 = [e for e in events if isinstance(e, DataReceived) and e.stream_id == 3]
    assert body_of(stream3, 3) == b"w" * 150
    assert stream3[-1].end_stream
    assert client.get_pending_data_size(1) == 0


def test_held_streams_share_the_connection_window() -> None:
    pair = tcp_pair(
        client=HTTP2ClientFactory(initial_window_size=1 << 20, connection_window_size=65_535)
    )
    client, server = pair.client, pair.server
    for stream_id in (1, 3, 5):
        client.submit_headers(stream_id, REQUEST, end_stream=True)
    pair.transfer()
    pair.server_events()
    for stream_id in (1, 3, 5):
        server.submit_headers(stream_id, RESPONSE)
        server.submit_data(stream_id, b"z" * 200_000, end_stream=True)
    totals = {1: 0, 3: 0, 5: 0}
    pair.transfer()
    for event in pair.client_events():
        if isinstance(event, DataReceived):
            totals[event.stream_id] += len(event.data)
    first_round = dict(totals)
    # Stream 1 took the whole initial connection window.
    assert first_round[1] == 65_535
    for _ in range(4):
        for stream_id in (1, 3, 5):
            client.acknowledge_received_data(stream_id, 200_000)
        pair.transfer()
        for event in pair.client_events():
            if isinstance(event, DataReceived):
                totals[event.stream_id] += len(event.data)
    # As the window reopens, the others are served too, before stream 1 is done.
    assert totals[3] > 0
    assert totals[5] > 0
    assert totals[1] < 200_000


def test_padding_is_acknowledged_at_once() -> None:
    server = raw_server(initial_window_size=1000)
    data = raw_headers(1, POST, end_stream=False)
    for _ in range(3):
        frame = DataFrame(1, b"d")
        frame.flags.add("PADDED")
        frame.pad_length = 200
        data += frame.serialize()
    server.bytes_received(data)
    events = [server.next_event() for _ in range(4)]
    assert events[1:] == [DataReceived(stream_id=1, data=b"d")] * 3
    updates = [f for f in parse_frames(server.bytes_to_send()) if isinstance(f, WindowUpdateFrame)]
    # The Pad Length fields and padding (3 * 201 bytes) are credited back at
    # once; the 3 data bytes wait for the application (RFC 9113 §6.1, §6.9).
    assert [(f.stream_id, f.window_increment) for f in updates] == [(1, 603)]


def test_thousand_concurrent_streams() -> None:
    pair = tcp_pair(server=HTTP2ServerFactory(max_concurrent_streams=1000))
    client, server = pair.client, pair.server
    stream_ids = []
    for _ in range(1000):
        stream_id = client.get_available_stream_id()
        client.submit_headers(stream_id, POST)
        client.submit_data(stream_id, b"%d" % stream_id)
        stream_ids.append(stream_id)
    assert not client.is_available()  # at the server's limit
    pair.transfer()
    events = pair.server_events()
    assert len(events) == 2000
    for stream_id in stream_ids:
        client.submit_data(stream_id, b"", end_stream=True)
        server.submit_headers(stream_id, RESPONSE)
        server.submit_data(stream_id, b"%d" % stream_id, end_stream=True)
    pair.transfer()
    events = pair.client_events()
    assert len(events) == 2000
    for event in events:
        if isinstance(event, DataReceived):
            assert event.data == b"%d" % event.stream_id
            assert event.end_stream
    assert len(pair.server_events()) == 1000
    assert client.is_available()


# -- bad input -----------------------------------------------------------------


def test_bad_preface() -> None:
    server = HTTP2ServerFactory()()
    server.bytes_to_send()
    server.bytes_received(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    event = server.next_event()
    assert isinstance(event, ConnectionTerminated)
    assert event.error_code == CODES.protocol_error
    assert server.next_event() is None
    assert server.has_expired()
    assert_goaway(server.bytes_to_send(), CODES.protocol_error)
    # Nothing more happens, and no second ConnectionTerminated follows.
    server.bytes_received(b"more garbage")
    server.eof_received()
    server.connection_lost()
    assert server.next_event() is None


def test_preface_without_settings() -> None:
    server = HTTP2ServerFactory()()
    server.bytes_received(PREFACE + PingFrame(0).serialize())
    event = server.next_event()
    assert isinstance(event, ConnectionTerminated)
    assert event.error_code == CODES.protocol_error
    assert_goaway(server.bytes_to_send(), CODES.protocol_error)


def test_garbage_to_client() -> None:
    _pair, client, _server = h2_pair()
    client.bytes_to_send()
    client.bytes_received(b"\xff" * 64)  # a frame far larger than allowed
    event = client.next_event()
    assert isinstance(event, ConnectionTerminated)
    assert event.error_code == 0x6  # FRAME_SIZE_ERROR
    assert_goaway(client.bytes_to_send(), 0x6)
    assert not client.is_available()
    with pytest.raises(LocalProtocolError):
        client.get_available_stream_id()


@pytest.mark.parametrize("chunker", [whole, one_byte], ids=["whole", "one"])
def test_a_server_answering_in_http1_is_named(chunker: Chunker) -> None:
    """RFC 9113 §3.4: not a frame too large, but a server that does not speak HTTP/2."""
    client = HTTP2ClientFactory()()
    client.submit_headers(client.get_available_stream_id(), REQUEST, end_stream=True)
    client.bytes_to_send()
    answer = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    events = []
    for chunk in chunker(answer):
        client.bytes_received(chunk)
        while (event := client.next_event()) is not None:
            events.append(event)
    assert events == [
        ConnectionTerminated(
            error_code=CODES.protocol_error,
            message="the server does not speak HTTP/2: it answered in HTTP/1",
            reason=TerminationReason.PEER_PROTOCOL_ERROR,
        )
    ]
    assert_goaway(client.bytes_to_send(), CODES.protocol_error)


def test_a_server_preface_that_only_starts_like_http1() -> None:
    """b"HTTP" could begin a frame header: only b"HTTP/" is HTTP/1."""
    client = HTTP2ClientFactory()()
    client.bytes_to_send()
    client.bytes_received(b"HTT")
    assert client.next_event() is None
    client.bytes_received(b"Px" + b"\x00" * 64)
    event = client.next_event()
    assert isinstance(event, ConnectionTerminated)
    assert event.error_code == 0x6  # a frame far larger than allowed, as before


@pytest.mark.parametrize("chunker", [whole, one_byte], ids=["whole", "one"])
def test_data_on_stream_zero(chunker: Chunker) -> None:
    server = raw_server()
    frame = bytearray(DataFrame(1, b"boom").serialize())
    frame[5:9] = b"\x00\x00\x00\x00"  # DATA must not be on stream 0 (RFC 9113 §6.1)
    for chunk in chunker(bytes(frame)):
        server.bytes_received(chunk)
    event = server.next_event()
    assert isinstance(event, ConnectionTerminated)
    assert event.error_code == CODES.protocol_error
    assert server.next_event() is None
    assert_goaway(server.bytes_to_send(), CODES.protocol_error)


def test_events_before_an_error_in_a_later_call_are_kept() -> None:
    server = raw_server()
    server.bytes_received(raw_headers(1, REQUEST, end_stream=True))
    server.bytes_received(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")  # 0 increment
    assert server.next_event() == HeadersReceived(
        stream_id=1, headers=list(REQUEST), end_stream=True
    )
    event = server.next_event()
    assert isinstance(event, ConnectionTerminated)
    assert event.error_code == CODES.protocol_error


def test_window_overflow_on_a_stream_is_a_stream_error() -> None:
    server = raw_server()
    server.bytes_received(raw_headers(1, REQUEST, end_stream=True))
    server.next_event()
    server.submit_headers(1, RESPONSE)
    update = WindowUpdateFrame(1)
    update.window_increment = 2**31 - 1
    server.bytes_received(update.serialize())
    assert server.next_event() == StreamResetSent(stream_id=1, error_code=CODES.flow_control_error)
    frames = parse_frames(server.bytes_to_send())
    assert any(isinstance(f, RstStreamFrame) and f.stream_id == 1 for f in frames)
    assert not server.has_expired()


def test_headers_over_the_limit() -> None:
    server = raw_server(max_header_list_size=100)
    server.bytes_received(raw_headers(1, [*REQUEST, (b"x-big", b"v" * 200)], end_stream=True))
    event = server.next_event()
    assert isinstance(event, ConnectionTerminated)
    assert event.error_code != 0
    assert_goaway(server.bytes_to_send(), event.error_code)


# -- misuse --------------------------------------------------------------------


def test_misuse_raises_local_protocol_error() -> None:
    pair, client, server = h2_pair()
    with pytest.raises(LocalProtocolError):
        server.get_available_stream_id()
    with pytest.raises(LocalProtocolError):
        client.submit_data(1, b"no such stream")
    with pytest.raises(LocalProtocolError):
        server.submit_headers(2, RESPONSE)  # servers do not push
    with pytest.raises(LocalProtocolError):
        client.submit_headers(2, REQUEST)  # clients use odd IDs
    with pytest.raises(LocalProtocolError):
        client.submit_stream_reset(1, -1)
    with pytest.raises(LocalProtocolError):
        client.acknowledge_received_data(1, -5)
    client.submit_headers(1, POST)
    pair.transfer()
    pair.server_events()
    with pytest.raises(LocalProtocolError):
        server.submit_data(1, b"before headers")
    client.submit_data(1, b"x", end_stream=True)
    with pytest.raises(LocalProtocolError):
        client.submit_data(1, b"after the end")
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [(b"x-trailer", b"1")], end_stream=True)
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, REQUEST)  # stream IDs only go up
    # The connection is still usable.
    client.submit_headers(3, REQUEST, end_stream=True)
    pair.transfer()
    assert pair.server_events() == [
        DataReceived(stream_id=1, data=b"x", end_stream=True),
        HeadersReceived(stream_id=3, headers=list(REQUEST), end_stream=True),
    ]


def test_invalid_headers_raise_and_reset_the_stream() -> None:
    pair, client, server = h2_pair()
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [(b":path", b"/")])  # no :method
    client.submit_headers(3, REQUEST, end_stream=True)
    pair.transfer()
    assert pair.server_events() == [
        HeadersReceived(stream_id=3, headers=list(REQUEST), end_stream=True)
    ]
    with pytest.raises(LocalProtocolError):
        server.submit_headers(3, [(b"x-no-status", b"1")])
    assert server.next_event() == StreamResetSent(stream_id=3, error_code=CODES.internal_error)
    pair.transfer()
    assert pair.client_events() == [
        StreamResetReceived(stream_id=3, error_code=CODES.internal_error)
    ]


def test_trailers_with_pseudo_headers_behind_held_data() -> None:
    pair = tcp_pair(server=HTTP2ServerFactory(initial_window_size=10))
    client = pair.client
    client.submit_headers(1, POST)
    client.submit_data(1, b"x" * 100)
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [(b":status", b"200")], end_stream=True)
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [(b"x-trailer", b"1")])  # trailers must end the stream


def test_opening_more_streams_than_the_peer_allows() -> None:
    pair = tcp_pair(server=HTTP2ServerFactory(max_concurrent_streams=1))
    client, server = pair.client, pair.server
    client.submit_headers(1, REQUEST, end_stream=True)
    assert not client.is_available()
    with pytest.raises(LocalProtocolError):
        client.get_available_stream_id()
    with pytest.raises(LocalProtocolError):
        client.submit_headers(3, REQUEST, end_stream=True)
    pair.transfer()
    pair.server_events()
    assert not server.is_available()
    server.submit_headers(1, RESPONSE, end_stream=True)
    pair.transfer()
    pair.client_events()
    assert client.is_available()
    assert server.is_available()
    assert client.get_available_stream_id() == 3


# -- the end of the connection -----------------------------------------------------


def test_clean_eof_and_connection_lost_terminate_once() -> None:
    pair, _client, server = h2_pair()
    server.eof_received()
    server.connection_lost()
    assert pair.server_events() == [
        ConnectionTerminated(error_code=0, message="the peer closed the connection")
    ]
    assert server.has_expired()


def test_eof_with_open_streams_is_a_protocol_error() -> None:
    pair, client, _server = h2_pair()
    client.submit_headers(1, REQUEST, end_stream=True)
    pair.transfer()
    pair.server_events()
    client.connection_lost()
    events = pair.client_events()
    assert len(events) == 1
    assert isinstance(events[0], ConnectionTerminated)
    assert events[0].error_code == CODES.protocol_error
    with pytest.raises(LocalProtocolError):
        client.submit_data(1, b"x")


def test_submit_goaway_lets_streams_in_flight_finish() -> None:
    pair, client, server = h2_pair()
    client.submit_headers(1, POST)
    pair.transfer()
    pair.server_events()
    server.submit_goaway()
    assert server.has_expired()
    pair.transfer()
    assert pair.client_events() == [GoawayReceived(last_stream_id=1, error_code=0)]
    client.submit_data(1, b"body", end_stream=True)
    pair.transfer()
    assert pair.server_events() == [DataReceived(stream_id=1, data=b"body", end_stream=True)]
    server.submit_headers(1, RESPONSE, end_stream=True)
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(stream_id=1, headers=list(RESPONSE), end_stream=True)
    ]


def test_streams_after_our_goaway_are_refused() -> None:
    server = raw_server()
    server.bytes_received(raw_headers(1, REQUEST, end_stream=True))
    server.next_event()
    server.submit_goaway()
    goaway = parse_frames(server.bytes_to_send())[-1]
    assert isinstance(goaway, GoAwayFrame)
    assert goaway.last_stream_id == 1
    server.bytes_received(
        raw_headers(3, REQUEST, end_stream=False) + DataFrame(3, b"x").serialize()
    )
    assert server.next_event() is None
    frames = parse_frames(server.bytes_to_send())
    assert any(
        isinstance(f, RstStreamFrame) and f.stream_id == 3 and f.error_code == CODES.refused_stream
        for f in frames
    )


def test_submit_close_with_an_error_closes_at_once() -> None:
    pair, client, server = h2_pair()
    client.submit_headers(1, REQUEST, end_stream=True)
    pair.transfer()
    pair.server_events()
    server.submit_close(CODES.excessive_load)
    assert pair.server_events() == [
        ConnectionTerminated(
            error_code=CODES.excessive_load, message="the connection was closed by this side"
        )
    ]
    assert_goaway(server.bytes_to_send(), CODES.excessive_load)
    with pytest.raises(LocalProtocolError):
        server.submit_headers(1, RESPONSE)
    server.submit_close()  # already closed: nothing happens
    assert server.next_event() is None


def test_submit_close_after_goaway_closes_at_once() -> None:
    _pair, client, _server = h2_pair()
    client.submit_goaway()
    assert client.next_event() is None
    client.submit_close()
    assert client.next_event() == ConnectionTerminated(
        error_code=0, message="the connection was closed by this side"
    )
