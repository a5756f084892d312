"""The machinery HTTP/1.1 clients and servers share: one exchange at a time.

Theory of operation
-------------------

An HTTP/1.1 connection carries one exchange (a request and its response)
at a time. Each exchange is presented as one stream of the shared event
vocabulary, with IDs 1, 3, 5, ... on both sides, so that code written for
HTTP/2 works unchanged.

Bytes flow one way: ``bytes_received`` feeds a parser adapter
(:mod:`._parser`: h11 or llhttp), and :meth:`HTTP1Base._receive` turns the
items it hands out into events. A head is the client's or the server's to
read (``_on_head``: a request starts an exchange, a response answers it)
and becomes ``HeadersReceived``; a piece of body becomes ``DataReceived``;
the end of the message marks the last of them ``end_stream``, so that a
body's last piece, or the head of a message without a body, is one event
(trailers are a ``HeadersReceived`` of their own); a parse error resets
the exchange and ends the connection (a server answers it first); the end
of the peer's byte stream ends a connection with no exchange left.

Every state is one of :mod:`._states`: ``_local`` and ``_remote`` (a
:class:`~._states.Half` each), ``_mode`` (:class:`~._states.Mode`),
``_input`` (:class:`~._states.Input`), and the connection's
:class:`~hface.protocols._lifecycle.Lifecycle`, driven by
:data:`~._states.HTTP1_LIFECYCLE`. When both directions of an exchange
are done it ends (``_exchange_done``): a connection that stays open asks
the parser for the next message (a pipelined one may be waiting), any
other becomes closing, and closed at once if the peer has already sent
EOF. Whether a connection stays open is a fact of the exchange
(``_keep_alive``, from the request: RFC 9112 §9.3) or the lifecycle's
(a graceful close). The peer may half-close after a complete message: the
exchange finishes our side first, then the requests that came before the
EOF are answered. Pipelined requests wait in the parser while one is
answered, up to :data:`MAX_PIPELINED` bytes: beyond them the answer in
progress says ``connection: close`` and the rest is dropped.

A CONNECT exchange whose response is 2xx becomes a tunnel (RFC 9110
§9.3.6), and so does a WebSocket upgrade (:mod:`._upgrade`): the
parser hands over the bytes that followed the request
(``take_raw``), and from then on bytes flow raw, as ``DataReceived`` and
``submit_data`` on the CONNECT stream, until both sides have ended. A
CONNECT-UDP upgrade's tunnel carries capsules instead, read as they are
taken from ``next_event`` (``DatagramReceived``) and written by
``submit_datagram`` (see :mod:`hface.protocols._capsules`).

Peer errors never raise: they become events. Misuse by the caller raises
:class:`~hface.errors.LocalProtocolError`, checked before anything is
sent, so that the connection stays usable.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import deque
from typing import Final, Generic

from hface.common import HTTP1_ERROR_CODES, HeadersType, HeaderType
from hface.errors import LocalProtocolError, TerminationReason
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HeadersReceived,
    StreamResetReceived,
    StreamResetSent,
)
from hface.protocols import ConnectionState, HTTP1Protocol
from hface.protocols._capsules import CapsuleStreams
from hface.protocols._lifecycle import Lifecycle, LifecycleInput

from ._headers import OutgoingHeaders, count_body_bytes, trailer_headers
from ._parser import EOF, End, HeadT, MessageParser, ParseError
from ._states import (
    CHUNKED,
    CLOSED,
    CLOSING,
    CONNECTION_OPEN,
    CONTENT_LENGTH,
    DONE,
    DRAINING,
    ENDED,
    HTTP1_LIFECYCLE,
    IDLE,
    MESSAGE,
    OPEN,
    TUNNEL,
    Input,
)

#: The error code of a peer's protocol violation.
PROTOCOL_ERROR: Final = HTTP1_ERROR_CODES.protocol_error

#: Bytes of requests parsed ahead (pipelined) while one is answered; beyond
#: them the connection closes after that answer, and the rest is dropped (a
#: pipelining client must be ready to send again what was not answered,
#: RFC 9112 §9.3.2).
MAX_PIPELINED: Final = 1024 * 1024

#: What was received and may yet end with the next item: a head's header
#: list, or a piece of body.
_Pending = list[HeaderType] | bytes


def remote_error_reason(eof: bool) -> TerminationReason:
    """Why a peer's bad message ends the connection: an early close after the peer's EOF."""
    return TerminationReason.CLOSED_BY_PEER if eof else TerminationReason.PEER_PROTOCOL_ERROR


class HTTP1Base(HTTP1Protocol, Generic[HeadT]):
    """The shared part of :class:`HTTP1ClientProtocol` and :class:`HTTP1ServerProtocol`."""

    _client_side: bool

    def __init__(self, parser: MessageParser[HeadT]) -> None:
        self._parser = parser
        self._lifecycle = Lifecycle(HTTP1_LIFECYCLE)
        self._events: deque[Event] = deque()
        # The exchange that switches to the Capsule Protocol (RFC 9297 §3), if any.
        self._capsules = CapsuleStreams(self, client=self._client_side)
        self._out: list[bytes] = []
        self._next_stream_id = 1
        # The exchange in progress, or None between exchanges.
        self._stream_id: int | None = None
        self._local = IDLE
        self._remote = IDLE
        self._mode = MESSAGE
        self._input = Input.OPEN
        # How the body we send is framed, and the bytes it still owes (None:
        # unknown length).
        self._framing = CONTENT_LENGTH
        self._local_remaining: int | None = None
        # False once a message of this exchange ended keep-alive (RFC 9112 §9.3).
        self._keep_alive = True

    # -- state ---------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._lifecycle.state

    def has_expired(self) -> bool:
        return self._lifecycle.state is not CONNECTION_OPEN

    def next_event(self) -> Event | None:
        events = self._events
        if not events:
            return None
        event = events.popleft()
        capsules = self._capsules
        if capsules.streams or (not self._client_side and type(event) is HeadersReceived):
            return capsules.translate(event, events)  # HTTP Datagrams (see .._capsules)
        return event

    def submit_datagram(self, stream_id: int, data: bytes) -> bool:
        # RFC 9297 §3.5, RFC 9298 §3.2: a DATAGRAM capsule in the upgraded connection.
        self.submit_data(stream_id, self._capsules.encode_datagram(stream_id, data))
        return True

    def acknowledge_received_data(self, stream_id: int, amount: int) -> None:
        """Do nothing: HTTP/1.1 has no flow-control windows."""

    def get_pending_data_size(self, stream_id: int) -> int:
        """Return 0: submitted data is never held back."""
        return 0

    # -- bytes ---------------------------------------------------------------

    def bytes_received(self, data: bytes) -> None:
        if not data or self._input is ENDED:
            return
        if self._mode is TUNNEL:
            if self._remote is OPEN:
                assert self._stream_id is not None
                self._events.append(DataReceived(stream_id=self._stream_id, data=data))
            return
        parser = self._parser
        parser.feed(data)
        self._receive()
        if self._stream_id is not None and parser.held > MAX_PIPELINED:
            # Answer the exchange in progress, then close (RFC 9112 §9.3.2).
            parser.stop()
            self.submit_goaway()

    def bytes_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        # One piece of bytes (a body chunk with content-length framing) goes
        # out as it is: joining would copy it.
        first = out[0]
        data = first if len(out) == 1 and type(first) is bytes else b"".join(out)
        out.clear()
        return data

    def eof_received(self) -> None:
        if self._input is ENDED:
            return
        self._input = ENDED
        if self._mode is TUNNEL:
            self._tunnel_remote_done()
            return
        self._parser.feed_eof()
        self._receive()
        if self._lifecycle.state is CLOSING:
            self._terminate(0, None, reason=TerminationReason.CLOSED_BY_PEER)

    def connection_lost(self) -> None:
        if self._lifecycle.state is CLOSED:
            return
        stream_id = self._stream_id
        if stream_id is None:
            self._terminate(0, None, reason=TerminationReason.TRANSPORT_LOST)
        else:
            self._events.append(StreamResetReceived(stream_id=stream_id, error_code=PROTOCOL_ERROR))
            self._terminate(
                PROTOCOL_ERROR, "connection lost", reason=TerminationReason.TRANSPORT_LOST
            )

    # -- receiving -----------------------------------------------------------

    def _receive(self) -> None:
        """Turn the items the parser has ready into events (see the theory of operation)."""
        next_item = self._parser.next_item
        events = self._events
        pending: _Pending | None = None
        while (item := next_item()) is not None:
            # Told apart by isinstance for bytes, and by exact type for the
            # final classes (which costs less, on every request).
            if isinstance(item, bytes):
                if pending is not None:
                    events.append(self._pending_event(pending))
                pending = item
            elif type(item) is End:
                stream_id = self._stream_id
                assert stream_id is not None
                if self._mode is not MESSAGE:
                    # The end of a CONNECT or upgrade request: the response
                    # decides whether a tunnel follows.
                    if pending is not None:
                        events.append(self._pending_event(pending))
                    return
                self._remote = DONE
                if item.trailers:
                    if pending is not None:
                        events.append(self._pending_event(pending))
                    events.append(
                        HeadersReceived(
                            stream_id=stream_id,
                            headers=trailer_headers(item.trailers),
                            end_stream=True,
                        )
                    )
                elif pending is None:
                    events.append(DataReceived(stream_id=stream_id, data=b"", end_stream=True))
                elif isinstance(pending, bytes):
                    events.append(DataReceived(stream_id=stream_id, data=pending, end_stream=True))
                else:
                    events.append(
                        HeadersReceived(stream_id=stream_id, headers=pending, end_stream=True)
                    )
                pending = None
                if self._local is not DONE or not self._exchange_done():
                    # The exchange goes on, or nothing follows yet.
                    return
            else:
                if pending is not None:
                    events.append(self._pending_event(pending))
                    pending = None
                if type(item) is ParseError:
                    self._on_parse_error(item)
                elif item is EOF:
                    if self._stream_id is None:
                        self._terminate(0, None, reason=TerminationReason.CLOSED_BY_PEER)
                else:
                    pending = self._on_head(item)
        if pending is not None:
            events.append(self._pending_event(pending))

    @abstractmethod
    def _on_head(self, head: HeadT) -> list[HeaderType] | None:
        """Take a received head; return its header list, or None if it makes no event."""

    def _pending_event(self, pending: _Pending) -> HeadersReceived | DataReceived:
        stream_id = self._stream_id
        assert stream_id is not None
        if isinstance(pending, bytes):
            return DataReceived(stream_id=stream_id, data=pending)
        return HeadersReceived(stream_id=stream_id, headers=pending)

    def _on_parse_error(self, error: ParseError) -> None:
        stream_id = self._stream_id
        if stream_id is not None:
            self._events.append(StreamResetReceived(stream_id=stream_id, error_code=PROTOCOL_ERROR))
        self._answer_parse_error(error)
        self._terminate(
            error.status, error.reason, reason=remote_error_reason(self._input is ENDED)
        )

    def _answer_parse_error(self, error: ParseError) -> None:
        """Tell the peer what was wrong, if this side can (a server can)."""

    # -- sending -------------------------------------------------------------

    def submit_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if stream_id != self._stream_id or self._local is not OPEN:
            raise LocalProtocolError(f"stream {stream_id} is not open for sending")
        mode = self._mode
        if mode is TUNNEL:
            if data:
                self._out.append(data)
            if end_stream:
                self._local = DONE
                if self._remote is DONE:
                    self._terminate(0, None, reason=TerminationReason.CLOSED_BY_US)
            return
        if mode is not MESSAGE:
            raise LocalProtocolError("the tunnel is not established yet")
        # Checked here, before the parser or the peer could see too much.
        self._local_remaining = count_body_bytes(self._local_remaining, len(data), end_stream)
        self._send_body(data, end_stream)

    @abstractmethod
    def _send_body(self, data: bytes, end_stream: bool) -> None:
        """Send a piece of the body (checked against the framing), ending it if asked."""

    def _submit_trailers(self, headers: HeadersType, end_stream: bool) -> None:
        if not end_stream:
            raise LocalProtocolError("trailers must end the stream")
        if self._framing is not CHUNKED:
            raise LocalProtocolError("trailers need a chunked message, not a content-length one")
        outgoing = OutgoingHeaders(headers)
        outgoing.no_pseudo("trailers")
        self._send_trailers(outgoing.fields)

    @abstractmethod
    def _send_trailers(self, fields: list[HeaderType]) -> None:
        """End a chunked body with these trailer fields."""

    def submit_stream_reset(self, stream_id: int, error_code: int = 0) -> None:
        """Close the connection: HTTP/1.1 cannot cancel one exchange alone."""
        if stream_id != self._stream_id or self._lifecycle.state is CLOSED:
            return
        self._out.clear()
        self._events.append(StreamResetSent(stream_id=stream_id, error_code=error_code))
        self._terminate(
            error_code,
            "stream reset",
            LifecycleInput.SUBMIT_CLOSE,
            reason=TerminationReason.CLOSED_BY_US,
        )

    def submit_goaway(self) -> None:
        """Begin a graceful close: after the exchange in progress, or at once if there is none."""
        state = self._lifecycle.handle(LifecycleInput.SUBMIT_GOAWAY)
        if state is DRAINING and self._stream_id is None:
            self._closing()

    # -- exchange life cycle -------------------------------------------------

    def _local_done(self) -> None:
        self._local = DONE
        if self._remote is DONE and self._exchange_done():
            self._receive()  # what waited for the next exchange

    def _exchange_done(self) -> bool:
        """End the exchange; return True if the next message may be ready to read."""
        self._stream_id = None
        self._local = self._remote = IDLE
        self._mode = MESSAGE
        lifecycle = self._lifecycle
        if lifecycle.state is CONNECTION_OPEN and self._keep_alive:
            return self._parser.next_message()
        if lifecycle.state is CONNECTION_OPEN:
            # The exchange ended keep-alive (RFC 9112 §9.6): the last one.
            lifecycle.handle(LifecycleInput.GOAWAY_RECEIVED)
        self._closing()
        return False

    def _closing(self) -> None:
        """A draining connection has no exchange left: it reads no more, and closes."""
        self._lifecycle.handle(LifecycleInput.STREAMS_DONE)
        self._parser.stop()
        if self._input is ENDED:
            self._terminate(0, None, reason=TerminationReason.CLOSED_BY_PEER)

    def _terminate(
        self,
        error_code: int,
        message: str | None,
        cause: LifecycleInput = LifecycleInput.TERMINATED,
        *,
        reason: TerminationReason,
    ) -> None:
        lifecycle = self._lifecycle
        if lifecycle.state is CLOSED:
            return
        lifecycle.handle(cause)
        self._stream_id = None
        self._input = ENDED
        self._parser.stop()
        self._events.append(
            ConnectionTerminated(error_code=error_code, message=message, reason=reason)
        )

    # -- CONNECT tunnels -----------------------------------------------------

    def _enter_tunnel(self) -> None:
        """Switch to raw bytes after a 2xx response to CONNECT (RFC 9110 §9.3.6) or an upgrade."""
        self._mode = TUNNEL
        self._remote = OPEN
        raw = self._parser.take_raw()
        if raw:
            assert self._stream_id is not None
            self._events.append(DataReceived(stream_id=self._stream_id, data=raw))
        if self._input is ENDED:
            self._tunnel_remote_done()

    def _tunnel_remote_done(self) -> None:
        if self._remote is not OPEN or self._stream_id is None:
            return
        self._remote = DONE
        self._events.append(DataReceived(stream_id=self._stream_id, data=b"", end_stream=True))
        if self._local is DONE:
            self._terminate(0, None, reason=TerminationReason.CLOSED_BY_PEER)
