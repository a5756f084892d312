"""HTTP/2 on h2: the sans-IO client and server protocols.

Theory of operation
===================

h2 parses and builds frames and keeps the RFC 9113 stream and connection
state. This module turns h2's events into hface events and keeps the
caller's misuse from reaching h2 (it raises :class:`LocalProtocolError`
instead). Flow control and the held data are in :mod:`._base`.

Events. A request, response, 1xx response or trailers become
``HeadersReceived``; h2 folds END_STREAM into them (and into data) and so do
we, so an END_STREAM on its own becomes ``DataReceived(data=b"",
end_stream=True)``. Events h2 reports for a stream without a record (one the
caller reset, or one refused after our GOAWAY) are dropped; their data is
credited back to the connection at once, since nobody will acknowledge it.
Padding (RFC 9113 §6.1) is credited at once too: the caller never sees it.
The DATA of a stream switched to the Capsule Protocol (a 2xx answer to an
extended CONNECT such as ``connect-udp``) is read as capsules as it is
taken from ``next_event`` and becomes ``DatagramReceived``;
``submit_datagram`` writes a DATAGRAM capsule (see :mod:`.._capsules`).

Errors. Bad input never raises out of ``bytes_received``. A stream error
(RFC 9113 §5.4.2: a malformed request, say) resets its stream only (see
:mod:`._h2`); a request already reported ends with ``StreamResetSent``.
Any other h2 ``ProtocolError`` is a connection error (§5.4.1): h2 has queued
GOAWAY with its code (we queue it when h2 has not, as for a bad preface)
and we emit ``ConnectionTerminated`` with that code; any other exception
sends GOAWAY(INTERNAL_ERROR). A peer's first frame must be SETTINGS (RFC
9113 §3.4), and a frame header announcing more than our
SETTINGS_MAX_FRAME_SIZE fails at once (§4.2) rather than after h2 buffered
the whole frame: :class:`~._guard.FrameGuard` reads the frame headers
before h2 does, also to bound floods (§10.5), and hands h2 the bytes in
batches of frames. h2's own stream resets (§5.4.2) become ``StreamResetSent``.
Events that h2 parsed in the same batch before a connection error are
lost with the connection.

GOAWAY (RFC 9113 §6.8). Streams up to the last stream ID go on after a
GOAWAY either way (see :mod:`._h2`). Our streams above the peer's last stream
ID were not processed: they end with ``StreamResetReceived(REFUSED_STREAM)``
so the layer above may retry them elsewhere. A peer stream beyond our
SETTINGS_MAX_CONCURRENT_STREAMS is refused with RST_STREAM(REFUSED_STREAM)
and not reported (RFC 9113 §5.1.2), as h2o does; the streams accepted go
on. After our own graceful GOAWAY (``submit_goaway``), new peer streams are
refused likewise. Each refusal spends a budget of ten times
SETTINGS_MAX_CONCURRENT_STREAMS (each completed stream earns one back), so
that a burst at the start of a connection passes; past it the peer gets
GOAWAY(ENHANCE_YOUR_CALM) naming the last stream accepted, whose answers
still go out, and past it twice over the connection ends. ``submit_close``
closes at once: GOAWAY with its code, then ``ConnectionTerminated`` with
that code.

End of the connection. ``eof_received`` or ``connection_lost`` emit one
``ConnectionTerminated``. It stands for every stream still open too: no
per-stream events precede it. Its code is the code of a GOAWAY that was
sent or received with an error, else NO_ERROR if no stream was open, else
PROTOCOL_ERROR (the transport ended in the middle of an exchange).
"""

from __future__ import annotations

from contextlib import suppress
from typing import Final, TypeAlias, cast

import h2.events
from h2.exceptions import H2Error
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.settings import SettingCodes

from hface.common import HTTP2_ERROR_CODES, HeadersType
from hface.errors import LocalProtocolError, TerminationReason
from hface.events import (
    DataReceived,
    GoawayReceived,
    HeadersReceived,
    StreamResetReceived,
    StreamResetSent,
)

