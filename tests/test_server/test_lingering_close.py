"""A server closing a TCP connection the client still writes to lingers (RFC 9112 §9.6).

Closing a socket with unread bytes makes the kernel answer with a TCP RST,
and the client's kernel then drops what it had received but not yet
read: the 413 or 400 the server wrote last, or its GOAWAY. Each client
here writes more than the server reads before it answers (enough to fill
the server's receive buffer), and only reads once the server has had time
to close: without the lingering close the read ends in a reset, with it the
whole answer comes, then the end of the stream. The linger is bounded in
time (a client that drips bytes cannot hold it open) and in bytes.
"""

from __future__ import annotations

import contextlib
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
import pytest
from anyio.streams.tls import TLSStream

from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig
from hface.connections import DEFAULT_LINGER_TIMEOUT
from hface.server import ASGIServer, Endpoint, ServerProtocol
from tests.helpers.peers import describe, needs_peer, require_peer, run_peer_in_thread
from tests.test_server.conftest import running

pytestmark = pytest.mark.anyio

#: How long any bounded wait here may take before it is a failure.
PATIENCE: Final = 5.0
#: Seconds a client writes before it reads: the server has answered and closed by then.
SETTLE: Final = 0.3
#: The server's limit on a request body.
MAX_BODY: Final = 1024
#: Bytes of body a client sends at once: more than the server's receive
#: buffer and the first read together, less than the linger's byte budget.
BODY: Final = 512 * 1024

_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY = 0x1, 0x3, 0x4, 0x6, 0x7
_END_STREAM, _END_HEADERS = 0x1, 0x4
_ENHANCE_YOUR_CALM: Final = 0xB


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, then answers 200 (never reached over the body limit)."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def make_server(tls_config: ServerTLSConfig, **limits: int) -> ASGIServer:
    """An ASGIServer with a small body limit (and ``limits``) on TCP only."""
    server = ASGIServer(app)
    server.tls_config = tls_config
    server.protocol = ServerProtocol.TCP
    server.access_log = False
    server.graceful_timeout = 0.5
    server.limits.max_body_size = MAX_BODY
    for name, value in limits.items():
        setattr(server.limits, name, value)
    return server


@asynccontextmanager
async def connect(
    address: AddressType, tls_config: ClientTLSConfig | None, alpn: str = "http/1.1"
) -> AsyncIterator[anyio.abc.ByteStream]:
    """A raw TCP connection to ``address``, over TLS with ``tls_config``."""
    tcp = await anyio.connect_tcp(*address)
    if tls_config is None:
        async with tcp:
            yield tcp
        return
    context = ssl.create_default_context(cafile=tls_config.cafile)
    context.set_alpn_protocols([alpn])
    stream = await TLSStream.wrap(
        tcp, ssl_context=context, hostname="localhost", standard_compatible=False
    )
    async with stream:
        yield stream


async def write_then_read(stream: anyio.abc.ByteStream, data: bytes) -> tuple[bytes, str]:
    """Send ``data`` (in a task of its own), wait :data:`SETTLE` s, then read to the end.

    :returns: all that was read, and how the reading ended: ``"eof"``,
        ``"reset"`` or ``"timeout"``.
    """
    answer = b""
    ending = "timeout"
    async with anyio.create_task_group() as task_group:

        async def write() -> None:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(data)

        task_group.start_soon(write)
        await anyio.sleep(SETTLE)
        with anyio.move_on_after(PATIENCE):
            try:
                while True:
                    answer += await stream.receive()
            except anyio.EndOfStream:
                ending = "eof"
            except anyio.BrokenResourceError:
                ending = "reset"
        task_group.cancel_scope.cancel()
    return answer, ending


def parse_response(answer: bytes) -> tuple[int, bytes]:
    """The status and the body of an HTTP/1.1 response with a content-length."""
    head, _, rest = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    fields = dict(line.lower().split(b": ", 1) for line in lines[1:])
    length = int(fields[b"content-length"])
    assert len(rest) == length, answer
    return status, rest


def request_head(content_length: int) -> bytes:
    """An HTTP/1.1 POST head declaring ``content_length`` bytes of body."""
    return (
        b"POST /upload HTTP/1.1\r\nhost: localhost\r\ncontent-length: %d\r\n\r\n" % content_length
    )


