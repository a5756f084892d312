"""The state every HTTP/3 protocol object keeps, and its lifecycle: GOAWAY and the close.

Theory of operation
-------------------

The connection's life is a :class:`~hface.protocols._lifecycle.Lifecycle`
moved only through :data:`TRANSITIONS`; besides the state, closing keeps
three pieces of data: the code of a close this side decided and has not
handed to QUIC yet (:attr:`HTTP3Base._close_code`), the GOAWAY identifiers
sent and received, and the deadline of a lingering close.

GOAWAY (RFC 9114 §5.2): :meth:`~HTTP3Base.submit_goaway` sends it on the
control stream with the next ``datagrams_to_send`` and the connection is
DRAINING; once the streams in flight are done, it closes QUIC by itself
(STREAMS_DONE, then LINGERING). :meth:`~HTTP3Base.submit_close` sends
GOAWAY too (if not sent yet). A client's GOAWAY carries 0 (it allowed no
push); a server's the ID after the last request stream it saw.

Closing QUIC (RFC 9000 §10.2) ends the connection at once: data sent but
lost, or not sent yet (held by congestion control or pacing), would never
arrive, and under load a datagram with the last response or the GOAWAY
does get lost. So a close without error is LINGERING: it waits until the
peer has acknowledged everything sent, and gives up when
:data:`CLOSE_LINGER` seconds pass with no progress (a peer gone, or one
that stopped reading); :meth:`~HTTP3Base.abandon_linger` cuts that short
(CLOSING). A close with an error code does not wait: it is CLOSING and
goes out with the next ``datagrams_to_send``, after what was pending. The
error code 0 given to :meth:`~HTTP3Base.submit_close` (or to
``submit_stream_reset``) means H3_NO_ERROR (0x100), as HTTP/3 has no 0x0.

Connection errors: those hface detects itself (an increased GOAWAY
identifier, RFC 9114 §5.2; too many request streams reset; a flood) close
QUIC with the HTTP/3 code (H3_ID_ERROR, H3_EXCESSIVE_LOAD) at once, like
aioquic's own checks do; either way the connection is CLOSING and nothing
received is processed any more. An internal failure (an exception from
aioquic or hface) closes with H3_INTERNAL_ERROR the same way, so that the
peer learns of it at once rather than at its idle timeout; a second
failure while that close waits ends the connection at once, unsent.

``ConnectionTerminated`` is emitted once, as the connection becomes
CLOSED: when the close was sent or received, on the idle timeout (RFC
9000 §10.1) or on ``connection_lost``. Transport-level closes are reported
with the HTTP/3 no-error or general-protocol-error code and the QUIC code
in the message.

GOAWAY received: aioquic skips GOAWAY frames, so
:class:`~._control.PeerControlStreamReader` reads them alongside. A client
gets ``GoawayReceived(last_stream_id=ID - 4)`` (negative: no stream was
processed) and ``StreamResetReceived`` with H3_REQUEST_REJECTED for its
streams at or above the ID; a server gets ``last_stream_id=push ID - 1``.
"""

from __future__ import annotations

from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from typing import Final

from aioquic.h3.connection import IdError
from aioquic.quic.configuration import QuicConfiguration

from hface.common import HTTP3_ERROR_CODES, AddressType
from hface.errors import TerminationReason
from hface.events import (
    ConnectionTerminated,
    Event,
    GoawayReceived,
    HeadersReceived,
    StreamResetReceived,
)
from hface.protocols import ConnectionState, HTTP3Protocol, ProtocolLimits

from .._capsules import CapsuleStreams
from .._flood import FloodBudget
from .._lifecycle import Lifecycle, LifecycleInput, TransitionTable
from ._aioquic import AioquicH3Connection
from ._control import PeerControlStreamReader
from ._guard import FLOOD_WINDOW, RequestFrameCounter
from ._qlog import QlogFileLogger
from ._quic import FlowControlledQuicConnection
from ._settings import HTTP3Settings

_CODES: Final = HTTP3_ERROR_CODES
#: Seconds a graceful close waits, without progress, for the peer to
#: acknowledge what was sent before it closes QUIC anyway.
CLOSE_LINGER: Final = 1.0

