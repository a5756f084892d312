"""HTTP/3 protocol (aioquic) tests on an in-memory pair with a controlled clock."""

from __future__ import annotations

import hashlib

import pytest
from aioquic._buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_transport_parameters, push_quic_transport_parameters

from hface.common import HTTP3_ERROR_CODES, ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.errors import LocalProtocolError
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoawayReceived,
    HeadersReceived,
    StreamResetReceived,
    StreamResetSent,
)
from hface.protocols import HTTP3Protocol
from hface.protocols.http3 import (
    HTTP3ClientFactory,
    HTTP3ClientProtocol,
    HTTP3ServerFactory,
    HTTP3ServerProtocol,
    InvalidQUICPacket,
    build_version_negotiation_packet,
    sniff_quic_packet,
)
from hface.protocols.http3._protocol import CLOSE_LINGER
from tests.helpers.quic_pair import (
    CLIENT_ADDRESS,
    SERVER_ADDRESS,
    QUICProtocolPair,
    certificates,
    make_quic_pair,
)

CODES = HTTP3_ERROR_CODES
GET: HeadersType = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]
POST: HeadersType = [
    (b":method", b"POST"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/upload"),
]
OK: HeadersType = [(b":status", b"200")]


def _data(events: list[Event], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


def _request(pair: QUICProtocolPair, headers: HeadersType, body: bytes | None = None) -> int:
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, headers, end_stream=body is None)
    if body is not None:
        pair.client.submit_data(stream_id, body, end_stream=True)
    pair.transfer()
    return stream_id


def test_types_and_defaults() -> None:
    pair = make_quic_pair()
    assert isinstance(pair.client, HTTP3ClientProtocol)
    assert isinstance(pair.server, HTTP3ServerProtocol)
    assert isinstance(pair.client, HTTP3Protocol)
    assert pair.client.http_version == "3"
    assert pair.client.multiplexed
    assert pair.client.error_codes == CODES
    assert pair.server.connection_ids
    factory = HTTP3ServerFactory()
    assert factory.quic_connection_id_length == 8
    assert 1 in factory.quic_supported_versions
    # Written out (so that making a factory imports no aioquic): aioquic's own list.
    assert list(factory.quic_supported_versions) == (
        QuicConfiguration(is_client=False).supported_versions
    )


def test_get_without_body() -> None:
    pair = make_quic_pair()
    stream_id = _request(pair, GET)
    assert pair.server_events() == [HeadersReceived(stream_id=0, headers=GET, end_stream=True)]
    pair.server.submit_headers(stream_id, OK, end_stream=True)
    pair.transfer()
    assert pair.client_events() == [HeadersReceived(stream_id=0, headers=OK, end_stream=True)]


def test_get_with_body_and_trailers() -> None:
    pair = make_quic_pair()
    stream_id = _request(pair, GET)
    pair.server_events()
    pair.server.submit_headers(stream_id, OK)
    pair.server.submit_data(stream_id, b"hello, ")
    pair.server.submit_data(stream_id, b"world")
    pair.server.submit_headers(stream_id, [(b"x-checksum", b"abc")], end_stream=True)
    pair.transfer()
    events = pair.client_events()
    assert events[0] == HeadersReceived(stream_id=0, headers=OK)
    assert _data(events, 0) == b"hello, world"
    assert events[-1] == HeadersReceived(
        stream_id=0, headers=[(b"x-checksum", b"abc")], end_stream=True
    )


def test_post_body_and_connection_headers_stripped() -> None:
    pair = make_quic_pair()
    headers = [*POST, (b"Connection", b"close"), (b"te", b"gzip"), (b"x-a", b"1")]
    stream_id = _request(pair, headers, body=b"x" * 5000)
    events = pair.server_events()
    assert events[0] == HeadersReceived(stream_id=stream_id, headers=[*POST, (b"x-a", b"1")])
    assert _data(events, stream_id) == b"x" * 5000
    last = events[-1]
    assert isinstance(last, DataReceived)
    assert last.end_stream


def test_connect_both_ways() -> None:
    pair = make_quic_pair()
    connect = [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
    stream_id = _request(pair, connect)
    pair.server_events()
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, connect)
    pair.client.submit_data(stream_id, b"tunnel")
    pair.transfer()
    assert pair.server_events() == [
        HeadersReceived(stream_id=stream_id, headers=connect),
        DataReceived(stream_id=stream_id, data=b"tunnel"),
    ]
    pair.server.submit_headers(stream_id, OK)
    pair.server.submit_data(stream_id, b"back")
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(stream_id=stream_id, headers=OK),
        DataReceived(stream_id=stream_id, data=b"back"),
    ]


