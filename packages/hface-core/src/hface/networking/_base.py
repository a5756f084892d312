"""The interfaces of the networking layer: what servers and clients need from the network."""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from anyio.abc import Listener

from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig

from ._quic_admission import QUICHandshakeLimits
from ._streams import ByteStream, DatagramStream, QUICStream


class ServerNetworking(ABC):
    """Opens the listening endpoints of a server.

    Every listener reports the address it is bound to as
    ``listener.extra(anyio.abc.SocketAttribute.local_address)`` (useful
    after listening on port 0).
    """

    @abstractmethod
    async def listen_tcp(self, local_address: AddressType) -> Listener[ByteStream]:
        """Listen for TCP connections.

        :param local_address: the host and port to bind; port 0 picks a free one.
        :returns: a listener of plain TCP streams.
        :raises TransportError: if the address cannot be bound.
        """

    @abstractmethod
    async def listen_tcp_tls(
        self,
        local_address: AddressType,
        *,
        tls_config: ServerTLSConfig,
        alpn_protocols: Sequence[str],
    ) -> Listener[ByteStream]:
        """Listen for TLS connections over TCP.

        The handler gets each connection once the TLS handshake is done;
        clients failing the handshake are dropped without ending the listener.
        The streams expose :class:`anyio.streams.tls.TLSAttribute`.

        :param local_address: the host and port to bind; port 0 picks a free one.
        :param tls_config: the server's certificate, and client verification.
        :param alpn_protocols: ALPN protocol IDs, the server's preferred first.
        :returns: a listener of TLS streams.
        :raises TransportError: if the address cannot be bound.
        :raises ValueError: if ``tls_config`` is incomplete.
        """

    @abstractmethod
    async def listen_quic(
        self,
        local_address: AddressType,
        *,
        quic_connection_id_length: int,
        quic_supported_versions: Sequence[int],
        quic_handshake_limits: QUICHandshakeLimits | None = None,
        quic_connection_id_generator: Callable[[], bytes] | None = None,
    ) -> Listener[QUICStream]:
        """Listen for QUIC connections on one UDP socket.

        :param local_address: the host and port to bind; port 0 picks a free one.
        :param quic_connection_id_length: the length of the connection IDs
            the server issues.
        :param quic_supported_versions: the QUIC versions accepted; other
            versions get a Version Negotiation packet.
        :param quic_handshake_limits: when new clients get a Retry, and how
            many handshakes may be half-open (the defaults if not given).
        :param quic_connection_id_generator: makes the connection IDs of
            Retry packets (the server's own scheme); random ones by default.
        :returns: a listener of one :class:`QUICStream` per connection.
        :raises TransportError: if the address cannot be bound.
        """

    async def listen_tcp_socket(
        self,
        sock: socket.socket,
        *,
        tls_config: ServerTLSConfig | None = None,
        alpn_protocols: Sequence[str] = (),
    ) -> Listener[ByteStream]:
        """Accept TCP (with ``tls_config``: TLS) connections on a listening socket made elsewhere.

        For a socket inherited from a parent process (systemd socket
        activation, a supervisor of workers). The listener owns ``sock``.
        Networkings without operating system sockets do not override it.

        :param sock: a bound, listening ``SOCK_STREAM`` socket.
        :returns: a listener, as :meth:`listen_tcp` or :meth:`listen_tcp_tls` make.
        :raises ValueError: if ``sock`` is not such a socket, or ``tls_config`` is incomplete.
        :raises NotImplementedError: if this networking has no such sockets.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot serve a socket made elsewhere")

    async def listen_quic_socket(
        self,
        sock: socket.socket,
        *,
        quic_connection_id_length: int,
        quic_supported_versions: Sequence[int],
        quic_handshake_limits: QUICHandshakeLimits | None = None,
        quic_connection_id_generator: Callable[[], bytes] | None = None,
    ) -> Listener[QUICStream]:
        """Accept QUIC connections on a bound UDP socket made elsewhere.

        As :meth:`listen_tcp_socket`, for QUIC; the other parameters are
        those of :meth:`listen_quic`. The listener owns ``sock``.

        :param sock: a bound ``SOCK_DGRAM`` socket.
        :raises ValueError: if ``sock`` is not such a socket.
        :raises NotImplementedError: if this networking has no such sockets.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot serve a socket made elsewhere")


class ClientNetworking(ABC):
    """Opens the connections of a client."""

    @abstractmethod
    async def connect_tcp(self, remote_address: AddressType) -> ByteStream:
        """Open a TCP connection.

        :param remote_address: the host (name or IP address) and port to connect to.
        :returns: a TCP stream.
        :raises TransportError: if the connection cannot be made.
        """

    @abstractmethod
    async def connect_tcp_tls(
        self,
        remote_address: AddressType,
        *,
        server_name: str | None = None,
        tls_config: ClientTLSConfig,
        alpn_protocols: Sequence[str],
    ) -> ByteStream:
        """Open a TLS connection over TCP.

        :param remote_address: the host (name or IP address) and port to connect to.
        :param server_name: the name sent in SNI and checked against the
            certificate; the host of ``remote_address`` if ``None``.
        :param tls_config: how to verify the server and identify the client.
        :param alpn_protocols: ALPN protocol IDs to offer, preferred first.
        :returns: a TLS stream exposing :class:`anyio.streams.tls.TLSAttribute`.
        :raises TLSVerificationError: if the server's certificate is not trusted.
        :raises TransportError: if the connection or the handshake fails.
        """

    @abstractmethod
    async def connect_udp(self, remote_address: AddressType) -> DatagramStream:
        """Open a connected UDP socket.

        Received items are ``(payload, remote_address)``. The socket only
        talks to ``remote_address``: the address in sent items is ignored.

        :param remote_address: the host (name or IP address) and port of the peer.
        :returns: a datagram stream.
        :raises TransportError: if the socket cannot be created or connected.
        """
