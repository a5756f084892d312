"""Tests of the h11-based HTTP/1.1 protocols: in-memory pairs and raw bytes."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from hface.common import HTTP1_ERROR_CODES, HeadersType
from hface.errors import LocalProtocolError
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HeadersReceived,
    StreamResetReceived,
    StreamResetSent,
)
from hface.protocols import HTTP1Protocol, HTTPOverTCPFactory, HTTPOverTCPProtocol
from hface.protocols.http1 import (
    HTTP1ClientFactory,
    HTTP1ClientProtocol,
    HTTP1ServerFactory,
    HTTP1ServerProtocol,
)
from tests.helpers.pairs import Chunker, TCPProtocolPair, make_pair, one_byte, random_chunks, whole
from tests.test_protocols.conftest import HTTP1ServerFactoryType

EXAMPLE = Path(__file__).parents[2] / "examples" / "protocol.py"

GET: HeadersType = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]
POST: HeadersType = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":authority", b"localhost"),
    (b":path", b"/upload"),
]
OK: HeadersType = [(b":status", b"200")]
RECEIVED_GET = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]


def drain(protocol: HTTPOverTCPProtocol) -> list[Event]:
    events = []
    while (event := protocol.next_event()) is not None:
        events.append(event)
    return events


def new_pair(
    chunker: Chunker | None = None,
    server_factory: HTTP1ServerFactoryType = HTTP1ServerFactory,
) -> tuple[TCPProtocolPair, HTTP1ClientProtocol, HTTPOverTCPProtocol]:
    client = HTTP1ClientFactory()()
    server = server_factory()()
    pair = (
        TCPProtocolPair(client, server)
        if chunker is None
        else TCPProtocolPair(client, server, chunker=chunker)
    )
    return pair, client, server


def new_server(
    server_factory: HTTP1ServerFactoryType = HTTP1ServerFactory, **kwargs: str | None
) -> HTTPOverTCPProtocol:
    return server_factory()(**kwargs)


def feed(server: HTTPOverTCPProtocol, data: bytes) -> list[Event]:
    server.bytes_received(data)
    return drain(server)


# -- factories ---------------------------------------------------------------


def test_factories() -> None:
    for factory in (HTTP1ClientFactory(), HTTP1ServerFactory(max_header_size=1024)):
        assert isinstance(factory, HTTPOverTCPFactory)
        assert list(factory.alpn_protocols) == ["http/1.1"]
        protocol = factory(tls_version="TLSv1.3", alpn_protocol="http/1.1")
        assert isinstance(protocol, HTTP1Protocol)
        assert protocol.http_version == "1.1"
        assert not protocol.multiplexed
        assert protocol.error_codes == HTTP1_ERROR_CODES
        assert protocol.is_available()
        assert not protocol.has_expired()
    assert isinstance(HTTP1ClientFactory()(), HTTP1ClientProtocol)
    assert isinstance(HTTP1ServerFactory()(), HTTP1ServerProtocol)


def test_make_pair() -> None:
    pair = make_pair("1.1")
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, GET, end_stream=True)
    pair.transfer()
    assert pair.server_events() == [
        HeadersReceived(stream_id=1, headers=RECEIVED_GET, end_stream=True)
    ]


def test_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    assert "OK" in capsys.readouterr().out


# -- wire format -------------------------------------------------------------


def test_example_request_bytes() -> None:
    client = HTTP1ClientFactory()()
    client.submit_headers(1, [*GET[:1], (b":scheme", b"https"), *GET[2:]], end_stream=True)
    assert client.bytes_to_send() == b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    assert client.bytes_to_send() == b""


def test_host_not_duplicated() -> None:
    client = HTTP1ClientFactory()()
    client.submit_headers(1, [*GET, (b"host", b"example.com")], end_stream=True)
    assert client.bytes_to_send() == b"GET / HTTP/1.1\r\nhost: example.com\r\n\r\n"


def test_streaming_request_is_chunked(http1_server_factory: HTTP1ServerFactoryType) -> None:
    _pair, client, _server = new_pair(server_factory=http1_server_factory)
    client.submit_headers(1, POST)
    client.submit_data(1, b"hello")
    assert client.bytes_to_send() == (
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n"
    )


def test_request_with_content_length() -> None:
    client = HTTP1ClientFactory()()
    client.submit_headers(1, [*POST, (b"content-length", b"5")])
    client.submit_data(1, b"hello", end_stream=True)
    assert client.bytes_to_send() == (
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\ncontent-length: 5\r\n\r\nhello"
    )


def test_server_request_headers(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory, tls_version="TLSv1.3")
    events = feed(
        server,
        b"GET /a?b=c HTTP/1.1\r\nHost: example.com:8443\r\nAccept: */*\r\n"
        b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
        b"Upgrade-Insecure-Requests: 1\r\nProxy-Connection: x\r\n\r\n",
    )
    assert events == [
        HeadersReceived(
            stream_id=1,
            headers=[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"example.com:8443"),
                (b":path", b"/a?b=c"),
                (b"accept", b"*/*"),
                (b"te", b"trailers"),
                (b"upgrade-insecure-requests", b"1"),
            ],
            end_stream=True,
        )
    ]


def test_server_request_without_host(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory)
    events = feed(server, b"GET / HTTP/1.0\r\nTE: gzip\r\n\r\n")
    assert events == [
        HeadersReceived(
            stream_id=1,
            headers=[(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")],
            end_stream=True,
        )
    ]


def test_response_status_line_and_empty_body(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory)
    feed(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    server.submit_headers(
        1, [(b":status", b"404"), (b"connection", b"keep-alive")], end_stream=True
    )
    assert server.bytes_to_send() == b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
    assert server.is_available()


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        (b"text/plain; charset=utf-8", True),
        (b"a b\tc", True),
        (b"", True),
        (b"\xff", True),
        (b"a\r\nx-injected: 1", False),
        (b"a\nb", False),
        (b"a\rb", False),
        (b"a\x00b", False),
        (b" a", False),
        (b"\ta", False),
        (b"a ", False),
        (b"a\t", False),
        (b" ", False),
    ],
)
def test_response_field_values_checked(
    value: bytes, allowed: bool, http1_server_factory: HTTP1ServerFactoryType
) -> None:
    """h11's rule: no CR, LF or NUL anywhere, no whitespace at either end."""
    server = new_server(http1_server_factory)
    feed(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    headers = [(b":status", b"200"), (b"x-value", value)]
    if allowed:
        server.submit_headers(1, headers, end_stream=True)
        assert b"\r\nx-value: " + value + b"\r\n" in server.bytes_to_send()
    else:
        with pytest.raises(LocalProtocolError):
            server.submit_headers(1, headers, end_stream=True)


def test_unknown_status_has_empty_reason(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory)
    feed(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    server.submit_headers(1, [(b":status", b"599"), (b"content-length", b"0")], end_stream=True)
    assert server.bytes_to_send() == b"HTTP/1.1 599 \r\ncontent-length: 0\r\n\r\n"


def test_streaming_response_is_chunked(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory)
    feed(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    server.submit_headers(1, [*OK, (b"transfer-encoding", b"gzip")])
    server.submit_data(1, b"abc")
    server.submit_data(1, b"", end_stream=True)
    assert server.bytes_to_send() == (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )


def test_client_receives_headers_without_connection_fields() -> None:
    client = HTTP1ClientFactory()()
    client.submit_headers(1, GET, end_stream=True)
    events = feed(
        client,
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n"
        b"Upgrade: h2c\r\nX-A: b\r\n\r\n0\r\n\r\n",
    )
    assert events == [
        HeadersReceived(
            stream_id=1, headers=[(b":status", b"200"), (b"x-a", b"b")], end_stream=True
        ),
    ]


# -- whole exchanges ---------------------------------------------------------


@pytest.mark.parametrize(
    "chunker", [None, one_byte, random_chunks(7, 8)], ids=["whole", "one_byte", "random"]
)
def test_full_exchange(
    chunker: Chunker | None, http1_server_factory: HTTP1ServerFactoryType
) -> None:
    pair, client, server = new_pair(chunker, server_factory=http1_server_factory)
    stream_id = client.get_available_stream_id()
    assert stream_id == 1
    client.submit_headers(stream_id, POST)
    client.submit_data(stream_id, b"hello ")
    client.submit_data(stream_id, b"world", end_stream=True)
    assert not client.is_available()
    pair.transfer()
    events = pair.server_events()
    assert events[0] == HeadersReceived(
        stream_id=1,
        headers=[
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"localhost"),
            (b":path", b"/upload"),
        ],
    )
    body = b"".join(e.data for e in events[1:] if isinstance(e, DataReceived))
    assert body == b"hello world"
    assert isinstance(events[-1], DataReceived)
    assert events[-1].end_stream
    server.submit_headers(1, [*OK, (b"content-length", b"2")])
    server.submit_data(1, b"hi", end_stream=True)
    pair.transfer()
    events = pair.client_events()
    assert events[0] == HeadersReceived(
        stream_id=1, headers=[(b":status", b"200"), (b"content-length", b"2")]
    )
    assert b"".join(e.data for e in events[1:] if isinstance(e, DataReceived)) == b"hi"
    assert isinstance(events[-1], DataReceived)
    assert events[-1].end_stream
    assert client.is_available()
    assert server.is_available()
    assert client.get_available_stream_id() == 3


@pytest.mark.parametrize(
    ("method", "status"),
    [(b"HEAD", b"200"), (b"GET", b"204"), (b"GET", b"304")],
)
def test_bodyless_responses(
    method: bytes, status: bytes, http1_server_factory: HTTP1ServerFactoryType
) -> None:
    pair, client, server = new_pair(server_factory=http1_server_factory)
    client.submit_headers(1, [(b":method", method), *GET[1:]], end_stream=True)
    pair.transfer()
    pair.server_events()
    server.submit_headers(1, [(b":status", status), (b"etag", b"x")], end_stream=True)
    wire = server.bytes_to_send()
    assert b"content-length" not in wire
    client.bytes_received(wire)
    assert drain(client) == [
        HeadersReceived(
            stream_id=1, headers=[(b":status", status), (b"etag", b"x")], end_stream=True
        )
    ]
    assert client.is_available()


def test_head_response_keeps_content_length(http1_server_factory: HTTP1ServerFactoryType) -> None:
    pair, client, server = new_pair(server_factory=http1_server_factory)
    client.submit_headers(1, [(b":method", b"HEAD"), *GET[1:]], end_stream=True)
    pair.transfer()
    pair.server_events()
    server.submit_headers(1, [*OK, (b"content-length", b"10")])
    with pytest.raises(LocalProtocolError):
        server.submit_data(1, b"x")
    server.submit_data(1, b"", end_stream=True)
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(
            stream_id=1, headers=[(b":status", b"200"), (b"content-length", b"10")], end_stream=True
        ),
    ]


def test_interim_responses(http1_server_factory: HTTP1ServerFactoryType) -> None:
    pair, client, server = new_pair(server_factory=http1_server_factory)
    client.submit_headers(1, [*POST, (b"expect", b"100-continue"), (b"content-length", b"2")])
    pair.transfer()
    assert len(pair.server_events()) == 1
    server.submit_headers(1, [(b":status", b"100")])
    server.submit_headers(1, [(b":status", b"103"), (b"link", b"</a.css>; rel=preload")])
    assert server.bytes_to_send().startswith(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
    )
    client.bytes_received(b"HTTP/1.1 100 Continue\r\n\r\n")
    client.bytes_received(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
    client.submit_data(1, b"ok", end_stream=True)
    server.submit_headers(1, OK, end_stream=True)
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(stream_id=1, headers=[(b":status", b"100")]),
        HeadersReceived(
            stream_id=1, headers=[(b":status", b"103"), (b"link", b"</a.css>; rel=preload")]
        ),
        HeadersReceived(
            stream_id=1, headers=[(b":status", b"200"), (b"content-length", b"0")], end_stream=True
        ),
    ]
    assert pair.server_events() == [DataReceived(stream_id=1, data=b"ok", end_stream=True)]
    assert client.is_available()
    assert server.is_available()


def test_trailers_both_ways(http1_server_factory: HTTP1ServerFactoryType) -> None:
    pair, client, server = new_pair(server_factory=http1_server_factory)
    client.submit_headers(1, [*POST, (b"te", b"trailers")])
    client.submit_data(1, b"body")
    client.submit_headers(1, [(b"x-checksum", b"abc")], end_stream=True)
    pair.transfer()
    assert pair.server_events() == [
        HeadersReceived(
            stream_id=1,
            headers=[
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":authority", b"localhost"),
                (b":path", b"/upload"),
                (b"te", b"trailers"),
            ],
        ),
        DataReceived(stream_id=1, data=b"body"),
        HeadersReceived(stream_id=1, headers=[(b"x-checksum", b"abc")], end_stream=True),
    ]
    server.submit_headers(1, OK)
    server.submit_data(1, b"reply")
    server.submit_headers(1, [(b"grpc-status", b"0")], end_stream=True)
    assert server.bytes_to_send().endswith(b"0\r\ngrpc-status: 0\r\n\r\n")
    assert server.is_available()


