"""Malformed and ambiguous HTTP/1.1 requests against the server protocol.

Every vector is a request (sometimes with a body) followed by a second,
"smuggled" request. The server must answer the first with the status RFC
9112 asks for (400 unless noted), say ``connection: close``, end the
connection with that status as error code, and never parse the smuggled
request: reading a request two ways is how request smuggling works
(RFC 9112 §6.3, §11.2). Each id names the RFC section broken.
"""

from __future__ import annotations

import pytest

from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HeadersReceived,
    StreamResetReceived,
)
from hface.protocols.http1 import HTTP1ServerFactory
from tests.helpers.pairs import Chunker, one_byte, whole
from tests.test_protocols.conftest import HTTP1ServerFactoryType

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"
CHUNKED = b"POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"


def feed(
    data: bytes,
    chunker: Chunker = whole,
    *,
    eof: bool = False,
    factory: HTTP1ServerFactoryType = HTTP1ServerFactory,
) -> tuple[bytes, list[Event]]:
    """Feed ``data`` to a new server protocol of ``factory``; return what it sent and its events."""
    server = factory()()
    for chunk in chunker(data):
        server.bytes_received(chunk)
    if eof:
        server.eof_received()
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    return server.bytes_to_send(), events


def assert_refused(sent: bytes, events: list[Event], status: int) -> None:
    """The server answered ``status``, closes, and parsed nothing after the fault."""
    head, _, body = sent.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 %d " % status)
    fields = [line.lower() for line in lines[1:]]
    assert b"connection: close" in fields
    assert b"content-type: text/plain; charset=utf-8" in fields
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code == status
    assert events[-1].message
    # The body says why, in a line (RFC 9110 §15.5: "an explanation").
    assert body == str(events[-1].message).encode() + b"\n"
    assert b"content-length: %d" % len(body) in fields
    paths = [dict(e.headers).get(b":path") for e in events if isinstance(e, HeadersReceived)]
    assert b"/smuggled" not in paths
    started = [e.stream_id for e in events if isinstance(e, HeadersReceived)]
    reset = [e.stream_id for e in events if isinstance(e, StreamResetReceived)]
    # A stream the application saw is reset, never left hanging.
    assert started == reset


def request(*fields: bytes, line: bytes = b"POST / HTTP/1.1", body: bytes = b"") -> bytes:
    """A request with a Host field, these field lines and a body."""
    return b"\r\n".join([line, b"Host: example.com", *fields, b""]) + b"\r\n" + body


