"""HTTP Datagrams in the Capsule Protocol (RFC 9297 §3): the streams that carry them.

Theory of operation
-------------------

A stream switches to the Capsule Protocol once an extended CONNECT (a
``:protocol`` pseudo-header: RFC 8441, RFC 9220; HTTP/1.1 presents its
``Upgrade`` requests that way) whose upgrade token uses it gets a 2xx
response: ``connect-udp`` always (RFC 9298 §3), any other with the
``capsule-protocol: ?1`` header (RFC 9297 §3.4). From then on the
stream's data is a sequence of capsules, each a type, a length and a
value (§3.2), and every version presents them alike:

- a DATAGRAM capsule (type 0x00, §3.5) becomes a ``DatagramReceived``
  event, and ``submit_datagram`` sends one (HTTP/3 prefers a QUIC DATAGRAM
  frame, see :mod:`hface.protocols.http3`);
- a capsule of another type is dropped unread, as §3.2 requires of types
  the endpoint does not know, and so is a DATAGRAM capsule over
  :data:`MAX_DATAGRAM_SIZE` (datagrams are unreliable: dropping one is
  always allowed); neither is ever buffered whole;
- the data is credited back to the peer as it is parsed (datagrams are not
  flow controlled: the layer above drops what it cannot hold), and the end
  of the stream still arrives as ``DataReceived(data=b"", end_stream=True)``;
- a stream that ends in the middle of a capsule is malformed (§3.3): the
  protocol resets it with its ``message_error`` code, ``StreamResetSent``
  (HTTP/1.1: a reset ends the connection).

:class:`CapsuleStreams` keeps one :class:`CapsuleStream` per stream that
asked for the switch, in a :class:`CapsuleState` moved only through
:data:`TRANSITIONS`, and is driven by the protocol that owns it: the
headers it submits (:meth:`CapsuleStreams.headers_submitted`) and every
event it hands out (:meth:`CapsuleStreams.translate`, called by
``next_event``). It does no I/O and raises
:class:`~hface.errors.LocalProtocolError` for misuse only.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from hface.common import HeadersType
from hface.errors import LocalProtocolError
from hface.events import (
    ConnectionTerminated,
    DatagramReceived,
    DataReceived,
    Event,
    HeadersReceived,
    StreamReset,
)

if TYPE_CHECKING:
    from ._protocols import HTTPProtocol

#: RFC 9297 §3.5: the type of the DATAGRAM capsule.
DATAGRAM_CAPSULE: Final = 0x00
#: The largest HTTP Datagram payload read from a capsule; larger ones are dropped.
#: A UDP payload (at most 65,527 bytes) plus a context ID (RFC 9298 §5).
MAX_DATAGRAM_SIZE: Final = 65535
#: The upgrade tokens that use the Capsule Protocol whatever the headers say.
CAPSULE_PROTOCOLS: Final = frozenset({b"connect-udp"})


def encode_varint(value: int) -> bytes:
    """A QUIC variable-length integer (RFC 9000 §16)."""
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 0x40000000:
        return (value | 0x80000000).to_bytes(4, "big")
    if value < 0x4000000000000000:
        return (value | 0xC000000000000000).to_bytes(8, "big")
    raise ValueError(f"{value} is too large for a variable-length integer")


def decode_varint(data: bytes | bytearray, offset: int) -> tuple[int, int] | None:
    """Decode a variable-length integer at ``offset``: (value, next offset), or None if cut."""
    if offset >= len(data):
        return None
    first = data[offset]
    size = 1 << (first >> 6)
    end = offset + size
    if end > len(data):
        return None
    value = first & 0x3F
    for index in range(offset + 1, end):
        value = (value << 8) | data[index]
    return value, end


def encode_datagram_capsule(payload: bytes) -> bytes:
    """A DATAGRAM capsule (RFC 9297 §3.5) carrying ``payload``."""
    return b"\x00" + encode_varint(len(payload)) + payload


def uses_capsules(headers: HeadersType) -> bool:
    """Whether an extended CONNECT request switches its stream to capsules on a 2xx."""
    protocol: bytes | None = None
    connect = False
    for name, value in headers:  # pseudo-headers first (every version presents them so)
        if name[:1] != b":":
            break
        if name == b":protocol":
            protocol = value
        elif name == b":method":
            connect = value == b"CONNECT"
    if not connect or protocol is None:
        return False
    if protocol in CAPSULE_PROTOCOLS:
        return True
    # RFC 9297 §3.4: the Capsule-Protocol header, a Structured Boolean.
    return any(name == b"capsule-protocol" and value.strip() == b"?1" for name, value in headers)


def _final_2xx(headers: HeadersType) -> bool | None:
    """True for a 2xx response, False for another final one, None for 1xx (or no status)."""
    for name, value in headers:
        if name == b":status":
            if value[:1] == b"1":
                return None
            return value[:1] == b"2"
        if name[:1] != b":":
            break
    return None


class CapsuleState(enum.Enum):
    """Where a stream that asked for the Capsule Protocol is."""

    #: The extended CONNECT went out or came in; its final response decides.
    REQUESTED = "requested"
    #: A 2xx response: the stream's data is capsules, both ways.
    ACTIVE = "active"
    #: Forgotten: refused, reset, ended by the peer, or the connection ended.
    DONE = "done"


class CapsuleInput(enum.Enum):
    """What moves a :class:`CapsuleStream`."""

    ACCEPTED = "accepted"  # a final 2xx response, sent or received
    REFUSED = "refused"  # another final response
    ENDED = "ended"  # a reset, the peer's end of the stream, or the connection's end


_REQUESTED: Final = CapsuleState.REQUESTED
_ACTIVE: Final = CapsuleState.ACTIVE
_DONE: Final = CapsuleState.DONE

#: How a stream's state moves (an input missing from it is a bug).
TRANSITIONS: Final[Mapping[tuple[CapsuleState, CapsuleInput], CapsuleState]] = {
    (_REQUESTED, CapsuleInput.ACCEPTED): _ACTIVE,
    (_REQUESTED, CapsuleInput.REFUSED): _DONE,
    (_REQUESTED, CapsuleInput.ENDED): _DONE,
    (_ACTIVE, CapsuleInput.ENDED): _DONE,
}


class MalformedCapsules(Exception):
    """The stream's capsules are malformed (RFC 9297 §3.3) (internal)."""


