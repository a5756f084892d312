"""A QUIC connection whose receive windows follow what the application consumed.

Theory of operation
-------------------

QUIC flow control (RFC 9000 §4) has a window per stream (MAX_STREAM_DATA,
§4.1) and one for the connection (MAX_DATA). A receiver decides when to
raise them (§4.2). aioquic raises them from the *received* offsets and
doubles the window each time, so a peer can make it buffer without bound
when the application reads slowly; :class:`~._aioquic.AioquicConnection`
turns that rule off, and :class:`FlowControlledQuicConnection` sets the
limits instead. A byte counts as *consumed* once it has left every buffer
of ours:

- the QUIC receive buffer (data past a gap, ``highest_offset`` minus the
  delivered ``starting_offset()``);
- the HTTP/3 frame parser's buffer (a HEADERS frame still incomplete),
  reported by the :attr:`~FlowControlledQuicConnection.parser_buffered`
  callback;
- the application, which got the body in ``DataReceived`` and has not yet
  called ``acknowledge_received_data`` (:meth:`hold` and :meth:`release`).

Each limit is then ``consumed + window`` with a fixed window (the
configuration's ``max_stream_data`` and ``max_data``), sent when it has
grown by at least half a window so that updates are batched. The limits
are computed once per :meth:`~FlowControlledQuicConnection.datagrams_to_send`
call (aioquic would ask once per packet built, for every stream, which
cost more than the packets themselves in bulk transfers);
:meth:`~FlowControlledQuicConnection.update_due` tells whether a release
made an update due, so that a caller can skip asking for datagrams. HTTP/3 frame
headers and header blocks count as consumed as soon as the parser has used
them; only body bytes wait for the application.

Only aioquic's public names and :mod:`._aioquic`'s API are used here.
"""

from __future__ import annotations

from collections.abc import Callable

from aioquic.quic.connection import NetworkAddress
from aioquic.quic.stream import QuicStream

from ._aioquic import AioquicConnection, has_data_to_send


def _no_buffer(stream_id: int) -> int:
    return 0


class FlowControlledQuicConnection(AioquicConnection):
    """An :class:`~._aioquic.AioquicConnection` that reopens windows only as data is consumed.

    Its parameters are those of :class:`~._aioquic.AioquicConnection`.
    """

    def _init_subclass(self) -> None:
        configuration = self.configuration
        self._hface_stream_window = configuration.max_stream_data
        self._hface_connection_window = configuration.max_data
        self._hface_held: dict[int, int] = {}
        self._hface_held_total = 0
        # Stable references (see open_streams, connection_receive_limit).
        self._hface_streams = self.open_streams()
        self._hface_max_data = self.connection_receive_limit()
        #: Bytes of a stream the HTTP/3 parser holds (an incomplete frame).
        self.parser_buffered: Callable[[int], int] = _no_buffer

    # --- the application's share -------------------------------------------

    def hold(self, stream_id: int, amount: int) -> None:
        """Count ``amount`` body bytes as delivered to, not yet consumed by, the app."""
        if amount > 0:
            self._hface_held[stream_id] = self._hface_held.get(stream_id, 0) + amount
            self._hface_held_total += amount

    def release(self, stream_id: int, amount: int) -> None:
        """Count up to ``amount`` held bytes of the stream as consumed."""
        held = self._hface_held.get(stream_id, 0)
        amount = min(max(amount, 0), held)
        if not amount:
            return
        if held == amount:
            del self._hface_held[stream_id]
        else:
            self._hface_held[stream_id] = held - amount
        self._hface_held_total -= amount

    def forget(self, stream_id: int) -> None:
        """Release everything held for a stream that was reset or discarded."""
        self.release(stream_id, self._hface_held.get(stream_id, 0))

    # --- window updates ---------------------------------------------------------

    def update_due(self, stream_id: int) -> bool:
        """Return True if a window update (MAX_STREAM_DATA or MAX_DATA) is due now.

        Cheap enough to call after every :meth:`release`, so that the caller
        asks for datagrams only when there is credit to send.
        """
        stream = self._hface_streams.get(stream_id)
        if stream is not None and self._stream_target(stream_id, stream) is not None:
            return True
        return self._connection_target() is not None

    def output_due(self, now: float) -> bool:
        """Return False if :meth:`datagrams_to_send` has nothing to send before a timer fires.

        Asked after a datagram was received, so that one carrying only ACKs,
        or calling only for a delayed ACK (aioquic's ACK timer then fires
        within 1 ms), costs no packet-building pass. Conservative (see
        :meth:`~._aioquic.AioquicConnection.frames_pending`), and True when a
        window update is due.
        """
        if self.frames_pending(now):
            return True
        for stream_id, stream in self._hface_streams.items():
            if self._stream_target(stream_id, stream) is not None:
                return True
        return self._connection_target() is not None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, NetworkAddress]]:
        # Compute the new limits once per call, not once per packet built:
        # nothing is received or consumed while aioquic builds packets.
        stream_data_pending = False
        for stream_id, stream in self._hface_streams.items():
            target = self._stream_target(stream_id, stream)
            if target is not None:
                stream.max_stream_data_local = target
            if not stream_data_pending and has_data_to_send(stream):
                stream_data_pending = True
        target = self._connection_target()
        if target is not None:
            self._hface_max_data.value = target
        if stream_data_pending:
            # A delayed ACK rides along with the stream data about to go out
            # (RFC 9000 §13.2.1 lets it go early), rather than in a packet of
            # its own when aioquic's ACK timer (1 ms) fires: one datagram and
            # one wake-up fewer per request/response exchange.
            self.send_ack_early(now)
        return super().datagrams_to_send(now=now)

    def _stream_target(self, stream_id: int, stream: QuicStream) -> int | None:
        """The new MAX_STREAM_DATA if it grew by half a window, else None."""
        receiver = stream.receiver
        current = stream.max_stream_data_local
        if not current or receiver.is_finished:
            return None  # a stream we only send on, or one fully received
        unconsumed = (
            receiver.highest_offset
            - receiver.starting_offset()
            + self.parser_buffered(stream_id)
            + self._hface_held.get(stream_id, 0)
        )
        window = self._hface_stream_window
        target = receiver.highest_offset - unconsumed + window
        return target if target - current >= window // 2 else None

    def _connection_target(self) -> int | None:
        """The new MAX_DATA if it grew by half a window, else None."""
        window = self._hface_connection_window
        unconsumed = self._hface_held_total
        parser_buffered = self.parser_buffered
        for stream_id, stream in self._hface_streams.items():
            receiver = stream.receiver
            unconsumed += (
                receiver.highest_offset - receiver.starting_offset() + parser_buffered(stream_id)
            )
        max_data = self._hface_max_data
        target = max_data.used - unconsumed + window
        return target if target - max_data.value >= window // 2 else None