def test_thousand_concurrent_streams() -> None:
    pair = make_quic_pair(max_concurrent_streams=1000)
    ids = []
    for _ in range(1000):
        stream_id = pair.client.get_available_stream_id()
        pair.client.submit_headers(stream_id, GET, end_stream=True)
        ids.append(stream_id)
    pair.transfer()
    events = pair.server_events()
    assert sorted(e.stream_id for e in events if isinstance(e, HeadersReceived)) == ids
    for stream_id in ids:
        pair.server.submit_headers(stream_id, OK)
        pair.server.submit_data(stream_id, str(stream_id).encode(), end_stream=True)
    pair.transfer()
    events = pair.client_events()
    for stream_id in ids:
        assert _data(events, stream_id) == str(stream_id).encode()


def test_stream_limit_makes_client_unavailable() -> None:
    pair = make_quic_pair(max_concurrent_streams=2)
    for _ in range(2):
        pair.client.submit_headers(pair.client.get_available_stream_id(), GET)
    assert not pair.client.is_available()
    with pytest.raises(LocalProtocolError):
        pair.client.get_available_stream_id()


def test_client_resets_stream() -> None:
    pair = make_quic_pair()
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, POST)
    pair.client.submit_data(stream_id, b"partial")
    pair.transfer()
    pair.server_events()
    pair.client.submit_stream_reset(stream_id, CODES.cancel)
    assert pair.client_events() == [StreamResetSent(stream_id=stream_id, error_code=CODES.cancel)]
    pair.transfer()
    assert pair.server_events() == [
        StreamResetReceived(stream_id=stream_id, error_code=CODES.cancel)
    ]
    assert pair.client_events() == []
    pair.client.submit_stream_reset(stream_id)  # already reset: nothing
    with pytest.raises(LocalProtocolError):
        pair.server.submit_data(stream_id, b"late")


def test_server_resets_stream() -> None:
    pair = make_quic_pair()
    stream_id = _request(pair, GET)
    pair.server_events()
    pair.server.submit_stream_reset(stream_id, CODES.internal_error)
    assert pair.server_events() == [
        StreamResetSent(stream_id=stream_id, error_code=CODES.internal_error)
    ]
    pair.transfer()
    assert pair.client_events() == [
        StreamResetReceived(stream_id=stream_id, error_code=CODES.internal_error)
    ]
    # The connection goes on.
    assert pair.client.is_available()
    other = _request(pair, GET)
    assert pair.server_events() == [HeadersReceived(stream_id=other, headers=GET, end_stream=True)]


def test_server_graceful_close() -> None:
    pair = make_quic_pair()
    stream_id = _request(pair, GET)
    pair.server_events()
    pair.server.submit_goaway()
    assert pair.server.has_expired()
    pair.transfer()
    # GOAWAY first; the stream in flight may still finish.
    assert pair.client_events() == [
        GoawayReceived(last_stream_id=stream_id, error_code=CODES.no_error),
    ]
    assert not pair.client.is_available()
    pair.server.submit_headers(stream_id, [(b":status", b"200")], end_stream=True)
    pair.transfer()
    # Once it has, QUIC closes by itself.
    assert pair.client_events() == [
        HeadersReceived(stream_id=stream_id, headers=[(b":status", b"200")], end_stream=True),
        ConnectionTerminated(error_code=CODES.no_error),
    ]
    assert pair.server_events() == [ConnectionTerminated(error_code=CODES.no_error)]
    assert pair.client.has_expired()


def test_graceful_close_lingers_until_the_last_response_is_acknowledged() -> None:
    pair = make_quic_pair()
    stream_id = _request(pair, GET)
    pair.server_events()
    pair.server.submit_goaway()
    pair.server.submit_headers(stream_id, OK, end_stream=True)
    # Lost: the GOAWAY and the response. Closing QUIC now would lose them for good.
    assert pair.server.datagrams_to_send()
    assert pair.server_events() == []
    assert pair.server.get_timer() is not None
    pair.advance(0.5)  # the probe timeout resends them; the client acknowledges
    events = pair.client_events()
    assert events[-1] == ConnectionTerminated(error_code=CODES.no_error)
    # In the order resent (the response first, here).
    assert sorted(map(repr, events[:-1])) == sorted(
        map(
            repr,
            [
                GoawayReceived(last_stream_id=stream_id, error_code=CODES.no_error),
                HeadersReceived(stream_id=stream_id, headers=OK, end_stream=True),
            ],
        )
    )
    assert pair.server_events() == [ConnectionTerminated(error_code=CODES.no_error)]