class CapsuleStream:
    """One stream's state and its capsule parser (internal).

    The parser keeps the bytes of one capsule header or DATAGRAM value at
    most (:data:`MAX_DATAGRAM_SIZE`); other capsules are skipped as they arrive.
    """

    __slots__ = ("buffer", "skip", "state")

    def __init__(self) -> None:
        self.state = _REQUESTED
        #: The bytes of an incomplete capsule.
        self.buffer = bytearray()
        #: Bytes still to drop of a capsule that is skipped.
        self.skip = 0

    def move(self, event: CapsuleInput) -> CapsuleState:
        self.state = TRANSITIONS[self.state, event]
        return self.state

    def feed(self, data: bytes) -> list[bytes]:
        """Parse ``data``; return the payloads of the DATAGRAM capsules it completed."""
        skip = self.skip
        if skip:
            if skip >= len(data):
                self.skip = skip - len(data)
                return []
            data = data[skip:]
            self.skip = 0
        buffer = self.buffer
        buffer += data
        payloads: list[bytes] = []
        offset = 0
        size = len(buffer)
        while offset < size:
            parsed = decode_varint(buffer, offset)
            if parsed is None:
                break
            capsule_type, after_type = parsed
            parsed = decode_varint(buffer, after_type)
            if parsed is None:
                break
            length, start = parsed
            end = start + length
            if capsule_type != DATAGRAM_CAPSULE or length > MAX_DATAGRAM_SIZE:
                if end > size:  # skip it as it arrives, never holding it
                    self.skip = end - size
                    offset = size
                    break
                offset = end
                continue
            if end > size:
                break
            payloads.append(bytes(buffer[start:end]))
            offset = end
        del buffer[:offset]
        return payloads

    def complete(self) -> bool:
        """Whether the data so far ends on a capsule boundary."""
        return not self.buffer and not self.skip


