"""PriorKnowledgeProtocol: HTTP/1.1 or HTTP/2 by the first bytes, one lifecycle at a time."""

from __future__ import annotations

from hface.events import ConnectionTerminated, HeadersReceived
from hface.protocols import ConnectionState, PriorKnowledgeHTTPFactory
from hface.protocols._prior_knowledge import PriorKnowledgeProtocol
from hface.protocols.http1 import HTTP1ServerFactory
from hface.protocols.http2 import HTTP2ServerFactory
from hface.protocols.http2._protocol import HTTP2ServerProtocol

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUEST = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"
FACTORY = PriorKnowledgeHTTPFactory(HTTP1ServerFactory(), HTTP2ServerFactory())


def make() -> PriorKnowledgeProtocol:
    protocol = FACTORY()
    assert isinstance(protocol, PriorKnowledgeProtocol)
    return protocol


def test_the_preface_decides_http2_even_byte_by_byte() -> None:
    protocol = make()
    for index in range(len(PREFACE)):
        assert protocol.delegate is None
        assert protocol.bytes_to_send() == b""
        protocol.bytes_received(PREFACE[index : index + 1])
    assert isinstance(protocol.delegate, HTTP2ServerProtocol)
    assert protocol.http_version == "2"


def test_other_bytes_decide_http1() -> None:
    protocol = make()
    assert protocol.state is ConnectionState.OPEN
    assert protocol.http_version == "1.1"  # an idle HTTP/1.1 server until decided
    protocol.bytes_received(REQUEST)
    assert protocol.http_version == "1.1"
    event = protocol.next_event()
    assert isinstance(event, HeadersReceived)


def test_a_close_before_the_first_bytes_decides_http1() -> None:
    """The lifecycle moves in one protocol: HTTP/1.1's, which then owns the state."""
    protocol = make()
    protocol.submit_goaway()
    assert protocol.delegate is not None
    assert protocol.http_version == "1.1"
    # An idle HTTP/1.1 server that drains has nothing left: it is closing.
    assert protocol.state is ConnectionState.CLOSING
    assert protocol.has_expired()
    protocol.bytes_received(PREFACE)  # too late for HTTP/2
    assert protocol.http_version == "1.1"
    assert not protocol.bytes_to_send().startswith(b"\x00")  # no HTTP/2 SETTINGS frame


def test_a_prefix_of_the_preface_is_kept_for_http1() -> None:
    """Bytes buffered when a close decides reach HTTP/1.1 with those that follow."""
    protocol = make()
    protocol.bytes_received(PREFACE[:5])
    protocol.submit_close()
    assert protocol.http_version == "1.1"
    protocol.eof_received()
    events = []
    while (event := protocol.next_event()) is not None:
        events.append(event)
    assert isinstance(events[-1], ConnectionTerminated)
    assert protocol.state is ConnectionState.CLOSED


def test_decided_the_busy_calls_go_to_the_delegate_directly() -> None:
    """Once decided, reads, writes and events cost no call through the wrapper."""
    protocol = make()
    protocol.bytes_received(REQUEST)
    delegate = protocol.delegate
    assert delegate is not None
    for name in ("bytes_received", "next_event", "bytes_to_send", "submit_data"):
        assert getattr(protocol, name).__self__ is delegate, name
    assert isinstance(protocol.next_event(), HeadersReceived)


def test_bytes_kept_from_before_a_close_still_go_first() -> None:
    """A close decided with a prefix buffered: the next bytes go through the wrapper once."""
    protocol = make()
    protocol.bytes_received(PREFACE[:3])
    protocol.submit_goaway()
    assert "bytes_received" not in vars(protocol)  # the class's method, which takes them
    assert getattr(protocol, "next_event").__self__ is protocol.delegate  # noqa: B009
