"""HTTP Datagrams through ``HTTPStream``: sent, routed to their stream, and bounded.

Real TLS sockets on loopback (QUIC for HTTP/3), asyncio and Trio.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from hface.common import ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.connections import ConnectionOptions, HTTPConnection
from hface.events import ConnectionTerminated, DatagramReceived, HeadersReceived

from .conftest import connect, create_listener, serving_on

pytestmark = pytest.mark.anyio

CONNECT_UDP: HeadersType = [
    (b":method", b"CONNECT"),
    (b":protocol", b"connect-udp"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/.well-known/masque/udp/127.0.0.1/9/"),
    (b"capsule-protocol", b"?1"),
]
#: The server's bound of queued datagram bytes per stream, in the test.
BOUND = 20_000
PAYLOAD = b"d" * 1000


@pytest.mark.parametrize("http_version", ["2", "3"])
async def test_datagrams_are_routed_and_bounded_per_stream(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    reader_may_go = anyio.Event()
    counted: list[int] = []

    async def handler(connection: HTTPConnection) -> None:
        stream = await connection.accept_stream()
        assert stream is not None
        await stream.receive_event()  # the request
        await stream.send_headers([(b":status", b"200")])
        await reader_may_go.wait()  # meanwhile datagrams pile up
        got = 0
        while (event := stream.receive_event_nowait()) is not None:
            if isinstance(event, ConnectionTerminated):
                break
            if isinstance(event, DatagramReceived):
                got += 1
        counted.append(got)
        await stream.send_datagram(b"echo:" + str(got).encode())
        await anyio.sleep(30)

    options = ConnectionOptions(max_buffered_datagrams=BOUND)
    listener = await create_listener(http_version, server_tls_config, connection_options=options)
    with anyio.fail_after(20):
        async with serving_on(listener, handler) as address:
            async with await connect(http_version, address, client_tls_config) as connection:
                stream = connection.open_stream()
                await stream.send_headers(CONNECT_UDP)
                response = await stream.receive_event()
                assert isinstance(response, HeadersReceived)
                sent = 0
                for _ in range(200):
                    sent += await stream.send_datagram(PAYLOAD)
                    await anyio.lowlevel.checkpoint()
                await anyio.sleep(0.5)
                reader_may_go.set()
                event = await stream.receive_event()
                assert isinstance(event, DatagramReceived)
                (got,) = counted
                assert event.data == b"echo:%d" % got
                assert 0 < got <= BOUND // len(PAYLOAD)
                assert sent > got  # the bound dropped some
