"""The state every HTTP/2 protocol object keeps, and its held-data engine.

Theory of operation
===================

Streams. A :class:`StreamRecord` exists from a stream's first HEADERS until
both sides have ended it (END_STREAM sent *and* received) or it is reset;
a stream without a record is closed or unknown. The records, not h2, answer
the questions asked on every call (may this stream take data? is it open?),
so misuse is caught before it reaches h2, and counting open streams is O(1).

Inbound flow control (RFC 9113 §5.2, §6.9). Received data is never
acknowledged on its own: the caller calls ``acknowledge_received_data`` as it
consumes ``DataReceived.data`` and only then do WINDOW_UPDATE frames go out
(h2 batches them). The credit is collected per stream (``_credit``) and
handed to h2 once per :meth:`~HTTP2Base.bytes_to_send`, not once per
frame consumed: h2's accounting of one acknowledgement costs as much as a
small DATA frame's parsing, and a WebSocket consumes one frame per message.
The WINDOW_UPDATE frames are those h2 would have sent at that write, in
the same write. ``_unacked`` counts what each stream delivered and the
caller has not acknowledged yet, so acknowledgements are clamped and, when
a stream is reset, what it still owed is credited back to the connection
window (otherwise every reset stream would shrink the connection for good).

Outbound flow control. ``submit_data`` sends what ``min(stream window,
connection window)`` allows, in frames no larger than the peer's
SETTINGS_MAX_FRAME_SIZE, and holds the rest in the stream's record. A stream
with held data sits in ``_ready`` (an insertion-ordered dict used as a
queue) while its own window is open; a stream whose own window is closed
leaves the queue until a WINDOW_UPDATE for it (or a change of
SETTINGS_INITIAL_WINDOW_SIZE, RFC 9113 §6.9.2) brings it back. When windows
open, :meth:`HTTP2Base._flush` serves the queue round-robin, one frame per
stream per round, moving each served stream to the back, until the
connection window or the queue is empty: no stream starves the others, and
the work is proportional to the frames sent, not to the number of streams.
The end of a stream and trailers submitted behind held data go out right
after it, in order (:meth:`HTTP2Base._drained`).

Abuse (RFC 9113 §10.5). Received bytes pass a :class:`FrameGuard` before
h2 (see :mod:`._guard`: frame sizes, CONTINUATION and control-frame
floods). Streams the peer gets reset before they completed, by resetting
them itself (rapid reset, CVE-2023-44487) or by breaking the rules on them,
and the RST_STREAM frames h2 sends for frames on closed streams, spend a
budget of ``max_reset_streams``; each stream that completes
normally earns one back. A peer out of either budget gets
GOAWAY(ENHANCE_YOUR_CALM). Streams refused beyond
SETTINGS_MAX_CONCURRENT_STREAMS spend a budget of their own (see
:mod:`._protocol`).

Lifecycle. The state moves only through :data:`TRANSITIONS` (see
:mod:`hface.protocols._lifecycle`): a GOAWAY sent or received makes the
connection DRAINING; ``submit_close``, a connection error (GOAWAY with its
code) and the end of the transport make it CLOSED at once, with one
``ConnectionTerminated``: TCP delivers what was written, so nothing
lingers, and closing it is the layer above's. Besides the state, the last
stream ID our GOAWAY lets finish and the code of a GOAWAY received with an
error are kept.
"""

from __future__ import annotations

from collections import deque
from contextlib import suppress
from typing import Final

from h2.exceptions import H2Error

from hface.common import HTTP2_ERROR_CODES
from hface.errors import TerminationReason
from hface.events import ConnectionTerminated, Event, HeadersReceived, StreamResetSent
from hface.protocols import ConnectionState, HTTP2Protocol, ProtocolLimits

from .._capsules import CapsuleStreams
from .._lifecycle import Lifecycle, LifecycleInput, TransitionTable
from ._guard import FrameGuard
from ._h2 import make_connection
from ._settings import HTTP2Settings
from ._stream import StreamRecord

#: Streams beyond SETTINGS_MAX_CONCURRENT_STREAMS that may be refused, per
#: stream of that limit, beyond one per completed stream (see :mod:`._protocol`).
REFUSALS_PER_STREAM: Final = 10

_NO_ERROR: Final = HTTP2_ERROR_CODES.no_error
_INTERNAL_ERROR: Final = HTTP2_ERROR_CODES.internal_error

_OPEN: Final = ConnectionState.OPEN
_DRAINING: Final = ConnectionState.DRAINING
_CLOSED: Final = ConnectionState.CLOSED
_CONNECTION_ERROR: Final = LifecycleInput.CONNECTION_ERROR


