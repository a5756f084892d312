from __future__ import annotations

from dataclasses import dataclass, field

from hface.common import HeadersType
from hface.errors import TerminationReason


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """The base of all hface events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionTerminated(Event):
    """The connection was closed, gracefully or not. No events follow."""

    error_code: int = 0
    """The version's error code; 0 (HTTP/3: 0x100) for a clean close."""

    message: str | None = None
    """A description for people, if any side gave one."""

    reason: TerminationReason | None = field(default=None, compare=False)
    """Why the connection ended, for code (None if the layer did not say).

    Not compared: two events with the same code and message are equal.
    """

    transport_error_code: int | None = field(default=None, compare=False)
    """HTTP/3: the QUIC transport error code (RFC 9000 §20.1) of a close
    at the QUIC level, e.g. 0x100 plus a TLS alert; None otherwise. Not compared."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GoawayReceived(Event):
    """The peer is shutting down: it will process no stream above ``last_stream_id``.

    Streams up to ``last_stream_id`` go on; new streams must go to another connection.
    """

    last_stream_id: int
    """The highest stream ID the peer may still process."""

    error_code: int = 0
    """The version's error code; the no-error code for a graceful shutdown."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEvent(Event):
    """The base of events about one stream."""

    stream_id: int
    """The stream this event belongs to."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadersReceived(StreamEvent):
    """A header block: a request, a response (interim or final), or trailers."""

    headers: HeadersType
    """Lower-case names, pseudo-headers first, HTTP/2 style on every version."""

    end_stream: bool = False
    """True if the peer will send nothing more on this stream."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived(StreamEvent):
    """A piece of a message body.

    On HTTP/2 and HTTP/3 the peer may send more only after the receiver
    acknowledges this data (``HTTPProtocol.acknowledge_received_data``).
    """

    data: bytes
    """The bytes received; may be empty when it only carries ``end_stream``."""

    end_stream: bool = False
    """True if the peer will send nothing more on this stream."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DatagramReceived(StreamEvent):
    """An HTTP Datagram (RFC 9297) associated with the stream.

    Unreliable and unordered: HTTP/3 carries it in a QUIC DATAGRAM frame
    (RFC 9221), HTTP/2 and HTTP/1.1 in a DATAGRAM capsule in the stream's
    data once the stream has switched to the Capsule Protocol (a 2xx
    response to an extended CONNECT, such as ``connect-udp``). It is not
    flow controlled: nothing is acknowledged for it.
    """

    data: bytes
    """The datagram's payload (possibly empty)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamReset(StreamEvent):
    """A stream was cancelled; nothing more is sent or received on it."""

    error_code: int = 0
    """The version's error code given with the reset."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamResetReceived(StreamReset):
    """The peer reset the stream."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamResetSent(StreamReset):
    """We reset the stream, on request or because the peer broke its rules."""