REFUSED = [
    # RFC 9112 §6.3 and §11.2: ambiguous message length.
    pytest.param(
        request(b"Content-Length: 5", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
        400,
        id="6.3 Content-Length then Transfer-Encoding",
    ),
    pytest.param(
        request(b"Transfer-Encoding: chunked", b"Content-Length: 5", body=b"0\r\n\r\n"),
        400,
        id="6.3 Transfer-Encoding then Content-Length",
    ),
    pytest.param(
        request(b"Content-Length: 1", b"Content-Length: 40", body=b"x"),
        400,
        id="RFC 9110 8.6 duplicate Content-Length with different values",
    ),
    pytest.param(
        request(b"Content-Length: 1, 40", body=b"x"),
        400,
        id="RFC 9110 8.6 Content-Length list",
    ),
    pytest.param(request(b"Content-Length: +1", body=b"x"), 400, id="RFC 9110 8.6 signed length"),
    pytest.param(request(b"Content-Length: 0x1", body=b"x"), 400, id="RFC 9110 8.6 hex length"),
    pytest.param(
        request(b"Transfer-Encoding: chunked", line=b"POST / HTTP/1.0", body=b"0\r\n\r\n"),
        400,
        id="6.1 Transfer-Encoding in HTTP-1.0",
    ),
    pytest.param(
        request(b"Transfer-Encoding : chunked", body=b"0\r\n\r\n"),
        400,
        id="5.1 whitespace before the colon",
    ),
    pytest.param(
        request(b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity", body=b"0\r\n\r\n"),
        501,
        id="6.1 two Transfer-Encoding fields",
    ),
    pytest.param(
        request(b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"),
        501,
        id="6.1 unknown transfer coding",
    ),
    # RFC 9112 §7.1: chunked framing.
    pytest.param(CHUNKED + b"zz\r\nx\r\n0\r\n\r\n", 400, id="7.1 chunk size not hex"),
    pytest.param(CHUNKED + b"-1\r\nx\r\n0\r\n\r\n", 400, id="7.1 negative chunk size"),
    pytest.param(CHUNKED + b"0x1\r\nx\r\n0\r\n\r\n", 400, id="7.1 chunk size with 0x"),
    pytest.param(CHUNKED + b"f" * 40 + b"\r\nx\r\n0\r\n\r\n", 400, id="7.1 chunk size overflow"),
    pytest.param(CHUNKED + b"1\r\nxyz\r\n0\r\n\r\n", 400, id="7.1 chunk longer than its size"),
    pytest.param(CHUNKED + b"1\r\nx\n0\r\n\r\n", 400, id="7.1 bare LF after chunk data"),
    pytest.param(CHUNKED + b"1\nx\n0\n\n", 400, id="7.1 bare LF chunk lines"),
    # RFC 9112 §2.2, §3: the request line.
    pytest.param(b"GET / HTTP/1.1\rHost: example.com\r\n\r\n", 400, id="2.2 bare CR"),
    pytest.param(request(line=b"G(T / HTTP/1.1"), 400, id="3.1 invalid method"),
    pytest.param(request(line=b"GET /a b HTTP/1.1"), 400, id="3.2 space in the target"),
    pytest.param(request(line=b"GET a HTTP/1.1"), 400, id="3.2 target in no form"),
    pytest.param(request(line=b"GET * HTTP/1.1"), 400, id="3.2.4 asterisk-form not OPTIONS"),
    pytest.param(
        request(line=b"GET http://user:pw@example.com/ HTTP/1.1"),
        400,
        id="RFC 9110 4.2.4 userinfo in absolute-form",
    ),
    pytest.param(
        request(line=b"GET http:///x HTTP/1.1"), 400, id="RFC 9110 4.2.1 absolute-form without host"
    ),
    pytest.param(request(line=b"GET / HTTP/2.1"), 505, id="2.3 unsupported major version"),
    # RFC 9112 §3.2: Host.
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, id="3.2 no Host"),
    pytest.param(request(b"Host: other.example"), 400, id="3.2 two Host fields"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n", 400, id="3.2 invalid Host value"),
    # RFC 9110 §5.1, §5.5 and RFC 9112 §5: field names and values.
    pytest.param(request(b"X A: 1"), 400, id="5.1 space in a field name"),
    pytest.param(request(b": 1"), 400, id="5.1 empty field name"),
    pytest.param(request(b"X\xff: 1"), 400, id="5.1 non-token field name"),
    pytest.param(request(b":method: POST"), 400, id="5.1 pseudo-header in HTTP-1.1"),
    pytest.param(request(b"X-A: a\x00b"), 400, id="5.5 NUL in a value"),
    pytest.param(request(b"X-A: a\rb"), 400, id="5.5 CR in a value"),
    pytest.param(request(b"X-A: a\x01b"), 400, id="5.5 control character in a value"),
    pytest.param(request(b"X-A: a\x7fb"), 400, id="5.5 DEL in a value"),
    pytest.param(b" GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 400, id="2.2 leading space"),
    pytest.param(
        b"GET / HTTP/1.1\r\n X: 1\r\nHost: example.com\r\n\r\n", 400, id="5.2 fold before fields"
    ),
    # RFC 9112 §5.2: obs-fold, refused with 400 as a server outside message/http may.
    pytest.param(request(b"X-A: one", b" two", line=b"GET / HTTP/1.1"), 400, id="5.2 obs-fold SP"),
    pytest.param(
        request(b"X-A: one", b"\ttwo", line=b"GET / HTTP/1.1"), 400, id="5.2 obs-fold HTAB"
    ),
    pytest.param(
        request(b"X-A: one", b" ", line=b"GET / HTTP/1.1"),
        400,
        id="5.2 obs-fold of whitespace only",
    ),
    pytest.param(
        request(b"X-A: 1", b" Content-Length: 5", b"Content-Length: 0", body=b"hello"),
        400,
        id="5.2 obs-fold hiding a Content-Length",
    ),
    pytest.param(
        request(b"X-A: 1", b"\tTransfer-Encoding: chunked", body=b"0\r\n\r\n"),
        400,
        id="5.2 obs-fold hiding a Transfer-Encoding",
    ),
    pytest.param(
        b"GET / HTTP/1.1\nHost: example.com\nX-A: 1\n two\n\n",
        400,
        id="5.2 obs-fold with bare LF line ends",
    ),
]


@pytest.mark.parametrize(("data", "status"), REFUSED)
@pytest.mark.parametrize("chunker", [whole, one_byte], ids=["whole", "one-byte"])
def test_refused(
    data: bytes, status: int, chunker: Chunker, http1_server_factory: HTTP1ServerFactoryType
) -> None:
    """The request gets the status, ``connection: close`` and nothing after it is read."""
    sent, events = feed(data + SMUGGLED, chunker, factory=http1_server_factory)
    assert_refused(sent, events, status)


def test_refused_request_never_reaches_the_application(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    """A request refused on its head gives the application no stream at all."""
    _sent, events = feed(
        request(b"Content-Length: 1", b"Transfer-Encoding: chunked"), factory=http1_server_factory
    )
    assert [type(e) for e in events] == [ConnectionTerminated]


def test_bytes_after_a_refusal_are_ignored(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """Once refused, the connection reads nothing more (RFC 9112 §9.6)."""
    server = http1_server_factory()()
    server.bytes_received(request(b"X-A: \x01"))
    first = server.bytes_to_send()
    assert first.startswith(b"HTTP/1.1 400 ")
    assert server.has_expired()
    server.bytes_received(SMUGGLED)
    server.eof_received()
    assert server.bytes_to_send() == b""
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    assert [type(e) for e in events] == [ConnectionTerminated]


def test_truncated_chunked_body_at_eof(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """RFC 9112 §8: a body cut short by EOF resets the stream; nothing is sent."""
    sent, events = feed(CHUNKED + b"5\r\nab", eof=True, factory=http1_server_factory)
    assert sent == b""
    assert [type(e) for e in events] == [
        HeadersReceived,
        DataReceived,
        StreamResetReceived,
        ConnectionTerminated,
    ]


# -- where the two parsers used to differ: one behaviour (issue 18) ----------

#: Refused at once by both parsers, before the application sees the request.
REFUSED_ALIKE = [
    pytest.param(
        request(b"Connection: upgrade", b"Upgrade: websocket", b"Content-Length: 5", body=b"hello"),
        id="RFC 9110 7.8 a body on an Upgrade request",
    ),
    pytest.param(
        request(
            b"Connection: keep-alive, Upgrade",
            b"Upgrade: h2c",
            b"Transfer-Encoding: chunked",
            body=b"5\r\nhello\r\n0\r\n\r\n",
        ),
        id="RFC 9110 7.8 a chunked body on an Upgrade request",
    ),
    pytest.param(
        request(b"Content-Length: 5", line=b"CONNECT example.com:443 HTTP/1.1", body=b"hello"),
        id="RFC 9110 9.3.6 a body on a CONNECT request",
    ),
    pytest.param(
        request(b"Content-Length: 9223372036854775808", body=b"x"),
        id="RFC 9110 8.6 Content-Length of 2**63",
    ),
    pytest.param(
        request(b"Content-Length: 18446744073709551616", body=b"x"),
        id="RFC 9110 8.6 Content-Length of 2**64",
    ),
]


@pytest.mark.parametrize("data", REFUSED_ALIKE)
@pytest.mark.parametrize("chunker", [whole, one_byte], ids=["whole", "one-byte"])
def test_refused_alike(
    data: bytes, chunker: Chunker, http1_server_factory: HTTP1ServerFactoryType
) -> None:
    """400 at once, on either parser: no wait for a body that cannot be read one way."""
    sent, events = feed(data + SMUGGLED, chunker, factory=http1_server_factory)
    assert_refused(sent, events, 400)
    assert [type(e) for e in events] == [ConnectionTerminated]


def test_the_largest_content_length_is_taken(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """2**63 - 1 is a length like any other: the request waits for its body."""
    sent, events = feed(
        request(b"Content-Length: 9223372036854775807", body=b"x"), factory=http1_server_factory
    )
    assert sent == b""
    assert [type(e) for e in events] == [HeadersReceived, DataReceived]


@pytest.mark.parametrize("version", [b"1.2", b"1.9"])
def test_a_higher_minor_version_is_read_as_1_1(
    version: bytes, http1_server_factory: HTTP1ServerFactoryType
) -> None:
    """RFC 9110 §2.5: a message of HTTP/1.x is processed as HTTP/1.1 (h11 and llhttp alike)."""
    server = http1_server_factory()()
    server.bytes_received(b"GET /x HTTP/" + version + b"\r\nHost: example.com\r\n\r\n")
    event = server.next_event()
    assert isinstance(event, HeadersReceived)
    assert dict(event.headers)[b":path"] == b"/x"
    server.submit_headers(event.stream_id, [(b":status", b"200")])
    server.submit_data(event.stream_id, b"chunked", end_stream=True)
    assert server.bytes_to_send() == (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nchunked\r\n0\r\n\r\n"
    )
    assert server.is_available()


def test_a_body_on_an_upgrade_request_without_the_option_is_a_body(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    """``Upgrade`` without the ``upgrade`` connection option asks nothing (RFC 9110 §7.8)."""
    fields, body = only_request(
        request(b"Upgrade: websocket", b"Content-Length: 5", body=b"hello"), http1_server_factory
    )
    assert fields[b":method"] == b"POST"
    assert body == b"hello"


@pytest.mark.parametrize("size", [b"1" + b"0" * 16, b"f" * 18, b"0" + b"f" * 19])
@pytest.mark.parametrize("chunker", [whole, one_byte], ids=["whole", "one-byte"])
@pytest.mark.parametrize("data_follows", [True, False], ids=["with-data", "size-only"])
def test_chunk_size_over_the_largest_is_refused_at_once(
    size: bytes,
    chunker: Chunker,
    data_follows: bool,
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    """RFC 9112 §7.1: a chunk of 2**64 bytes or more gets 400 at once, on either parser.

    (h11 took up to 20 hex digits and waited for the body timeout.)
    """
    data = CHUNKED + size + b"\r\n" + (b"x" if data_follows else b"")
    sent, events = feed(data, chunker, factory=http1_server_factory)
    assert_refused(sent, events, 400)


def test_the_largest_chunk_size_is_taken(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """2**64 - 1 is a chunk size like any other: the request waits for its data."""
    sent, events = feed(CHUNKED + b"f" * 16 + b"\r\nx", factory=http1_server_factory)
    assert sent == b""
    assert [type(e) for e in events] == [HeadersReceived, DataReceived]


@pytest.mark.parametrize("method", [b"FOO", b"get", b"X-CUSTOM.1~"])
@pytest.mark.parametrize("chunker", [whole, one_byte], ids=["whole", "one-byte"])
def test_unknown_method_token_reaches_the_application(
    method: bytes, chunker: Chunker, http1_server_factory: HTTP1ServerFactoryType
) -> None:
    """RFC 9110 §9.1: any token is a method; the application may answer 501 (h11 and llhttp)."""
    data = request(b"Content-Length: 5", line=method + b" /x HTTP/1.1", body=b"hello")
    sent, events = feed(data, chunker, factory=http1_server_factory)
    assert sent == b""
    heads = [e for e in events if isinstance(e, HeadersReceived)]
    assert [dict(e.headers)[b":method"] for e in heads] == [method]
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == b"hello"


def test_unknown_method_after_a_request(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """The next request on a kept-alive connection may have any method too."""
    server = http1_server_factory()()
    server.bytes_received(request(line=b"GET /1 HTTP/1.1"))
    first = server.next_event()
    assert isinstance(first, HeadersReceived)
    server.submit_headers(first.stream_id, [(b":status", b"200")], end_stream=True)
    server.bytes_to_send()
    server.bytes_received(request(line=b"FOO /2 HTTP/1.1"))
    second = server.next_event()
    assert isinstance(second, HeadersReceived)
    assert dict(second.headers)[b":method"] == b"FOO"


# -- accepted, with one meaning ----------------------------------------------


def only_request(
    data: bytes, factory: HTTP1ServerFactoryType = HTTP1ServerFactory
) -> tuple[dict[bytes, bytes], bytes]:
    """Feed ``data``; return the one request's fields and its body."""
    sent, events = feed(data, factory=factory)
    assert sent == b""
    heads = [e for e in events if isinstance(e, HeadersReceived)]
    assert len(heads) == 1
    body = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert not [e for e in events if isinstance(e, (StreamResetReceived, ConnectionTerminated))]
    return dict(heads[0].headers), body


def test_obs_fold_reason(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """RFC 9112 §5.2: the 400 for an obs-fold says what was wrong, in one line."""
    sent, events = feed(
        request(b"X-A: one", b" two", line=b"GET / HTTP/1.1"), factory=http1_server_factory
    )
    assert sent.endswith(b"\r\n\r\nobsolete line folding (obs-fold) in a field\n")
    assert events == [
        ConnectionTerminated(error_code=400, message="obsolete line folding (obs-fold) in a field")
    ]


@pytest.mark.parametrize("chunker", [whole, one_byte], ids=["whole", "one-byte"])
def test_obs_fold_in_a_pipelined_request(
    chunker: Chunker, http1_server_factory: HTTP1ServerFactoryType
) -> None:
    """A folded request behind a good one is refused once the first is answered."""
    good = request(line=b"GET /first HTTP/1.1")
    folded = request(b"X-A: one", b" two", line=b"GET /second HTTP/1.1")
    server = http1_server_factory()()
    for chunk in chunker(good + folded + SMUGGLED):
        server.bytes_received(chunk)
    first = server.next_event()
    assert isinstance(first, HeadersReceived)
    assert dict(first.headers)[b":path"] == b"/first"
    server.submit_headers(first.stream_id, [(b":status", b"204")], end_stream=True)
    # The 204 ends its head and has no body; the refusal follows it.
    answered, _, refusal = server.bytes_to_send().partition(b"\r\n\r\n")
    assert answered.startswith(b"HTTP/1.1 204 ")
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    assert_refused(refusal, events, 400)


def test_spaces_inside_a_field_value_are_no_fold(
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    """Whitespace inside a value or a body that starts with SP is no obs-fold."""
    fields, body = only_request(
        request(b"X-A: one  two", b"Content-Length: 6", body=b"\n two"), http1_server_factory
    )
    assert fields[b"x-a"] == b"one  two"
    assert body == b"\n two"


def test_duplicate_identical_content_length() -> None:
    """RFC 9110 §8.6: identical Content-Length values may be merged into one."""
    fields, body = only_request(request(b"Content-Length: 3", b"Content-Length: 3", body=b"abc"))
    assert fields[b"content-length"] == b"3"
    assert body == b"abc"


def test_bare_lf_in_the_head() -> None:
    """RFC 9112 §2.2: a recipient may take a bare LF as a line end in the head."""
    fields, _ = only_request(b"GET /x HTTP/1.1\nHost: example.com\nX-A: 1\n\n")
    assert fields[b":path"] == b"/x"
    assert fields[b"x-a"] == b"1"


def test_chunk_extensions_are_ignored(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """RFC 9112 §7.1.1: unknown chunk extensions are ignored."""
    _, body = only_request(CHUNKED + b"3;name=value\r\nabc\r\n0\r\n\r\n", http1_server_factory)
    assert body == b"abc"


def test_absolute_form(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """RFC 9112 §3.2.2: the target's authority wins over Host; the path is split off."""
    fields, _ = only_request(
        b"GET HTTP://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: other.example\r\n\r\n",
        http1_server_factory,
    )
    assert fields[b":scheme"] == b"http"
    assert fields[b":authority"] == b"example.com:8080"
    assert fields[b":path"] == b"/a/b?c=d"
    assert b"host" not in fields


def test_absolute_form_without_a_path(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """RFC 9112 §3.2.2: an empty path is ``/``."""
    fields, _ = only_request(
        b"GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", http1_server_factory
    )
    assert fields[b":scheme"] == b"https"
    assert fields[b":path"] == b"/"


def test_asterisk_form_for_options(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """RFC 9112 §3.2.4: ``OPTIONS *`` is a request to the server itself."""
    fields, _ = only_request(request(line=b"OPTIONS * HTTP/1.1"), http1_server_factory)
    assert fields[b":path"] == b"*"


def test_ipv6_host(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """RFC 9112 §3.2, RFC 3986 §3.2.2: an IP literal is a valid Host."""
    fields, _ = only_request(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", http1_server_factory)
    assert fields[b":authority"] == b"[::1]:8080"


def test_connect_is_passed_on(http1_server_factory: HTTP1ServerFactoryType) -> None:
    """RFC 9110 §9.3.6: the protocol passes CONNECT on; the server layer decides."""
    sent, events = feed(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        factory=http1_server_factory,
    )
    assert sent == b""
    assert events == [
        HeadersReceived(
            stream_id=1,
            headers=[(b":method", b"CONNECT"), (b":authority", b"example.com:443")],
            end_stream=False,
        )
    ]


# -- what llhttp refuses and h11 takes: strict, and read one way either way --


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            request(b"Content-Length: 3", b"Content-Length: 3", body=b"abc"),
            id="RFC 9110 8.6 duplicate identical Content-Length",
        ),
        pytest.param(b"GET /x HTTP/1.1\nHost: example.com\nX-A: 1\n\n", id="2.2 bare LF"),
    ],
)
def test_httptools_refuses_what_h11_may_take(data: bytes) -> None:
    """The leniencies h11 has (RFC 9110 §8.6, RFC 9112 §2.2 "may") llhttp lacks: 400."""
    from hface.protocols.http1._httptools import HTTPToolsServerFactory

    sent, events = feed(data + SMUGGLED, factory=HTTPToolsServerFactory)
    assert_refused(sent, events, 400)
