"""``:protocol`` on every version: extended CONNECT (RFC 8441, RFC 9220) and the HTTP/1.1 upgrade.

A WebSocket request reaches the layer above the same way on all three
versions, as an extended CONNECT with ``:protocol websocket``; a 2xx
answer opens a byte tunnel on its stream (on HTTP/1.1, as ``101 Switching
Protocols`` with ``Sec-WebSocket-Accept``).
"""

from __future__ import annotations

import base64
import hashlib

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from hface.common import HeadersType
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HeadersReceived,
)
from hface.protocols import HTTPOverTCPProtocol
from hface.protocols.http1 import HTTP1ClientFactory
from hface.protocols.http2 import HTTP2ServerFactory
from tests.helpers.pairs import make_pair
from tests.helpers.quic_pair import make_quic_pair
from tests.test_protocols.conftest import HTTP1ServerFactoryType

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
#: RFC 6455 §1.3's example: the accept value of KEY.
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

EXTENDED_CONNECT: HeadersType = [
    (b":method", b"CONNECT"),
    (b":protocol", b"websocket"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/chat"),
    (b"sec-websocket-version", b"13"),
]


def upgrade_request(*fields: bytes, path: bytes = b"/chat") -> bytes:
    lines = [b"GET " + path + b" HTTP/1.1", b"Host: a", *fields]
    return b"\r\n".join(lines) + b"\r\n\r\n"


WEBSOCKET_FIELDS = (
    b"Upgrade: websocket",
    b"Connection: keep-alive, Upgrade",
    b"Sec-WebSocket-Key: " + KEY,
    b"Sec-WebSocket-Version: 13",
    b"Sec-WebSocket-Protocol: chat",
)


def drain(protocol: HTTPOverTCPProtocol) -> list[Event]:
    events = []
    while (event := protocol.next_event()) is not None:
        events.append(event)
    return events


# -- HTTP/1.1: the upgrade, presented as an extended CONNECT ------------------------


def test_accept_value_is_rfc_6455s_example() -> None:
    digest = hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    assert base64.b64encode(digest) == ACCEPT


def test_http1_upgrade_is_an_extended_connect(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    server = http1_server_factory()()
    server.bytes_received(upgrade_request(*WEBSOCKET_FIELDS) + b"\x81\x02hi")
    assert drain(server) == [
        HeadersReceived(
            stream_id=1,
            headers=[
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"http"),
                (b":authority", b"a"),
                (b":path", b"/chat"),
                (b"sec-websocket-version", b"13"),
                (b"sec-websocket-protocol", b"chat"),
            ],
        )
    ]
    # A 2xx goes out as 101, with the accept value and the application's fields.
    server.submit_headers(1, [(b":status", b"200"), (b"sec-websocket-protocol", b"chat")])
    assert server.bytes_to_send() == (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: " + ACCEPT + b"\r\nsec-websocket-protocol: chat\r\n\r\n"
    )
    # Then a byte tunnel: what followed the request, and what comes.
    assert drain(server) == [DataReceived(stream_id=1, data=b"\x81\x02hi")]
    server.bytes_received(b"GET / HTTP/1.1\r\n\r\n")
    assert drain(server) == [DataReceived(stream_id=1, data=b"GET / HTTP/1.1\r\n\r\n")]
    server.submit_data(1, b"\x81\x02ho")
    assert server.bytes_to_send() == b"\x81\x02ho"
    # Half-closes each way, then the end.
    server.eof_received()
    assert drain(server) == [DataReceived(stream_id=1, data=b"", end_stream=True)]
    server.submit_data(1, b"", end_stream=True)
    assert [type(event) for event in drain(server)] == [ConnectionTerminated]


def test_http1_upgrade_refused_is_an_ordinary_response(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    server = http1_server_factory()()
    following = b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    server.bytes_received(upgrade_request(*WEBSOCKET_FIELDS) + following)
    assert [type(event) for event in drain(server)] == [HeadersReceived]
    server.submit_headers(1, [(b":status", b"403"), (b"content-length", b"6")])
    server.submit_data(1, b"denied", end_stream=True)
    assert server.bytes_to_send() == b"HTTP/1.1 403 Forbidden\r\ncontent-length: 6\r\n\r\ndenied"
    # The next request is read as one.
    events = drain(server)
    assert isinstance(events[0], HeadersReceived)
    assert (b":path", b"/2") in events[0].headers


@pytest.mark.parametrize(
    ("fields", "status", "explanation"),
    [
        ((b"Sec-WebSocket-Key: " + KEY, b"Sec-WebSocket-Version: 8"), 426, b"version 13"),
        ((b"Sec-WebSocket-Key: " + KEY,), 400, b"missing Sec-WebSocket-Version"),
        ((b"Sec-WebSocket-Version: 13",), 400, b"invalid Sec-WebSocket-Key"),
        ((b"Sec-WebSocket-Key: c2hvcnQ=", b"Sec-WebSocket-Version: 13"), 400, b"Key"),
        ((b"Sec-WebSocket-Key: not base64!!", b"Sec-WebSocket-Version: 13"), 400, b"Key"),
        (
            (b"Sec-WebSocket-Key: " + KEY,) * 2 + (b"Sec-WebSocket-Version: 13",),
            400,
            b"Key",
        ),
    ],
    ids=["version-8", "no-version", "no-key", "short-key", "bad-base64", "two-keys"],
)
def test_http1_malformed_upgrade_is_refused(
    http1_server_factory: HTTP1ServerFactoryType,
    fields: tuple[bytes, ...],
    status: int,
    explanation: bytes,
) -> None:
    server = http1_server_factory()()
    request = upgrade_request(b"Upgrade: websocket", b"Connection: Upgrade", *fields)
    server.bytes_received(request)
    events = drain(server)
    assert [type(event) for event in events] == [ConnectionTerminated]
    sent = server.bytes_to_send()
    assert sent.startswith(b"HTTP/1.1 %d " % status)
    assert explanation in sent
    assert (b"sec-websocket-version: 13\r\n" in sent) == (status == 426)


def test_http1_upgrade_needs_get_and_the_connection_option(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    """Without ``Connection: upgrade``, or on another method, it is an ordinary request."""
    server = http1_server_factory()()
    server.bytes_received(upgrade_request(b"Upgrade: websocket", b"Sec-WebSocket-Version: 13"))
    (event,) = drain(server)
    assert isinstance(event, HeadersReceived)
    assert event.headers[0] == (b":method", b"GET")


# -- HTTP/2 (RFC 8441) -------------------------------------------------------------


def h2_client() -> tuple[h2.connection.H2Connection, HTTPOverTCPProtocol]:
    server = HTTP2ServerFactory()()
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    server.bytes_received(client.data_to_send())
    client.receive_data(server.bytes_to_send())
    server.bytes_received(client.data_to_send())
    drain(server)
    return client, server


def test_http2_server_enables_connect_protocol() -> None:
    client, _server = h2_client()
    assert client.remote_settings.enable_connect_protocol == 1


def test_http2_extended_connect_opens_a_tunnel() -> None:
    pair = make_pair("2")
    pair.transfer()  # the server's SETTINGS
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, EXTENDED_CONNECT)
    pair.client.submit_data(stream_id, b"\x81\x02hi")
    pair.transfer()
    assert pair.server_events() == [
        HeadersReceived(stream_id=stream_id, headers=EXTENDED_CONNECT),
        DataReceived(stream_id=stream_id, data=b"\x81\x02hi"),
    ]
    pair.server.submit_headers(stream_id, [(b":status", b"200")])
    pair.server.submit_data(stream_id, b"\x81\x02ho", end_stream=True)
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(stream_id=stream_id, headers=[(b":status", b"200")]),
        DataReceived(stream_id=stream_id, data=b"\x81\x02ho", end_stream=True),
    ]


@pytest.mark.parametrize(
    "headers",
    [
        [(b":method", b"GET"), *EXTENDED_CONNECT[1:]],
        [h for h in EXTENDED_CONNECT if h[0] != b":path"],
        [h for h in EXTENDED_CONNECT if h[0] != b":scheme"],
    ],
    ids=["protocol-on-get", "no-path", "no-scheme"],
)
def test_http2_malformed_extended_connect_is_never_delivered(headers: HeadersType) -> None:
    """RFC 8441 §4, RFC 9113 §8.1.1: refused with PROTOCOL_ERROR, as any malformed request."""
    client, server = h2_client()
    client.config.validate_outbound_headers = False
    client.send_headers(1, headers)
    server.bytes_received(client.data_to_send())
    assert not [event for event in drain(server) if isinstance(event, HeadersReceived)]
    events = client.receive_data(server.bytes_to_send())
    codes = [
        event.error_code
        for event in events
        if isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated))
    ]
    assert codes == [h2.errors.ErrorCodes.PROTOCOL_ERROR]


