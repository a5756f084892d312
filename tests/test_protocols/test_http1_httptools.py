"""What only the httptools HTTP/1.1 server needs tested: llhttp's way of parsing.

Everything the h11 server does is tested on both implementations in
test_http1.py, test_http1_malformed.py and test_common.py; these are the
places where llhttp parses differently (all at once, stopping at upgrades,
with no limit on a head) and the protocol makes up for it.
"""

from __future__ import annotations

import pytest

from hface.events import ConnectionTerminated, DataReceived, Event, HeadersReceived
from hface.protocols.http1._httptools import (
    MAX_PIPELINED,
    HTTPToolsServerFactory,
    HTTPToolsServerProtocol,
)
from tests.helpers.pairs import Chunker, one_byte, whole

OK_EMPTY = [(b":status", b"200"), (b"content-length", b"0")]


def drain(server: HTTPToolsServerProtocol) -> list[Event]:
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    return events


def paths(events: list[Event]) -> list[bytes | None]:
    return [dict(e.headers).get(b":path") for e in events if isinstance(e, HeadersReceived)]


def test_factory_options() -> None:
    server = HTTPToolsServerFactory(max_header_size=100)(tls_version="TLSv1.3")
    server.bytes_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert dict(drain(server)[0].headers)[b":scheme"] == b"https"  # type: ignore[attr-defined]


@pytest.mark.parametrize("chunker", [whole, one_byte], ids=["whole", "one-byte"])
def test_a_refused_connect_leaves_what_followed_to_be_parsed(chunker: Chunker) -> None:
    """Bytes after CONNECT wait raw; refused, they are the next request (RFC 9110 §9.3.6)."""
    server = HTTPToolsServerProtocol()
    data = b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n"
    for piece in chunker(data):
        server.bytes_received(piece)
    assert drain(server) == [
        HeadersReceived(stream_id=1, headers=[(b":method", b"CONNECT"), (b":authority", b"a:1")])
    ]
    server.submit_headers(1, [(b":status", b"407"), (b"content-length", b"0")], end_stream=True)
    assert paths(drain(server)) == [b"/next"]
    assert server.bytes_to_send().startswith(b"HTTP/1.1 407 ")


def test_an_upgrade_request_is_a_request_and_parsing_goes_on() -> None:
    """llhttp stops at ``Connection: upgrade``; the server does not switch, so it resumes."""
    server = HTTPToolsServerProtocol()
    server.bytes_received(
        b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: example/1\r\n\r\n"
        b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert paths(drain(server)) == [b"/chat"]
    server.submit_headers(1, OK_EMPTY, end_stream=True)
    assert paths(drain(server)) == [b"/2"]


def test_a_body_on_an_upgrade_request_is_refused() -> None:
    """llhttp would read the body as the next request: 400, and the request is never seen."""
    server = HTTPToolsServerProtocol()
    server.bytes_received(
        b"POST /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Content-Length: 28\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"
    )
    assert drain(server) == [
        ConnectionTerminated(
            error_code=400, message="a body on an Upgrade request is not supported"
        )
    ]
    assert server.bytes_to_send().startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_a_head_growing_over_several_pieces_gets_431() -> None:
    """llhttp keeps a field in progress to itself: the bytes received are counted."""
    server = HTTPToolsServerProtocol(max_header_size=1024)
    server.bytes_received(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ")
    server.bytes_received(b"x" * 600)
    assert drain(server) == []
    server.bytes_received(b"x" * 600)
    assert drain(server) == [ConnectionTerminated(error_code=431, message="request head too large")]
    assert server.bytes_to_send().startswith(b"HTTP/1.1 431 ")


def test_many_pipelined_requests_in_one_piece_are_no_large_head() -> None:
    """Only the head still open counts, not the requests before it in the same piece."""
    server = HTTPToolsServerProtocol(max_header_size=1024)
    server.bytes_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 100 + b"GET /last HTTP/1.1\r\nHo")
    assert len(drain(server)) == 1
    for stream_id in range(1, 200, 2):
        server.submit_headers(stream_id, OK_EMPTY, end_stream=True)
        drain(server)
    server.bytes_received(b"st: a\r\n\r\n")
    assert paths(drain(server)) == [b"/last"]
    assert server.bytes_to_send().count(b"HTTP/1.1 200 OK\r\n") == 100


def test_pipelining_more_than_the_bound_closes_after_the_answer() -> None:
    """RFC 9112 §9.3.2: what was not answered, a pipelining client sends again."""
    server = HTTPToolsServerProtocol()
    body = b"x" * (MAX_PIPELINED + 1)
    server.bytes_received(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
    server.bytes_received(b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
    server.bytes_received(body)
    assert paths(drain(server)) == [b"/1"]
    assert server.has_expired()
    server.submit_headers(1, OK_EMPTY, end_stream=True)
    assert server.bytes_to_send().endswith(b"\r\nconnection: close\r\n\r\n")
    assert drain(server) == []
    server.connection_lost()
    assert drain(server) == [ConnectionTerminated()]


def test_expect_100_continue() -> None:
    server = HTTPToolsServerProtocol()
    server.bytes_received(
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    assert len(drain(server)) == 1
    server.submit_headers(1, [(b":status", b"100")])
    assert server.bytes_to_send() == b"HTTP/1.1 100 Continue\r\n\r\n"
    server.bytes_received(b"ok")
    assert drain(server) == [DataReceived(stream_id=1, data=b"ok", end_stream=True)]


def test_a_piece_full_of_upgrade_requests() -> None:
    """Each stops llhttp; parsing resumes in a loop (no recursion to run out of)."""
    upgrade = b"GET /u HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"
    server = HTTPToolsServerProtocol()
    server.bytes_received(upgrade * 20_000)
    assert paths(drain(server)) == [b"/u"]
    assert server.has_expired()  # more than MAX_PIPELINED bytes were pipelined
    server.submit_headers(1, OK_EMPTY, end_stream=True)
    assert server.bytes_to_send().endswith(b"connection: close\r\n\r\n")
