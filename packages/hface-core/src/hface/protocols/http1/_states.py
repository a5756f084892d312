"""The states of an HTTP/1.1 connection and of the exchange it carries.

Theory of operation (h11's ``_state.py`` is the model). An HTTP/1.1
connection carries one exchange, a request and its response, at a time;
every state the client and the server keep is one of the enums below, and
the connection's own life moves only through :data:`HTTP1_LIFECYCLE`:

- each direction of the exchange is a :class:`Half`: :attr:`~Half.IDLE`
  (no head yet; interim responses keep a response IDLE), :attr:`~Half.OPEN`
  (head done, body going) or :attr:`~Half.DONE`;
- the bytes of the exchange are in a :class:`Mode`: HTTP messages,
  a CONNECT request waiting for the response that decides (a 2xx makes a
  tunnel, RFC 9110 §9.3.6), a WebSocket upgrade request likewise (a 2xx
  goes out as 101, RFC 6455 §4), or the tunnel, raw bytes each way;
- a response body is framed one :class:`Framing` way (RFC 9112 §6);
- the byte stream from the peer is an :class:`Input`: open, or ended by
  its EOF (a half-close: our side may still be sending).

The connection is :attr:`~hface.protocols.ConnectionState.OPEN` while it
takes exchanges. A graceful close (``submit_goaway()``, or a response
submitted with ``connection: close``) makes it DRAINING at once: the
exchange in flight goes on, no other starts, and the response says
``connection: close``. A request that ends keep-alive (``Connection:
close``, HTTP/1.0, RFC 9112 §9.3) does so when its exchange is done
(``GOAWAY_RECEIVED``, then ``STREAMS_DONE``): until then the connection
is still the peer's to use. With no exchange left a draining connection
is CLOSING: nothing more is read and the layer above closes the transport.
``ConnectionTerminated`` makes it CLOSED: after a protocol error, a reset,
``submit_close()`` with an error code, the end of a tunnel, or the peer's
EOF once nothing is left to answer.
"""

from __future__ import annotations

import enum
from typing import Final

from hface.protocols import ConnectionState
from hface.protocols._lifecycle import LifecycleInput, TransitionTable


class Half(enum.Enum):
    """One direction of an exchange: the request, or the response."""

    #: No head yet (a response stays IDLE through interim responses).
    IDLE = "idle"
    #: The head is done; the body is going.
    OPEN = "open"
    #: The message has ended.
    DONE = "done"


class Mode(enum.Enum):
    """What the bytes of an exchange are."""

    #: An HTTP message each way.
    MESSAGE = "message"
    #: A CONNECT request waits for its response: a 2xx makes a tunnel, and
    #: the bytes after the request are held until then.
    CONNECT = "connect"
    #: A WebSocket upgrade request (presented as an extended CONNECT) waits
    #: for its response: a 2xx goes out as 101 and makes a tunnel.
    UPGRADE = "upgrade"
    #: Raw bytes each way, after a 2xx response to CONNECT or an upgrade.
    TUNNEL = "tunnel"


class Framing(enum.Enum):
    """How the body of a message we send is delimited (RFC 9112 §6)."""

    #: ``content-length`` (zero for a response that has no body).
    CONTENT_LENGTH = "content-length"
    #: ``transfer-encoding: chunked`` (RFC 9112 §7.1), the only one with trailers.
    CHUNKED = "chunked"
    #: Until the connection closes (a response of unknown length to HTTP/1.0).
    CLOSE_DELIMITED = "close-delimited"


class Input(enum.Enum):
    """The byte stream from the peer."""

    #: Bytes may come.
    OPEN = "open"
    #: The peer sent EOF: nothing more comes, but we may still send.
    ENDED = "ended"


# The members as module constants: on CPython 3.11 reading a member through
# its enum class costs several times a global, and every request reads a
# few dozen of them.
IDLE: Final = Half.IDLE
OPEN: Final = Half.OPEN
DONE: Final = Half.DONE
MESSAGE: Final = Mode.MESSAGE
CONNECT: Final = Mode.CONNECT
UPGRADE: Final = Mode.UPGRADE
TUNNEL: Final = Mode.TUNNEL
CONTENT_LENGTH: Final = Framing.CONTENT_LENGTH
CHUNKED: Final = Framing.CHUNKED
CLOSE_DELIMITED: Final = Framing.CLOSE_DELIMITED
ENDED: Final = Input.ENDED
CONNECTION_OPEN: Final = ConnectionState.OPEN
DRAINING: Final = ConnectionState.DRAINING
CLOSING: Final = ConnectionState.CLOSING
CLOSED: Final = ConnectionState.CLOSED

#: The lifecycle of an HTTP/1.1 connection, client or server. ``submit_goaway()``
#: and ``submit_close()`` do nothing once the connection is closing or closed
#: (the pairs that map a state to itself), but that an HTTP/1.1 server's
#: ``submit_close(status)`` still ends a connection that is closing.
#: ``abandon_linger()`` is QUIC's; ``CLOSE_SENT`` never happens here: the
#: layer above closes the transport.
HTTP1_LIFECYCLE: Final[TransitionTable] = {
    (CONNECTION_OPEN, LifecycleInput.SUBMIT_GOAWAY): DRAINING,
    (DRAINING, LifecycleInput.SUBMIT_GOAWAY): DRAINING,
    (CLOSING, LifecycleInput.SUBMIT_GOAWAY): CLOSING,
    (CLOSED, LifecycleInput.SUBMIT_GOAWAY): CLOSED,
    (CONNECTION_OPEN, LifecycleInput.SUBMIT_CLOSE): CLOSED,
    (DRAINING, LifecycleInput.SUBMIT_CLOSE): CLOSED,
    (CLOSING, LifecycleInput.SUBMIT_CLOSE): CLOSED,
    (CLOSED, LifecycleInput.SUBMIT_CLOSE): CLOSED,
    (CONNECTION_OPEN, LifecycleInput.SUBMIT_CLOSE_WITH_ERROR): CLOSED,
    (DRAINING, LifecycleInput.SUBMIT_CLOSE_WITH_ERROR): CLOSED,
    (CLOSING, LifecycleInput.SUBMIT_CLOSE_WITH_ERROR): CLOSED,
    (CLOSED, LifecycleInput.SUBMIT_CLOSE_WITH_ERROR): CLOSED,
    (CONNECTION_OPEN, LifecycleInput.GOAWAY_RECEIVED): DRAINING,
    (DRAINING, LifecycleInput.GOAWAY_RECEIVED): DRAINING,
    (DRAINING, LifecycleInput.STREAMS_DONE): CLOSING,
    (CONNECTION_OPEN, LifecycleInput.TERMINATED): CLOSED,
    (DRAINING, LifecycleInput.TERMINATED): CLOSED,
    (CLOSING, LifecycleInput.TERMINATED): CLOSED,
}