def _transitions() -> TransitionTable:
    inputs = LifecycleInput
    table = {
        # A graceful GOAWAY either way; ours once (a second is a no-op).
        (_OPEN, inputs.SUBMIT_GOAWAY): _DRAINING,
        (_OPEN, inputs.GOAWAY_RECEIVED): _DRAINING,
        (_DRAINING, inputs.SUBMIT_GOAWAY): _DRAINING,
        (_DRAINING, inputs.GOAWAY_RECEIVED): _DRAINING,
        (_CLOSED, inputs.SUBMIT_GOAWAY): _CLOSED,
    }
    # The end comes at once, with ConnectionTerminated: there is nothing to
    # linger on (the layer above closes the TCP connection).
    for event in (
        inputs.SUBMIT_CLOSE,
        inputs.SUBMIT_CLOSE_WITH_ERROR,
        inputs.CONNECTION_ERROR,
        inputs.TERMINATED,
    ):
        table[_OPEN, event] = table[_DRAINING, event] = _CLOSED
    for event in (inputs.SUBMIT_CLOSE, inputs.SUBMIT_CLOSE_WITH_ERROR, inputs.TERMINATED):
        table[_CLOSED, event] = _CLOSED  # closing a closed connection does nothing
    return table


#: The lifecycle of an HTTP/2 connection (see :mod:`hface.protocols._lifecycle`).
#: Nothing received is processed once CLOSED, so no peer input reaches that
#: state; TERMINATED does (``eof_received`` or ``connection_lost`` again).
TRANSITIONS: Final = _transitions()


