"""HTTP/3 sending costs: ACKs ride along with data, and datagrams that need no answer cost none.

On an in-memory pair with a controlled clock (``tests.helpers.quic_pair``).
Each test fails if the optimisation it guards is lost: a delayed ACK then
goes out in a packet of its own, or a received ACK costs a packet-building pass.
"""

from __future__ import annotations

from typing import Any

from hface.common import HeadersType
from hface.events import DataReceived, HeadersReceived
from hface.protocols.http3 import HTTP3ServerProtocol
from tests.helpers.quic_pair import CLIENT_ADDRESS, SERVER_ADDRESS, QUICProtocolPair, make_quic_pair

GET: HeadersType = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]
OK: HeadersType = [(b":status", b"200")]


def _settled_pair(**factory_options: Any) -> QUICProtocolPair:
    """A pair after the handshake with every delayed ACK sent: nothing left to send."""
    pair = make_quic_pair(**factory_options)
    pair.advance(0.1)
    pair.client_events()
    pair.server_events()
    return pair


def _to_server(pair: QUICProtocolPair) -> int:
    """Deliver what the client sends now, firing no timer; return the datagram count."""
    datagrams = pair.client.datagrams_to_send()
    for data, _address in datagrams:
        pair.server.datagram_received((data, CLIENT_ADDRESS))
    return len(datagrams)


def _to_client(pair: QUICProtocolPair) -> int:
    """Deliver what the server sends now, firing no timer; return the datagram count."""
    datagrams = pair.server.datagrams_to_send()
    for data, _address in datagrams:
        pair.client.datagram_received((data, SERVER_ADDRESS))
    return len(datagrams)


def _count_packet_building(protocol: Any) -> list[int]:
    """Count the calls of the QUIC connection's ``datagrams_to_send`` (one per pass)."""
    quic = protocol._quic
    calls = [0]
    build = quic.datagrams_to_send

    def counting(now: float) -> list[tuple[bytes, Any]]:
        calls[0] += 1
        datagrams: list[tuple[bytes, Any]] = build(now)
        return datagrams

    quic.datagrams_to_send = counting
    return calls


def test_the_ack_of_a_request_rides_with_the_response() -> None:
    pair = _settled_pair()
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, GET, end_stream=True)
    assert _to_server(pair) == 1
    assert pair.server_events() == [
        HeadersReceived(stream_id=stream_id, headers=GET, end_stream=True)
    ]
    # The request is ack-eliciting: the server owes an ACK, delayed by
    # aioquic's 1 ms timer unless something else goes out first.
    pair.server.submit_headers(stream_id, OK)
    pair.server.submit_data(stream_id, b"hello", end_stream=True)
    assert _to_client(pair) == 1
    assert pair.client_events() == [
        HeadersReceived(stream_id=stream_id, headers=OK, end_stream=False),
        DataReceived(stream_id=stream_id, data=b"hello", end_stream=True),
    ]
    # Past the ACK delay, far before any loss timer: no ACK is left to send.
    pair.now += 0.005
    pair.server.clock(pair.now)
    assert pair.server.datagrams_to_send() == []


def test_an_ack_alone_costs_no_packet_building() -> None:
    pair = _settled_pair()
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, GET)  # the request stays open
    _to_server(pair)
    assert [type(event) for event in pair.server_events()] == [HeadersReceived]
    # Past its ACK delay, the server acknowledges the request, alone.
    pair.now += 0.002
    pair.server.clock(pair.now)
    calls = _count_packet_building(pair.client)
    assert _to_client(pair) == 1
    assert pair.client.datagrams_to_send() == []
    assert calls == [0]
    # Anything to send still costs a pass (the count above counts).
    pair.client.submit_data(stream_id, b"body", end_stream=True)
    assert len(pair.client.datagrams_to_send()) == 1
    assert calls == [1]


def test_a_received_ack_that_opens_the_window_sends_at_once() -> None:
    # The other side of the skipping: data held back by congestion control
    # must go out as soon as an ACK makes room, not when a loss timer fires.
    # Windows larger than the body: the client sends ACKs and nothing else.
    window = 8 * 1024 * 1024
    pair = _settled_pair(stream_receive_window=window, connection_receive_window=window)
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, GET, end_stream=True)
    pair.transfer()
    pair.server_events()
    body = bytes(range(256)) * 8192  # 2 MiB: many congestion windows' worth
    server = pair.server
    assert isinstance(server, HTTP3ServerProtocol)
    server.submit_headers(stream_id, OK)
    server.submit_data(stream_id, body, end_stream=True)
    started = pair.now
    received = bytearray()
    for _ in range(1000):
        pair.transfer()
        for event in pair.client_events():
            if isinstance(event, DataReceived):
                received += event.data
                pair.client.acknowledge_received_data(stream_id, len(event.data))
        if len(received) == len(body):
            break
    assert bytes(received) == body
    # Only ACK delays (1 ms) and pacing may pass; waiting on probe timeouts
    # (25 ms and more each) would take far longer.
    assert pair.now - started < 0.05
