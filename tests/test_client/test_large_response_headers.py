"""A response whose header block is far over the client's limit fails promptly (issue 8).

Tiny servers on loopback answer every request with one huge ``x-big``
field: on HTTP/2 a header block pre-encoded with hpack (without Huffman
coding, so the server spends no time) and cut into HEADERS and
CONTINUATION frames, on HTTP/1.1 a raw head, on HTTP/3 hface's own
server (QPACK encodes in C). The client, whose read
timeout is far longer than the test waits, must fail with a
:class:`~hface.client.errors.ClientError` naming the problem, well before
its timeout. Also: hface's own HTTP/2 encoder takes a 1 MB header in
linear time (hpack's took minutes, which looked like a hung server).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events
import hpack
import pytest
from anyio.streams.tls import TLSListener
from hyperframe.frame import ContinuationFrame, HeadersFrame

from hface.client import Client, ClientProtocol, Request, errors
from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.protocols.http2 import HTTP2ClientFactory, HTTP2ServerFactory
from hface.server import ASGIServer, Endpoint, ServerProtocol
from tests.helpers.certs import TLSFiles
from tests.test_server.conftest import running

#: The client's read timeout: a test that waits this long has failed.
READ_TIMEOUT: Final = 30.0
#: How long a failure may take (seconds); far under the read timeout.
PROMPT: Final = 5.0
#: The header sizes tried, against the client's default limit of 64 KiB.
SIZES: Final = [70_000, 300_000, 1_000_000]


def big_value(size: int) -> bytes:
    """``size`` bytes of header value that no dynamic table shortens."""
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789"
    return bytes(alphabet[(index * 7 + index // 36) % 36] for index in range(size))


def header_frames(stream_id: int, size: int, frame_size: int) -> bytes:
    """A response header block with an ``x-big`` field, as HEADERS + CONTINUATION frames."""
    block = hpack.Encoder().encode([(b":status", b"200"), (b"x-big", big_value(size))], False)
    chunks = [block[start : start + frame_size] for start in range(0, len(block), frame_size)]
    first = HeadersFrame(stream_id, data=chunks[0])
    first.flags.add("END_STREAM")
    frames = [first] + [ContinuationFrame(stream_id, data=chunk) for chunk in chunks[1:]]
    frames[-1].flags.add("END_HEADERS")
    return b"".join(frame.serialize() for frame in frames)


@asynccontextmanager
async def h2_server(tls_files: TLSFiles, size: int, frame_size: int) -> AsyncIterator[str]:
    """An HTTP/2 server (h2 for the handshake) that answers with a huge header block."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.server_cert_file, tls_files.server_key_file)
    context.set_alpn_protocols(["h2"])

    async def handle(stream: anyio.abc.ByteStream) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        conn = h2.connection.H2Connection(config)
        conn.initiate_connection()
        async with stream:
            await stream.send(conn.data_to_send())
            while True:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                reply = b""
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        reply += header_frames(event.stream_id, size, frame_size)
                with anyio.move_on_after(PROMPT):
                    await stream.send(conn.data_to_send() + reply)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as task_group:
        tls_listener = TLSListener(listener, context, standard_compatible=False)
        task_group.start_soon(tls_listener.serve, handle)
        yield f"https://localhost:{port}/"
        task_group.cancel_scope.cancel()


@asynccontextmanager
async def h1_server(size: int) -> AsyncIterator[str]:
    """An HTTP/1.1 server (plain TCP) that answers with a huge head."""
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-big: " + big_value(size) + b"\r\n\r\nok"

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            with anyio.move_on_after(PROMPT):
                await stream.send(head)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handle)
        yield f"http://127.0.0.1:{port}/"
        task_group.cancel_scope.cancel()


async def fetch_failure(client: Client, url: str) -> errors.ClientError:
    """GET ``url``; return the ClientError it fails with, checking it came promptly."""
    started = time.monotonic()
    with anyio.fail_after(PROMPT):
        async with client.session() as session:
            with pytest.raises(errors.ClientError) as info:
                await session.dispatch(Request("GET", url))
    assert time.monotonic() - started < PROMPT
    assert info.value.origin in url
    return info.value