def test_graceful_close_gives_up_lingering_on_a_silent_peer() -> None:
    pair = make_quic_pair()
    stream_id = _request(pair, GET)
    pair.server_events()
    pair.server.submit_goaway()
    pair.server.submit_headers(stream_id, OK, end_stream=True)
    start = pair.now
    now = start
    # The client is gone: the server's datagrams (probes included) all get lost.
    while True:
        pair.server.datagrams_to_send()
        events = pair.server_events()
        if events:
            break
        assert now - start < CLOSE_LINGER + 0.5, "the close never went out"
        timer = pair.server.get_timer()
        assert timer is not None
        now = max(now, timer)
        pair.server.clock(now)
    assert events == [ConnectionTerminated(error_code=CODES.no_error)]
    assert now - start >= CLOSE_LINGER


def test_abandon_linger_cuts_the_linger_short() -> None:
    pair = make_quic_pair()
    _request(pair, GET)
    pair.server_events()
    pair.server.submit_goaway()
    pair.server.submit_close()  # abandon the stream: close once the GOAWAY is acknowledged
    pair.server.datagrams_to_send()  # lost
    assert pair.server_events() == []
    pair.server.abandon_linger()
    # Out at once, without the acknowledgement.
    assert pair.server.datagrams_to_send()
    assert pair.server_events() == [ConnectionTerminated(error_code=CODES.no_error)]


def test_server_close_with_an_error_is_immediate() -> None:
    pair = make_quic_pair()
    _request(pair, GET)
    pair.server_events()
    pair.server.submit_close(CODES.internal_error)
    pair.transfer()
    events = pair.client_events()
    assert isinstance(events[-1], ConnectionTerminated)
    assert pair.server_events() == [ConnectionTerminated(error_code=CODES.internal_error)]


def test_a_close_after_goaway_is_immediate() -> None:
    pair = make_quic_pair()
    _request(pair, GET)
    pair.server_events()
    pair.server.submit_goaway()
    pair.server.submit_close()
    pair.transfer()
    assert isinstance(pair.client_events()[-1], ConnectionTerminated)
    with pytest.raises(LocalProtocolError):
        pair.client.submit_headers(4, GET)


def test_client_close_with_error_code() -> None:
    pair = make_quic_pair()
    pair.client.submit_close(CODES.internal_error)
    pair.transfer()
    assert pair.server_events() == [
        GoawayReceived(last_stream_id=-1, error_code=CODES.no_error),
        ConnectionTerminated(error_code=CODES.internal_error),
    ]
    assert pair.client_events() == [ConnectionTerminated(error_code=CODES.internal_error)]


def test_never_acknowledging_consumer_stalls_sender() -> None:
    window = 16 * 1024
    pair = make_quic_pair(stream_receive_window=window, connection_receive_window=4 * window)
    body = bytes(range(256)) * 1024  # 256 KiB
    stream_id = _request(pair, GET)
    pair.server_events()
    pair.server.submit_headers(stream_id, OK)
    pair.server.submit_data(stream_id, body, end_stream=True)
    pair.advance(1.0)
    received = _data(pair.client_events(), stream_id)
    assert 0 < len(received) <= window
    assert pair.server.get_pending_data_size(stream_id) > 0
    for _ in range(200):
        pair.client.acknowledge_received_data(stream_id, len(received))
        pair.transfer()
        chunk = _data(pair.client_events(), stream_id)
        if not chunk:
            break
        assert len(chunk) <= window
        received += chunk
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    assert pair.server.get_pending_data_size(stream_id) == 0


def test_connection_window_bounds_many_streams() -> None:
    window = 16 * 1024
    pair = make_quic_pair(stream_receive_window=window, connection_receive_window=2 * window)
    ids = [_request(pair, GET) for _ in range(4)]
    pair.server_events()
    for stream_id in ids:
        pair.server.submit_headers(stream_id, OK)
        pair.server.submit_data(stream_id, b"z" * 50_000, end_stream=True)
    pair.advance(1.0)
    events = pair.client_events()
    assert sum(len(_data(events, s)) for s in ids) <= 2 * window


