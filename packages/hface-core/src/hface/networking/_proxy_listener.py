"""The PROXY protocol on a server's listener: each connection's client, as the balancer says.

Theory of operation. With the PROXY protocol on, every accepted
connection must begin with a PROXY header (v1 or v2, see
:mod:`hface.networking._proxy_protocol`); :func:`receive_proxy_header`
reads it off the accepted socket, before TLS or HTTP touch the socket,
within :data:`PROXY_HEADER_TIMEOUT` seconds (the specification asks for
at least 3, to cover a TCP retransmit). The header's source address then
stands for the peer: the stream's ``remote_address`` (and
``remote_port``) extra attributes say it, so everything above (the
connection's ``remote_address``, the ASGI scope's ``client``, the access
log) sees the client, not the balancer. A LOCAL header (the balancer's
own health check) or one without addresses leaves the socket's own peer.

A connection whose first bytes are not a valid header, that sends too
little in time, or that ends first is closed at once without a word (a
guess would let any client choose its address), and logged at debug level
on ``hface.networking``: a scanner must not fill the log.

The reading happens in the connection's own task, so a slow client holds
up no one else. On asyncio's own streams :class:`AsyncioListener
<hface.networking._asyncio_listener.AsyncioListener>` calls
:func:`receive_proxy_header` itself before it hands the socket to the
event loop; elsewhere (Trio, and anyio's streams) :class:`ProxyProtocolListener`
wraps the TCP listener, under the TLS one, and :class:`ProxiedStream` wraps
each stream.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any, Final

import anyio
from anyio.abc import Listener, SocketAttribute, TaskGroup

from hface.common import AddressType

from ._proxy_protocol import ProxyHeaderReader, ProxyProtocolError
from ._streams import ByteStream

_logger = logging.getLogger("hface.networking")

#: Seconds a connection gets to send its PROXY header before it is closed.
PROXY_HEADER_TIMEOUT: Final = 5.0


async def receive_proxy_header(sock: socket.socket, *, limit: float) -> AddressType | None:
    """Read the PROXY header off the non-blocking accepted ``sock``; return its source.

    No byte after the header is read: the socket can be handed to TLS or
    HTTP afterwards.

    :returns: the client's address and port, or None when the header says
        to keep the socket's own peer (LOCAL, or no usable address).
    :raises ProxyProtocolError: if the bytes are not a valid header, or
        the peer closes the connection, or ``limit`` seconds pass first.
    :raises OSError: if the socket fails.
    """
    reader = ProxyHeaderReader()
    try:
        with anyio.fail_after(limit):
            while (header := reader.read_from(sock)) is None:
                await anyio.wait_readable(sock)
    except TimeoutError:
        raise ProxyProtocolError(f"no PROXY protocol header within {limit:g} s") from None
    return header.source


def log_refused(peer: object, exc: BaseException) -> None:
    """Log at debug level that a connection was closed for its PROXY header."""
    _logger.debug("closed a connection from %s: %s", peer, exc)


class ProxiedStream(ByteStream):
    """A stream whose ``remote_address`` is the client a PROXY header named.

    Everything else (reads, writes, the other extra attributes) is the
    wrapped stream's.
    """

    def __init__(self, stream: ByteStream, client: AddressType) -> None:
        self._stream = stream
        self._client = client

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        client = self._client
        return {
            **self._stream.extra_attributes,
            SocketAttribute.remote_address: lambda: client,
            SocketAttribute.remote_port: lambda: client[1],
        }


class ProxyProtocolListener(Listener[ByteStream]):
    """Wraps a TCP (or Unix) listener: each connection's PROXY header is read first.

    Only connections with a valid header reach the handler, as
    :class:`ProxiedStream` when the header named a client; the others are
    closed (see the module). Wrap it in :class:`~hface.networking.TLSListener`
    for TLS: the header comes before the TLS handshake.

    :param timeout: seconds a connection gets to send its header.
    """

    def __init__(
        self, listener: Listener[ByteStream], *, timeout: float = PROXY_HEADER_TIMEOUT
    ) -> None:
        self._listener = listener
        self._timeout = timeout

    async def serve(
        self,
        handler: Callable[[ByteStream], Any],
        task_group: TaskGroup | None = None,
    ) -> None:
        async def read_header_then_handle(stream: ByteStream) -> None:
            raw_socket: socket.socket = stream.extra(SocketAttribute.raw_socket)
            try:
                client = await receive_proxy_header(raw_socket, limit=self._timeout)
            except (ProxyProtocolError, OSError) as exc:
                log_refused(stream.extra(SocketAttribute.remote_address, "an unknown peer"), exc)
                await anyio.aclose_forcefully(stream)
                return
            except BaseException:
                await anyio.aclose_forcefully(stream)
                raise
            await handler(stream if client is None else ProxiedStream(stream, client))

        await self._listener.serve(read_header_then_handle, task_group)

    async def aclose(self) -> None:
        await self._listener.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._listener.extra_attributes
