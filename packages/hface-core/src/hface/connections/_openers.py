"""Openers make client connections; ``async with await opener(address) as connection``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from anyio import aclose_forcefully
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute

from hface.common import AddressType, ClientTLSConfig
from hface.errors import TransportError, TransportErrorKind
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


#: The ALPN ID of HTTP/1.1, what a TLS server that chose no protocol speaks.
_HTTP1_ALPN = "http/1.1"


def _no_common_protocol(offered: Sequence[str], address: AddressType) -> TransportError:
    """The error for a TLS server that speaks HTTP/1.1 but none of the ``offered`` protocols.

    A server that does not know the protocols a client offers by ALPN
    either ends the handshake (nginx: the ``no_application_protocol``
    alert) or completes it choosing none (RFC 7301 §3.2), and then speaks
    what it would without ALPN: HTTP/1.1 (RFC 9113 §3.2: HTTP/2 over TLS
    only ever begins by ALPN). A factory that does not offer HTTP/1.1
    cannot talk to it.
    """
    names = ", ".join(offered)
    reason = f"the server speaks none of the protocols offered by ALPN ({names}), only HTTP/1.1"
    host, port = address
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return TransportError(
        f"TLS handshake with {where} failed: {reason}",
        kind=TransportErrorKind.TLS_HANDSHAKE,
        address=address,
        reason=reason,
    )


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
            offered = self.factory.alpn_protocols
            # Without HTTP/1.1 among the protocols offered, a server may
            # speak none of them: that is said as such (see _no_common_protocol).
            without_http1 = bool(offered) and _HTTP1_ALPN not in offered
            try:
                stream = await self.networking.connect_tcp_tls(
                    remote_address,
                    server_name=server_name,
                    tls_config=self.tls_config,
                    alpn_protocols=offered,
                )
            except TransportError as error:
                if (
                    without_http1
                    and error.kind is TransportErrorKind.TLS_HANDSHAKE
                    and await self._speaks_http1_only(remote_address, server_name)
                ):
                    raise _no_common_protocol(offered, remote_address) from error
                raise
            alpn_protocol = stream.extra(TLSAttribute.alpn_protocol, None)
            if alpn_protocol is None and without_http1:
                await aclose_forcefully(stream)
                raise _no_common_protocol(offered, remote_address)
            protocol = self.factory(
                tls_version=stream.extra(TLSAttribute.tls_version, None),
                alpn_protocol=alpn_protocol,
            )
        else:
            stream = await self.networking.connect_tcp(remote_address)
            protocol = self.factory()
        return HTTPOverTCPConnection(protocol, stream, options=self.options)

    async def _speaks_http1_only(
        self, remote_address: AddressType, server_name: str | None
    ) -> bool:
        """Whether the server completes a handshake that offers HTTP/1.1 alone (a second one).

        The TLS library gives no field that tells a ``no_application_protocol``
        alert from other failures: a handshake that fails with the factory's
        protocols and succeeds with HTTP/1.1 says it.
        """
        try:
            stream = await self.networking.connect_tcp_tls(
                remote_address,
                server_name=server_name,
                tls_config=self.tls_config,
                alpn_protocols=[_HTTP1_ALPN],
            )
        except TransportError:
            return False
        await aclose_forcefully(stream)
        return True


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