class CapsuleStreams:
    """The streams of one connection that asked for the Capsule Protocol (internal).

    :param protocol: the protocol that owns it (for acknowledgements and resets).
    :param client: True on the client side (requests go out, responses come in).
    """

    __slots__ = ("_client", "_protocol", "streams")

    def __init__(self, protocol: HTTPProtocol, *, client: bool) -> None:
        self._protocol = protocol
        self._client = client
        #: The streams, by ID, until they are done.
        self.streams: dict[int, CapsuleStream] = {}

    def is_active(self, stream_id: int) -> bool:
        """Whether the stream's data is capsules now."""
        stream = self.streams.get(stream_id)
        return stream is not None and stream.state is _ACTIVE

    def headers_submitted(self, stream_id: int, headers: HeadersType) -> None:
        """Note a header block the protocol sent (call after it was accepted)."""
        if self._client:
            if uses_capsules(headers):
                self.streams[stream_id] = CapsuleStream()
            return
        stream = self.streams.get(stream_id)
        if stream is not None and stream.state is _REQUESTED:
            self._answered(stream_id, stream, headers)

    def encode_datagram(self, stream_id: int, payload: bytes) -> bytes:
        """The DATAGRAM capsule to send on the stream.

        :raises LocalProtocolError: if the stream does not carry capsules (yet).
        """
        if not self.is_active(stream_id):
            raise LocalProtocolError(
                f"stream {stream_id} carries no HTTP Datagrams: it needs a 2xx response to an"
                " extended CONNECT that uses the Capsule Protocol (RFC 9297 §3)"
            )
        return encode_datagram_capsule(payload)

    def translate(self, event: Event, events: deque[Event]) -> Event | None:
        """Return what ``event``, just taken from ``events``, stands for.

        The data of an active stream becomes its ``DatagramReceived`` events
        (the rest of them put back at the front of ``events``); None if
        nothing is left to return.
        """
        while True:
            result = self._translate_one(event, events)
            if result is not None or not events:
                return result
            event = events.popleft()

    def _translate_one(self, event: Event, events: deque[Event]) -> Event | None:
        streams = self.streams
        if type(event) is HeadersReceived:
            stream_id = event.stream_id
            stream = streams.get(stream_id)
            if stream is None:
                if not self._client and uses_capsules(event.headers):
                    streams[stream_id] = CapsuleStream()
            elif self._client and stream.state is _REQUESTED:
                self._answered(stream_id, stream, event.headers)
            if event.end_stream:
                streams.pop(stream_id, None)
            return event
        if isinstance(event, StreamReset):
            streams.pop(event.stream_id, None)
            return event
        if type(event) is ConnectionTerminated:
            streams.clear()
            return event
        if type(event) is not DataReceived:
            return event
        stream_id = event.stream_id
        stream = streams.get(stream_id)
        if stream is None or (stream.state is not _ACTIVE and self._client):
            # A server reads capsules sent before its answer too (a client
            # may send them at once); a refusal forgets them.
            return event
        data = event.data
        protocol = self._protocol
        try:
            payloads = stream.feed(data) if data else []
            if event.end_stream:
                del streams[stream_id]
                stream.move(CapsuleInput.ENDED)
                if not stream.complete():
                    raise MalformedCapsules
        except MalformedCapsules:
            # RFC 9297 §3.3: a malformed message; its StreamResetSent follows.
            protocol.acknowledge_received_data(stream_id, len(data))
            protocol.submit_stream_reset(stream_id, protocol.error_codes.message_error)
            return None
        if data:
            protocol.acknowledge_received_data(stream_id, len(data))
        out: list[Event] = [DatagramReceived(stream_id=stream_id, data=p) for p in payloads]
        if event.end_stream:
            out.append(DataReceived(stream_id=stream_id, data=b"", end_stream=True))
        if not out:
            return None
        if len(out) > 1:
            events.extendleft(reversed(out[1:]))
        return out[0]

    def _answered(self, stream_id: int, stream: CapsuleStream, headers: HeadersType) -> None:
        accepted = _final_2xx(headers)
        if accepted is None:
            return
        if stream.move(CapsuleInput.ACCEPTED if accepted else CapsuleInput.REFUSED) is _DONE:
            del self.streams[stream_id]
