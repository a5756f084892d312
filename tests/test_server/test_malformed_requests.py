"""Malformed requests and HTTP/2 floods against a real ASGIServer on loopback.

Raw sockets send what no client library would: request smuggling vectors
over HTTP/1.1, malformed header blocks and floods over HTTP/2 (prior
knowledge, cleartext). Each gets a 400 or the version's error, the
connection closes, the application never sees the request, and nothing is
logged at ERROR or with a traceback (the protocol-level details are in
tests/test_protocols/test_http1_malformed.py and test_http2_conformance.py).
"""

from __future__ import annotations

import logging
import struct
from contextlib import suppress
from typing import Any

import anyio
import pytest
from hpack import Encoder
from hyperframe.frame import Frame, GoAwayFrame, RstStreamFrame

from hface.common import AddressType, ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.server import ASGIServer, Endpoint
from tests.test_server.conftest import client, read_response, running, send_request

pytestmark = pytest.mark.anyio

Scope = dict[str, Any]

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUEST: HeadersType = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]


class App:
    """Answers 200 with the path, and remembers the scopes it saw."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.scopes.append(scope)
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Records at ERROR or above, or carrying a traceback at WARNING or above."""
    return [
        record
        for record in caplog.records
        if record.levelno >= logging.ERROR
        or (record.levelno >= logging.WARNING and record.exc_info)
    ]


async def exchange(address: AddressType, data: bytes) -> tuple[bytes, bool]:
    """Send ``data`` on a new connection; return all that came back and whether it closed."""
    answer = b""
    closed = False
    async with await anyio.connect_tcp(*address) as stream:
        await stream.send(data)
        with anyio.move_on_after(5):
            try:
                while True:
                    answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                closed = True
    return answer, closed


