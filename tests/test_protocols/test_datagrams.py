"""HTTP Datagrams (RFC 9297) on every version: QUIC DATAGRAM frames on HTTP/3, capsules elsewhere.

A CONNECT-UDP request (RFC 9298: extended CONNECT with ``:protocol
connect-udp``; on HTTP/1.1 ``Upgrade: connect-udp``) answered with a 2xx
switches its stream to HTTP Datagrams: ``submit_datagram`` on one side
becomes ``DatagramReceived`` on the other, whatever the version.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hface.common import HeadersType
from hface.errors import LocalProtocolError
from hface.events import (
    ConnectionTerminated,
    DatagramReceived,
    DataReceived,
    Event,
    HeadersReceived,
    StreamResetSent,
)
from hface.protocols import HTTPOverTCPProtocol
from hface.protocols._capsules import (
    CapsuleInput,
    CapsuleStream,
    encode_datagram_capsule,
    encode_varint,
)
from tests.helpers.pairs import ProtocolPair, make_pair, one_byte
from tests.helpers.quic_pair import make_quic_pair
from tests.test_protocols.conftest import HTTP1ServerFactoryType

CONNECT_UDP: HeadersType = [
    (b":method", b"CONNECT"),
    (b":protocol", b"connect-udp"),
    (b":scheme", b"https"),
    (b":authority", b"proxy.test"),
    (b":path", b"/.well-known/masque/udp/192.0.2.6/443/"),
    (b"capsule-protocol", b"?1"),
]

UPGRADE_REQUEST = (
    b"GET /.well-known/masque/udp/192.0.2.6/443/ HTTP/1.1\r\n"
    b"Host: proxy.test\r\n"
    b"Connection: Upgrade\r\n"
    b"Upgrade: connect-udp\r\n"
    b"Capsule-Protocol: ?1\r\n\r\n"
)

MULTIPLEXED = ("2", "3")


def _pair(http_version: str) -> ProtocolPair:
    pair = make_quic_pair() if http_version == "3" else make_pair(http_version)
    pair.transfer()
    pair.client_events()
    pair.server_events()
    return pair


def _open_tunnel(pair: ProtocolPair) -> int:
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, CONNECT_UDP)
    pair.transfer()
    events = pair.server_events()
    assert [type(event) for event in events] == [HeadersReceived]
    pair.server.submit_headers(stream_id, [(b":status", b"200"), (b"capsule-protocol", b"?1")])
    pair.transfer()
    assert [type(event) for event in pair.client_events()] == [HeadersReceived]
    return stream_id


def _datagrams(events: list[Event]) -> list[bytes]:
    return [event.data for event in events if isinstance(event, DatagramReceived)]


@pytest.mark.parametrize("http_version", MULTIPLEXED)
def test_datagrams_both_ways(http_version: str) -> None:
    pair = _pair(http_version)
    stream_id = _open_tunnel(pair)
    sent = [b"", b"\x00hello", bytes(range(256)) * 4]
    for payload in sent:
        assert pair.client.submit_datagram(stream_id, payload)
    pair.transfer()
    events = pair.server_events()
    assert sorted(_datagrams(events)) == sorted(sent)  # QUIC may reorder them
    assert not any(isinstance(event, DataReceived) for event in events)
    for payload in sent:
        assert pair.server.submit_datagram(stream_id, payload)
    pair.transfer()
    assert sorted(_datagrams(pair.client_events())) == sorted(sent)


@pytest.mark.parametrize("http_version", MULTIPLEXED)
def test_the_end_of_the_stream_follows_the_datagrams(http_version: str) -> None:
    pair = _pair(http_version)
    stream_id = _open_tunnel(pair)
    pair.client.submit_datagram(stream_id, b"last")
    pair.transfer()
    pair.client.submit_data(stream_id, b"", end_stream=True)
    pair.transfer()
    assert pair.server_events() == [
        DatagramReceived(stream_id=stream_id, data=b"last"),
        DataReceived(stream_id=stream_id, data=b"", end_stream=True),
    ]


def test_http2_datagrams_are_capsules_in_data() -> None:
    pair = _pair("2")
    stream_id = _open_tunnel(pair)
    # Capsules the application writes itself are read the same way; an
    # unknown capsule type is skipped (RFC 9297 §3.2).
    unknown = encode_varint(0x2A) + encode_varint(3) + b"???"
    data = unknown + encode_datagram_capsule(b"one") + encode_datagram_capsule(b"two")
    pair.client.submit_data(stream_id, data)
    pair.transfer()
    assert pair.server_events() == [
        DatagramReceived(stream_id=stream_id, data=b"one"),
        DatagramReceived(stream_id=stream_id, data=b"two"),
    ]


def test_http3_datagrams_are_quic_datagram_frames() -> None:
    pair = _pair("3")
    stream_id = _open_tunnel(pair)
    pair.client.submit_datagram(stream_id, b"x" * 100)
    # A QUIC DATAGRAM frame is not stream data: nothing is held on the stream.
    assert pair.client.get_pending_data_size(stream_id) == 0
    pair.transfer()
    assert _datagrams(pair.server_events()) == [b"x" * 100]


def test_http3_client_may_send_before_the_response() -> None:
    # RFC 9297 §2.1: HTTP/3 datagrams need only the stream, not the response.
    pair = _pair("3")
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, CONNECT_UDP)
    pair.transfer()
    pair.server_events()
    pair.client.submit_datagram(stream_id, b"early")
    pair.transfer()
    assert _datagrams(pair.server_events()) == [b"early"]


def test_http3_without_datagram_frames_uses_capsules() -> None:
    pair = make_quic_pair(max_datagram_frame_size=0)
    stream_id = _open_tunnel(pair)
    assert pair.client.submit_datagram(stream_id, b"capsule")
    assert pair.client.get_pending_data_size(stream_id) > 0  # stream data: a capsule
    pair.transfer()
    assert _datagrams(pair.server_events()) == [b"capsule"]


def test_http3_too_large_for_a_packet_goes_as_a_capsule() -> None:
    pair = _pair("3")
    stream_id = _open_tunnel(pair)
    assert pair.client.submit_datagram(stream_id, b"y" * 30000)
    pair.transfer()
    assert _datagrams(pair.server_events()) == [b"y" * 30000]


@pytest.mark.parametrize("http_version", ["1.1", "2", "3"])
def test_a_stream_without_datagrams_refuses_them(http_version: str) -> None:
    if http_version == "3":
        pair: ProtocolPair = make_quic_pair(max_datagram_frame_size=0)
    else:
        pair = make_pair(http_version)
    stream_id = pair.client.get_available_stream_id()
    request = [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"a"),
        (b":path", b"/"),
    ]
    pair.client.submit_headers(stream_id, request, end_stream=True)
    with pytest.raises(LocalProtocolError):
        pair.client.submit_datagram(stream_id, b"no")
    with pytest.raises(LocalProtocolError):
        pair.client.submit_datagram(stream_id + 400, b"unknown stream")


def test_http2_no_datagrams_before_the_2xx() -> None:
    pair = _pair("2")
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, CONNECT_UDP)
    with pytest.raises(LocalProtocolError):
        pair.client.submit_datagram(stream_id, b"early")


@pytest.mark.parametrize("http_version", MULTIPLEXED)
def test_a_refused_tunnel_carries_no_datagrams(http_version: str) -> None:
    pair = _pair(http_version)
    if http_version == "3":
        pair = make_quic_pair(max_datagram_frame_size=0)
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, CONNECT_UDP)
    pair.transfer()
    pair.server_events()
    pair.server.submit_headers(stream_id, [(b":status", b"403")])
    with pytest.raises(LocalProtocolError):
        pair.server.submit_datagram(stream_id, b"no")
    pair.server.submit_data(stream_id, encode_datagram_capsule(b"body"), end_stream=True)
    pair.transfer()
    events = pair.client_events()
    assert not _datagrams(events)
    assert any(isinstance(event, DataReceived) and event.data for event in events)


@pytest.mark.parametrize("http_version", MULTIPLEXED)
def test_a_stream_ending_inside_a_capsule_is_malformed(http_version: str) -> None:
    pair = _pair(http_version)
    if http_version == "3":
        pair = make_quic_pair(max_datagram_frame_size=0)
    stream_id = _open_tunnel(pair)
    pair.client.submit_data(stream_id, encode_datagram_capsule(b"cut short")[:-2], end_stream=True)
    pair.transfer()
    code = pair.server.error_codes.message_error
    assert pair.server_events() == [StreamResetSent(stream_id=stream_id, error_code=code)]
    pair.transfer()
    assert any(getattr(event, "error_code", None) == code for event in pair.client_events())


def test_oversized_datagram_capsules_are_dropped_unbuffered() -> None:
    pair = _pair("2")
    stream_id = _open_tunnel(pair)
    huge = b"\x00" + encode_varint(100_000)
    pair.client.submit_data(stream_id, huge + b"z" * 60_000)
    pair.transfer()
    pair.client.submit_data(stream_id, b"z" * 40_000 + encode_datagram_capsule(b"after"))
    pair.transfer()
    assert pair.server_events() == [DatagramReceived(stream_id=stream_id, data=b"after")]


# -- HTTP/1.1: Upgrade: connect-udp (RFC 9298 §3.2), the server side ---------------------


def _drain(protocol: HTTPOverTCPProtocol) -> list[Event]:
    events = []
    while (event := protocol.next_event()) is not None:
        events.append(event)
    return events


def test_http1_upgrade_to_connect_udp(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = http1_server_factory()()
    server.bytes_received(UPGRADE_REQUEST)
    (request,) = _drain(server)
    assert isinstance(request, HeadersReceived)
    assert request.headers[:5] == [
        (b":method", b"CONNECT"),
        (b":protocol", b"connect-udp"),
        (b":scheme", b"http"),
        (b":authority", b"proxy.test"),
        (b":path", b"/.well-known/masque/udp/192.0.2.6/443/"),
    ]
    server.submit_headers(1, [(b":status", b"200"), (b"capsule-protocol", b"?1")])
    head = server.bytes_to_send()
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"upgrade: connect-udp\r\n" in head.lower()
    assert b"capsule-protocol: ?1\r\n" in head.lower()
    capsules = encode_datagram_capsule(b"ping") + encode_datagram_capsule(b"pong")
    for piece in one_byte(capsules):
        server.bytes_received(piece)
    assert _drain(server) == [
        DatagramReceived(stream_id=1, data=b"ping"),
        DatagramReceived(stream_id=1, data=b"pong"),
    ]
    assert server.submit_datagram(1, b"back")
    assert server.bytes_to_send() == encode_datagram_capsule(b"back")


def test_http1_upgrade_ending_inside_a_capsule_closes_the_connection(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    server = http1_server_factory()()
    server.bytes_received(UPGRADE_REQUEST)
    _drain(server)
    server.submit_headers(1, [(b":status", b"200")])
    server.bytes_received(b"\x00\x05ab")
    server.eof_received()
    events = _drain(server)
    assert any(isinstance(event, ConnectionTerminated) for event in events)
    assert not _datagrams(events)


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_capsules_split_anywhere_give_the_same_datagrams(
    payloads: list[bytes], cuts: list[int]
) -> None:
    # Unknown capsules between the DATAGRAM capsules are skipped wherever
    # the data is cut (RFC 9297 §3.2).
    unknown = encode_varint(0x1234) + encode_varint(5) + b"12345"
    data = b"".join(unknown + encode_datagram_capsule(payload) for payload in payloads)
    stream = CapsuleStream()
    stream.move(CapsuleInput.ACCEPTED)
    got: list[bytes] = []
    start = 0
    for cut in sorted({min(cut, len(data)) for cut in cuts} | {len(data)}):
        got += stream.feed(data[start:cut])
        start = cut
    assert got == payloads
    assert stream.complete()