# -- HTTP/1.1 -------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_413_reaches_a_client_still_uploading(
    scheme: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    server = make_server(server_tls_config)
    tls = client_tls_config if scheme == "https" else None
    endpoints = [Endpoint(scheme, "127.0.0.1", 0)]
    async with running(server, endpoints) as address, connect(address, tls) as stream:
        data = request_head(100 * BODY) + b"x" * BODY
        answer, ending = await write_then_read(stream, data)
    assert answer.startswith(b"HTTP/1.1 413 "), (answer[:200], ending)
    status, body = parse_response(answer)
    assert status == 413
    assert b"over 1024 bytes" in body
    assert ending == "eof"


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_400_reaches_a_client_that_sent_more_after_a_bad_request(
    scheme: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    server = make_server(server_tls_config)
    tls = client_tls_config if scheme == "https" else None
    endpoints = [Endpoint(scheme, "127.0.0.1", 0)]
    async with running(server, endpoints) as address, connect(address, tls) as stream:
        bad = b"GET / HTTP/1.1\r\nhost: localhost\r\nno colon here\r\n\r\n"
        answer, ending = await write_then_read(stream, bad + b"x" * BODY)
    assert answer.startswith(b"HTTP/1.1 400 "), (answer[:200], ending)
    assert parse_response(answer)[0] == 400
    assert ending == "eof"


async def test_a_client_dripping_bytes_cannot_hold_a_lingering_connection(
    server_tls_config: ServerTLSConfig,
) -> None:
    """A byte every 50 ms after the 413: the server closes after its linger time anyway."""
    server = make_server(server_tls_config)
    endpoints = [Endpoint("http", "127.0.0.1", 0)]
    async with running(server, endpoints) as address, connect(address, None) as stream:
        await stream.send(request_head(100 * BODY) + b"x" * 100)
        answer = b""
        with anyio.fail_after(PATIENCE):
            while b"over 1024 bytes" not in answer:
                answer += await stream.receive()
        start = anyio.current_time()
        closed = False
        with anyio.fail_after(DEFAULT_LINGER_TIMEOUT + PATIENCE):
            while not closed:
                try:
                    await stream.send(b"x")
                except (anyio.BrokenResourceError, OSError):
                    closed = True  # reset: the server closed, unread bytes and all
                await anyio.sleep(0.05)
        took = anyio.current_time() - start
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert DEFAULT_LINGER_TIMEOUT * 0.8 <= took < DEFAULT_LINGER_TIMEOUT + 1.0


async def test_a_lingering_connection_does_not_hold_up_shutdown(
    server_tls_config: ServerTLSConfig,
) -> None:
    """The server stops at once, its connection still lingering for a dripping client."""
    server = make_server(server_tls_config)
    server.handle_signals = False
    endpoints = [Endpoint("http", "127.0.0.1", 0)]

    async def drip(stream: anyio.abc.ByteStream) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, OSError):
            for _ in range(100):  # 10 s at most
                await stream.send(b"x")
                await anyio.sleep(0.1)

    # The client outlives the server, and drips all along its shutdown.
    async with contextlib.AsyncExitStack() as stack, anyio.create_task_group() as clients:
        async with anyio.create_task_group() as task_group:
            addresses = await task_group.start(server.run, endpoints)
            stream = await stack.enter_async_context(connect(addresses[0], None))
            await stream.send(request_head(100 * BODY) + b"x" * 100)
            answer = b""
            with anyio.fail_after(PATIENCE):
                while b"over 1024 bytes" not in answer:
                    answer += await stream.receive()
            clients.start_soon(drip, stream)
            await anyio.sleep(0.3)  # the connection lingers now, reading the drips
            start = anyio.current_time()
            task_group.cancel_scope.cancel()
        took = anyio.current_time() - start
        clients.cancel_scope.cancel()
    assert took < DEFAULT_LINGER_TIMEOUT / 2


async def test_a_client_past_the_byte_budget_is_closed_early(
    server_tls_config: ServerTLSConfig,
) -> None:
    """Bytes sent as fast as they go: the linger ends at 1 MiB, long before its time."""
    server = make_server(server_tls_config)
    endpoints = [Endpoint("http", "127.0.0.1", 0)]
    async with running(server, endpoints) as address, connect(address, None) as stream:
        await stream.send(request_head(1000 * BODY))
        start = anyio.current_time()
        with anyio.fail_after(DEFAULT_LINGER_TIMEOUT):
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                for _ in range(1000):  # 64 MiB at most
                    await stream.send(b"x" * 65536)
        took = anyio.current_time() - start
    assert took < DEFAULT_LINGER_TIMEOUT / 2