def test_trailers_received_by_client() -> None:
    client = HTTP1ClientFactory()()
    client.submit_headers(1, GET, end_stream=True)
    events = feed(
        client,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    )
    assert events == [
        HeadersReceived(stream_id=1, headers=[(b":status", b"200")]),
        DataReceived(stream_id=1, data=b"abc"),
        HeadersReceived(stream_id=1, headers=[(b"x-t", b"1")], end_stream=True),
    ]


def test_trailers_on_content_length_message(http1_server_factory: HTTP1ServerFactoryType) -> None:
    client = HTTP1ClientFactory()()
    client.submit_headers(1, [*POST, (b"content-length", b"0")])
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [(b"x-t", b"1")], end_stream=True)
    client.submit_data(1, b"", end_stream=True)  # still usable
    server = new_server(http1_server_factory)
    feed(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    server.submit_headers(1, [*OK, (b"content-length", b"1")])
    server.submit_data(1, b"x")
    with pytest.raises(LocalProtocolError):
        server.submit_headers(1, [(b"x-t", b"1")], end_stream=True)
    server.submit_data(1, b"", end_stream=True)
    assert server.is_available()


def test_trailers_to_http10_client(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory)
    feed(server, b"GET / HTTP/1.0\r\n\r\n")
    server.submit_headers(1, OK)
    server.submit_data(1, b"close-delimited")
    with pytest.raises(LocalProtocolError):
        server.submit_headers(1, [(b"x-t", b"1")], end_stream=True)
    server.submit_data(1, b"", end_stream=True)
    assert server.bytes_to_send() == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclose-delimited"
    assert server.has_expired()


# -- CONNECT -----------------------------------------------------------------

CONNECT: HeadersType = [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]


def test_connect_tunnel(http1_server_factory: HTTP1ServerFactoryType) -> None:
    pair, client, server = new_pair(server_factory=http1_server_factory)
    client.submit_headers(1, CONNECT)
    assert client.bytes_to_send() == (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    )
    with pytest.raises(LocalProtocolError):
        client.submit_data(1, b"too early")
    server.bytes_received(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nearly")
    assert drain(server) == [
        HeadersReceived(
            stream_id=1, headers=[(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
        )
    ]
    server.submit_headers(1, OK)
    assert drain(server) == [DataReceived(stream_id=1, data=b"early")]
    assert server.bytes_to_send() == b"HTTP/1.1 200 OK\r\n\r\n"
    client.bytes_received(b"HTTP/1.1 200 OK\r\n\r\n\x00raw")
    assert drain(client) == [
        HeadersReceived(stream_id=1, headers=[(b":status", b"200")]),
        DataReceived(stream_id=1, data=b"\x00raw"),
    ]
    client.submit_data(1, b"GET / HTTP/1.1\r\n\r\n")
    server.submit_data(1, b"\x16\x03")
    pair.transfer()
    assert pair.server_events() == [DataReceived(stream_id=1, data=b"GET / HTTP/1.1\r\n\r\n")]
    assert pair.client_events() == [DataReceived(stream_id=1, data=b"\x16\x03")]
    # Half-close: the client is done, the server still talks.
    client.submit_data(1, b"", end_stream=True)
    assert not client.has_expired()
    server.eof_received()
    assert drain(server) == [DataReceived(stream_id=1, data=b"", end_stream=True)]
    assert not server.has_expired()
    server.submit_data(1, b"last", end_stream=True)
    assert server.has_expired()
    assert drain(server) == [ConnectionTerminated()]
    client.bytes_received(server.bytes_to_send())
    client.eof_received()
    assert drain(client) == [
        DataReceived(stream_id=1, data=b"last"),
        DataReceived(stream_id=1, data=b"", end_stream=True),
        ConnectionTerminated(),
    ]
    assert client.has_expired()
    client.connection_lost()
    server.connection_lost()
    assert drain(client) == []
    assert drain(server) == []


def test_connect_refused(http1_server_factory: HTTP1ServerFactoryType) -> None:
    pair, client, server = new_pair(server_factory=http1_server_factory)
    client.submit_headers(1, CONNECT)
    pair.transfer()
    assert len(pair.server_events()) == 1
    server.submit_headers(1, [(b":status", b"407"), (b"content-length", b"4")])
    server.submit_data(1, b"auth", end_stream=True)
    pair.transfer()
    assert pair.client_events() == [
        HeadersReceived(stream_id=1, headers=[(b":status", b"407"), (b"content-length", b"4")]),
        DataReceived(stream_id=1, data=b"auth", end_stream=True),
    ]
    assert client.is_available()
    assert server.is_available()
    client.submit_headers(3, GET, end_stream=True)
    pair.transfer()
    assert pair.server_events() == [
        HeadersReceived(stream_id=3, headers=RECEIVED_GET, end_stream=True)
    ]


def test_connect_tunnel_with_eof_before_response(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    server = new_server(http1_server_factory)
    feed(server, b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\nbye")
    server.eof_received()
    assert drain(server) == []
    server.submit_headers(1, OK, end_stream=True)
    assert drain(server) == [
        DataReceived(stream_id=1, data=b"bye"),
        DataReceived(stream_id=1, data=b"", end_stream=True),
        ConnectionTerminated(),
    ]


# -- keep-alive and pipelining -----------------------------------------------


def test_keep_alive_three_requests(http1_server_factory: HTTP1ServerFactoryType) -> None:
    pair, client, server = new_pair(one_byte, server_factory=http1_server_factory)
    for stream_id in (1, 3, 5):
        assert client.is_available()
        assert client.get_available_stream_id() == stream_id
        client.submit_headers(stream_id, GET, end_stream=True)
        assert not client.is_available()
        with pytest.raises(LocalProtocolError):
            client.get_available_stream_id()
        pair.transfer()
        assert pair.server_events() == [
            HeadersReceived(stream_id=stream_id, headers=RECEIVED_GET, end_stream=True)
        ]
        server.submit_headers(stream_id, [*OK, (b"content-length", b"1")])
        server.submit_data(stream_id, b"%d" % stream_id, end_stream=True)
        pair.transfer()
        assert pair.client_events() == [
            HeadersReceived(
                stream_id=stream_id, headers=[(b":status", b"200"), (b"content-length", b"1")]
            ),
            DataReceived(stream_id=stream_id, data=b"%d" % stream_id, end_stream=True),
        ]
    assert not client.has_expired()
    assert not server.has_expired()


def test_pipelining(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory)
    events = feed(
        server,
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: a\r\n",
    )
    assert [e.stream_id for e in events if isinstance(e, HeadersReceived)] == [1]
    assert not server.is_available()
    server.submit_headers(1, OK, end_stream=True)
    assert drain(server) == [
        HeadersReceived(
            stream_id=3,
            headers=[
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":authority", b"a"),
                (b":path", b"/2"),
                (b"content-length", b"3"),
            ],
        ),
        DataReceived(stream_id=3, data=b"abc", end_stream=True),
    ]
    server.submit_headers(3, OK, end_stream=True)
    assert drain(server) == []
    assert feed(server, b"\r\n") == [
        HeadersReceived(
            stream_id=5,
            headers=[
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"a"),
                (b":path", b"/3"),
            ],
            end_stream=True,
        )
    ]
    server.submit_headers(5, OK, end_stream=True)
    assert server.bytes_to_send().count(b"HTTP/1.1 200 OK\r\n") == 3


def test_early_response_before_request_body(http1_server_factory: HTTP1ServerFactoryType) -> None:
    pair, client, server = new_pair(server_factory=http1_server_factory)
    client.submit_headers(1, POST)
    pair.transfer()
    server.submit_headers(1, [(b":status", b"413")], end_stream=True)
    assert not server.is_available()
    pair.transfer()
    assert pair.client_events()[-1] == HeadersReceived(
        stream_id=1, headers=[(b":status", b"413"), (b"content-length", b"0")], end_stream=True
    )
    client.submit_data(1, b"late", end_stream=True)
    pair.transfer()
    assert pair.server_events()[-1] == DataReceived(stream_id=1, data=b"late", end_stream=True)
    assert server.is_available()
    assert client.is_available()


def test_client_connection_close(http1_server_factory: HTTP1ServerFactoryType) -> None:
    _pair, client, _server = new_pair(server_factory=http1_server_factory)
    client.submit_headers(1, [*GET, (b"connection", b"close")], end_stream=True)
    assert client.bytes_to_send().endswith(b"connection: close\r\n\r\n")


def test_request_connection_close_expires_server(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    server = new_server(http1_server_factory)
    feed(server, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    server.submit_headers(1, OK, end_stream=True)
    assert server.bytes_to_send() == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nConnection: close\r\n\r\n"
    )
    assert server.has_expired()
    assert not server.is_available()


# -- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"NOT HTTP\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header: a\r\n\r\n",
    ],
)
def test_malformed_request(data: bytes, http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory)
    events = feed(server, data)
    assert len(events) == 1
    assert isinstance(events[0], ConnectionTerminated)
    assert events[0].error_code == 400
    assert events[0].message
    body = str(events[0].message).encode() + b"\n"
    assert server.bytes_to_send() == (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
    )
    assert server.has_expired()
    assert not server.is_available()
    server.bytes_received(b"more")
    server.eof_received()
    server.connection_lost()
    assert drain(server) == []


def test_malformed_request_body(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory)
    events = feed(server, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert events[0] == HeadersReceived(
        stream_id=1,
        headers=[
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"a"),
            (b":path", b"/"),
        ],
    )
    assert events[1] == StreamResetReceived(stream_id=1, error_code=400)
    assert isinstance(events[2], ConnectionTerminated)
    assert events[2].error_code == 400
    assert server.bytes_to_send().startswith(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(LocalProtocolError):
        server.submit_headers(1, OK, end_stream=True)


def test_oversize_headers(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = http1_server_factory(max_header_size=1024)()
    events = feed(server, b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 2000)
    assert len(events) == 1
    assert isinstance(events[0], ConnectionTerminated)
    assert events[0].error_code == 431
    assert server.bytes_to_send().startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert server.has_expired()


@pytest.mark.parametrize("extra", [0, 1], ids=["at-the-limit", "one-past"])
def test_a_whole_head_in_one_read_is_measured(
    extra: int, http1_server_factory: HTTP1ServerFactoryType
) -> None:
    prefix, suffix = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ", b"\r\n\r\n"
    head = prefix + b"x" * (1024 - len(prefix) - len(suffix) + extra) + suffix
    server = http1_server_factory(max_header_size=1024)()
    events = feed(server, head)
    if not extra:
        assert isinstance(events[0], HeadersReceived)
    else:
        assert isinstance(events[0], ConnectionTerminated)
        assert events[0].error_code == 431
        assert server.bytes_to_send().startswith(b"HTTP/1.1 431 ")


def test_malformed_response() -> None:
    client = HTTP1ClientFactory()()
    client.submit_headers(1, GET, end_stream=True)
    events = feed(client, b"HTTP/1.1 2OO OK\r\n\r\n")
    assert events[0] == StreamResetReceived(
        stream_id=1, error_code=HTTP1_ERROR_CODES.protocol_error
    )
    assert isinstance(events[1], ConnectionTerminated)
    assert events[1].error_code == HTTP1_ERROR_CODES.protocol_error
    assert events[1].message
    assert client.has_expired()
    assert client.bytes_to_send() == b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def test_unsolicited_response() -> None:
    client = HTTP1ClientFactory()()
    events = feed(client, b"HTTP/1.1 200 OK\r\n\r\n")
    assert len(events) == 1
    assert isinstance(events[0], ConnectionTerminated)
    assert events[0].error_code == 400


# -- EOF and connection loss -------------------------------------------------


def test_eof_when_idle(http1_server_factory: HTTP1ServerFactoryType) -> None:
    _pair, client, server = new_pair(server_factory=http1_server_factory)
    client.eof_received()
    server.eof_received()
    assert drain(client) == [ConnectionTerminated(error_code=0)]
    assert drain(server) == [ConnectionTerminated(error_code=0)]
    assert client.has_expired()
    assert server.has_expired()
    client.connection_lost()
    assert drain(client) == []


def test_eof_mid_request(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory)
    feed(server, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    server.eof_received()
    events = drain(server)
    assert events[0] == StreamResetReceived(
        stream_id=1, error_code=HTTP1_ERROR_CODES.protocol_error
    )
    assert isinstance(events[1], ConnectionTerminated)
    assert events[1].error_code == 400
    assert server.bytes_to_send() == b""


def test_eof_mid_request_line(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory)
    feed(server, b"GET / HT")
    server.eof_received()
    events = drain(server)
    assert len(events) == 1
    assert isinstance(events[0], ConnectionTerminated)
    assert events[0].error_code == 400


def test_eof_mid_response() -> None:
    client = HTTP1ClientFactory()()
    client.submit_headers(1, GET, end_stream=True)
    feed(client, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    client.eof_received()
    events = drain(client)
    assert events[0] == StreamResetReceived(
        stream_id=1, error_code=HTTP1_ERROR_CODES.protocol_error
    )
    assert isinstance(events[1], ConnectionTerminated)
    assert events[1].error_code == 400


def test_eof_before_response() -> None:
    client = HTTP1ClientFactory()()
    client.submit_headers(1, GET, end_stream=True)
    client.eof_received()
    events = drain(client)
    assert events[0] == StreamResetReceived(stream_id=1, error_code=400)
    assert isinstance(events[1], ConnectionTerminated)


def test_close_delimited_response() -> None:
    client = HTTP1ClientFactory()()
    client.submit_headers(1, GET, end_stream=True)
    assert feed(client, b"HTTP/1.0 200 OK\r\n\r\nsome") == [
        HeadersReceived(stream_id=1, headers=[(b":status", b"200")]),
        DataReceived(stream_id=1, data=b"some"),
    ]
    client.eof_received()
    assert drain(client) == [
        DataReceived(stream_id=1, data=b"", end_stream=True),
        ConnectionTerminated(),
    ]


def test_client_half_close_after_request(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory)
    feed(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    server.eof_received()
    assert drain(server) == []
    server.submit_headers(1, OK)
    server.submit_data(1, b"still here", end_stream=True)
    assert drain(server) == [ConnectionTerminated()]
    assert server.bytes_to_send().endswith(b"a\r\nstill here\r\n0\r\n\r\n")
    assert server.has_expired()


def test_connection_lost_once(http1_server_factory: HTTP1ServerFactoryType) -> None:
    pair, client, server = new_pair(server_factory=http1_server_factory)
    client.submit_headers(1, GET, end_stream=True)
    pair.transfer()
    pair.server_events()
    client.connection_lost()
    client.connection_lost()
    assert drain(client) == [
        StreamResetReceived(stream_id=1, error_code=400),
        ConnectionTerminated(error_code=400, message="connection lost"),
    ]
    server.connection_lost()
    server.eof_received()
    assert len(drain(server)) == 2
    idle = HTTP1ClientFactory()()
    idle.connection_lost()
    idle.connection_lost()
    assert drain(idle) == [ConnectionTerminated()]
    assert idle.has_expired()


# -- misuse ------------------------------------------------------------------


def test_client_misuse() -> None:
    client = HTTP1ClientFactory()()
    with pytest.raises(LocalProtocolError):
        client.submit_data(1, b"x")  # no stream
    with pytest.raises(LocalProtocolError):
        client.submit_headers(3, GET)  # not the available ID
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [(b":method", b"GET"), (b":authority", b"a")])  # no :path
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [(b":path", b"/")])  # no :method
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [(b":method", b"CONNECT")])  # no :authority
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [(b":method", b"GET"), (b":path", b"/")])  # no Host
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [*GET, (b"content-length", b"x")])
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [*GET, (b"content-length", b"3")], end_stream=True)
    assert client.is_available()
    client.submit_headers(1, [*POST, (b"content-length", b"3")])
    with pytest.raises(LocalProtocolError):
        client.submit_headers(3, GET)  # busy
    with pytest.raises(LocalProtocolError):
        client.submit_data(1, b"toolong")
    with pytest.raises(LocalProtocolError):
        client.submit_data(1, b"ab", end_stream=True)
    with pytest.raises(LocalProtocolError):
        client.submit_data(5, b"x")  # unknown stream
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [(b":path", b"/")], end_stream=True)  # pseudo in trailers
    client.submit_data(1, b"abc", end_stream=True)
    with pytest.raises(LocalProtocolError):
        client.submit_data(1, b"x")  # closed for sending
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [(b"x-t", b"1")], end_stream=True)  # headers twice
    assert not client.has_expired()