def h2_frame(type_: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """A raw HTTP/2 frame (RFC 9113 §4.1)."""
    header = struct.pack(">I", len(payload))[1:] + bytes([type_, flags])
    return header + struct.pack(">I", stream_id) + payload


def parse_frames(data: bytes) -> list[Frame]:
    """The frames in ``data``; a trailing partial frame is left out."""
    frames = []
    view = memoryview(data)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        if len(view) < 9 + length:
            break
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


#: (name, request, status): each vector is followed by a smuggled request.
SMUGGLING: list[tuple[str, bytes, int]] = [
    (
        "CL.TE",
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "TE.CL",
        b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 4\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "duplicate Content-Length",
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nContent-Length: 48\r\n\r\n",
        400,
    ),
    (
        "bare LF chunk lines",
        b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\n0\n\n",
        400,
    ),
    (
        "invalid chunk size",
        b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n-0\r\n\r\n",
        400,
    ),
    (
        "unknown transfer coding",
        b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        501,
    ),
    (
        "invalid field name",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX\x01Y: 1\r\n\r\n",
        400,
    ),
    (
        "control character in a value",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: \x1b[31m\r\n\r\n",
        400,
    ),
    (
        "invalid target",
        b"GET nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n",
        400,
    ),
    (
        "invalid Host",
        b"GET / HTTP/1.1\r\nHost: local host\r\n\r\n",
        400,
    ),
]


async def test_http1_smuggling_vectors(caplog: pytest.LogCaptureFixture) -> None:
    """Each vector gets its status and a closed connection; the smuggled request is never read."""
    caplog.set_level(logging.DEBUG, logger="hface")
    app = App()
    server = ASGIServer(app)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        for name, data, status in SMUGGLING:
            answer, closed = await exchange(address, data + SMUGGLED)
            assert answer.startswith(b"HTTP/1.1 %d " % status), (name, answer)
            assert answer.count(b"HTTP/1.1 ") == 1, name
            assert b"connection: close" in answer.lower(), name
            assert closed, name
    # Requests refused on their head never reach the application; the two
    # with a broken chunked body may have started (and then saw the client
    # go away). The smuggled request never ran.
    assert [(scope["method"], scope["path"]) for scope in app.scopes] in (
        [],
        [("POST", "/")],
        [("POST", "/"), ("POST", "/")],
    )
    assert not problems(caplog), problems(caplog)


async def test_http1_absolute_form_target(caplog: pytest.LogCaptureFixture) -> None:
    """RFC 9112 §3.2.2: the application sees the path and the target's authority."""
    app = App()
    server = ASGIServer(app)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        answer, _ = await exchange(
            address,
            b"GET http://example.com/x?y=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
        )
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"/x")
    (scope,) = app.scopes
    assert (scope["path"], scope["query_string"]) == ("/x", b"y=1")
    assert [b"host", b"example.com"] in scope["headers"]
    assert not problems(caplog), problems(caplog)


async def test_http1_connect_to_an_origin_server_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RFC 9110 §9.3.6: an ASGIServer is no proxy; CONNECT must not reach the app."""
    app = App()
    server = ASGIServer(app)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        answer, closed = await exchange(
            address, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        )
    assert app.scopes == []
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 501 Not Implemented\r\n"), answer
    assert b"connection: close" in head.lower()
    assert body == b"CONNECT is not supported: this is an origin server, not a proxy\n"
    assert closed  # and no tunnel was made of the connection
    assert not problems(caplog), problems(caplog)


@pytest.mark.parametrize(
    ("http_version", "extended"),
    [("1.1", False), ("2", False), ("2", True), ("3", False), ("3", True)],
    ids=["http1", "http2", "http2-extended", "http3", "http3-extended"],
)
async def test_connect_never_reaches_the_application(
    http_version: str,
    extended: bool,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """CONNECT, and extended CONNECT (RFC 8441, RFC 9220) but for WebSocket, get 501."""
    app = App()
    server = ASGIServer(app)
    server.tls_config = server_tls_config
    if extended:
        request: HeadersType = [
            (b":method", b"CONNECT"),
            (b":protocol", b"connect-udp"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/chat"),
        ]
    else:
        request = [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
    async with (
        running(server) as address,
        client(http_version, address, client_tls_config) as connection,
    ):
        stream_id = connection.get_available_stream_id()
        await connection.send_headers(stream_id, request)
        with anyio.fail_after(5):
            response = await read_response(connection, stream_id)
        # The server serves on: the next request on the connection (HTTP/2,
        # HTTP/3) runs the application as usual.
        if connection.multiplexed:
            with anyio.fail_after(5):
                after = await read_response(connection, await send_request(connection))
            assert (after.status, after.body) == (200, b"/")
    assert response.status == 501
    assert response.header(b"content-type") == b"text/plain; charset=utf-8"
    what = b"extended CONNECT" if extended else b"CONNECT is not supported"
    assert response.body.startswith(what)
    assert [scope["method"] for scope in app.scopes] == (["GET"] if http_version != "1.1" else [])
    assert not problems(caplog), problems(caplog)


async def test_http3_malformed_request_resets_only_its_stream(
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RFC 9114 §4.1.2: a body that contradicts its content-length is a stream error.

    The stream is reset with H3_MESSAGE_ERROR and the next request on the
    same connection is answered.
    """
    bodies: list[bytes] = []

    async def application(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                bodies.append(b"disconnected")
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    server = ASGIServer(application)
    server.tls_config = server_tls_config
    async with (
        running(server) as address,
        client("3", address, client_tls_config) as connection,
    ):
        stream_id = connection.get_available_stream_id()
        lying = [*REQUEST, (b"content-length", b"5")]
        lying[0] = (b":method", b"POST")
        await connection.send_headers(stream_id, lying)
        await connection.send_data(stream_id, b"x", end_stream=True)
        with anyio.fail_after(5):
            response = await read_response(connection, stream_id)
        assert response.reset is not None
        assert response.reset.error_code == 0x10E  # H3_MESSAGE_ERROR
        with anyio.fail_after(5):
            after = await read_response(connection, await send_request(connection, path=b"/next"))
        assert (after.status, after.body) == (200, b"/next")
    assert b"x" not in bodies  # the application never took the lie for a body
    assert not problems(caplog), problems(caplog)


#: (name, request headers) of malformed HTTP/2 requests (RFC 9113 §8.2, §8.3).
H2_MALFORMED: list[tuple[str, HeadersType]] = [
    ("upper-case name", [*REQUEST, (b"X-Upper", b"1")]),
    ("no :method", REQUEST[1:]),
    ("duplicate :method", [REQUEST[0], *REQUEST]),
    ("connection-specific field", [*REQUEST, (b"connection", b"close")]),
]


async def test_http2_malformed_requests(caplog: pytest.LogCaptureFixture) -> None:
    """RFC 9113 §8.1.1: PROTOCOL_ERROR (stream or connection), never the application."""
    caplog.set_level(logging.DEBUG, logger="hface")
    app = App()
    server = ASGIServer(app)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        for name, headers in H2_MALFORMED:
            block = Encoder().encode(list(headers))
            data = PREFACE + h2_frame(0x4, 0, 0) + h2_frame(0x1, 0x5, 1, block)
            answer, _ = await exchange(address, data)
            frames = parse_frames(answer)
            codes = [f.error_code for f in frames if isinstance(f, (GoAwayFrame, RstStreamFrame))]
            assert codes[:1] == [0x1], (name, frames)
    assert app.scopes == []
    assert not problems(caplog), problems(caplog)


async def test_http2_rapid_reset_flood(caplog: pytest.LogCaptureFixture) -> None:
    """RFC 9113 §10.5 (CVE-2023-44487): the server answers ENHANCE_YOUR_CALM and closes."""
    caplog.set_level(logging.INFO, logger="hface")
    app = App()
    server = ASGIServer(app)
    encoder = Encoder()
    pairs = []
    for index in range(20_000):
        stream_id = 2 * index + 1
        block = encoder.encode(REQUEST)
        pairs.append(h2_frame(0x1, 0x4, stream_id, block))  # HEADERS, END_HEADERS
        pairs.append(h2_frame(0x3, 0, stream_id, struct.pack(">I", 0x8)))  # RST_STREAM(CANCEL)
    flood = PREFACE + h2_frame(0x4, 0, 0) + b"".join(pairs)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        answer = b""
        async with await anyio.connect_tcp(*address) as stream:
            with anyio.fail_after(10):
                # The server may close while we are still flooding.
                with suppress(anyio.BrokenResourceError, OSError):
                    await stream.send(flood)
                try:
                    while True:
                        answer += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    pass
    goaways = [f for f in parse_frames(answer) if isinstance(f, GoAwayFrame)]
    assert [g.error_code for g in goaways] == [0xB]
    # The application ran for a bounded number of streams, not 20,000.
    assert len(app.scopes) <= 300
    assert not problems(caplog), problems(caplog)
