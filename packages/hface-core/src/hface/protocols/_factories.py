"""Factories make protocol objects, so that connections can swap implementations.

Each implementation takes its own options in its factory's constructor
(the :class:`ProtocolLimits` every version shares and settings of its own);
the call that makes a protocol is the same for all, and so is
:meth:`~HTTPOverTCPFactory.with_limits`, which makes an equivalent factory
with other limits without knowing its class. A factory without limits of
its own keeps its options and returns itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig

from ._protocols import HTTPOverQUICProtocol, HTTPOverTCPProtocol
from ._settings import ProtocolLimits


class HTTPOverTCPFactory(ABC):
    """Makes :class:`HTTPOverTCPProtocol` objects for new TCP or TLS connections."""

    @property
    @abstractmethod
    def alpn_protocols(self) -> Sequence[str]:
        """ALPN protocol IDs to offer in TLS, the most preferred first."""

    @abstractmethod
    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTPOverTCPProtocol:
        """Make a protocol for a connection that has just been established.

        :param tls_version: the TLS version, or None for cleartext.
        :param alpn_protocol: the protocol ALPN chose, or None.
        """

    def with_limits(self, limits: ProtocolLimits) -> HTTPOverTCPFactory:
        """Return a factory like this one whose protocols keep ``limits``.

        The factories of hface's own implementations return a copy with
        their other options unchanged; this default, for factories that
        take no limits, returns the factory itself.
        """
        return self


class ALPNHTTPFactory(HTTPOverTCPFactory):
    """Chooses among other factories by the protocol ALPN negotiated.

    :param factories: the candidates; for an ALPN ID offered by several,
        the first wins.
    :param default_alpn_protocol: used when ALPN chose nothing (cleartext,
        or a peer without ALPN).
    """

    def __init__(
        self, factories: Sequence[HTTPOverTCPFactory], default_alpn_protocol: str = "http/1.1"
    ) -> None:
        self._candidates = tuple(factories)
        self._factories: dict[str, HTTPOverTCPFactory] = {}
        for factory in factories:
            for alpn in factory.alpn_protocols:
                self._factories.setdefault(alpn, factory)
        if default_alpn_protocol not in self._factories:
            raise ValueError(f"no factory offers the default ALPN {default_alpn_protocol!r}")
        self._default_alpn_protocol = default_alpn_protocol

    @property
    def alpn_protocols(self) -> Sequence[str]:
        return list(self._factories)

    def with_limits(self, limits: ProtocolLimits) -> ALPNHTTPFactory:
        """Return a factory choosing among the candidates, each with ``limits`` applied."""
        return ALPNHTTPFactory(
            [factory.with_limits(limits) for factory in self._candidates],
            self._default_alpn_protocol,
        )

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTPOverTCPProtocol:
        factory = self._factories.get(alpn_protocol or self._default_alpn_protocol)
        if factory is None:
            factory = self._factories[self._default_alpn_protocol]
            alpn_protocol = self._default_alpn_protocol
        return factory(tls_version=tls_version, alpn_protocol=alpn_protocol)


class HTTPOverQUICClientFactory(ABC):
    """Makes client-side :class:`HTTPOverQUICProtocol` objects."""

    @abstractmethod
    def __call__(
        self, *, remote_address: AddressType, server_name: str, tls_config: ClientTLSConfig
    ) -> HTTPOverQUICProtocol:
        """Make a protocol that connects to ``remote_address``.

        QUIC does the TLS handshake itself, so the server name (SNI) and
        the TLS configuration are given here.
        """

    def with_limits(self, limits: ProtocolLimits) -> HTTPOverQUICClientFactory:
        """Return a factory like this one whose protocols keep ``limits``.

        As :meth:`HTTPOverTCPFactory.with_limits`: this default returns the
        factory itself.
        """
        return self

    def with_max_datagram_size(self, size: int, loopback_size: int) -> HTTPOverQUICClientFactory:
        """Return a factory like this one whose datagrams are at most ``size`` bytes.

        ``loopback_size`` to a peer on a loopback address. For QUIC inside a
        tunnel (CONNECT-UDP), whose datagrams must fit in the carrier's.
        This default returns the factory itself.
        """
        return self


class HTTPOverQUICServerFactory(ABC):
    """Makes server-side :class:`HTTPOverQUICProtocol` objects."""

    @property
    @abstractmethod
    def quic_connection_id_length(self) -> int:
        """The length of the connection IDs this server issues, to route datagrams."""

    @property
    @abstractmethod
    def quic_supported_versions(self) -> Sequence[int]:
        """The QUIC versions the protocols accept, for version negotiation."""

    @abstractmethod
    def __call__(
        self,
        *,
        tls_config: ServerTLSConfig,
        original_destination_connection_id: bytes | None = None,
        retry_source_connection_id: bytes | None = None,
    ) -> HTTPOverQUICProtocol:
        """Make a protocol for a new connection from a client.

        :param original_destination_connection_id: the destination connection
            ID of the client's first Initial packet; None takes it from the
            first datagram received. Required after a stateless retry.
        :param retry_source_connection_id: the source connection ID of the
            Retry packet sent, if a stateless retry was done.
        """

    def with_limits(self, limits: ProtocolLimits) -> HTTPOverQUICServerFactory:
        """Return a factory like this one whose protocols keep ``limits``.

        As :meth:`HTTPOverTCPFactory.with_limits`: this default returns the
        factory itself.
        """
        return self

    @property
    def quic_connection_id_generator(self) -> Callable[[], bytes] | None:
        """What makes the connection IDs the protocols issue; None: random ones.

        The server's QUIC listener makes the IDs of its Retry packets with
        it too, so that a client's next Initial reaches the same worker.
        """
        return None

    def with_connection_id_generator(
        self, generator: Callable[[], bytes]
    ) -> HTTPOverQUICServerFactory:
        """Return a factory like this one whose protocols issue IDs made by ``generator``.

        Each call of ``generator`` returns a new ID of
        :attr:`quic_connection_id_length` bytes (e.g. a
        ``hface.networking`` connection ID layout's, which routes datagrams
        to a worker process or a server behind an ID-aware load balancer).

        :raises ValueError: if the IDs it makes have another length.
        :raises NotImplementedError: if this factory cannot (the default).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot choose its connection IDs")