def test_idle_timeout() -> None:
    pair = make_quic_pair(idle_timeout=5.0)
    pair.advance(4.0)
    assert pair.client_events() == []
    pair.advance(2.0)
    idle = ConnectionTerminated(error_code=CODES.no_error, message="idle timeout")
    assert pair.client_events() == [idle]
    assert pair.server_events() == [idle]
    assert pair.client.has_expired()
    assert pair.client.get_timer() is None


def test_connection_lost() -> None:
    pair = make_quic_pair()
    pair.client.connection_lost()
    pair.client.connection_lost()
    assert pair.client_events() == [
        ConnectionTerminated(error_code=CODES.internal_error, message="connection lost")
    ]


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00", b"\xff" * 1300, b"\x40" + b"\x00" * 40, b"\xc0\x00\x00\x00\x01" + b"\x08" * 50],
)
def test_garbage_datagrams_do_not_raise(garbage: bytes) -> None:
    pair = make_quic_pair()
    pair.server.datagram_received((garbage, ("127.0.0.1", 50000)))
    pair.client.datagram_received((garbage, SERVER_ADDRESS))
    pair.transfer()
    stream_id = _request(pair, GET)
    expected = HeadersReceived(stream_id=stream_id, headers=GET, end_stream=True)
    assert pair.server_events() == [expected]
    _cafile, certfile, keyfile = certificates()
    fresh = HTTP3ServerFactory()(tls_config=ServerTLSConfig(certfile=certfile, keyfile=keyfile))
    fresh.clock(0.0)
    fresh.datagram_received((garbage, ("127.0.0.1", 1)))
    assert fresh.datagrams_to_send() == []


def _first_client_datagram() -> bytes:
    client = HTTP3ClientFactory()(
        remote_address=SERVER_ADDRESS,
        server_name="localhost",
        tls_config=ClientTLSConfig(insecure=True),
    )
    client.clock(0.0)
    datagrams = client.datagrams_to_send()
    assert datagrams
    return datagrams[0][0]


def test_sniff_initial_and_garbage() -> None:
    data = _first_client_datagram()
    info = sniff_quic_packet(data, connection_id_length=8)
    assert info.is_initial
    assert info.is_long_header
    assert info.version == 1
    assert len(info.destination_connection_id) >= 8
    assert len(info.source_connection_id) == 8
    short = sniff_quic_packet(b"\x40" + b"\x11" * 8 + b"\x00" * 20, connection_id_length=8)
    assert short.destination_connection_id == b"\x11" * 8
    assert short.version is None
    assert not short.is_long_header
    assert not short.is_initial
    for garbage in (b"", b"\x00" * 4, b"\xc0\x00\x00\x00\x01\x30"):
        with pytest.raises(InvalidQUICPacket):
            sniff_quic_packet(garbage, connection_id_length=8)


def test_version_negotiation() -> None:
    data = bytearray(_first_client_datagram())
    data[1:5] = (0x1A2A3A4A).to_bytes(4, "big")
    info = sniff_quic_packet(bytes(data), connection_id_length=8)
    assert info.version == 0x1A2A3A4A
    assert not info.is_initial
    packet = build_version_negotiation_packet(info, [1])
    parsed = sniff_quic_packet(packet, connection_id_length=8)
    assert parsed.version == 0
    assert parsed.destination_connection_id == info.source_connection_id
    assert parsed.source_connection_id == info.destination_connection_id
    assert packet.endswith((1).to_bytes(4, "big"))


def test_misuse_raises_local_protocol_error() -> None:
    pair = make_quic_pair()
    with pytest.raises(LocalProtocolError):
        pair.server.get_available_stream_id()
    with pytest.raises(LocalProtocolError):
        pair.server.submit_headers(0, OK)  # unknown stream
    with pytest.raises(LocalProtocolError):
        pair.client.submit_data(0, b"x")  # not opened
    with pytest.raises(LocalProtocolError):
        pair.client.submit_headers(8, GET)  # not the next stream
    with pytest.raises(LocalProtocolError):
        pair.client.submit_headers(0, [(b":path", b"/")])  # invalid request
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, GET, end_stream=True)
    with pytest.raises(LocalProtocolError):
        pair.client.submit_data(stream_id, b"x")
    with pytest.raises(LocalProtocolError):
        pair.client.submit_headers(stream_id, GET)
    pair.transfer()
    pair.server_events()
    with pytest.raises(LocalProtocolError):
        pair.server.submit_data(stream_id, b"before headers")
    pair.server.submit_headers(stream_id, OK)
    with pytest.raises(LocalProtocolError):
        pair.server.submit_headers(stream_id, [(b"x-trailer", b"1")])  # trailers must end
    assert pair.client.get_pending_data_size(999) == 0
    pair.client.acknowledge_received_data(999, 10)  # unknown: nothing