# -- HTTP/3 (RFC 9220) -------------------------------------------------------------


def test_http3_extended_connect_opens_a_tunnel() -> None:
    pair = make_quic_pair()
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, EXTENDED_CONNECT)
    pair.client.submit_data(stream_id, b"\x81\x02hi")
    pair.transfer()
    assert pair.server_events() == [
        HeadersReceived(stream_id=stream_id, headers=EXTENDED_CONNECT),
        DataReceived(stream_id=stream_id, data=b"\x81\x02hi"),
    ]
    pair.server.submit_headers(stream_id, [(b":status", b"200")])
    pair.server.submit_data(stream_id, b"\x81\x02ho")
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(stream_id=stream_id, headers=[(b":status", b"200")]),
        DataReceived(stream_id=stream_id, data=b"\x81\x02ho"),
    ]


def test_http3_protocol_on_get_is_malformed() -> None:
    """RFC 9220 §3 (RFC 8441 §4): ``:protocol`` is for CONNECT alone."""
    pair = make_quic_pair()
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, [(b":method", b"GET"), *EXTENDED_CONNECT[1:]])
    pair.transfer()
    assert not any(isinstance(event, HeadersReceived) for event in pair.server_events())


# -- the client side of HTTP/1.1 ----------------------------------------------------


def _client_upgrade() -> tuple[HTTPOverTCPProtocol, bytes]:
    """An HTTP/1.1 client that sent EXTENDED_CONNECT; the key it chose."""
    client = HTTP1ClientFactory()()
    client.submit_headers(1, EXTENDED_CONNECT)
    head = client.bytes_to_send()
    request_line, *lines = head.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert request_line == b"GET /chat HTTP/1.1"
    fields = {name.lower(): value.strip() for name, _, value in (x.partition(b":") for x in lines)}
    assert fields[b"upgrade"] == b"websocket"
    assert fields[b"connection"].lower() == b"upgrade"
    assert fields[b"sec-websocket-version"] == b"13"
    return client, fields[b"sec-websocket-key"]


