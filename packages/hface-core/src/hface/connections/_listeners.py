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
from hface.networking import ByteStream, QUICStream, ServerNetworking, SystemNetworking
from hface.protocols import HTTPOverQUICServerFactory, HTTPOverTCPFactory

from ._connection import HTTPConnection, HTTPOverQUICConnection, HTTPOverTCPConnection

#: What a server does with each connection: handle it until it ends.
HandlerType = Callable[[HTTPConnection], Awaitable[None]]

logger = logging.getLogger("hface.connections")


async def _run_handler(handler: HandlerType, connection: HTTPConnection) -> None:
    try:
        async with connection:
            await handler(connection)
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
        """Stop accepting and close the listening sockets."""

    @property
    @abstractmethod
    def local_addresses(self) -> Sequence[AddressType]:
        """The addresses actually bound (useful after listening on port 0)."""

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
    assert isinstance(address, tuple)
    return (str(address[0]), int(address[1]))


class HTTPOverTCPListener(HTTPListener):
    """Accepts HTTP/1.1 and HTTP/2 connections over TCP or TLS. Use :meth:`create`."""

    def __init__(
        self,
        listener: anyio.abc.Listener[ByteStream],
        factory: HTTPOverTCPFactory,
        **connection_options: Any,
    ) -> None:
        self._listener = listener
        self._factory = factory
        self._connection_options = connection_options

    @classmethod
    async def create(
        cls,
        factory: HTTPOverTCPFactory,
        *,
        local_address: AddressType,
        tls_config: ServerTLSConfig | None = None,
        networking: ServerNetworking | None = None,
        **connection_options: Any,
    ) -> HTTPOverTCPListener:
        """Listen on ``local_address``; with ``tls_config``, over TLS with ALPN.

        :param factory: makes the protocol of each connection (an
            :class:`~hface.protocols.ALPNHTTPFactory` serves several versions).
        :param connection_options: passed to :class:`HTTPConnection`.
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
        return cls(listener, factory, **connection_options)

    @property
    def local_addresses(self) -> Sequence[AddressType]:
        return [_address_of(self._listener)]

    async def serve(self, handler: HandlerType) -> None:
        async def handle(stream: ByteStream) -> None:
            protocol = self._factory(
                tls_version=stream.extra(TLSAttribute.tls_version, None),
                alpn_protocol=stream.extra(TLSAttribute.alpn_protocol, None),
            )
            connection = HTTPOverTCPConnection(protocol, stream, **self._connection_options)
            await _run_handler(handler, connection)

        with suppress(anyio.ClosedResourceError):  # aclose() was called
            await self._listener.serve(handle)

    async def aclose(self) -> None:
        await self._listener.aclose()


class HTTPOverQUICListener(HTTPListener):
    """Accepts HTTP/3 connections on a UDP socket. Use :meth:`create`."""

    def __init__(
        self,
        listener: anyio.abc.Listener[QUICStream],
        factory: HTTPOverQUICServerFactory,
        tls_config: ServerTLSConfig,
        **connection_options: Any,
    ) -> None:
        self._listener = listener
        self._factory = factory
        self._tls_config = tls_config
        self._connection_options = connection_options

    @classmethod
    async def create(
        cls,
        factory: HTTPOverQUICServerFactory,
        *,
        local_address: AddressType,
        tls_config: ServerTLSConfig,
        networking: ServerNetworking | None = None,
        **connection_options: Any,
    ) -> HTTPOverQUICListener:
        """Listen for QUIC on ``local_address`` (UDP).

        :raises OSError: if the address cannot be bound.
        """
        networking = networking or SystemNetworking()
        listener = await networking.listen_quic(
            local_address,
            quic_connection_id_length=factory.quic_connection_id_length,
            quic_supported_versions=factory.quic_supported_versions,
        )
        return cls(listener, factory, tls_config, **connection_options)

    @property
    def local_addresses(self) -> Sequence[AddressType]:
        return [_address_of(self._listener)]

    async def serve(self, handler: HandlerType) -> None:
        async def handle(stream: QUICStream) -> None:
            protocol = self._factory(tls_config=self._tls_config)
            connection = HTTPOverQUICConnection(protocol, stream, **self._connection_options)
            await _run_handler(handler, connection)

        with contextlib.suppress(anyio.ClosedResourceError):
            await self._listener.serve(handle)

    async def aclose(self) -> None:
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
