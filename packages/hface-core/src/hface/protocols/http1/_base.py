"""The machinery HTTP/1.1 clients and servers share, on top of h11.

Theory of operation
-------------------

An HTTP/1.1 connection carries one exchange (a request and its response)
at a time. Each exchange is presented as one stream of the shared event
vocabulary, with IDs 1, 3, 5, ... on both sides, so that code written for
HTTP/2 works unchanged. h11 keeps the per-message state; on top of it this
class keeps:

* ``_stream_id``: the exchange in progress, or None between exchanges;
* ``_local`` and ``_remote``: how far each direction of the exchange has
  got (:data:`IDLE` nothing yet, :data:`OPEN` headers done and body going,
  :data:`DONE` ended);
* ``_tunnel``: once a CONNECT request got a 2xx response (RFC 9110 §9.3.6)
  h11 steps aside and the bytes flow raw, as ``DataReceived`` and
  ``submit_data`` on the CONNECT stream, until both sides have ended.

When both directions are done the exchange ends; if h11 agrees that the
connection can be reused it starts the next cycle and any request already
buffered (pipelining) is parsed. Received events are pulled from h11 in
:meth:`_pull`; a body's last ``Data`` and h11's ``EndOfMessage`` that come
out of the same call are merged into one event with ``end_stream=True``,
and so are the headers of a message with no body.

Peer errors never raise: they become ``StreamResetReceived`` for an
exchange in progress, then ``ConnectionTerminated`` (a server also queues
an error response with a one-line text body first, see
:meth:`_on_remote_error`). Misuse by the caller raises
:class:`~hface.errors.LocalProtocolError`, checked before h11 is called
where that keeps the connection usable.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import h11

from hface.common import HTTP1_ERROR_CODES, HeadersType
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

from ._headers import OutgoingHeaders, count_body_bytes, trailer_headers

#: Direction states of an exchange.
IDLE: Final = 0
OPEN: Final = 1
DONE: Final = 2

#: The error code of a peer's protocol violation.
PROTOCOL_ERROR: Final = HTTP1_ERROR_CODES.protocol_error


def remote_error_reason(eof: bool) -> TerminationReason:
    """Why a peer's bad message ends the connection: an early close after the peer's EOF."""
    return TerminationReason.CLOSED_BY_PEER if eof else TerminationReason.PEER_PROTOCOL_ERROR


class HTTP1Base(HTTP1Protocol):
    """The shared part of :class:`HTTP1ClientProtocol` and :class:`HTTP1ServerProtocol`."""

    def __init__(
        self, *, our_role: type[h11.CLIENT] | type[h11.SERVER], max_header_size: int
    ) -> None:
        self._h11 = h11.Connection(our_role, max_incomplete_event_size=max_header_size)
        self._events: deque[Event] = deque()
        self._out: list[bytes] = []
        self._next_stream_id = 1
        self._stream_id: int | None = None
        self._local = IDLE
        self._remote = IDLE
        # Bytes still owed by a content-length body we send; None for chunked.
        self._local_remaining: int | None = None
        self._local_chunked = False
        # A CONNECT exchange that has not been answered yet.
        self._connect = False
        self._tunnel = False
        self._closing = False
        self._expired = False
        self._terminated = False
        self._eof = False
        # h11 holds bytes for the next exchange.
        self._paused = False
        # The peer closed while we were still sending our side.
        self._eof_pending = False

    # -- state ---------------------------------------------------------------

    def is_available(self) -> bool:
        conn = self._h11
        return (
            self._stream_id is None
            and not self._expired
            and not self._closing
            and conn.our_state is h11.IDLE
            and conn.their_state is h11.IDLE
        )

    @property
    def state(self) -> ConnectionState:
        if self._terminated:
            return ConnectionState.CLOSED
        return ConnectionState.DRAINING if self.has_expired() else ConnectionState.OPEN

    def has_expired(self) -> bool:
        if self._expired:
            return True
        if self._tunnel:
            return self._local == DONE and self._remote == DONE
        state = self._h11.our_state
        return state is h11.MUST_CLOSE or state is h11.CLOSED or state is h11.ERROR

    def next_event(self) -> Event | None:
        events = self._events
        return events.popleft() if events else None

    def acknowledge_received_data(self, stream_id: int, amount: int) -> None:
        """Do nothing: HTTP/1.1 has no flow-control windows."""

    def get_pending_data_size(self, stream_id: int) -> int:
        """Return 0: submitted data is never held back."""
        return 0

    # -- bytes ---------------------------------------------------------------

    def bytes_received(self, data: bytes) -> None:
        if not data or self._terminated or self._eof:
            return
        if self._tunnel:
            if self._remote == OPEN:
                assert self._stream_id is not None
                self._events.append(DataReceived(stream_id=self._stream_id, data=data))
            return
        self._h11.receive_data(data)
        self._pull()

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
        if self._terminated or self._eof:
            return
        self._eof = True
        if self._tunnel:
            self._tunnel_remote_done()
            return
        self._h11.receive_data(b"")
        self._pull()

    def connection_lost(self) -> None:
        if self._terminated:
            return
        stream_id = self._stream_id
        if stream_id is None:
            self._terminate(0, None, reason=TerminationReason.TRANSPORT_LOST)
        else:
            self._events.append(StreamResetReceived(stream_id=stream_id, error_code=PROTOCOL_ERROR))
            self._terminate(
                PROTOCOL_ERROR, "connection lost", reason=TerminationReason.TRANSPORT_LOST
            )

    # -- submitting ----------------------------------------------------------

    def submit_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if stream_id != self._stream_id or self._local != OPEN:
            raise LocalProtocolError(f"stream {stream_id} is not open for sending")
        if self._tunnel:
            if data:
                self._out.append(data)
            if end_stream:
                self._local = DONE
                if self._remote == DONE:
                    self._terminate(0, None, reason=TerminationReason.CLOSED_BY_US)
            return
        if self._connect:
            raise LocalProtocolError("the CONNECT tunnel is not established yet")
        # Checked here, not by h11, which would break the connection.
        self._local_remaining = count_body_bytes(self._local_remaining, len(data), end_stream)
        if data:
            self._send(h11.Data(data=data))
        if end_stream:
            self._send(h11.EndOfMessage())
            self._local_done()

    def submit_stream_reset(self, stream_id: int, error_code: int = 0) -> None:
        """Close the connection: HTTP/1.1 cannot cancel one exchange alone."""
        if stream_id != self._stream_id or self._terminated:
            return
        self._out.clear()
        self._events.append(StreamResetSent(stream_id=stream_id, error_code=error_code))
        self._terminate(error_code, "stream reset", reason=TerminationReason.CLOSED_BY_US)

    def _submit_trailers(self, headers: HeadersType, end_stream: bool) -> None:
        if not end_stream:
            raise LocalProtocolError("trailers must end the stream")
        if not self._local_chunked:
            raise LocalProtocolError("trailers need a chunked message, not a content-length one")
        outgoing = OutgoingHeaders(headers)
        outgoing.no_pseudo("trailers")
        try:
            event = h11.EndOfMessage(headers=outgoing.fields)
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(str(exc)) from exc
        self._send(event)
        self._local_done()

    def _send(self, event: h11.Event) -> None:
        try:
            data = self._h11.send_with_data_passthrough(event)
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(str(exc)) from exc
        if data:
            self._out += data

    # -- exchange life cycle -------------------------------------------------

    def _local_done(self) -> None:
        self._local = DONE
        if self._remote == DONE:
            if self._exchange_done() and self._paused:
                # Requests (or bytes) that came while we were busy.
                self._pull()
        elif self._eof_pending:
            self._terminate(0, None, reason=TerminationReason.CLOSED_BY_PEER)

    def _exchange_done(self) -> bool:
        """End the exchange; return True if the next one could start."""
        self._stream_id = None
        conn = self._h11
        if self._eof_pending:
            self._terminate(0, None, reason=TerminationReason.CLOSED_BY_PEER)
        elif conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            if self._closing:
                self._expired = True
            else:
                conn.start_next_cycle()
                self._local = self._remote = IDLE
                return True
        return False

    def _pull(self) -> None:
        """Turn what h11 can parse now into events."""
        conn = self._h11
        events = self._events
        # A Data or HeadersReceived that an EndOfMessage right behind may end.
        pending: DataReceived | HeadersReceived | None = None
        while not self._terminated:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if pending is not None:
                    events.append(pending)
                if self._remote == DONE:
                    # Bytes after a message that announced the close: RFC 9112
                    # §9.6 has the peer send nothing more, so we ignore them.
                    return
                self._on_remote_error(exc)
                return
            if isinstance(event, h11.Data):
                if pending is not None:
                    events.append(pending)
                assert self._stream_id is not None
                pending = DataReceived(stream_id=self._stream_id, data=bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                if self._connect:
                    # The end of a CONNECT request: the response decides
                    # whether a tunnel follows.
                    continue
                stream_id = self._stream_id
                assert stream_id is not None
                self._remote = DONE
                if event.headers:
                    if pending is not None:
                        events.append(pending)
                    events.append(
                        HeadersReceived(
                            stream_id=stream_id,
                            headers=trailer_headers(event.headers),
                            end_stream=True,
                        )
                    )
                elif pending is None:
                    events.append(DataReceived(stream_id=stream_id, data=b"", end_stream=True))
                elif isinstance(pending, DataReceived):
                    events.append(
                        DataReceived(stream_id=stream_id, data=pending.data, end_stream=True)
                    )
                else:
                    events.append(
                        HeadersReceived(
                            stream_id=stream_id, headers=pending.headers, end_stream=True
                        )
                    )
                pending = None
                if self._local == DONE:
                    self._exchange_done()
            elif isinstance(event, (h11.Request, h11.Response, h11.InformationalResponse)):
                if pending is not None:
                    events.append(pending)
                pending = self._on_message_start(event)
            else:
                if pending is not None:
                    events.append(pending)
                # h11 pauses when bytes wait for the next exchange.
                self._paused = event is h11.PAUSED
                if isinstance(event, h11.ConnectionClosed):
                    self._on_connection_closed()
                elif event is h11.PAUSED and conn.their_state is h11.SWITCHED_PROTOCOL:
                    self._enter_tunnel()
                return

    def _on_message_start(
        self, event: h11.Request | h11.Response | h11.InformationalResponse
    ) -> HeadersReceived | None:
        """Handle a received request or status line; return its headers event, if any."""
        raise NotImplementedError

    def _on_connection_closed(self) -> None:
        if self._stream_id is not None and self._remote == DONE and self._local != DONE:
            # The peer half-closed after a complete message: finish our side.
            self._eof_pending = True
        else:
            self._terminate(0, None, reason=TerminationReason.CLOSED_BY_PEER)

    def _on_remote_error(self, exc: h11.RemoteProtocolError) -> None:
        stream_id = self._stream_id
        if stream_id is not None:
            self._events.append(StreamResetReceived(stream_id=stream_id, error_code=PROTOCOL_ERROR))
        self._terminate(PROTOCOL_ERROR, str(exc), reason=remote_error_reason(self._eof))

    def _terminate(
        self, error_code: int, message: str | None, *, reason: TerminationReason
    ) -> None:
        if self._terminated:
            return
        self._terminated = True
        self._expired = True
        self._stream_id = None
        self._events.append(
            ConnectionTerminated(error_code=error_code, message=message, reason=reason)
        )

    # -- CONNECT tunnels -----------------------------------------------------

    def _enter_tunnel(self) -> None:
        """Switch to raw bytes after a 2xx response to CONNECT (RFC 9110 §9.3.6)."""
        self._tunnel = True
        self._connect = False
        self._remote = OPEN
        data, closed = self._h11.trailing_data
        if data:
            assert self._stream_id is not None
            self._events.append(DataReceived(stream_id=self._stream_id, data=data))
        if closed:
            self._tunnel_remote_done()

    def _tunnel_remote_done(self) -> None:
        if self._remote != OPEN or self._stream_id is None:
            return
        self._remote = DONE
        self._events.append(DataReceived(stream_id=self._stream_id, data=b"", end_stream=True))
        if self._local == DONE:
            self._terminate(0, None, reason=TerminationReason.CLOSED_BY_PEER)