from .._lifecycle import ConnectionState, LifecycleInput
from ._base import HTTP2Base
from ._h2 import strip_connection_headers
from ._stream import StreamRecord

_PROTOCOL_ERROR: Final = HTTP2_ERROR_CODES.protocol_error
_INTERNAL_ERROR: Final = HTTP2_ERROR_CODES.internal_error
_REFUSED_STREAM: Final = HTTP2_ERROR_CODES.refused_stream
_CANCEL: Final = HTTP2_ERROR_CODES.cancel
_ENHANCE_YOUR_CALM: Final = 0xB
#: The last stream ID of a shutdown notice: the largest there is (RFC 9113 §6.8).
_NOTICE_STREAM_ID: Final = 2**31 - 1

_OPEN: Final = ConnectionState.OPEN
_CLOSED: Final = ConnectionState.CLOSED
_SUBMIT_GOAWAY: Final = LifecycleInput.SUBMIT_GOAWAY
_SUBMIT_CLOSE: Final = LifecycleInput.SUBMIT_CLOSE
_SUBMIT_CLOSE_WITH_ERROR: Final = LifecycleInput.SUBMIT_CLOSE_WITH_ERROR
_GOAWAY_RECEIVED: Final = LifecycleInput.GOAWAY_RECEIVED
_CONNECTION_ERROR: Final = LifecycleInput.CONNECTION_ERROR
_TERMINATED: Final = LifecycleInput.TERMINATED

_H2DataReceived: Final = h2.events.DataReceived
_H2StreamEnded: Final = h2.events.StreamEnded
_H2StreamReset: Final = h2.events.StreamReset
_H2WindowUpdated: Final = h2.events.WindowUpdated
_H2RemoteSettingsChanged: Final = h2.events.RemoteSettingsChanged
_H2ConnectionTerminated: Final = h2.events.ConnectionTerminated
_H2RequestReceived: Final = h2.events.RequestReceived
_H2InformationalResponseReceived: Final = h2.events.InformationalResponseReceived
_HEADER_EVENTS: Final = frozenset(
    {
        h2.events.RequestReceived,
        h2.events.ResponseReceived,
        h2.events.InformationalResponseReceived,
        h2.events.TrailersReceived,
    }
)
_FinalHeaderEvent: TypeAlias = (
    "h2.events.RequestReceived | h2.events.ResponseReceived | h2.events.TrailersReceived"
)
_HeaderEvent: TypeAlias = (
    "h2.events.RequestReceived | h2.events.ResponseReceived"
    " | h2.events.InformationalResponseReceived | h2.events.TrailersReceived"
)


def _check_error_code(error_code: int) -> None:
    if not 0 <= error_code <= 0xFFFFFFFF:
        raise LocalProtocolError(f"invalid HTTP/2 error code {error_code!r}")