def test_clock_before_datagrams_to_send() -> None:
    client = HTTP3ClientFactory()(
        remote_address=SERVER_ADDRESS,
        server_name="localhost",
        tls_config=ClientTLSConfig(insecure=True),
    )
    assert client.get_timer() is None
    with pytest.raises(LocalProtocolError):
        client.datagrams_to_send()


def test_factory_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="max_datagram_size"):
        HTTP3ClientFactory(max_datagram_size=500)
    with pytest.raises(ValueError, match="idle_timeout"):
        HTTP3ServerFactory(idle_timeout=0)


@pytest.mark.parametrize(
    ("method", "status"),
    [(b"HEAD", b"200"), (b"GET", b"204"), (b"GET", b"304"), (b"HEAD", b"304")],
)
def test_content_length_without_content(method: bytes, status: bytes) -> None:
    # RFC 9110 §8.6: a response to HEAD, a 204 and a 304 have no content,
    # whatever their content-length says; the connection stays usable.
    pair = make_quic_pair()
    request = [(b":method", method), *GET[1:]]
    response = [(b":status", status), (b"content-length", b"1234")]
    stream_id = _request(pair, request)
    pair.server_events()
    pair.server.submit_headers(stream_id, response, end_stream=True)
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(stream_id=stream_id, headers=response, end_stream=True)
    ]
    stream_id = _request(pair, GET)
    pair.server_events()
    pair.server.submit_headers(stream_id, OK, end_stream=True)
    pair.transfer()
    events = pair.client_events()
    assert events == [HeadersReceived(stream_id=stream_id, headers=OK, end_stream=True)]


def test_content_length_is_checked_on_other_responses() -> None:
    # RFC 9114 §4.1.2: a malformed response is a stream error; the
    # connection serves the next request.
    pair = make_quic_pair()
    stream_id = _request(pair, GET)
    pair.server_events()
    pair.server.submit_headers(stream_id, [(b":status", b"200"), (b"content-length", b"4")])
    pair.server.submit_data(stream_id, b"abc", end_stream=True)
    pair.transfer()
    assert pair.client_events() == [
        StreamResetSent(stream_id=stream_id, error_code=CODES.message_error)
    ]
    stream_id = _request(pair, GET)
    pair.server_events()
    pair.server.submit_headers(stream_id, OK, end_stream=True)
    pair.transfer()
    events = pair.client_events()
    assert events == [HeadersReceived(stream_id=stream_id, headers=OK, end_stream=True)]


class _PeerWithPayloadLimit(QuicConnection):
    """An aioquic server that advertises ``max_udp_payload_size`` (aioquic never does)."""

    def __init__(self, limit: int | None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]  # aioquic's keyword arguments
        self.limit = limit

    def _serialize_transport_parameters(self) -> bytes:
        data = super()._serialize_transport_parameters()
        parameters = pull_quic_transport_parameters(Buffer(data=data))
        parameters.max_udp_payload_size = self.limit
        buf = Buffer(capacity=len(data) + 16)
        push_quic_transport_parameters(buf, parameters)
        return buf.data


