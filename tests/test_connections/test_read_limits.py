"""Reads that stop while a connection holds too much: HTTP/1.1's limit, never HTTP/2's.

HTTP/1.1 has no flow control, so a connection stops reading while its
streams hold more than ``max_buffered_data`` bytes nobody has read;
HTTP/2's windows bound what it holds, and its reads never stop (they carry
the other streams and the frames that give credit back). Real sockets on
loopback, asyncio and Trio; each test is bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import contextlib

import anyio
import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.connections import (
    ConnectionOptions,
    HTTPConnection,
    HTTPOverTCPListener,
    HTTPOverTCPOpener,
    HTTPStream,
)
from hface.errors import LocalProtocolError, TransportError
from hface.protocols import PriorKnowledgeHTTPFactory
from hface.protocols.http1 import HTTP1ServerFactory
from hface.protocols.http2 import HTTP2ClientFactory, HTTP2ServerFactory

from .conftest import connect, create_listener, read_response, request, serving_on

pytestmark = pytest.mark.anyio


async def test_http1_stops_reading_while_its_streams_hold_too_much(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    limit = 256 * 1024
    held: list[int] = []
    release = anyio.Event()

    async def handler(connection: HTTPConnection) -> None:
        stream = await connection.accept_stream()
        assert stream is not None
        await release.wait()
        held.append(stream.buffered_data)
        held.append(connection.buffered_data)
        await stream.send_headers([(b":status", b"200"), (b"content-length", b"0")])

    sent = 0
    total = 32 * 1024 * 1024

    async def upload(stream: HTTPStream) -> None:
        nonlocal sent
        chunk = b"u" * 65536
        with contextlib.suppress(LocalProtocolError, TransportError):  # the server closed
            while sent < total:
                await stream.send_data(chunk)
                sent += len(chunk)

    options = ConnectionOptions(max_buffered_data=limit)
    with anyio.fail_after(30):
        listener = await create_listener("1.1", server_tls_config, connection_options=options)
        async with serving_on(listener, handler) as address:
            async with await connect("1.1", address, client_tls_config) as connection:
                stream = connection.open_stream()
                await stream.send_headers(request(b"/", b"PUT", total))
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(upload, stream)
                    last = -1
                    while sent != last:  # until the upload stalls
                        last = sent
                        await anyio.sleep(0.5)
                    release.set()
                    with anyio.move_on_after(5):
                        await read_response(stream)
                    task_group.cancel_scope.cancel()
    assert limit <= held[0] <= limit + 256 * 1024, held  # one read beyond the limit, at most
    assert held[1] == held[0]
    assert sent < total // 2, sent


async def test_h2c_prior_knowledge_reads_on_past_http1s_limit(
    client_tls_config: ClientTLSConfig,
) -> None:
    """A cleartext port decides HTTP/2 by its first bytes; its limit must be HTTP/2's then.

    One stream holds 128 KiB its handler never reads (within HTTP/2's
    window, four times HTTP/1.1's limit); a second stream must still be
    read and answered.
    """
    limit = 32 * 1024
    held = 128 * 1024
    holding = anyio.Event()

    async def handler(connection: HTTPConnection) -> None:
        first = await connection.accept_stream()
        assert first is not None
        # Polled: nothing signals data held, and reading it would release it.
        while first.buffered_data < held:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        holding.set()
        second = await connection.accept_stream()
        assert second is not None
        await second.send_headers([(b":status", b"204")], end_stream=True)
        await anyio.sleep_forever()

    factory = PriorKnowledgeHTTPFactory(HTTP1ServerFactory(), HTTP2ServerFactory())
    options = ConnectionOptions(max_buffered_data=limit)
    opener = HTTPOverTCPOpener(HTTP2ClientFactory(), tls_config=client_tls_config)
    with anyio.fail_after(10):
        listener = await HTTPOverTCPListener.create(
            factory, local_address=("127.0.0.1", 0), options=options
        )
        async with serving_on(listener, handler) as address:
            async with await opener(address) as connection:
                assert connection.multiplexed
                first = connection.open_stream()
                await first.send_headers(request(b"/held", b"PUT", held))
                await first.send_data(b"h" * held)
                await holding.wait()
                second = connection.open_stream()
                await second.send_headers(request(b"/next"), end_stream=True)
                with anyio.fail_after(5):
                    headers, _ = await read_response(second)
    assert headers[0] == (b":status", b"204")