async def test_an_idle_connection_closes_at_once(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """A keep-alive connection timed out between requests does not linger.

    Over TLS, which cannot half-close: the client sees the end only once
    the server has closed the connection, after any linger.
    """
    server = make_server(server_tls_config)
    server.timeouts.keep_alive = 0.2
    endpoints = [Endpoint("https", "127.0.0.1", 0)]
    async with (
        running(server, endpoints) as address,
        connect(address, client_tls_config) as stream,
    ):
        await stream.send(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        answer = b""
        with anyio.fail_after(PATIENCE):
            while not answer.endswith(b"ok"):
                answer += await stream.receive()
            start = anyio.current_time()
            with contextlib.suppress(anyio.EndOfStream):
                await stream.receive()
        took = anyio.current_time() - start
    # The keep-alive timeout, not it and then half a second of lingering.
    assert took < 0.6


@needs_peer("curl")
async def test_curl_uploading_too_much_gets_the_413(
    tmp_path: Path, server_tls_config: ServerTLSConfig
) -> None:
    """``curl --data-binary @big``, without ``Expect: 100-continue``: exit 0, with the 413."""
    curl = require_peer("curl")
    big = tmp_path / "big"
    big.write_bytes(b"x" * (8 * 1024 * 1024))
    server = make_server(server_tls_config)
    endpoints = [Endpoint("http", "127.0.0.1", 0)]
    async with running(server, endpoints) as address:
        url = f"http://{address[0]}:{address[1]}/upload"
        argv = [curl, "-sS", "-H", "Expect:", "--data-binary", f"@{big}", "-w", "%{http_code}", url]
        result: subprocess.CompletedProcess[str] = await run_peer_in_thread(argv)
    assert result.returncode == 0, describe(result)
    assert result.stdout.endswith("413"), describe(result)
    assert "over 1024 bytes" in result.stdout


# -- HTTP/2 ---------------------------------------------------------------------


def frame(type_: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """An HTTP/2 frame written by hand (RFC 9113 §4.1)."""
    header = struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", type_, flags, stream_id)
    return header + payload


def find_goaway(data: bytes) -> int | None:
    """The error code of the first GOAWAY frame in ``data`` (frames from the start)."""
    while len(data) >= 9:
        length, type_ = int.from_bytes(data[:3], "big"), data[3]
        if len(data) < 9 + length:
            return None
        if type_ == _GOAWAY:
            return int.from_bytes(data[9 + 4 : 9 + 8], "big")
        data = data[9 + length :]
    return None


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_http2_goaway_for_a_flood_reaches_a_client_still_writing(
    scheme: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """Rapid reset over the budget, then more frames: the client reads GOAWAY(ENHANCE_YOUR_CALM)."""
    from hpack import Encoder

    server = make_server(server_tls_config, max_reset_streams=5)
    server.protocol = ServerProtocol.HTTP2
    tls = client_tls_config if scheme == "https" else None
    encoder = Encoder()
    request = [(b":method", b"GET"), (b":scheme", scheme.encode())]
    request += [(b":authority", b"localhost"), (b":path", b"/")]
    cancel = struct.pack(">I", 0x8)
    flood = [
        frame(_HEADERS, _END_HEADERS | _END_STREAM, stream_id, encoder.encode(request))
        + frame(_RST_STREAM, 0, stream_id, cancel)
        for stream_id in range(1, 201, 2)
    ]
    # Then frames the server will never read: PINGs the size of the body above.
    filler = frame(_PING, 0, 0, b"12345678") * (BODY // 17)
    endpoints = [Endpoint(scheme, "127.0.0.1", 0)]
    async with running(server, endpoints) as address, connect(address, tls, "h2") as stream:
        data = _PREFACE + frame(_SETTINGS, 0, 0) + b"".join(flood) + filler
        answer, ending = await write_then_read(stream, data)
    assert find_goaway(answer) == _ENHANCE_YOUR_CALM, (len(answer), ending)
    assert ending == "eof"
