"""Openers make client connections; ``async with await opener(address) as connection``."""

from __future__ import annotations

from abc import ABC, abstractmethod

from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute

from hface.common import AddressType, ClientTLSConfig
from hface.networking import ClientNetworking, SystemNetworking
from hface.protocols import ALPNHTTPFactory, HTTPOverQUICClientFactory, HTTPOverTCPFactory

from ._connection import HTTPConnection
from ._options import ConnectionOptions
from ._quic import HTTPOverQUICConnection
from ._tcp import HTTPOverTCPConnection


class HTTPOpener(ABC):
    """Opens client connections to a remote address."""

    @abstractmethod
    async def __call__(
        self, remote_address: AddressType, *, tls: bool = False, server_name: str | None = None
    ) -> HTTPConnection:
        """Connect, and return the connection, not yet opened (use ``async with``).

        :param tls: use TLS (HTTP/3 always does).
        :param server_name: the name to verify and send in SNI; the host of
            ``remote_address`` by default.
        :raises TransportError: if the connection cannot be established.
        """


def _default_tcp_factory() -> HTTPOverTCPFactory:
    from hface.protocols.http1 import HTTP1ClientFactory
    from hface.protocols.http2 import HTTP2ClientFactory

    return ALPNHTTPFactory([HTTP2ClientFactory(), HTTP1ClientFactory()], "http/1.1")


class HTTPOverTCPOpener(HTTPOpener):
    """Opens HTTP/1.1 and HTTP/2 connections over TCP or TLS.

    :param factory: makes the protocols; by default HTTP/2 or HTTP/1.1 as
        ALPN chooses (HTTP/1.1 on cleartext).
    :param tls_config: how servers are verified.
    :param options: for every connection.
    """

    def __init__(
        self,
        factory: HTTPOverTCPFactory | None = None,
        *,
        tls_config: ClientTLSConfig | None = None,
        networking: ClientNetworking | None = None,
        options: ConnectionOptions | None = None,
    ) -> None:
        self.factory = factory or _default_tcp_factory()
        self.tls_config = tls_config or ClientTLSConfig()
        self.networking = networking or SystemNetworking()
        #: The options of every connection.
        self.options = options

    async def __call__(
        self, remote_address: AddressType, *, tls: bool = False, server_name: str | None = None
    ) -> HTTPConnection:
        if tls:
            stream = await self.networking.connect_tcp_tls(
                remote_address,
                server_name=server_name,
                tls_config=self.tls_config,
                alpn_protocols=self.factory.alpn_protocols,
            )
            protocol = self.factory(
                tls_version=stream.extra(TLSAttribute.tls_version, None),
                alpn_protocol=stream.extra(TLSAttribute.alpn_protocol, None),
            )
        else:
            stream = await self.networking.connect_tcp(remote_address)
            protocol = self.factory()
        return HTTPOverTCPConnection(protocol, stream, options=self.options)


class HTTPOverQUICOpener(HTTPOpener):
    """Opens HTTP/3 connections over QUIC.

    :param factory: makes the protocols; :class:`HTTP3ClientFactory` by default.
    :param tls_config: how servers are verified.
    :param options: for every connection.
    """

    def __init__(
        self,
        factory: HTTPOverQUICClientFactory | None = None,
        *,
        tls_config: ClientTLSConfig | None = None,
        networking: ClientNetworking | None = None,
        options: ConnectionOptions | None = None,
    ) -> None:
        if factory is None:
            from hface.protocols.http3 import HTTP3ClientFactory

            factory = HTTP3ClientFactory()
        self.factory = factory
        self.tls_config = tls_config or ClientTLSConfig()
        self.networking = networking or SystemNetworking()
        #: The options of every connection.
        self.options = options

    async def __call__(
        self, remote_address: AddressType, *, tls: bool = True, server_name: str | None = None
    ) -> HTTPConnection:
        if not tls:
            raise ValueError("HTTP/3 always uses TLS: call with tls=True")
        stream = await self.networking.connect_udp(remote_address)
        resolved = stream.extra(SocketAttribute.remote_address)
        assert isinstance(resolved, tuple)
        protocol = self.factory(
            remote_address=(str(resolved[0]), int(resolved[1])),
            server_name=server_name or remote_address[0],
            tls_config=self.tls_config,
        )
        return HTTPOverQUICConnection(protocol, stream, options=self.options)