def _accept(key: bytes) -> bytes:
    digest = hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    return base64.b64encode(digest)


def test_http1_client_extended_connect_is_an_upgrade() -> None:
    client, key = _client_upgrade()
    client.bytes_received(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + _accept(key) + b"\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        b"\x81\x02hi"
    )
    assert drain(client) == [
        HeadersReceived(
            stream_id=1, headers=[(b":status", b"200"), (b"sec-websocket-protocol", b"chat")]
        ),
        DataReceived(stream_id=1, data=b"\x81\x02hi"),
    ]
    client.submit_data(1, b"frames")
    assert client.bytes_to_send() == b"frames"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + ACCEPT + b"\r\n\r\n",  # not our key's
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",  # no switch
    ],
)
def test_http1_client_upgrade_not_accepted_ends_the_connection(answer: bytes) -> None:
    client, _key = _client_upgrade()
    client.bytes_received(answer)
    (event,) = drain(client)
    assert isinstance(event, ConnectionTerminated)
    assert event.message is not None
    assert "WebSocket" in event.message


def test_http1_client_upgrade_refused_is_an_ordinary_response() -> None:
    client, _key = _client_upgrade()
    client.bytes_received(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
    assert drain(client) == [
        HeadersReceived(stream_id=1, headers=[(b":status", b"403"), (b"content-length", b"2")]),
        DataReceived(stream_id=1, data=b"no", end_stream=True),
    ]
    assert client.is_available()
