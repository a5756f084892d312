"""A QUIC connection whose receive windows follow what the application consumed.

Theory of operation
-------------------

QUIC flow control (RFC 9000 §4) has a window per stream (MAX_STREAM_DATA,
§4.1) and one for the connection (MAX_DATA). A receiver decides when to
raise them (§4.2). aioquic raises them from the *received* offsets and
doubles the window each time (``_write_stream_limits`` and
``_write_connection_limits`` in ``aioquic/quic/connection.py``), so a peer
can make it buffer without bound when the application reads slowly.

:class:`FlowControlledQuicConnection` overrides those two methods. A byte
counts as *consumed* once it has left every buffer of ours:

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

The overrides reuse aioquic's frame writers: the new limits are set
first, then the original methods are called with the received offset hidden
so that aioquic's doubling rule never fires.

Datagram size: aioquic parses the peer's ``max_udp_payload_size`` transport
parameter (RFC 9000 §18.2: the largest UDP payload it is willing to
receive, 65,527 if absent) and ignores it. Once the peer's parameters
arrive (a server reads them in the ClientHello, before it answers; a client
in the server's first flight), the datagram size becomes the smaller of
``largest_datagram_size`` and the peer's limit, so a client can start at
the configuration's size (1,200 bytes, for a peer whose limit it cannot
know yet) and grow to the loopback size afterwards.

This relies on private aioquic internals (``_streams``, ``_local_max_data``,
``_local_max_streams_bidi``, ``QuicStream.receiver``/``sender``, the two
``_write_*`` methods, ``_parse_transport_parameters``,
``_max_datagram_size`` and the recovery's ``_cc`` and ``_pacer``); it was
written against aioquic 1.7.2 and is tested with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from aioquic import tls
from aioquic._buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.congestion.base import K_INITIAL_WINDOW
from aioquic.quic.connection import NetworkAddress, QuicConnection, QuicConnectionState
from aioquic.quic.packet import pull_quic_transport_parameters
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream, QuicStreamSender

#: RFC 9000 §18.2: the peer's limit when it sends no ``max_udp_payload_size``.
_DEFAULT_MAX_UDP_PAYLOAD_SIZE = 65527


def _no_buffer(stream_id: int) -> int:
    return 0


def _has_data_to_send(sender: QuicStreamSender) -> bool:
    """Return True if the stream has data or a FIN not sent yet (or lost: to resend).

    (``buffer_is_empty`` is no answer: aioquic clears it only when it next
    looks for a frame and finds none.)
    """
    return len(sender._pending) > 0 or sender._pending_eof


class FlowControlledQuicConnection(QuicConnection):
    """A :class:`QuicConnection` that reopens windows only as data is consumed.

    :param max_concurrent_streams: how many bidirectional streams the peer
        may have open at once (``initial_max_streams_bidi``, RFC 9000 §4.6).
    :param largest_datagram_size: the datagram size to use once the peer's
        transport parameters are known, if it allows as much (see the module
        docstring); the configuration's ``max_datagram_size`` until then and
        by default.
    """

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        max_concurrent_streams: int,
        largest_datagram_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(configuration=configuration, **kwargs)
        self._hface_largest_datagram_size = largest_datagram_size or self._max_datagram_size
        self._hface_stream_window = configuration.max_stream_data
        self._hface_connection_window = configuration.max_data
        self._hface_held: dict[int, int] = {}
        self._hface_held_total = 0
        # RFC 9000 §4.6: the initial number of streams the peer may open.
        self._local_max_streams_bidi.value = max_concurrent_streams
        self._local_max_streams_bidi.sent = max_concurrent_streams
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

    # --- the sender's view ---------------------------------------------------

    def unsent_bytes(self, stream_id: int) -> int:
        """Bytes written to a stream and never sent (held by flow or congestion control)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.sender._reset_error_code is not None:
            return 0
        sender = stream.sender
        return max(sender._buffer_stop - sender.highest_offset, 0)

    def unacknowledged_bytes(self) -> int:
        """Bytes sent and not acknowledged yet, or still to send (0: all delivered).

        Counts the ack-eliciting bytes in flight, the stream data not sent
        yet or declared lost (to resend), and one for each FIN or
        RESET_STREAM still to send.
        """
        backlog: int = self._loss.bytes_in_flight
        for stream in self._streams.values():
            sender = stream.sender
            if sender.reset_pending:
                backlog += 1
            if sender._reset_error_code is not None:
                continue
            backlog += sum(len(pending) for pending in sender._pending) + sender._pending_eof
        return backlog

    def stream_exists(self, stream_id: int) -> bool:
        """Return True if the QUIC stream is open (not discarded)."""
        return stream_id in self._streams

    def peer_stream_limit_reached(self) -> bool:
        """Return True if the peer's MAX_STREAMS forbids opening another bidi stream."""
        next_id = self.get_next_available_stream_id()
        return next_id // 4 >= self._remote_max_streams_bidi

    def is_closing(self) -> bool:
        """Return True once a close has started, by either side or a timeout."""
        return self._close_event is not None

    def close_details(self) -> tuple[int, str] | None:
        """The error code and reason of the close, once one has started."""
        event = self._close_event
        if event is None:
            return None
        return event.error_code, event.reason_phrase

    # --- the datagram size ----------------------------------------------------

    @property
    def max_datagram_size(self) -> int:
        """The largest UDP payload sent now."""
        return self._max_datagram_size

    def _parse_transport_parameters(self, data: bytes, from_session_ticket: bool = False) -> None:
        super()._parse_transport_parameters(data, from_session_ticket=from_session_ticket)
        if from_session_ticket:
            return  # only the parameters of this connection count
        limit = pull_quic_transport_parameters(Buffer(data=data)).max_udp_payload_size
        if limit is None:
            limit = _DEFAULT_MAX_UDP_PAYLOAD_SIZE
        # aioquic has refused a limit below 1,200 (RFC 9000 §18.2) already.
        self._set_max_datagram_size(min(self._hface_largest_datagram_size, limit))

    def _set_max_datagram_size(self, size: int) -> None:
        old = self._max_datagram_size
        if size == old:
            return
        self._max_datagram_size = size
        # Congestion control and pacing count in datagrams of that size.
        congestion_control = self._loss._cc
        if congestion_control.congestion_window == K_INITIAL_WINDOW * old:
            congestion_control.congestion_window = K_INITIAL_WINDOW * size  # still initial
        for part in (congestion_control, self._loss._pacer):
            if hasattr(part, "_max_datagram_size"):
                part._max_datagram_size = size

    # --- overrides of aioquic's window updates --------------------------------

    def update_due(self, stream_id: int) -> bool:
        """Return True if a window update (MAX_STREAM_DATA or MAX_DATA) is due now.

        Cheap enough to call after every :meth:`release`, so that the caller
        asks for datagrams only when there is credit to send.
        """
        stream = self._streams.get(stream_id)
        if stream is not None and self._stream_target(stream_id, stream) is not None:
            return True
        return self._connection_target() is not None

    def output_due(self, now: float) -> bool:
        """Return False if :meth:`datagrams_to_send` has nothing to send before a timer fires.

        Asked after a datagram was received, so that one carrying only ACKs,
        or calling only for a delayed ACK (aioquic's ACK timer then fires
        within 1 ms), costs no packet-building pass. Conservative: True
        during the handshake and the close, and whenever a frame of any
        kind but a delayed ACK may be waiting (stream data, resets, window
        updates, a stream to discard, connection IDs, path validation,
        PING, ...).
        """
        if (
            not self._handshake_confirmed
            or self._state is not QuicConnectionState.CONNECTED
            or self._close_pending
            or self._probe_pending
            or self._ping_pending
            or self._handshake_done_pending
            or self._streams_blocked_pending
            or self._retire_connection_ids
            or self._datagrams_pending
            or len(self._network_paths) != 1
            or not self._network_paths[0].is_validated
            or self._network_paths[0].remote_challenges
            or any(not cid.was_sent for cid in self._host_cids)
            or not self._crypto_streams[tls.Epoch.ONE_RTT].sender.buffer_is_empty
        ):
            return True
        for space in self._loss.spaces:
            if space.ack_at is not None and space.ack_at <= now:
                return True
        limits = (self._local_max_data, self._local_max_streams_bidi, self._local_max_streams_uni)
        for limit in limits:
            if limit.value != limit.sent:
                return True
        is_client = self._is_client
        for stream_id, stream in self._streams.items():
            sender = stream.sender
            if (
                _has_data_to_send(sender)
                or sender.reset_pending
                or stream.receiver.stop_pending
                # Discarding a finished stream of the peer's raises MAX_STREAMS.
                or (stream.is_finished and (stream_id % 2 == 0) != is_client)
                or stream.max_stream_data_local_sent != stream.max_stream_data_local
                or self._stream_target(stream_id, stream) is not None
            ):
                return True
        return self._connection_target() is not None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, NetworkAddress]]:
        # Compute the new limits once per call, not once per packet built:
        # nothing is received or consumed while aioquic builds packets.
        stream_data_pending = False
        for stream_id, stream in self._streams.items():
            target = self._stream_target(stream_id, stream)
            if target is not None:
                stream.max_stream_data_local = target
            if not stream_data_pending and _has_data_to_send(stream.sender):
                stream_data_pending = True
        target = self._connection_target()
        if target is not None:
            self._local_max_data.value = target
        if stream_data_pending:
            # A delayed ACK rides along with the stream data about to go out
            # (RFC 9000 §13.2.1 lets it go early), rather than in a packet of
            # its own when aioquic's ACK timer (1 ms) fires: one datagram and
            # one wake-up fewer per request/response exchange. Made overdue
            # (just before now), not due at now: aioquic paces a packet whose
            # ACK is due at ``now`` exactly, and would hold the ACK too.
            space = self._spaces[tls.Epoch.ONE_RTT]
            if space.ack_at is not None and space.ack_at >= now:
                space.ack_at = math.nextafter(now, -math.inf)
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
        max_data = self._local_max_data
        window = self._hface_connection_window
        unconsumed = self._hface_held_total
        parser_buffered = self.parser_buffered
        for stream_id, stream in self._streams.items():
            receiver = stream.receiver
            unconsumed += (
                receiver.highest_offset - receiver.starting_offset() + parser_buffered(stream_id)
            )
        target = max_data.used - unconsumed + window
        return target if target - max_data.value >= window // 2 else None

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        if stream.max_stream_data_local_sent == stream.max_stream_data_local:
            return  # nothing to send: skip aioquic's doubling rule altogether
        # Hide the received offset so that aioquic's doubling rule stays quiet.
        receiver = stream.receiver
        highest = receiver.highest_offset
        receiver.highest_offset = 0
        try:
            super()._write_stream_limits(builder=builder, space=space, stream=stream)
        finally:
            receiver.highest_offset = highest

    def _write_connection_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace) -> None:
        max_data = self._local_max_data
        used = max_data.used
        max_data.used = 0
        try:
            super()._write_connection_limits(builder=builder, space=space)
        finally:
            max_data.used = used