@pytest.mark.anyio
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("frame_size", [16_384, 65_536])
async def test_http2_huge_response_header_block_fails_promptly(
    size: int, frame_size: int, tls_files: TLSFiles, client_tls_config: ClientTLSConfig
) -> None:
    """The connection ends with GOAWAY and the request fails with the reason, at once.

    16 KiB frames make the block too many CONTINUATION frames (past 70 KB),
    64 KiB frames too many bytes; at 70 KB either way hpack's decoder
    reaches the 64 KiB list limit. None of it waits for the read timeout.
    """
    client = Client(
        tls_config=client_tls_config, protocol=ClientProtocol.HTTP2, read_timeout=READ_TIMEOUT
    )
    async with h2_server(tls_files, size, frame_size) as url:
        failure = await fetch_failure(client, url)
    message = str(failure)
    assert "header" in message.lower(), message
    assert isinstance(failure, errors.ConnectionLostError | errors.RemoteProtocolError)


@pytest.mark.anyio
async def test_http2_header_block_under_a_raised_limit_is_read(
    tls_files: TLSFiles, client_tls_config: ClientTLSConfig
) -> None:
    """The same server's 300 KB block is read whole by a client that allows it."""
    client = Client(
        tls_config=client_tls_config, protocol=ClientProtocol.HTTP2, read_timeout=READ_TIMEOUT
    )
    client.http2_factory = HTTP2ClientFactory(max_header_list_size=400_000)
    async with h2_server(tls_files, 300_000, 16_384) as url:
        with anyio.fail_after(PROMPT):
            async with client.session() as session:
                response = await session.dispatch(Request("GET", url))
    assert response.status == 200
    assert response.get_header("x-big") == big_value(300_000)


@pytest.mark.anyio
@pytest.mark.parametrize("size", SIZES)
async def test_http1_huge_response_head_fails_promptly(size: int) -> None:
    """A head over ``max_response_header_size`` fails as an invalid response, at once."""
    client = Client(protocol=ClientProtocol.HTTP1, read_timeout=READ_TIMEOUT)
    async with h1_server(size) as url:
        failure = await fetch_failure(client, url)
    assert isinstance(failure, errors.RemoteProtocolError), repr(failure)


@pytest.mark.parametrize("size", [300_000, 1_000_000])
def test_http2_encoder_takes_a_huge_header_in_linear_time(size: int) -> None:
    """hface's HTTP/2 side encodes a huge field at once (hpack's own encoder is quadratic)."""
    client = HTTP2ClientFactory(max_header_list_size=2_000_000)()
    server = HTTP2ServerFactory()()
    server.bytes_received(client.bytes_to_send())
    stream_id = client.get_available_stream_id()
    request = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")]
    client.submit_headers(stream_id, [*request, (b":authority", b"a")], end_stream=True)
    server.bytes_received(client.bytes_to_send())
    started = time.process_time()
    server.submit_headers(stream_id, [(b":status", b"200"), (b"x-big", b"b" * size)], True)
    sent = server.bytes_to_send()
    assert time.process_time() - started < 2.0
    # Huffman coding of "b" is 6 bits (RFC 7541 Appendix B).
    assert size * 6 // 8 < len(sent) < size


async def big_header_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers ``GET /N`` with N bytes of ``x-big-I`` fields (pylsqpack takes < 64 KiB each)."""
    if scope["type"] != "http":
        return
    size = int(scope["path"].strip("/"))
    value = big_value(size)
    headers = [
        (b"x-big-%d" % index, value[start : start + 50_000])
        for index, start in enumerate(range(0, size, 50_000))
    ]
    headers.append((b"content-length", b"2"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.anyio
@pytest.mark.parametrize("size", SIZES)
async def test_http3_huge_response_header_section_fails_promptly(
    size: int, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """The client resets the stream (H3_EXCESSIVE_LOAD) and the request fails at once.

    The client advertised SETTINGS_MAX_FIELD_SECTION_SIZE = its
    ``max_response_header_size`` (RFC 9114 §7.2.4.1); the connection goes on.
    """
    server = ASGIServer(big_header_app)
    server.tls_config = server_tls_config
    server.protocol = ServerProtocol.HTTP3
    server.access_log = False
    server.graceful_timeout = 0.5
    client = Client(
        tls_config=client_tls_config, protocol=ClientProtocol.HTTP3, read_timeout=READ_TIMEOUT
    )
    async with running(server, [Endpoint("https", "127.0.0.1", 0)]) as address:
        url = f"https://localhost:{address[1]}"
        started = time.monotonic()
        with anyio.fail_after(PROMPT):
            async with client.session() as session:
                with pytest.raises(errors.RemoteProtocolError) as info:
                    await session.dispatch(Request("GET", f"{url}/{size}"))
                response = await session.dispatch(Request("GET", f"{url}/100"))
                assert session.connections_opened == 1
        assert time.monotonic() - started < PROMPT
    assert info.value.error_code == 0x107  # H3_EXCESSIVE_LOAD
    assert "max_response_header_size" in str(info.value)
    assert response.status == 200