class _HTTP2Protocol(HTTP2Base):
    """Submitting and receiving, shared by both sides (internal)."""

    # -- submitting ---------------------------------------------------------

    def submit_headers(
        self, stream_id: int, headers: HeadersType, end_stream: bool = False
    ) -> None:
        block = strip_connection_headers(headers)
        record = self._streams.get(stream_id)
        if record is None:
            self._open_stream(stream_id, block, end_stream)
            return
        if record.local_ended:
            raise LocalProtocolError(f"stream {stream_id} is closed for sending")
        if record.pending:
            # Trailers behind held data (RFC 9113 §8.1): they wait for it.
            if not end_stream:
                raise LocalProtocolError("headers after data are trailers and must end the stream")
            if any(name.startswith(b":") for name, _ in block):
                raise LocalProtocolError("trailers must not contain pseudo-header fields")
            record.trailers = block
            record.local_ended = record.end_pending = True
            return
        try:
            self._conn.send_headers(stream_id, block, end_stream=end_stream)
        except (H2Error, ValueError) as exc:
            # h2 moved the stream's state before it validated the headers, so
            # the stream is unusable: reset it and tell the caller.
            self._reset(stream_id, record, _INTERNAL_ERROR)
            raise LocalProtocolError(f"cannot send headers on stream {stream_id}: {exc}") from exc
        record.headers_sent = True
        self._capsules.headers_submitted(stream_id, block)
        if end_stream:
            record.local_ended = True
            if record.remote_ended:
                self._close(stream_id, record)

    def _open_stream(self, stream_id: int, block: list[tuple[bytes, bytes]], end: bool) -> None:
        if not self._client_side:
            raise LocalProtocolError(f"stream {stream_id} is not open (servers do not push)")
        if not self.is_available():
            raise LocalProtocolError("no new stream can be opened on this connection now")
        conn = self._conn
        known = stream_id in conn.streams
        try:
            conn.send_headers(stream_id, block, end_stream=end)
        except (H2Error, ValueError) as exc:
            if not known:
                # Nothing went out; forget h2's half-made stream (its ID is skipped).
                conn.streams.pop(stream_id, None)
            raise LocalProtocolError(f"cannot open stream {stream_id}: {exc}") from exc
        record = StreamRecord(outbound=True, headers_sent=True)
        record.local_ended = end
        self._streams[stream_id] = record
        self._open_outbound += 1
        self._capsules.headers_submitted(stream_id, block)

    def submit_datagram(self, stream_id: int, data: bytes) -> bool:
        # RFC 9297 §3.5: a DATAGRAM capsule in the stream's DATA (see .._capsules).
        self.submit_data(stream_id, self._capsules.encode_datagram(stream_id, data))
        return True

    def submit_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        record = self._streams.get(stream_id)
        if record is None:
            raise LocalProtocolError(f"stream {stream_id} is not open")
        if record.local_ended:
            raise LocalProtocolError(f"stream {stream_id} is closed for sending")
        if not record.headers_sent:
            raise LocalProtocolError(f"stream {stream_id} needs headers before data")
        if record.pending:
            record.hold(data)
            if end_stream:
                record.local_ended = record.end_pending = True
            return
        conn = self._conn
        size = len(data)
        try:
            window = conn.local_flow_control_window(stream_id)
            max_frame = conn.max_outbound_frame_size
            if size <= window and size <= max_frame:
                conn.send_data(stream_id, data, end_stream=end_stream)
            else:
                offset = 0
                while offset < size and window > 0:
                    n = min(window, max_frame, size - offset)
                    end = offset + n
                    conn.send_data(
                        stream_id, data[offset:end], end_stream=end_stream and end == size
                    )
                    offset = end
                    window -= n
                if offset < size:
                    record.hold(data[offset:] if offset else data)
                    if end_stream:
                        record.local_ended = record.end_pending = True
                    self._ready[stream_id] = None
                    return
        except H2Error as exc:  # our records should have prevented it
            raise LocalProtocolError(f"cannot send data on stream {stream_id}: {exc}") from exc
        if end_stream:
            record.local_ended = True
            if record.remote_ended:
                self._close(stream_id, record)

    def submit_stream_reset(self, stream_id: int, error_code: int = 0) -> None:
        _check_error_code(error_code)
        record = self._streams.get(stream_id)
        if record is None:
            return
        if not error_code and record.end_pending:
            # NO_ERROR after our end (RFC 9113 §8.1: a complete response,
            # then "stop sending"): the held data and the end go out first.
            record.stop_after_end = True
            return
        self._reset(stream_id, record, error_code)

    def submit_shutdown_notice(self) -> None:
        if self._client_side or self._goaway_last_stream_id is not None:
            return
        if self._lifecycle.state is not _OPEN:
            return
        # RFC 9113 §6.8: the largest ID first; streams on their way are still taken.
        self._goaway_last_stream_id = _NOTICE_STREAM_ID
        self._conn.close_connection(error_code=0, last_stream_id=_NOTICE_STREAM_ID)

    def submit_goaway(self) -> None:
        if self._lifecycle.handle(_SUBMIT_GOAWAY) is _CLOSED or (
            self._goaway_last_stream_id not in (None, _NOTICE_STREAM_ID)
        ):
            return  # closed, or our GOAWAY went out already
        # Graceful (RFC 9113 §6.8): streams up to the last one we saw may finish.
        conn = self._conn
        last_stream_id = self._goaway_last_stream_id = conn.highest_inbound_stream_id
        conn.close_connection(error_code=0, last_stream_id=last_stream_id)

    def submit_close(self, error_code: int | None = None) -> None:
        code = 0 if error_code is None else error_code
        _check_error_code(code)
        event = _SUBMIT_CLOSE_WITH_ERROR if code else _SUBMIT_CLOSE
        if self._lifecycle.state is not _CLOSED:
            # Not graceful: GOAWAY and the end of everything at once.
            last_stream_id = self._goaway_last_stream_id
            if last_stream_id is None or last_stream_id == _NOTICE_STREAM_ID:
                self._conn.close_connection(error_code=code, last_stream_id=0)
            elif code:  # after our graceful GOAWAY, only an error is news
                self._conn.close_connection(error_code=code, last_stream_id=last_stream_id)
        self._terminate(
            event,
            code,
            "the connection was closed by this side",
            reason=TerminationReason.CLOSED_BY_US,
        )

    def acknowledge_received_data(self, stream_id: int, amount: int) -> None:
        if amount < 0:
            raise LocalProtocolError("cannot acknowledge a negative amount of data")
        unacked = self._unacked
        owed = unacked.get(stream_id)
        if not owed or not amount:
            return
        if amount >= owed:
            amount = owed
            del unacked[stream_id]
        else:
            unacked[stream_id] = owed - amount
        credit = self._credit
        credit[stream_id] = credit.get(stream_id, 0) + amount  # h2 gets it at the next write

    # -- receiving ----------------------------------------------------------

    def bytes_received(self, data: bytes) -> None:
        if self._lifecycle.state is _CLOSED or not data:
            return
        guard = self._guard
        size = len(data)
        start = 0
        while True:
            # The guard cuts the bytes into batches of frames and stops
            # before a frame that ends the connection (see ._guard).
            cut, error = guard.scan(data, start)
            if cut > start and not self._receive(data[start:cut] if start or cut < size else data):
                return
            if error is not None:
                self._abort(*error)
                return
            if cut >= size:
                return
            start = cut

    def _receive(self, data: bytes) -> bool:
        """Pass bytes to h2 and handle its events; return False once terminated."""
        conn = self._conn
        goaways = self._state_machine.goaways_sent
        resets = conn.resets_sent
        try:
            events = conn.receive_data(data)
        except H2ProtocolError as exc:
            # A connection error (RFC 9113 §5.4.1); h2 has usually queued GOAWAY.
            error_code = int(exc.error_code)
            message = str(exc) or type(exc).__name__
            if self._state_machine.goaways_sent == goaways:
                self._abort(error_code, message)
            else:
                self._terminate(
                    _CONNECTION_ERROR,
                    error_code,
                    message,
                    reason=TerminationReason.PEER_PROTOCOL_ERROR,
                )
            return False
        except Exception as exc:  # h2 must never make bytes_received raise
            self._abort(_INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            return False
        # Every reset h2 sent in there answers the peer's frames (stream
        # errors, frames on closed streams): they spend the reset budget.
        self._resets_left -= conn.resets_sent - resets
        if self._resets_left < 0:
            self._abort(_ENHANCE_YOUR_CALM, "too many streams reset (a flood)")
            return False
        if events:
            try:
                self._handle_events(events)
            except Exception as exc:  # the same promise covers our own handling
                self._abort(_INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        return self._lifecycle.state is not _CLOSED

    def eof_received(self) -> None:
        self._lost("the peer closed the connection", TerminationReason.CLOSED_BY_PEER)

    def connection_lost(self) -> None:
        self._lost("the connection was lost", TerminationReason.TRANSPORT_LOST)

    def _handle_events(self, events: list[h2.events.Event]) -> None:
        if not self._settings_seen:
            # RFC 9113 §3.4: the preface ends with a SETTINGS frame.
            if type(events[0]) is not _H2RemoteSettingsChanged:
                self._abort(_PROTOCOL_ERROR, "the connection preface lacks SETTINGS")
                return
            self._settings_seen = True
        append = self._events.append
        streams = self._streams
        flush = False
        for event in events:
            cls = type(event)
            if cls is _H2DataReceived:
                data_event = cast("h2.events.DataReceived", event)
                stream_id = data_event.stream_id
                data = data_event.data
                length = data_event.flow_controlled_length
                record = streams.get(stream_id)
                if record is None:
                    # Nobody will read it: give the connection window back now.
                    if length:
                        self._conn.acknowledge_received_data(length, stream_id)
                    continue
                size = len(data)
                if length > size:
                    # Padding (RFC 9113 §6.1) never reaches the caller.
                    self._conn.acknowledge_received_data(length - size, stream_id)
                if size:
                    self._unacked[stream_id] = self._unacked.get(stream_id, 0) + size
                    self._guard.earn()
                ended = data_event.stream_ended is not None
                if ended:
                    self._remote_end(stream_id, record)
                if size or ended:
                    append(DataReceived(stream_id=stream_id, data=data, end_stream=ended))
            elif cls is _H2StreamEnded:
                stream_id = cast("h2.events.StreamEnded", event).stream_id
                record = streams.get(stream_id)
                # Already folded into the previous event when that one ended it.
                if record is not None and not record.remote_ended:
                    self._remote_end(stream_id, record)
                    append(DataReceived(stream_id=stream_id, data=b"", end_stream=True))
            elif cls in _HEADER_EVENTS:
                headers_event = cast(_HeaderEvent, event)
                stream_id = headers_event.stream_id
                record = streams.get(stream_id)
                if record is None:
                    if cls is not _H2RequestReceived:
                        continue
                    record = self._accept_stream(stream_id)
                    if record is None:
                        if self._lifecycle.state is _CLOSED:
                            return
                        continue
                self._guard.earn()  # a request, response or trailers: progress
                # A 1xx response never ends the stream (RFC 9113 §8.1).
                ended = (
                    cls is not _H2InformationalResponseReceived
                    and cast(_FinalHeaderEvent, event).stream_ended is not None
                )
                if ended:
                    self._remote_end(stream_id, record)
                append(
                    HeadersReceived(
                        stream_id=stream_id, headers=headers_event.headers, end_stream=ended
                    )
                )
            elif cls is _H2WindowUpdated:
                stream_id = cast("h2.events.WindowUpdated", event).stream_id
                if not stream_id:
                    flush = True
                else:
                    record = streams.get(stream_id)
                    if record is not None and record.pending:
                        self._ready[stream_id] = None
                        flush = True
            elif cls is _H2StreamReset:
                reset = cast("h2.events.StreamReset", event)
                stream_id = reset.stream_id
                record = streams.get(stream_id)
                if record is None:
                    continue
                self._forget(stream_id, record)
                kind = StreamResetReceived if reset.remote_reset else StreamResetSent
                append(kind(stream_id=stream_id, error_code=int(reset.error_code or 0)))
                if reset.remote_reset:
                    # Rapid reset (CVE-2023-44487); our own resets were counted.
                    self._resets_left -= 1
                    if self._resets_left < 0:
                        self._abort(_ENHANCE_YOUR_CALM, "too many streams reset (a flood)")
                        return
            elif cls is _H2RemoteSettingsChanged:
                changed = cast("h2.events.RemoteSettingsChanged", event).changed_settings
                if SettingCodes.INITIAL_WINDOW_SIZE in changed:
                    # RFC 9113 §6.9.2: every stream window moved.
                    for stream_id, record in streams.items():
                        if record.pending:
                            self._ready[stream_id] = None
                    flush = True
            elif cls is _H2ConnectionTerminated:
                self._goaway(cast("h2.events.ConnectionTerminated", event))
        if flush and self._ready:
            self._flush()

    def _accept_stream(self, stream_id: int) -> StreamRecord | None:
        last_stream_id = self._goaway_last_stream_id
        if last_stream_id is not None and stream_id > last_stream_id:
            # RFC 9113 §6.8: after our GOAWAY, newer streams are not processed.
            self._conn.reset_stream(stream_id, _REFUSED_STREAM)
            self._refuse()
            return None
        if self._open_inbound >= self._max_concurrent_streams:
            # RFC 9113 §5.1.2: a stream error; REFUSED_STREAM tells the peer
            # it may retry (§8.7). The streams accepted go on.
            self._conn.reset_stream(stream_id, _REFUSED_STREAM)
            self._refuse()
            return None
        record = StreamRecord(outbound=False, headers_sent=False)
        self._streams[stream_id] = record
        self._open_inbound += 1
        self._last_accepted = stream_id
        return record

    def _refuse(self) -> None:
        """Spend the refusal budget; a flood of refusals calms the peer down.

        Past the budget, GOAWAY(ENHANCE_YOUR_CALM) names the last stream
        accepted, which is still answered (RFC 9113 §6.8); past it twice
        over, the connection ends at once.
        """
        left = self._refusals_left = self._refusals_left - 1
        if left >= 0:
            return
        if left < -self._max_refusals:
            self._abort(_ENHANCE_YOUR_CALM, "too many streams refused (a flood)")
        elif self._goaway_last_stream_id in (None, _NOTICE_STREAM_ID):
            self._lifecycle.handle(_SUBMIT_GOAWAY)
            last_stream_id = self._goaway_last_stream_id = self._last_accepted
            self._conn.close_connection(
                error_code=_ENHANCE_YOUR_CALM, last_stream_id=last_stream_id
            )

    def _goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self._lifecycle.handle(_GOAWAY_RECEIVED)
        last_stream_id = event.last_stream_id or 0
        error_code = int(event.error_code or 0)
        if error_code:
            self._goaway_error_code = error_code
        self._events.append(GoawayReceived(last_stream_id=last_stream_id, error_code=error_code))
        refused = [
            stream_id
            for stream_id, record in self._streams.items()
            if record.outbound and stream_id > last_stream_id
        ]
        for stream_id in refused:
            # RFC 9113 §6.8: the peer did not process these; safe to retry.
            with suppress(H2Error):
                self._conn.reset_stream(stream_id, _CANCEL)
            self._forget(stream_id, self._streams[stream_id])
            self._events.append(
                StreamResetReceived(stream_id=stream_id, error_code=_REFUSED_STREAM)
            )

    def _lost(self, message: str, reason: TerminationReason) -> None:
        open_streams = len(self._streams)
        error_code = self._goaway_error_code
        if not error_code and open_streams:
            error_code = _PROTOCOL_ERROR
            message = f"{message} with {open_streams} stream(s) open"
        self._terminate(_TERMINATED, error_code, message, reason=reason)


class HTTP2ClientProtocol(_HTTP2Protocol):
    """The client side of an HTTP/2 connection, on h2.

    Sends the connection preface and SETTINGS as soon as it is made; see
    :class:`HTTP2ClientFactory` for the options and their defaults.
    """

    _client_side = True

    def is_available(self) -> bool:
        return (
            self._lifecycle.state is _OPEN
            and self._open_outbound < self._conn.remote_settings.max_concurrent_streams
        )

    def get_available_stream_id(self) -> int:
        if not self.is_available():
            raise LocalProtocolError("no new stream can be opened on this connection now")
        try:
            return int(self._conn.get_next_available_stream_id())
        except H2Error as exc:  # stream IDs exhausted (RFC 9113 §5.1.1)
            raise LocalProtocolError(str(exc)) from exc


class HTTP2ServerProtocol(_HTTP2Protocol):
    """The server side of an HTTP/2 connection, on h2.

    Sends its SETTINGS as soon as it is made and expects the client's
    preface; see :class:`HTTP2ServerFactory` for the options and defaults.
    """

    _client_side = False

    def is_available(self) -> bool:
        """Return True if the peer may open another stream (servers open none)."""
        return self._lifecycle.state is _OPEN and self._open_inbound < self._max_concurrent_streams

    def get_available_stream_id(self) -> int:
        raise LocalProtocolError("an HTTP/2 server does not open streams")