class HTTP2Base(HTTP2Protocol):
    """State, bookkeeping and held data shared by both sides (internal)."""

    _client_side: bool

    def __init__(self, *, limits: ProtocolLimits, settings: HTTP2Settings) -> None:
        self._conn, self._state_machine = make_connection(
            client_side=self._client_side, limits=limits, settings=settings
        )
        self._guard = FrameGuard(
            server=not self._client_side,
            max_frame_size=settings.max_frame_size,
            # A compressed block is no larger than the list it decodes to,
            # give or take padding and the odd Huffman-coded byte.
            max_header_block_size=2 * limits.max_header_size + 1024,
            max_control_frames=limits.max_control_frames,
        )
        self._max_reset_streams = self._resets_left = limits.max_reset_streams
        self._max_refusals = self._refusals_left = (
            REFUSALS_PER_STREAM * limits.max_concurrent_streams
        )
        # The highest peer stream accepted, which a GOAWAY for a flood names.
        self._last_accepted = 0
        self._max_concurrent_streams = limits.max_concurrent_streams
        self._events: deque[Event] = deque()
        # The streams that switch to the Capsule Protocol (RFC 9297 §3).
        self._capsules = CapsuleStreams(self, client=self._client_side)
        self._streams: dict[int, StreamRecord] = {}
        self._ready: dict[int, None] = {}
        self._unacked: dict[int, int] = {}
        # Acknowledged but not handed to h2 yet (see the module's docstring).
        self._credit: dict[int, int] = {}
        self._open_outbound = 0
        self._open_inbound = 0
        self._settings_seen = False
        self._lifecycle = Lifecycle(TRANSITIONS)
        # The last stream ID our GOAWAY lets finish; None until we sent one
        # (2**31 - 1 after a shutdown notice: see submit_shutdown_notice).
        self._goaway_last_stream_id: int | None = None
        # The error code of a GOAWAY received with one (else no error).
        self._goaway_error_code = _NO_ERROR

    # -- state --------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._lifecycle.state

    def has_expired(self) -> bool:
        return self._lifecycle.state is not _OPEN

    def get_pending_data_size(self, stream_id: int) -> int:
        record = self._streams.get(stream_id)
        return record.pending if record is not None else 0

    def next_event(self) -> Event | None:
        events = self._events
        if not events:
            return None
        event = events.popleft()
        capsules = self._capsules
        if capsules.streams or (not self._client_side and type(event) is HeadersReceived):
            return capsules.translate(event, events)  # HTTP Datagrams (see .._capsules)
        return event

    def bytes_to_send(self) -> bytes:
        if self._credit:
            self._give_credit()
        return self._conn.data_to_send()

    def _give_credit(self) -> None:
        """Hand the credit acknowledged since the last write to h2 (WINDOW_UPDATE frames)."""
        credit, self._credit = self._credit, {}
        acknowledge = self._conn.acknowledge_received_data
        for stream_id, amount in credit.items():
            acknowledge(amount, stream_id)

    def clock(self, now: float) -> None:
        self._guard.refill(now)

    # -- held data ----------------------------------------------------------

    def _flush(self) -> None:
        conn = self._conn
        ready = self._ready
        streams = self._streams
        while ready and conn.outbound_flow_control_window > 0:
            max_frame = conn.max_outbound_frame_size
            for stream_id in list(ready):
                record = streams[stream_id]
                window = conn.local_flow_control_window(stream_id)
                del ready[stream_id]
                if window <= 0:
                    continue  # its own window is closed: wait for its WINDOW_UPDATE
                size = min(window, max_frame, record.pending)
                drained = size == record.pending
                end = drained and record.end_pending and record.trailers is None
                conn.send_data(stream_id, record.take(size), end_stream=end)
                if drained:
                    self._drained(stream_id, record)
                else:
                    ready[stream_id] = None  # to the back of the queue
                if conn.outbound_flow_control_window <= 0:
                    return

    def _drained(self, stream_id: int, record: StreamRecord) -> None:
        """Send what waited for the held data of a stream: trailers or the end."""
        if not record.end_pending:
            return
        trailers = record.trailers
        if trailers is not None:
            record.trailers = None
            try:
                self._conn.send_headers(stream_id, trailers, end_stream=True)
            except (H2Error, ValueError):
                self._reset(stream_id, record, _INTERNAL_ERROR)
                return
        record.end_pending = False
        if record.remote_ended:
            self._close(stream_id, record)
        elif record.stop_after_end:
            self._reset(stream_id, record, _NO_ERROR)

    # -- stream bookkeeping ---------------------------------------------------

    def _remote_end(self, stream_id: int, record: StreamRecord) -> None:
        record.remote_ended = True
        if record.local_ended and not record.end_pending:
            self._close(stream_id, record)

    def _close(self, stream_id: int, record: StreamRecord) -> None:
        """Drop the record of a stream that both sides ended normally."""
        self._drop(stream_id, record)
        if self._resets_left < self._max_reset_streams:
            self._resets_left += 1
        if self._refusals_left < self._max_refusals:
            self._refusals_left += 1

    def _drop(self, stream_id: int, record: StreamRecord) -> None:
        del self._streams[stream_id]
        if record.outbound:
            self._open_outbound -= 1
        else:
            self._open_inbound -= 1

    def _forget(self, stream_id: int, record: StreamRecord) -> None:
        """Drop a reset stream: its record, held data and unacknowledged data."""
        self._drop(stream_id, record)
        self._ready.pop(stream_id, None)
        record.drop()
        owed = self._unacked.pop(stream_id, 0)
        if owed:
            # The stream is closed in h2, so only the connection is credited.
            self._conn.acknowledge_received_data(owed, stream_id)

    def _reset(self, stream_id: int, record: StreamRecord, error_code: int) -> None:
        """Reset a stream we hold a record of, and report it."""
        with suppress(H2Error):  # h2 may already consider it closed
            self._conn.reset_stream(stream_id, error_code)
        self._forget(stream_id, record)
        self._events.append(StreamResetSent(stream_id=stream_id, error_code=error_code))

    # -- the end ------------------------------------------------------------

    def _abort(self, error_code: int, message: str) -> None:
        """End the connection with GOAWAY because of a connection error.

        INTERNAL_ERROR is ours (an exception in h2 or in our handling); any
        other code is the peer's error.
        """
        with suppress(Exception):  # already failing; the event says why
            self._conn.close_connection(error_code=error_code)
        ours = error_code == _INTERNAL_ERROR
        reason = TerminationReason.LOCAL_ERROR if ours else TerminationReason.PEER_PROTOCOL_ERROR
        self._terminate(_CONNECTION_ERROR, error_code, message, reason=reason)

    def _terminate(
        self,
        event: LifecycleInput,
        error_code: int,
        message: str | None,
        *,
        reason: TerminationReason,
    ) -> None:
        """Move the lifecycle by ``event``; if that ended the connection, emit the end."""
        lifecycle = self._lifecycle
        if lifecycle.state is _CLOSED:
            lifecycle.handle(event)  # a documented no-op, or a bug (see TRANSITIONS)
            return
        lifecycle.handle(event)
        self._streams.clear()
        self._ready.clear()
        self._unacked.clear()
        self._credit.clear()
        self._open_outbound = self._open_inbound = 0
        self._events.append(
            ConnectionTerminated(error_code=error_code, message=message, reason=reason)
        )