@pytest.mark.parametrize(("limit", "largest"), [(1350, 1350), (4000, 4000), (None, 16000)])
def test_datagrams_respect_the_peers_max_udp_payload_size(limit: int | None, largest: int) -> None:
    # RFC 9000 §18.2. On loopback the client would send 16,000-byte
    # datagrams; it starts at 1,200 (the server's limit is unknown until its
    # first flight) and grows to the limit only.
    _, certfile, keyfile = certificates()
    configuration = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    configuration.load_cert_chain(certfile, keyfile)
    server: _PeerWithPayloadLimit | None = None
    client = HTTP3ClientFactory()(
        remote_address=SERVER_ADDRESS,
        server_name="localhost",
        tls_config=ClientTLSConfig(insecure=True),
    )
    now = 1000.0
    sizes: list[int] = []

    def exchange() -> None:
        nonlocal server, now
        for _ in range(1000):
            client.clock(now)
            datagrams = client.datagrams_to_send()
            for data, _address in datagrams:
                sizes.append(len(data))
                if server is None:
                    dcid = sniff_quic_packet(data, connection_id_length=8).destination_connection_id
                    server = _PeerWithPayloadLimit(
                        limit, configuration=configuration, original_destination_connection_id=dcid
                    )
                server.receive_datagram(data, CLIENT_ADDRESS, now=now)
            assert server is not None
            answers = server.datagrams_to_send(now=now)
            for data, _address in answers:
                client.datagram_received((data, SERVER_ADDRESS))
            if not datagrams and not answers:
                # Quiet: run the timers (pacing, delayed ACKs) due soon.
                timers = [t for t in (client.get_timer(), server.get_timer()) if t is not None]
                if not timers or min(timers) > now + 0.1:
                    return
                now = max(now, min(timers))
                if (timer := server.get_timer()) is not None and timer <= now:
                    server.handle_timer(now=now)
        raise AssertionError("the exchange never settled")

    exchange()
    assert client.handshake_completed
    assert sizes[0] == 1200  # the Initial, padded (RFC 9000 §14.1)
    stream_id = client.get_available_stream_id()
    client.submit_headers(stream_id, POST)
    client.submit_data(stream_id, b"x" * 200_000, end_stream=True)
    exchange()
    assert max(sizes) == largest
    assert client.get_pending_data_size(stream_id) == 0  # everything went


# -- SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 §4.2.2, §7.2.4.1) ---------------------------


def test_max_field_section_size_is_advertised() -> None:
    """Each side sends its limit in SETTINGS; aioquic on the other side records it."""
    pair = make_quic_pair(max_field_section_size=5000)
    for protocol in (pair.client, pair.server):
        assert isinstance(protocol, HTTP3ClientProtocol | HTTP3ServerProtocol)
        h3 = protocol._h3
        assert h3 is not None
        assert h3._get_local_settings()[0x6] == 5000
        assert h3.received_settings is not None
        assert h3.received_settings[0x6] == 5000


def test_default_max_field_section_size_is_64_kib() -> None:
    pair = make_quic_pair()
    assert isinstance(pair.client, HTTP3ClientProtocol)
    assert pair.client._h3 is not None
    assert pair.client._h3._get_local_settings()[0x6] == 64 * 1024


def test_request_over_max_field_section_size_gets_431() -> None:
    """The server answers 431 itself; the request never reaches the application.

    Counted as RFC 9114 §4.2.2 does: a field of 100 bytes costs 132 (+32).
    """
    pair = make_quic_pair(max_field_section_size=1000)
    small = _request(pair, [*GET, (b"x-a", b"a" * 500)])
    assert pair.server_events() == [
        HeadersReceived(stream_id=small, headers=[*GET, (b"x-a", b"a" * 500)], end_stream=True)
    ]
    big = _request(pair, [*GET, (b"x-a", b"a" * 1000)])
    assert pair.server_events() == []
    assert pair.client_events() == [
        HeadersReceived(
            stream_id=big,
            headers=[(b":status", b"431"), (b"content-length", b"0")],
            end_stream=True,
        )
    ]
    assert isinstance(pair.server, HTTP3ServerProtocol)
    assert big not in pair.server._streams
    # The connection goes on.
    pair.server.submit_headers(small, OK, end_stream=True)
    third = _request(pair, GET)
    assert pair.server_events() == [HeadersReceived(stream_id=third, headers=GET, end_stream=True)]


def test_request_with_body_over_the_limit_gets_431_and_the_body_is_dropped() -> None:
    """The body of a refused request is read and dropped; the stream is forgotten at its end."""
    pair = make_quic_pair(max_field_section_size=1000, stream_receive_window=4096)
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, [*POST, (b"x-a", b"a" * 2000)])
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(
            stream_id=stream_id,
            headers=[(b":status", b"431"), (b"content-length", b"0")],
            end_stream=True,
        )
    ]
    # Ten windows of body: dropped data is credited back, so it all goes through.
    pair.client.submit_data(stream_id, b"x" * 40960, end_stream=True)
    for _ in range(20):
        pair.transfer()
        pair.advance(0.05)
    assert pair.client.get_pending_data_size(stream_id) == 0
    assert pair.server_events() == []
    assert isinstance(pair.server, HTTP3ServerProtocol)
    assert stream_id not in pair.server._streams


