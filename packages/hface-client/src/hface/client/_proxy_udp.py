"""CONNECT-UDP tunnels (RFC 9298) as datagram streams: UDP through an HTTP proxy.

Theory of operation. :meth:`ProxyClientSession.connect_udp
<hface.client.ProxyClientSession.connect_udp>` sends an extended CONNECT
(``:protocol connect-udp``) for the proxy's default URI template,
``/.well-known/masque/udp/{target_host}/{target_port}/`` (§3), with
``capsule-protocol: ?1``. Once the proxy answers 2xx the stream carries
HTTP Datagrams (RFC 9297): QUIC DATAGRAM frames when the proxy speaks
HTTP/3, DATAGRAM capsules on HTTP/2 (see :mod:`hface.protocols._capsules`).
:class:`UDPTunnel` presents them as the :data:`~hface.networking.DatagramStream`
a UDP socket would be: ``send((payload, address))`` sends one datagram of
context ID 0 (§5) and ``receive()`` returns the next payload of context 0
with the target's address; other contexts are dropped. As on a real path,
a datagram the connection cannot take at once is dropped, and so is one
beyond the bound of datagrams queued for the stream
(``ConnectionOptions.max_buffered_datagrams``).

So an HTTP/3 connection (QUIC) runs inside the tunnel: the opener of
HTTP/3 connections takes the session as its networking and its UDP
"socket" is the tunnel. Its datagrams must fit in the proxy connection's:
:func:`tunnelled_http3_factory` makes them 1,200 bytes (RFC 9000 §14's
minimum; a larger one goes in a capsule on the stream, which works but is
reliable and ordered), or larger when the proxy is on loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote

import anyio
from anyio.abc import SocketAttribute

from hface.common import AddressType, DatagramType, HeaderType
from hface.errors import HTTPError
from hface.events import ConnectionTerminated, DatagramReceived, DataReceived, StreamReset
from hface.protocols import HTTPOverQUICClientFactory

from ._exchange import Exchange
from ._models import Origin

#: RFC 9298 §5: context ID 0, as it starts a datagram carrying a UDP payload.
_UDP_CONTEXT: Final = b"\x00"
#: The datagram size of QUIC inside a tunnel through a proxy on loopback:
#: it fits in the proxy connection's loopback datagrams with room to spare.
TUNNELLED_LOOPBACK_DATAGRAM_SIZE: Final = 8000


def udp_path(target: AddressType) -> bytes:
    """The path of RFC 9298 §3's default template for ``target`` (IPv6 colons encoded)."""
    host, port = target
    return f"/.well-known/masque/udp/{quote(host, safe='')}/{port}/".encode("ascii")


def connect_udp_headers(proxy: Origin, target: AddressType) -> list[HeaderType]:
    """The extended CONNECT of a CONNECT-UDP request (RFC 9298 §3.4)."""
    return [
        (b":method", b"CONNECT"),
        (b":protocol", b"connect-udp"),
        (b":scheme", b"https" if proxy.tls else b"http"),
        (b":authority", proxy.authority.encode("ascii")),
        (b":path", udp_path(target)),
        (b"capsule-protocol", b"?1"),
    ]


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tunnelled_http3_factory(
    factory: HTTPOverQUICClientFactory, proxy: Origin
) -> HTTPOverQUICClientFactory:
    """The HTTP/3 factory for connections inside CONNECT-UDP tunnels through ``proxy``.

    Its datagrams fit in the proxy connection's (see the module docstring),
    through :meth:`~hface.protocols.HTTPOverQUICClientFactory.with_max_datagram_size`.
    """
    loopback = TUNNELLED_LOOPBACK_DATAGRAM_SIZE if is_loopback_host(proxy.host) else 1200
    return factory.with_max_datagram_size(1200, loopback)


class UDPTunnel(anyio.abc.UnreliableObjectStream[DatagramType]):
    """One CONNECT-UDP tunnel as a datagram stream (see the module docstring).

    ``receive`` raises :exc:`anyio.EndOfStream` once the proxy ended the
    tunnel and :exc:`anyio.BrokenResourceError` if it reset it or the
    connection to it ended.
    """

    def __init__(self, exchange: Exchange, target: AddressType) -> None:
        self._exchange = exchange
        self._target = target
        self._closed = False

    async def receive(self) -> DatagramType:
        exchange = self._exchange
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                event = await exchange.next_event(None, "tunnel datagrams")
            except HTTPError as exc:
                raise anyio.BrokenResourceError(str(exc)) from exc
            if isinstance(event, DatagramReceived):
                if event.data[:1] == _UDP_CONTEXT:
                    return event.data[1:], self._target
            elif isinstance(event, DataReceived):
                if event.end_stream:
                    exchange.response_complete = True
                    raise anyio.EndOfStream
            elif isinstance(event, StreamReset):
                exchange.response_complete = True
                raise anyio.BrokenResourceError(
                    f"the proxy {exchange.origin} reset the UDP tunnel "
                    f"(error code {event.error_code:#x})"
                )
            elif isinstance(event, ConnectionTerminated):
                raise anyio.BrokenResourceError(
                    f"the connection to the proxy {exchange.origin} ended"
                )

    async def send(self, item: DatagramType) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        payload, _address = item  # a tunnel goes to one target only
        try:
            await self._exchange.stream.send_datagram(_UDP_CONTEXT + payload)
        except HTTPError as exc:
            raise anyio.BrokenResourceError(str(exc)) from exc

    async def aclose(self) -> None:
        self._closed = True
        await self._exchange.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        host, port = self._target
        return {
            SocketAttribute.remote_address: lambda: (host, port),
            SocketAttribute.remote_port: lambda: port,
        }