def test_chunked_trailers_must_end_stream() -> None:
    client = HTTP1ClientFactory()()
    client.submit_headers(1, POST)
    with pytest.raises(LocalProtocolError):
        client.submit_headers(1, [(b"x-t", b"1")])


def test_server_misuse(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory)
    with pytest.raises(LocalProtocolError):
        server.get_available_stream_id()
    with pytest.raises(LocalProtocolError):
        server.submit_headers(1, OK)  # no request yet
    feed(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    with pytest.raises(LocalProtocolError):
        server.submit_data(1, b"x")  # no response yet
    with pytest.raises(LocalProtocolError):
        server.submit_headers(3, OK)
    with pytest.raises(LocalProtocolError):
        server.submit_headers(1, [(b":status", b"20x")])
    with pytest.raises(LocalProtocolError):
        server.submit_headers(1, [(b":method", b"GET")])
    with pytest.raises(LocalProtocolError):
        server.submit_headers(1, [(b":status", b"103")], end_stream=True)
    with pytest.raises(LocalProtocolError):
        server.submit_headers(1, [*OK, (b"content-length", b"5")], end_stream=True)
    with pytest.raises(LocalProtocolError):
        server.submit_headers(1, [*OK, (b"bad name", b"x")])
    server.submit_headers(1, OK, end_stream=True)
    with pytest.raises(LocalProtocolError):
        server.submit_headers(1, OK)
    with pytest.raises(LocalProtocolError):
        server.submit_data(1, b"x")
    assert server.is_available()
    assert not server.has_expired()


# -- resets and closing ------------------------------------------------------


def test_stream_reset_closes_connection(http1_server_factory: HTTP1ServerFactoryType) -> None:
    pair, client, server = new_pair(server_factory=http1_server_factory)
    client.submit_headers(1, POST)
    pair.transfer()
    pair.server_events()
    server.submit_headers(1, OK)
    server.submit_stream_reset(1, HTTP1_ERROR_CODES.internal_error)
    assert server.bytes_to_send() == b""
    assert drain(server) == [
        StreamResetSent(stream_id=1, error_code=500),
        ConnectionTerminated(error_code=500, message="stream reset"),
    ]
    assert server.has_expired()
    server.submit_stream_reset(1)  # already closed: nothing
    server.connection_lost()
    assert drain(server) == []
    client.submit_stream_reset(1, HTTP1_ERROR_CODES.cancel)
    assert drain(client) == [
        StreamResetSent(stream_id=1, error_code=499),
        ConnectionTerminated(error_code=499, message="stream reset"),
    ]


def test_server_submit_goaway(http1_server_factory: HTTP1ServerFactoryType) -> None:
    idle = new_server(http1_server_factory)
    idle.submit_goaway()
    assert idle.has_expired()
    assert not idle.is_available()
    server = new_server(http1_server_factory)
    feed(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    server.submit_goaway()
    assert server.has_expired()  # takes no new request, finishes this one
    server.submit_headers(1, OK, end_stream=True)
    assert server.bytes_to_send() == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    assert server.has_expired()
    started = new_server(http1_server_factory)
    feed(started, b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    started.submit_headers(1, OK)
    started.submit_goaway()
    assert started.has_expired()
    started.submit_data(1, b"", end_stream=True)
    assert started.has_expired()
    assert drain(started) == []


def test_server_submit_close_with_408_answers_a_partial_request(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    """RFC 9110 §15.5.9: a server that stops waiting for a request says 408, then closes."""
    server = new_server(http1_server_factory)
    feed(server, b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
    server.submit_close(408)
    sent = server.bytes_to_send()
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 408 Request Timeout",
        b"content-type: text/plain; charset=utf-8",
        b"content-length: %d" % len(body),
        b"connection: close",
    ]
    assert body == b"Request Timeout\n"
    assert drain(server) == [ConnectionTerminated(error_code=408, message="closed by the server")]
    assert server.has_expired()
    server.submit_close(408)  # already closed: nothing more
    assert server.bytes_to_send() == b""


def test_server_submit_close_with_408_answers_a_request_without_response(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    server = new_server(http1_server_factory)
    feed(server, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab")
    server.submit_close(408)
    assert server.bytes_to_send().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert drain(server) == [
        StreamResetSent(stream_id=1, error_code=408),
        ConnectionTerminated(error_code=408, message="closed by the server"),
    ]
    with pytest.raises(LocalProtocolError):
        server.submit_headers(1, OK, end_stream=True)


@pytest.mark.parametrize(
    "data",
    [b"", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"],
    ids=["nothing-received", "between-requests"],
)
def test_server_submit_close_with_408_sends_nothing_unasked(
    data: bytes, http1_server_factory: HTTP1ServerFactoryType
) -> None:
    """With no byte of a request waiting, a 408 could answer a request in flight."""
    server = new_server(http1_server_factory)
    if data:
        feed(server, data)
        server.submit_headers(1, OK, end_stream=True)
        assert server.bytes_to_send().startswith(b"HTTP/1.1 200 OK")
    server.submit_close(408)
    assert server.bytes_to_send() == b""
    assert drain(server)[-1] == ConnectionTerminated(error_code=408, message="closed by the server")
    assert server.has_expired()


def test_server_submit_close_with_408_after_the_response_started_sends_nothing(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    server = new_server(http1_server_factory)
    feed(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    server.submit_headers(1, OK)
    server.bytes_to_send()
    server.submit_close(408)
    assert server.bytes_to_send() == b""
    assert drain(server) == [
        StreamResetSent(stream_id=1, error_code=408),
        ConnectionTerminated(error_code=408, message="closed by the server"),
    ]


def test_a_refused_head_request_gets_no_body(http1_server_factory: HTTP1ServerFactoryType) -> None:
    server = new_server(http1_server_factory)
    events = feed(server, b"HEAD / HTTP/1.1\r\nHost: a\r\nX-A: \x01\r\n\r\n")
    assert [type(e) for e in events] == [ConnectionTerminated]
    sent = server.bytes_to_send()
    assert sent.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert sent.endswith(b"\r\n\r\n")
    assert b"content-length: " in sent


def test_connect_leaves_its_target_and_host_to_the_application(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    """As on HTTP/2 and HTTP/3, a proxy judges the target (and explains a bad one)."""
    server = new_server(http1_server_factory)
    events = feed(server, b"CONNECT ::1:80 HTTP/1.1\r\nHost: ::1:80\r\n\r\n")
    assert events == [
        HeadersReceived(stream_id=1, headers=[(b":method", b"CONNECT"), (b":authority", b"::1:80")])
    ]
    assert server.bytes_to_send() == b""


def test_client_submit_goaway() -> None:
    client = HTTP1ClientFactory()()
    client.submit_goaway()
    assert client.has_expired()
    assert not client.is_available()
    with pytest.raises(LocalProtocolError):
        client.get_available_stream_id()


def test_flow_control_is_a_no_op(http1_server_factory: HTTP1ServerFactoryType) -> None:
    pair, client, server = new_pair(server_factory=http1_server_factory)
    client.submit_headers(1, POST)
    client.submit_data(1, b"x" * 100_000)
    assert client.get_pending_data_size(1) == 0
    pair.transfer()
    server.acknowledge_received_data(1, 100_000)
    server.acknowledge_received_data(99, 1)
    assert server.get_pending_data_size(1) == 0
    assert sum(len(e.data) for e in pair.server_events() if isinstance(e, DataReceived)) == 100_000


def test_pipelined_request_after_connection_close(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    server = new_server(http1_server_factory)
    events = feed(
        server,
        b"GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    assert len(events) == 1
    server.submit_headers(1, OK, end_stream=True)
    assert server.has_expired()
    assert drain(server) == []
    server.connection_lost()
    assert drain(server) == [ConnectionTerminated()]


def test_upgrade_request_is_a_plain_request(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """An upgrade to another protocol than WebSocket is an ordinary request."""
    _pair, _client, server = new_pair(server_factory=http1_server_factory)
    server.bytes_received(
        b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: example/1\r\n\r\n"
    )
    assert drain(server) == [
        HeadersReceived(
            stream_id=1,
            headers=[
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"a"),
                (b":path", b"/chat"),
            ],
            end_stream=True,
        )
    ]
    server.submit_headers(1, [(b":status", b"426"), (b"upgrade", b"example/2")], end_stream=True)
    assert server.bytes_to_send() == b"HTTP/1.1 426 Upgrade Required\r\ncontent-length: 0\r\n\r\n"
    assert server.is_available()


# -- one state machine, whichever parser -------------------------------------


UPGRADE = b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: example/1\r\n\r\n"


def streams(events: list[Event]) -> list[tuple[type[Event], int | None]]:
    """Each event's type and stream."""
    return [(type(e), getattr(e, "stream_id", None)) for e in events]


@pytest.mark.parametrize("chunker", [whole, one_byte], ids=["whole", "one_byte"])
def test_what_follows_an_upgrade_request_waits_for_its_answer(
    chunker: Chunker, http1_server_factory: HTTP1ServerFactoryType
) -> None:
    """Both parsers stop at it: the next request is read once it is answered, not before."""
    server = new_server(http1_server_factory)
    for piece in chunker(UPGRADE + b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"):
        server.bytes_received(piece)
    assert streams(drain(server)) == [(HeadersReceived, 1)]
    server.submit_headers(1, [(b":status", b"426"), (b"content-length", b"0")], end_stream=True)
    assert streams(drain(server)) == [(HeadersReceived, 3)]


def test_switching_protocols_is_refused(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """No 101 (the server does not switch); the request still gets its answer."""
    server = new_server(http1_server_factory)
    feed(server, UPGRADE)
    with pytest.raises(LocalProtocolError, match="101"):
        server.submit_headers(1, [(b":status", b"101"), (b"upgrade", b"websocket")])
    assert server.bytes_to_send() == b""
    server.submit_headers(1, [(b":status", b"426"), (b"content-length", b"0")], end_stream=True)
    assert server.bytes_to_send().startswith(b"HTTP/1.1 426 ")
    assert server.is_available()


@pytest.mark.parametrize("chunker", [whole, one_byte], ids=["whole", "one_byte"])
def test_a_refused_connect_leaves_what_followed_to_be_read(
    chunker: Chunker, http1_server_factory: HTTP1ServerFactoryType
) -> None:
    """Bytes after CONNECT wait raw; refused, they are the next request (RFC 9110 §9.3.6)."""
    server = new_server(http1_server_factory)
    data = b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n"
    for piece in chunker(data):
        server.bytes_received(piece)
    assert [type(e) for e in drain(server)] == [HeadersReceived]
    server.submit_headers(1, [(b":status", b"407"), (b"content-length", b"0")], end_stream=True)
    events = drain(server)
    assert streams(events) == [(HeadersReceived, 3)]
    assert isinstance(events[0], HeadersReceived)
    assert dict(events[0].headers)[b":path"] == b"/next"


def test_pipelining_past_the_bound_closes_after_the_answer(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    """RFC 9112 §9.3.2: what was not answered, a pipelining client sends again (both parsers)."""
    from hface.protocols.http1._httptools import MAX_PIPELINED

    server = new_server(http1_server_factory)
    feed(server, b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
    server.bytes_received(b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n")
    assert not server.has_expired()
    for _ in range(MAX_PIPELINED // 65536 + 1):
        server.bytes_received(b"x" * 65536)
    assert server.has_expired()
    assert drain(server) == []
    server.submit_headers(1, OK, end_stream=True)
    assert server.bytes_to_send().endswith(b"\r\nconnection: close\r\n\r\n")
    assert drain(server) == []
    server.eof_received()
    assert drain(server) == [ConnectionTerminated()]


def test_a_client_half_close_ends_after_the_pipelined_requests(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    """Every request that came before the EOF is answered, then the connection ends."""
    server = new_server(http1_server_factory)
    feed(server, b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    server.eof_received()
    assert drain(server) == []
    server.submit_headers(1, OK, end_stream=True)
    assert streams(drain(server)) == [(HeadersReceived, 3)]
    server.submit_headers(3, OK, end_stream=True)
    assert drain(server) == [ConnectionTerminated()]
    assert server.bytes_to_send().count(b"HTTP/1.1 200 OK\r\n") == 2