def test_a_stop_sending_with_no_error_keeps_the_response() -> None:
    """RFC 9114 §4.1: the client reads the response to its end, then learns of the stop.

    The server answers without reading the whole request, then asks the
    client to stop sending (H3_NO_ERROR). aioquic writes STOP_SENDING ahead
    of the stream's data in a packet: the client gets the stop first.
    """
    pair = make_quic_pair()
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, POST)
    pair.client.submit_data(stream_id, b"part of the body")
    pair.transfer()
    pair.server_events()
    body = bytes(range(256)) * 400  # more than one datagram
    pair.server.submit_headers(stream_id, [(b":status", b"413")])
    pair.server.submit_data(stream_id, body, end_stream=True)
    pair.server.submit_stream_reset(stream_id)  # the response is whole: STOP_SENDING only
    first, *_ = pair.server.datagrams_to_send()  # the rest is paced
    pair.client.datagram_received((first[0], SERVER_ADDRESS))
    events = pair.client_events()
    assert not any(isinstance(event, StreamResetReceived) for event in events)
    assert not any(getattr(event, "end_stream", False) for event in events)
    # What the client still sends is dropped, not an error.
    pair.client.submit_data(stream_id, b"the rest", end_stream=True)
    pair.transfer()
    events += pair.client_events()
    assert events[0] == HeadersReceived(stream_id=stream_id, headers=[(b":status", b"413")])
    assert _data(events, stream_id) == body
    assert events[-2:] == [
        DataReceived(stream_id=stream_id, data=events[-2].data, end_stream=True),  # type: ignore[attr-defined]
        StreamResetReceived(stream_id=stream_id, error_code=CODES.no_error),
    ]


def test_a_stop_sending_with_an_error_is_reported_at_once() -> None:
    pair = make_quic_pair()
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, POST)
    pair.transfer()
    pair.server_events()
    pair.server.submit_headers(stream_id, OK)
    pair.transfer()
    pair.client_events()
    pair.server._quic.stop_stream(stream_id, CODES.cancel)  # type: ignore[attr-defined]
    pair.server._output_pending = True  # type: ignore[attr-defined]
    pair.transfer()
    reset = StreamResetReceived(stream_id=stream_id, error_code=CODES.cancel)
    assert pair.client_events() == [reset]
    with pytest.raises(LocalProtocolError):
        pair.client.submit_data(stream_id, b"more")


def test_response_over_max_field_section_size_resets_the_stream() -> None:
    """The client discards the response: RESET_STREAM and STOP_SENDING with H3_EXCESSIVE_LOAD."""
    pair = make_quic_pair(max_field_section_size=1000)
    stream_id = _request(pair, GET)
    pair.server_events()
    pair.server.submit_headers(stream_id, [*OK, (b"x-big", b"b" * 2000)])
    pair.server.submit_data(stream_id, b"body")
    pair.transfer()
    assert pair.client_events() == [
        StreamResetSent(stream_id=stream_id, error_code=CODES.excessive_load)
    ]
    assert (
        StreamResetReceived(stream_id=stream_id, error_code=CODES.excessive_load)
        in pair.server_events()
    )
    # Only the stream failed.
    second = _request(pair, GET)
    pair.server_events()
    pair.server.submit_headers(second, OK, end_stream=True)
    pair.transfer()
    assert pair.client_events() == [HeadersReceived(stream_id=second, headers=OK, end_stream=True)]


def test_trailers_over_the_limit_reset_the_stream() -> None:
    pair = make_quic_pair(max_field_section_size=1000)
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, POST)
    pair.client.submit_data(stream_id, b"x")
    pair.client.submit_headers(stream_id, [(b"x-t", b"t" * 2000)], end_stream=True)
    pair.transfer()
    events = pair.server_events()
    assert events[0] == HeadersReceived(stream_id=stream_id, headers=POST)
    assert events[-1] == StreamResetSent(stream_id=stream_id, error_code=CODES.excessive_load)


@pytest.mark.parametrize("size", [0, -1, 2**62])
def test_factories_reject_a_bad_max_field_section_size(size: int) -> None:
    with pytest.raises(ValueError, match="max_field_section_size must be between 1 and 2"):
        HTTP3ServerFactory(max_field_section_size=size)
    with pytest.raises(ValueError, match="max_field_section_size must be between 1 and 2"):
        HTTP3ClientFactory(max_field_section_size=size)
