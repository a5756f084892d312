"""Listeners accept connections for servers and hand each to a handler.

Every connection runs in its own task inside the listener's task group; a
handler that fails is logged and ends only its own connection.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute

from hface.common import AddressType, ServerTLSConfig
from hface.errors import TransportError
from hface.networking import (
    ByteStream,
    QUICAttribute,
    QUICHandshakeLimits,
    QUICStream,
    ServerNetworking,
    SystemNetworking,
)
from hface.protocols import HTTPOverQUICServerFactory, HTTPOverTCPFactory

from ._connection import HTTPConnection
from ._options import SERVER_TCP_OPTIONS, ConnectionOptions
from ._quic import HTTPOverQUICConnection
from ._tcp import HTTPOverTCPConnection

#: What a server does with each connection: handle it until it ends.
HandlerType = Callable[[HTTPConnection], Awaitable[None]]

logger = logging.getLogger("hface.connections")


async def _run_handler(
    handler: HandlerType, connection: HTTPConnection, *, open_failure_level: int = logging.INFO
) -> None:
    try:
        try:
            await connection.open()
        except TransportError as exc:
            # The peer's doing (a handshake failed, timed out or abandoned):
            # worth a line, not a traceback. open() has closed the connection.
            logger.log(
                open_failure_level,
                "a connection from %s failed to open: %s",
                _peer(connection),
                exc,
            )
            return
        try:
            await handler(connection)
        finally:
            await connection.aclose()
    except anyio.get_cancelled_exc_class():
        raise
    except Exception:
        logger.exception("connection handler failed for a connection from %s", _peer(connection))


def _peer(connection: HTTPConnection) -> str:
    try:
        host, port = connection.remote_address
    except Exception:
        return "an unknown peer"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HTTPListener(ABC):
    """Accepts HTTP connections; an async context manager that closes itself."""

    @abstractmethod
    async def serve(self, handler: HandlerType) -> None:
        """Accept connections and run ``handler`` on each until :meth:`aclose` or cancellation.

        Each handler runs in its own task with the connection already open;
        the connection is closed when the handler returns.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Stop accepting new connections at once; connections in progress go on.

        :meth:`serve` then returns once its handlers have. A TCP listener
        closes its listening socket now: the accepted connections have
        sockets of their own. A QUIC listener's connections share its one
        UDP socket, which is closed when the last of them ends; until then,
        datagrams for new connections are dropped (the client waits for its
        own connect timeout). Closing the connections in progress is the
        handlers' business (e.g. :meth:`HTTPConnection.send_goaway`).
        """

    @property
    @abstractmethod
    def local_addresses(self) -> Sequence[AddressType]:
        """The addresses actually bound (useful after listening on port 0).

        A Unix socket's is ``(path, 0)``.
        """

    async def __aenter__(self) -> HTTPListener:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _address_of(listener: anyio.abc.Listener[Any]) -> AddressType:
    address = listener.extra(SocketAttribute.local_address)
    if isinstance(address, str):  # a Unix socket: its path, and port 0 (as Endpoint.unix)
        return (address, 0)
    assert isinstance(address, tuple)
    return (str(address[0]), int(address[1]))


class HTTPOverTCPListener(HTTPListener):
    """Accepts HTTP/1.1 and HTTP/2 connections over TCP or TLS. Use :meth:`create`.

    :param options: for every connection; by default its connections
        close lingering (see :class:`HTTPOverTCPConnection`) for
        :data:`DEFAULT_LINGER_TIMEOUT` seconds at most. Options given
        replace that whole: set their ``linger_timeout`` to linger.
    """

    def __init__(
        self,
        listener: anyio.abc.Listener[ByteStream],
        factory: HTTPOverTCPFactory,
        *,
        options: ConnectionOptions | None = None,
    ) -> None:
        self._listener = listener
        self._factory = factory
        self._options = SERVER_TCP_OPTIONS if options is None else options

    @classmethod
    async def create(
        cls,
        factory: HTTPOverTCPFactory,
        *,
        local_address: AddressType,
        tls_config: ServerTLSConfig | None = None,
        networking: ServerNetworking | None = None,
        options: ConnectionOptions | None = None,
    ) -> HTTPOverTCPListener:
        """Listen on ``local_address``; with ``tls_config``, over TLS with ALPN.

        :param factory: makes the protocol of each connection (an
            :class:`~hface.protocols.ALPNHTTPFactory` serves several versions).
        :param options: for every connection (see the class's docstring).
        :raises OSError: if the address cannot be bound.
        """
        networking = networking or SystemNetworking()
        listener: anyio.abc.Listener[ByteStream]
        if tls_config is None:
            listener = await networking.listen_tcp(local_address)
        else:
            listener = await networking.listen_tcp_tls(
                local_address, tls_config=tls_config, alpn_protocols=factory.alpn_protocols
            )
        return cls(listener, factory, options=options)

    @property
    def local_addresses(self) -> Sequence[AddressType]:
        return [_address_of(self._listener)]

    async def serve(self, handler: HandlerType) -> None:
        async def handle(stream: ByteStream) -> None:
            protocol = self._factory(
                tls_version=stream.extra(TLSAttribute.tls_version, None),
                alpn_protocol=stream.extra(TLSAttribute.alpn_protocol, None),
            )
            connection = HTTPOverTCPConnection(protocol, stream, options=self._options)
            await _run_handler(handler, connection)

        with suppress(anyio.ClosedResourceError):  # aclose() was called
            await self._listener.serve(handle)

    async def aclose(self) -> None:
        await self._listener.aclose()


class HTTPOverQUICListener(HTTPListener):
    """Accepts HTTP/3 connections on a UDP socket. Use :meth:`create`.

    Every connection sends and receives through the listener's one socket,
    so :meth:`aclose` stops accepting at once but closes the socket only
    when the last connection in progress has ended (as a TCP listener's
    accepted connections outlive it): a server's graceful close still gets
    its GOAWAY and the rest of its responses out. Cancelling :meth:`serve`
    ends everything at once.

    Handshakes not yet complete are limited, and answered with Retry under
    a flood, as :class:`~hface.networking.QUICHandshakeLimits` says; a
    handshake that fails or times out is logged at DEBUG only (a flood of
    them is summed up at INFO by the networking layer).

    :param options: for every connection.
    """

    def __init__(
        self,
        listener: anyio.abc.Listener[QUICStream],
        factory: HTTPOverQUICServerFactory,
        tls_config: ServerTLSConfig,
        *,
        options: ConnectionOptions | None = None,
    ) -> None:
        self._listener = listener
        self._factory = factory
        self._tls_config = tls_config
        self._options = options
        self._closing = False
        self._handlers = 0  # connections in progress

    @classmethod
    async def create(
        cls,
        factory: HTTPOverQUICServerFactory,
        *,
        local_address: AddressType,
        tls_config: ServerTLSConfig,
        networking: ServerNetworking | None = None,
        options: ConnectionOptions | None = None,
        handshake_limits: QUICHandshakeLimits | None = None,
        connection_id_generator: Callable[[], bytes] | None = None,
    ) -> HTTPOverQUICListener:
        """Listen for QUIC on ``local_address`` (UDP).

        :param options: for every connection.
        :param handshake_limits: Retry and the cap on half-open handshakes
            (:class:`~hface.networking.QUICHandshakeLimits`' defaults if not given).
        :param connection_id_generator: makes the connection IDs of Retry
            packets: the server's own scheme; random by default.
        :raises OSError: if the address cannot be bound.
        """
        networking = networking or SystemNetworking()
        listener = await networking.listen_quic(
            local_address,
            quic_connection_id_length=factory.quic_connection_id_length,
            quic_supported_versions=factory.quic_supported_versions,
            quic_handshake_limits=handshake_limits,
            quic_connection_id_generator=connection_id_generator,
        )
        return cls(listener, factory, tls_config, options=options)

    @property
    def local_addresses(self) -> Sequence[AddressType]:
        return [_address_of(self._listener)]

    async def serve(self, handler: HandlerType) -> None:
        async def handle(stream: QUICStream) -> None:
            if self._closing:
                return  # not accepted: the client's Initial goes unanswered
            self._handlers += 1
            try:
                # After a Retry, the protocol echoes both IDs (RFC 9000 §7.3).
                protocol = self._factory(
                    tls_config=self._tls_config,
                    original_destination_connection_id=stream.extra(
                        QUICAttribute.original_destination_connection_id, None
                    ),
                    retry_source_connection_id=stream.extra(
                        QUICAttribute.retry_source_connection_id, None
                    ),
                )
                connection = HTTPOverQUICConnection(protocol, stream, options=self._options)

                async def established(connection: HTTPConnection) -> None:
                    # open() returned: the handshake is complete.
                    stream.mark_handshake_complete()
                    await handler(connection)

                await _run_handler(established, connection, open_failure_level=logging.DEBUG)
            finally:
                self._handlers -= 1
                await self._close_when_idle()

        try:
            with contextlib.suppress(anyio.ClosedResourceError):
                await self._listener.serve(handle)
        finally:
            await self._close_socket()

    async def aclose(self) -> None:
        """Stop accepting; close the socket once no connection is in progress."""
        self._closing = True
        await self._close_when_idle()

    async def _close_when_idle(self) -> None:
        if self._closing and not self._handlers:
            await self._close_socket()

    async def _close_socket(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._listener.aclose()


class HTTPMultiListener(HTTPListener):
    """Several listeners served as one (e.g. TCP and QUIC on the same port)."""

    def __init__(self, listeners: Sequence[HTTPListener]) -> None:
        self._listeners = list(listeners)

    @property
    def local_addresses(self) -> Sequence[AddressType]:
        return [address for listener in self._listeners for address in listener.local_addresses]

    async def serve(self, handler: HandlerType) -> None:
        async with anyio.create_task_group() as task_group:
            for listener in self._listeners:
                task_group.start_soon(listener.serve, handler)

    async def aclose(self) -> None:
        for listener in self._listeners:
            await listener.aclose()