_OPEN: Final = ConnectionState.OPEN
_DRAINING: Final = ConnectionState.DRAINING
_LINGERING: Final = ConnectionState.LINGERING
_CLOSING: Final = ConnectionState.CLOSING
_CLOSED: Final = ConnectionState.CLOSED
_I: Final = LifecycleInput
#: The identifier of a shutdown notice: the largest client request stream
#: ID (RFC 9114 §5.2; stream IDs are below 2**62, a client's bidirectional ones 0 mod 4).
_NOTICE_GOAWAY_ID: Final = 2**62 - 4


def _transitions() -> TransitionTable:
    table = {
        (_OPEN, _I.SUBMIT_GOAWAY): _DRAINING,
        (_OPEN, _I.GOAWAY_RECEIVED): _DRAINING,
        (_OPEN, _I.SUBMIT_CLOSE): _LINGERING,
        (_DRAINING, _I.SUBMIT_GOAWAY): _DRAINING,  # ours goes out once
        (_DRAINING, _I.GOAWAY_RECEIVED): _DRAINING,
        (_DRAINING, _I.STREAMS_DONE): _LINGERING,  # after our GOAWAY only
        (_DRAINING, _I.SUBMIT_CLOSE): _LINGERING,
        (_LINGERING, _I.GOAWAY_RECEIVED): _LINGERING,  # still processing
        (_LINGERING, _I.LINGER_ENDED): _CLOSING,
        (_LINGERING, _I.ABANDON_LINGER): _CLOSING,
        (_CLOSING, _I.CLOSE_SENT): _CLOSED,
    }
    for state in (_OPEN, _DRAINING, _LINGERING, _CLOSING):
        table[state, _I.SUBMIT_CLOSE_WITH_ERROR] = _CLOSING  # cuts a linger short
        table[state, _I.CONNECTION_ERROR] = _CLOSING
        table[state, _I.TERMINATED] = _CLOSED
    # The caller's inputs that change nothing: documented no-ops.
    no_ops = {
        _OPEN: (_I.ABANDON_LINGER,),
        _DRAINING: (_I.ABANDON_LINGER,),
        _LINGERING: (_I.SUBMIT_GOAWAY, _I.SUBMIT_CLOSE),
        _CLOSING: (_I.SUBMIT_GOAWAY, _I.SUBMIT_CLOSE, _I.ABANDON_LINGER),
        _CLOSED: (
            _I.SUBMIT_GOAWAY,
            _I.SUBMIT_CLOSE,
            _I.SUBMIT_CLOSE_WITH_ERROR,
            _I.ABANDON_LINGER,
            _I.TERMINATED,  # connection_lost() again
        ),
    }
    for state, events in no_ops.items():
        for event in events:
            table[state, event] = state
    return table


#: The lifecycle of an HTTP/3 connection (see :mod:`hface.protocols._lifecycle`).
#: Nothing received is processed once CLOSING, so the peer's inputs reach
#: neither CLOSING nor CLOSED; CLOSED takes no input but the no-ops.
TRANSITIONS: Final = _transitions()


@dataclass(slots=True)
class RequestStream:
    """What the protocol knows about one request stream (internal)."""

    headers_sent: bool = False
    final_headers_sent: bool = False
    send_ended: bool = False
    recv_ended: bool = False
    reset: bool = False
    #: The request was refused with 431 (RFC 9114 §4.2.2): what the client
    #: still sends on it is dropped.
    refused: bool = False
    #: A client's: the server asked it to stop sending with H3_NO_ERROR
    #: while its response is still coming (RFC 9114 §4.1: the response is
    #: kept). What the client still sends is dropped; the stop is reported
    #: (``StreamResetReceived``) once the response has ended.
    stopped: bool = False
    #: This side asked the peer to stop sending (STOP_SENDING with its
    #: reset): the peer's RESET_STREAM that follows answers it (RFC 9000 §3.5).
    stop_sent: bool = False


