"""Why a connection ended: ``ConnectionTerminated.reason``, on every version.

The layers above tell an early close from a broken peer, or a TLS failure
from a refused connection, by this field (and, on QUIC, by
``transport_error_code``), never by the event's message; each protocol
sets it where it ends the connection.
"""

from __future__ import annotations

import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.errors import TerminationReason
from hface.events import ConnectionTerminated, Event, HeadersReceived, StreamResetReceived
from hface.protocols import HTTPOverQUICProtocol, HTTPOverTCPProtocol, HTTPProtocol
from tests.helpers.pairs import HTTP_IMPLEMENTATIONS, ProtocolPair, make_pair
from tests.helpers.quic_pair import SERVER_ADDRESS, QUICProtocolPair, certificates

REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/"),
]


def _ended(events: list[Event]) -> ConnectionTerminated:
    assert events, "no event"
    last = events[-1]
    assert isinstance(last, ConnectionTerminated), events
    return last


def _lose(protocol: HTTPProtocol) -> None:
    assert isinstance(protocol, HTTPOverTCPProtocol | HTTPOverQUICProtocol)
    protocol.connection_lost()


@pytest.mark.parametrize("http_version", HTTP_IMPLEMENTATIONS)
@pytest.mark.parametrize("in_flight", [False, True], ids=["idle", "in-flight"])
def test_transport_lost(http_version: str, in_flight: bool) -> None:
    pair = make_pair(http_version)
    if in_flight:
        stream_id = pair.client.get_available_stream_id()
        pair.client.submit_headers(stream_id, REQUEST, end_stream=True)
        pair.transfer()
        pair.server_events()
    _lose(pair.client)
    _lose(pair.server)
    assert _ended(pair.client_events()).reason is TerminationReason.TRANSPORT_LOST
    assert _ended(pair.server_events()).reason is TerminationReason.TRANSPORT_LOST


def _end_of_bytes(pair: ProtocolPair, protocol: HTTPProtocol) -> None:
    """The peer is gone: its TCP stream ended (QUIC says it with its close)."""
    pair.transfer()
    if isinstance(protocol, HTTPOverTCPProtocol):
        protocol.eof_received()


@pytest.mark.parametrize("http_version", HTTP_IMPLEMENTATIONS)
def test_closed_by_us_and_by_the_peer(http_version: str) -> None:
    pair = make_pair(http_version)
    pair.server.submit_close(pair.server.error_codes.internal_error)
    _end_of_bytes(pair, pair.client)
    server_end = _ended(pair.server_events())
    client_end = _ended(pair.client_events())
    assert server_end.reason is TerminationReason.CLOSED_BY_US
    assert client_end.reason is TerminationReason.CLOSED_BY_PEER
    assert client_end.transport_error_code is None


#: Bytes a server takes for a broken client: HTTP/1.1 garbage, an HTTP/2 frame
#: larger than SETTINGS_MAX_FRAME_SIZE (RFC 9113 §4.2).
BROKEN_BYTES = {
    "1.1": b"garbage\r\n\r\n",
    "1.1-httptools": b"garbage\r\n\r\n",
    "2": b"\xff\xff\xff\x00\x00\x00\x00\x00\x01",
}


@pytest.mark.parametrize("http_version", list(BROKEN_BYTES))
def test_a_peer_that_breaks_the_protocol(http_version: str) -> None:
    pair = make_pair(http_version)
    assert isinstance(pair.server, HTTPOverTCPProtocol)
    pair.server.bytes_received(BROKEN_BYTES[http_version])
    ended = _ended(pair.server_events())
    assert ended.reason is TerminationReason.PEER_PROTOCOL_ERROR
    assert ended.error_code != 0


def _quic_pair(*, trusted: bool, max_reset_streams: int = 200) -> QUICProtocolPair:
    from hface.protocols.http3 import HTTP3ClientFactory, HTTP3ServerFactory

    cafile, certfile, keyfile = certificates()
    client = HTTP3ClientFactory()(
        remote_address=SERVER_ADDRESS,
        server_name="localhost",
        # Without the test CA, the system's CAs: the server is not trusted.
        tls_config=ClientTLSConfig(cafile=cafile if trusted else None),
    )
    server = HTTP3ServerFactory(max_reset_streams=max_reset_streams)(
        tls_config=ServerTLSConfig(certfile=certfile, keyfile=keyfile)
    )
    pair = QUICProtocolPair(client, server)
    pair.advance(0.1)
    return pair


def test_a_quic_peer_that_breaks_the_protocol() -> None:
    pair = _quic_pair(trusted=True, max_reset_streams=1)
    pair.client_events()
    for _ in range(2):  # RFC 9114 §10.5: a client resetting streams without end
        stream_id = pair.client.get_available_stream_id()
        pair.client.submit_headers(stream_id, REQUEST)
        pair.client.submit_stream_reset(stream_id, pair.client.error_codes.cancel)
        pair.transfer()
    server_end = _ended(pair.server_events())
    assert server_end.reason is TerminationReason.PEER_PROTOCOL_ERROR
    assert server_end.error_code == pair.server.error_codes.excessive_load
    client_end = _ended(pair.client_events())
    assert client_end.reason is TerminationReason.CLOSED_BY_PEER
    assert client_end.error_code == pair.client.error_codes.excessive_load


def test_quic_certificate_failure_is_a_tls_failure_with_its_alert() -> None:
    pair = _quic_pair(trusted=False)
    client_end = _ended(pair.client_events())
    server_end = _ended(pair.server_events())
    # CRYPTO_ERROR + bad_certificate (RFC 9001 §4.8, RFC 8446 §6.2), on both sides.
    for ended in (client_end, server_end):
        assert ended.reason is TerminationReason.TLS_FAILURE
        assert ended.transport_error_code == 0x100 + 42
    assert not pair.client.handshake_completed


def test_quic_idle_timeout() -> None:
    pair = _quic_pair(trusted=True)
    pair.advance(120.0)
    for events in (pair.client_events(), pair.server_events()):
        assert _ended(events).reason is TerminationReason.TIMEOUT


# -- HTTP/1.1: the end of a response, early or broken ---------------------------------------


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (b"", TerminationReason.CLOSED_BY_PEER),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", TerminationReason.CLOSED_BY_PEER),
        (b"HTTP/1.1 200 OK\r\ncontent-le", TerminationReason.CLOSED_BY_PEER),
        (b"garbage\r\n\r\n", TerminationReason.PEER_PROTOCOL_ERROR),
    ],
    ids=["no-response", "truncated-body", "truncated-head", "garbage"],
)
def test_http1_client_tells_an_early_close_from_a_broken_response(
    response: bytes, reason: TerminationReason
) -> None:
    from hface.protocols.http1 import HTTP1ClientFactory

    client = HTTP1ClientFactory()()
    stream_id = client.get_available_stream_id()
    client.submit_headers(stream_id, REQUEST, end_stream=True)
    client.bytes_to_send()
    client.bytes_received(response)
    client.eof_received()
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    assert [type(e) for e in events if not isinstance(e, HeadersReceived)][-2:] == [
        StreamResetReceived,
        ConnectionTerminated,
    ]
    assert _ended(events).reason is reason


def test_reason_is_not_compared() -> None:
    """Events compare by what the peer sees (code and message), as before the field."""
    assert ConnectionTerminated(reason=TerminationReason.TIMEOUT) == ConnectionTerminated()
    assert ConnectionTerminated(transport_error_code=0x12A) == ConnectionTerminated()
