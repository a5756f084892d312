"""``ConnectionOptions``: what a connection's owner may tune, in one frozen value.

Listeners and openers hand the same options to every connection they make;
a server makes one value when it starts (``BaseServer._connection_options``)
instead of threading keywords through every layer. Each field says which
transport it concerns and what its default is; the defaults are those a
client wants, and :class:`~hface.connections.HTTPOverTCPListener` makes
its connections linger (see :data:`DEFAULT_LINGER_TIMEOUT`) unless given
options of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Seconds a server's TCP connection lingers at most after its last write,
#: reading and discarding what the client still sends (nginx's ``lingering_time``).
DEFAULT_LINGER_TIMEOUT: Final = 2.0
#: Bytes a lingering TCP connection reads and discards at most before it closes.
DEFAULT_LINGER_MAX_BYTES: Final = 1024 * 1024
#: Seconds a QUIC handshake may take by default (as a TLS handshake on a server).
DEFAULT_QUIC_HANDSHAKE_TIMEOUT: Final = 10.0
#: Bytes of one stream the protocol may hold before ``send_data`` waits.
DEFAULT_MAX_PENDING_DATA: Final = 256 * 1024
#: Received bytes waiting to be taken before an HTTP/1.1 connection stops reading.
DEFAULT_MAX_BUFFERED_DATA: Final = 1024 * 1024
#: Bytes of received HTTP Datagrams one stream queues; more are dropped.
DEFAULT_MAX_BUFFERED_DATAGRAMS: Final = 256 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionOptions:
    """How an :class:`~hface.connections.HTTPConnection` buffers, acknowledges and closes.

    Every field has a default; ``ConnectionOptions(auto_acknowledge=False)``
    changes one. Give the value to a listener or an opener (``options=``),
    which hands it to each connection it makes.

    :raises ValueError: if a field is out of range.
    """

    #: ``send_data`` waits while the protocol holds more than this many bytes
    #: of the stream that the peer's flow-control window does not let through yet.
    max_pending_data: int = DEFAULT_MAX_PENDING_DATA

    #: HTTP/1.1 (which has no flow-control window) stops reading the socket
    #: while more than this many received bytes wait to be taken, from
    #: :meth:`HTTPConnection.receive_event
    #: <hface.connections.HTTPConnection.receive_event>` or the streams' queues.
    max_buffered_data: int = DEFAULT_MAX_BUFFERED_DATA

    #: Acknowledge received data (reopening the HTTP/2 or HTTP/3 window) as
    #: ``receive_event`` returns it; False to acknowledge only when the
    #: consumer says so (:meth:`HTTPStream.acknowledge
    #: <hface.connections.HTTPStream.acknowledge>`,
    #: :meth:`HTTPConnection.acknowledge_received_data
    #: <hface.connections.HTTPConnection.acknowledge_received_data>`), as the
    #: data is really consumed. Data nobody will read (of a closed stream) is
    #: acknowledged either way.
    auto_acknowledge: bool = True

    #: Bytes of received HTTP Datagrams (``DatagramReceived``) one stream's
    #: queue holds; what arrives beyond is dropped (datagrams are
    #: unreliable, and not flow controlled: a slow reader must not make
    #: memory grow).
    max_buffered_datagrams: int = DEFAULT_MAX_BUFFERED_DATAGRAMS

    #: TCP servers: seconds a closing connection may read and discard what
    #: the peer still sends (see :class:`HTTPOverTCPConnection
    #: <hface.connections.HTTPOverTCPConnection>`); None never lingers, as
    #: clients should not. :class:`HTTPOverTCPListener
    #: <hface.connections.HTTPOverTCPListener>` uses
    #: :data:`DEFAULT_LINGER_TIMEOUT` when given no options.
    linger_timeout: float | None = None

    #: TCP servers: bytes a lingering close reads at most.
    linger_max_bytes: int = DEFAULT_LINGER_MAX_BYTES

    #: QUIC: seconds from :meth:`HTTPConnection.open
    #: <hface.connections.HTTPConnection.open>` for the handshake to
    #: complete; after that the connection fails (``ConnectionTerminated``;
    #: ``open()`` raises on a client). Without it a server would wait for a
    #: peer gone silent after its Initial until QUIC's idle timeout. None:
    #: no limit of its own.
    handshake_timeout: float | None = DEFAULT_QUIC_HANDSHAKE_TIMEOUT

    def __post_init__(self) -> None:
        for name in (
            "max_pending_data",
            "max_buffered_data",
            "max_buffered_datagrams",
            "linger_max_bytes",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer, 0 or more, not {value!r}")
        if self.linger_timeout is not None and not self.linger_timeout >= 0:
            raise ValueError(f"linger_timeout must be 0 or more, not {self.linger_timeout!r}")
        if self.handshake_timeout is not None and not self.handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be positive, not {self.handshake_timeout!r}")


#: The options of a connection made without any.
DEFAULT_OPTIONS: Final = ConnectionOptions()
#: The options of a server's TCP connections made without any: they linger.
SERVER_TCP_OPTIONS: Final = ConnectionOptions(linger_timeout=DEFAULT_LINGER_TIMEOUT)