class HTTP3Base(HTTP3Protocol):
    """The state of both sides, and GOAWAY and the close (internal)."""

    _is_client: bool

    def __init__(
        self, *, configuration: QuicConfiguration, limits: ProtocolLimits, settings: HTTP3Settings
    ) -> None:
        self._configuration = configuration
        self._limits = limits
        self._settings = settings
        self._max_reset_streams = self._resets_left = limits.max_reset_streams
        self._quic: FlowControlledQuicConnection | None = None
        self._h3: AioquicH3Connection | None = None
        self._events: deque[Event] = deque()
        # The streams that switch to the Capsule Protocol (RFC 9297 §3).
        self._capsules = CapsuleStreams(self, client=self._is_client)
        self._streams: dict[int, RequestStream] = {}
        self._control = PeerControlStreamReader()
        self._flood = FloodBudget(limits.max_control_frames, window=FLOOD_WINDOW)
        self._frames = RequestFrameCounter(self._flood)
        self._now: float | None = None
        # False once datagrams_to_send() has run and nothing could have
        # changed its answer since (no input, no expired timer, no submit).
        self._output_pending = True
        self._max_peer_stream_id = -1
        # The server a client connects to at its first clock(); None once
        # connected, and on servers.
        self._connect_to: AddressType | None = None
        self._lifecycle = Lifecycle(TRANSITIONS)
        # The code of a close this side decided and has not handed to QUIC
        # yet: LINGERING, or CLOSING until the next datagrams_to_send().
        self._close_code: int | None = None
        # Why we are closing for an error (ours or the peer's), for
        # ConnectionTerminated.reason; None for a close we were asked for.
        self._error_cause: TerminationReason | None = None
        # A lingering close: until when it waits, and the backlog it last
        # saw (a smaller one moves the deadline on).
        self._linger_deadline: float | None = None
        self._linger_backlog = 0
        # The GOAWAY identifiers sent and last received; None before one
        # (the largest request stream ID after a shutdown notice).
        self._goaway_id_sent: int | None = None
        self._last_goaway_id: int | None = None

    def _attach(self, quic: FlowControlledQuicConnection) -> None:
        self._quic = quic
        limits = self._limits
        self._h3 = h3 = AioquicH3Connection(
            quic,
            qpack_max_table_capacity=limits.header_table_size,
            qpack_blocked_streams=self._settings.qpack_blocked_streams,
            max_field_section_size=limits.max_header_size,
        )
        quic.parser_buffered = h3.parser_buffered

    @property
    def state(self) -> ConnectionState:
        return self._lifecycle.state

    def has_expired(self) -> bool:
        return self._lifecycle.state is not _OPEN

    def next_event(self) -> Event | None:
        events = self._events
        if not events:
            return None
        event = events.popleft()
        capsules = self._capsules
        if capsules.streams or (not self._is_client and type(event) is HeadersReceived):
            return capsules.translate(event, events)  # HTTP Datagrams (see .._capsules)
        return event

    def _push(self, event: Event) -> None:
        if self._lifecycle.state is not _CLOSED:
            self._events.append(event)

    # --- the caller's intents -------------------------------------------------

    def submit_goaway(self) -> None:
        self._output_pending = True
        if self._h3 is None:
            # A server before its first datagram: nothing to drain or tell.
            self._terminate(
                _I.TERMINATED, _CODES.no_error, None, reason=TerminationReason.CLOSED_BY_US
            )
            return
        state = self._lifecycle.state
        self._lifecycle.handle(_I.SUBMIT_GOAWAY)
        if state is _OPEN or state is _DRAINING:
            # Graceful (RFC 9114 §5.2): streams in flight finish, then QUIC closes.
            self._send_goaway()

    def submit_shutdown_notice(self) -> None:
        if self._is_client or self._h3 is None or self._goaway_id_sent is not None:
            return
        if self._lifecycle.state is not _OPEN:
            return
        # RFC 9114 §5.2: the largest ID first; requests on their way are still taken.
        self._output_pending = True
        self._h3.send_goaway(_NOTICE_GOAWAY_ID)
        self._goaway_id_sent = _NOTICE_GOAWAY_ID

    def submit_close(self, error_code: int | None = None) -> None:
        code = error_code or _CODES.no_error  # 0: HTTP/3 has no 0x0
        self._output_pending = True
        if self._h3 is None:
            self._terminate(_I.TERMINATED, code, None, reason=TerminationReason.CLOSED_BY_US)
            return
        event = _I.SUBMIT_CLOSE if code == _CODES.no_error else _I.SUBMIT_CLOSE_WITH_ERROR
        state = self._lifecycle.state
        self._lifecycle.handle(event)
        if state is _OPEN or state is _DRAINING:
            self._send_goaway()
            self._close_code = code
        elif event is _I.SUBMIT_CLOSE_WITH_ERROR and self._close_code is not None:
            self._close_code = code  # an error cuts a lingering close short

    def abandon_linger(self) -> None:
        if self._lifecycle.state is _LINGERING:
            self._output_pending = True
        self._lifecycle.handle(_I.ABANDON_LINGER)

    def _send_goaway(self) -> None:
        """Send GOAWAY on the control stream unless sent already (a notice aside)."""
        if self._goaway_id_sent is not None and self._goaway_id_sent != _NOTICE_GOAWAY_ID:
            return
        if self._is_client:
            goaway_id = 0  # no push was allowed to be used
        else:
            goaway_id = self._max_peer_stream_id + 4 if self._max_peer_stream_id >= 0 else 0
        assert self._h3 is not None
        self._h3.send_goaway(goaway_id)
        self._goaway_id_sent = goaway_id

    # --- the close going out --------------------------------------------------

    def _check_drained(self) -> None:
        """Close once the streams in flight at our GOAWAY are done (DRAINING, then LINGERING)."""
        if (
            self._goaway_id_sent is not None
            and not self._streams
            and self._lifecycle.state is _DRAINING
        ):
            self._lifecycle.handle(_I.STREAMS_DONE)
            self._close_code = _CODES.no_error

    def _take_due_close(self, quic: FlowControlledQuicConnection, now: float) -> int | None:
        """Return the code of the close to hand to QUIC now, if one is due; forget it.

        Asked after what was pending went out. A lingering close waits until
        the peer has acknowledged everything sent, or :data:`CLOSE_LINGER`
        seconds without progress.
        """
        state = self._lifecycle.state
        code = self._close_code
        if code is None:
            return None
        if state is _LINGERING:
            backlog = quic.unacknowledged_bytes()
            if backlog:
                if self._linger_deadline is None or backlog < self._linger_backlog:
                    self._linger_deadline = now + CLOSE_LINGER
                self._linger_backlog = backlog
                if now < self._linger_deadline:
                    return None
            self._lifecycle.handle(_I.LINGER_ENDED)
        self._close_code = self._linger_deadline = None
        return code

    def _close_with_error(self, error_code: int, message: str) -> None:
        """Close the connection for a peer's error; ``ConnectionTerminated`` follows once sent."""
        self._output_pending = True
        self._lifecycle.handle(_I.CONNECTION_ERROR)
        self._close_code = self._linger_deadline = None
        self._error_cause = TerminationReason.PEER_PROTOCOL_ERROR
        assert self._quic is not None
        self._quic.close(error_code=error_code, reason_phrase=message)

    def _flooded(self) -> None:
        """Close for a flood of frames or streams without progress (RFC 9114 §10.5)."""
        self._close_with_error(
            _CODES.excessive_load, "too many frames or streams without requests or data (a flood)"
        )

    def _fail(self, error_code: int, message: str) -> None:
        """End the connection for an internal error, telling the peer when possible.

        The CONNECTION_CLOSE goes out with the next ``datagrams_to_send``
        and ``ConnectionTerminated`` follows it, as for a peer's error: a peer
        must not learn of the end only at its idle timeout. A failure while
        such a close waits (sending itself failed) ends the connection at
        once, unsent.
        """
        self._output_pending = True
        state = self._lifecycle.state
        if state is _CLOSED:
            return
        quic = self._quic
        if quic is not None and not (state is _CLOSING and self._close_code is None):
            with suppress(Exception):
                quic.close(error_code=error_code, reason_phrase=message)
            if quic.close_pending:
                self._lifecycle.handle(_I.CONNECTION_ERROR)
                self._close_code = self._linger_deadline = None
                self._error_cause = TerminationReason.LOCAL_ERROR
                return
        self._terminate(_I.TERMINATED, error_code, message, reason=TerminationReason.LOCAL_ERROR)

    def _check_closed(self) -> None:
        """End the connection once QUIC's close was sent or received (or start closing)."""
        quic = self._quic
        state = self._lifecycle.state
        if quic is None or state is _CLOSED:
            return
        reason = quic.close_reason()
        if reason is None:
            return
        if quic.close_pending:
            # A close waits to be sent: ours, or aioquic's for an error it found.
            if state is not _CLOSING:
                self._lifecycle.handle(_I.CONNECTION_ERROR)
                self._close_code = self._linger_deadline = None
            return
        code, text = reason.error_code, reason.reason
        transport_code: int | None = None
        if reason.transport:
            # A transport-level close (RFC 9000 §20.1), not an HTTP/3 one.
            transport_code = code
            text = f"QUIC transport error {code:#x}" + (f": {text}" if text else "")
            code = _CODES.no_error if code == 0 else _CODES.protocol_error
        ours = state is _CLOSING and self._close_code is None
        self._terminate(
            _I.CLOSE_SENT if ours else _I.TERMINATED,
            code,
            text or None,
            reason=self._close_reason(transport_code, ours=ours),
            transport_error_code=transport_code,
        )

    def _close_reason(self, transport_error_code: int | None, *, ours: bool) -> TerminationReason:
        """Why the QUIC connection closed, for ``ConnectionTerminated.reason``.

        A transport-level close says it by its code: CRYPTO_ERROR (0x100 plus
        a TLS alert, RFC 9001 §4.8) is a failed TLS handshake, NO_ERROR the
        peer's close, any other code a broken QUIC (aioquic closes for the
        peer's violations itself, with such a code). An HTTP/3 close is ours
        if we made it (for an error of ours, for the peer's, or as asked),
        else the peer's.
        """
        if transport_error_code is not None:
            if 0x100 <= transport_error_code <= 0x1FF:
                return TerminationReason.TLS_FAILURE
            if transport_error_code == 0:
                return TerminationReason.CLOSED_BY_PEER
            return TerminationReason.PEER_PROTOCOL_ERROR
        if ours:
            return self._error_cause or TerminationReason.CLOSED_BY_US
        return TerminationReason.CLOSED_BY_PEER

    def _terminate(
        self,
        event: LifecycleInput,
        error_code: int,
        message: str | None,
        *,
        reason: TerminationReason,
        transport_error_code: int | None = None,
    ) -> None:
        """Move the lifecycle by ``event``; if that ended the connection, emit the end."""
        lifecycle = self._lifecycle
        if lifecycle.state is _CLOSED:
            lifecycle.handle(event)  # a documented no-op, or a bug (see TRANSITIONS)
            return
        lifecycle.handle(event)
        self._events.append(
            ConnectionTerminated(
                error_code=error_code,
                message=message,
                reason=reason,
                transport_error_code=transport_error_code,
            )
        )
        self._streams.clear()
        self._close_code = self._linger_deadline = None
        logger: object = self._configuration.quic_logger  # typed aioquic's; ours duck-types it
        if isinstance(logger, QlogFileLogger):
            logger.finish()  # see ._qlog: aioquic would write it too late

    # --- GOAWAY received ------------------------------------------------------

    def _on_goaway(self, goaway_id: int) -> None:
        if self._last_goaway_id is not None and goaway_id > self._last_goaway_id:
            # RFC 9114 §5.2: the identifier in GOAWAY never increases.
            self._close_with_error(IdError.error_code, "GOAWAY identifier increased")
            return
        self._last_goaway_id = goaway_id
        self._lifecycle.handle(_I.GOAWAY_RECEIVED)
        if self._is_client:
            for stream_id in [sid for sid in self._streams if sid >= goaway_id]:
                # RFC 9114 §5.2: not processed, safe to retry elsewhere.
                del self._streams[stream_id]
                assert self._quic is not None
                self._quic.forget(stream_id)
                self._push(
                    StreamResetReceived(stream_id=stream_id, error_code=_CODES.refused_stream)
                )
            self._push(GoawayReceived(last_stream_id=goaway_id - 4, error_code=_CODES.no_error))
        else:
            self._push(GoawayReceived(last_stream_id=goaway_id - 1, error_code=_CODES.no_error))
