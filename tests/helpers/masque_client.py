"""A CONNECT-UDP (RFC 9298) client on aioquic alone: no hface code, to check the proxy against.

It speaks HTTP/3 with HTTP Datagrams (RFC 9297: SETTINGS_H3_DATAGRAM and
the ``max_datagram_frame_size`` transport parameter, which aioquic sends
with its WebTransport switch), sends the extended CONNECT with the default
URI template's path, and moves UDP payloads as datagrams of context ID 0.
Run on asyncio. ``python -m tests.helpers.masque_client`` is not needed:
tests import :func:`open_udp_tunnel`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DatagramReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent


@dataclass
class UDPTunnel:
    """An open CONNECT-UDP tunnel: send UDP payloads, receive the target's."""

    status: int
    headers: list[tuple[bytes, bytes]]
    protocol: MasqueProtocol
    stream_id: int
    received: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    def send(self, payload: bytes) -> None:
        self.protocol.h3.send_datagram(self.stream_id, b"\x00" + payload)  # context ID 0
        self.protocol.transmit()

    async def receive(self) -> bytes:
        return await self.received.get()


class MasqueProtocol(QuicConnectionProtocol):
    def __init__(
        self, quic: QuicConnection, stream_handler: QuicStreamHandler | None = None
    ) -> None:
        super().__init__(quic, stream_handler)
        # enable_webtransport makes aioquic send SETTINGS_H3_DATAGRAM=1.
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.responses: dict[int, asyncio.Future[list[tuple[bytes, bytes]]]] = {}
        self.tunnels: dict[int, UDPTunnel] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            future = self.responses.get(event.stream_id)
            if future is not None and not future.done():
                future.set_result(event.headers)
        elif isinstance(event, DatagramReceived):
            tunnel = self.tunnels.get(event.stream_id)
            if tunnel is not None and event.data[:1] == b"\x00":
                tunnel.received.put_nowait(event.data[1:])


def udp_request(
    authority: str, host: str, port: int, extra: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    """The extended CONNECT of RFC 9298 §3.4 for ``host:port``."""
    path = f"/.well-known/masque/udp/{host.replace(':', '%3A')}/{port}/"
    return [
        (b":method", b"CONNECT"),
        (b":protocol", b"connect-udp"),
        (b":scheme", b"https"),
        (b":authority", authority.encode()),
        (b":path", path.encode()),
        (b"capsule-protocol", b"?1"),
        *(extra or []),
    ]


@contextlib.asynccontextmanager
async def masque_connection(
    proxy_host: str, proxy_port: int, *, cafile: str
) -> AsyncIterator[MasqueProtocol]:
    """An HTTP/3 connection to the proxy, with HTTP Datagrams."""
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=["h3"], max_datagram_frame_size=65536
    )
    configuration.load_verify_locations(cafile)
    configuration.server_name = "localhost"
    async with connect(
        proxy_host, proxy_port, configuration=configuration, create_protocol=MasqueProtocol
    ) as protocol:
        assert isinstance(protocol, MasqueProtocol)
        yield protocol


async def open_udp_tunnel(
    protocol: MasqueProtocol,
    target: tuple[str, int],
    *,
    authority: str = "localhost",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> UDPTunnel:
    """Send the CONNECT-UDP request; return the tunnel (open if ``status`` is 2xx)."""
    stream_id = protocol._quic.get_next_available_stream_id()
    future: asyncio.Future[list[tuple[bytes, bytes]]] = asyncio.get_running_loop().create_future()
    protocol.responses[stream_id] = future
    protocol.h3.send_headers(stream_id, udp_request(authority, *target, extra=extra))
    protocol.transmit()
    headers = await future
    status = int(dict(headers)[b":status"])
    tunnel = UDPTunnel(status, headers, protocol, stream_id)
    protocol.tunnels[stream_id] = tunnel
    return tunnel
