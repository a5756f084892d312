"""What serves an endpoint's connections: the TCP factory, and the listener of an inherited socket.

:class:`~hface.server._base.BaseServer` makes its listeners from its
endpoints; the parts that do not depend on the server's own state are
here. A TCP endpoint serves HTTP/1.1 and HTTP/2 with ALPN over TLS, or by
prior knowledge in cleartext (RFC 9113 §3.3), unless the server's
:class:`~hface.server.ServerProtocol` narrows it to one. An ``fd``
endpoint's socket, inherited from a parent (``fd://``, systemd's
``LISTEN_FDS``, a worker's supervisor), is duplicated and served as TCP or,
a UDP socket, as QUIC, as its type says.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from hface.common import ServerTLSConfig
from hface.connections import (
    ConnectionOptions,
    HTTPListener,
    HTTPOverQUICListener,
    HTTPOverTCPListener,
)
from hface.networking import QUICHandshakeLimits, SystemNetworking
from hface.protocols import (
    ALPNHTTPFactory,
    HTTPOverQUICServerFactory,
    HTTPOverTCPFactory,
    PriorKnowledgeHTTPFactory,
)

from ._models import Endpoint, ServerProtocol


def tcp_factory_for(
    protocol: ServerProtocol, tls: bool, http1: HTTPOverTCPFactory, http2: HTTPOverTCPFactory
) -> HTTPOverTCPFactory | None:
    """What serves TCP connections (None: no TCP, for :attr:`ServerProtocol.HTTP3`)."""
    if protocol in (ServerProtocol.ALL, ServerProtocol.TCP):
        if tls:
            return ALPNHTTPFactory([http2, http1])
        # Cleartext has no ALPN: HTTP/2 there is by prior knowledge (RFC 9113 §3.3).
        return PriorKnowledgeHTTPFactory(http1, http2)
    return {ServerProtocol.HTTP1: http1, ServerProtocol.HTTP2: http2}.get(protocol)


@dataclass(frozen=True)
class InheritedServing:
    """How a server serves an inherited socket (see :func:`inherited_listeners`)."""

    #: For a TCP socket; None: the server serves no TCP.
    tcp_factory: HTTPOverTCPFactory | None
    #: For a UDP socket.
    http3_factory: HTTPOverQUICServerFactory
    tls_config: ServerTLSConfig
    protocol: ServerProtocol
    #: The server's networking: its TLS and PROXY header timeouts.
    networking: SystemNetworking
    options: ConnectionOptions
    handshake_limits: QUICHandshakeLimits


async def inherited_listeners(
    endpoint: Endpoint, fd: int, serving: InheritedServing
) -> list[HTTPListener]:
    """The listener of an ``fd`` endpoint: TCP or QUIC, as its socket is (none if excluded).

    :raises ValueError: if ``fd`` is no socket, neither TCP nor UDP, or a
        UDP socket given without TLS.
    """
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError as exc:
        raise ValueError(f"{endpoint}: no socket there ({exc.strerror})") from None
    try:
        networking = serving.networking
        listener: HTTPListener
        if sock.type == socket.SOCK_STREAM:
            tcp_factory = serving.tcp_factory
            if tcp_factory is None:
                sock.close()
                return []
            tcp = await networking.listen_tcp_socket(
                sock,
                tls_config=serving.tls_config if endpoint.tls else None,
                alpn_protocols=tcp_factory.alpn_protocols,
            )
            listener = HTTPOverTCPListener(tcp, tcp_factory, options=serving.options)
        elif sock.type == socket.SOCK_DGRAM:
            if not endpoint.tls:
                raise ValueError(f"{endpoint} is a UDP socket: HTTP/3 needs fd+tls://")
            if serving.protocol not in (ServerProtocol.ALL, ServerProtocol.HTTP3):
                sock.close()
                return []
            http3 = serving.http3_factory
            quic = await networking.listen_quic_socket(
                sock,
                quic_connection_id_length=http3.quic_connection_id_length,
                quic_supported_versions=http3.quic_supported_versions,
                quic_handshake_limits=serving.handshake_limits,
                quic_connection_id_generator=http3.quic_connection_id_generator,
            )
            listener = HTTPOverQUICListener(
                quic, http3, serving.tls_config, options=serving.options
            )
        else:
            raise ValueError(f"{endpoint} is neither a TCP nor a UDP socket")
    except BaseException:
        sock.close()
        raise
    return [listener]
