"""Every use of aioquic's private members, behind a small typed API (internal).

Theory of operation
-------------------

hface needs things aioquic does not offer publicly: windows that follow
what the application consumed, datagrams as large as the peer allows,
HTTP/3 settings and checks of its own, and answers to questions (is a
close waiting to be sent? which connection IDs do we answer to?) that only
aioquic's private attributes hold. This module alone reads or overrides
them (a test greps the others): an aioquic release means one module to check.

- :class:`AioquicConnection` is aioquic's ``QuicConnection`` with its
  insides behind methods: the state of the handshake and of the close, the
  connection IDs, stream and connection limits, what is unsent or
  unacknowledged, and whether anything but a delayed ACK waits to be sent.
  It disables aioquic's own rule for window updates (doubling the window
  from the *received* offsets, in ``_write_stream_limits`` and
  ``_write_connection_limits``): the limits it sends are the ones the
  subclass sets (see :mod:`._quic`). Given a ``connection_id_generator``,
  every connection ID it issues (the first, and those of NEW_CONNECTION_ID
  frames) comes from it, not from aioquic's random bytes, so that the IDs
  say which worker and server they belong to
  (``hface.networking._connection_ids``). It also sizes datagrams by the peer's
  ``max_udp_payload_size`` transport parameter (RFC 9000 §18.2), which
  aioquic parses and ignores: once the peer's parameters arrive (a server
  reads them in the ClientHello, a client in the server's first flight)
  the datagram size becomes the smaller of ``largest_datagram_size`` and
  the peer's limit, congestion control and pacing following. Its log
  lines at INFO (protocol version, ALPN, close) go out at DEBUG: a server
  must not write lines per connection, least of all per half-open one.
- :class:`AioquicH3Connection` is aioquic's ``H3Connection`` told which
  responses carry no content, enforcing what aioquic 1.7 lets through,
  advertising hface's QPACK and field section limits and SETTINGS_H3_DATAGRAM
  (RFC 9297 §2.1.1, with a ``max_datagram_frame_size``), and keeping a
  malformed message to its stream (see its docstring).

The import fails with :class:`ImportError` unless the installed aioquic is a
release these overrides were verified on (``VERIFIED_AIOQUIC``).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any, Final

import aioquic
import pylsqpack
from aioquic import tls
from aioquic._buffer import Buffer as Buffer
from aioquic._buffer import BufferReadError as BufferReadError
from aioquic.buffer import encode_uint_var
from aioquic.h3 import events as h3_events
from aioquic.h3.connection import (
    ClosedCriticalStream,
    FrameType,
    H3Connection,
    H3Stream,
    HeadersState,
    MessageError,
    Setting,
    StreamType,
    encode_frame,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.congestion.base import K_INITIAL_WINDOW
from aioquic.quic.connection import (
    Limit,
    QuicConnection,
    QuicConnectionAdapter,
    QuicConnectionState,
)
from aioquic.quic.packet import pull_quic_transport_parameters
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream

from ._messages import (
    NO_CONTENT_STATUSES,
    SETTINGS_MAX_FIELD_SECTION_SIZE,
    CloseReason,
    MessageErrorReport,
    check_request_pseudo_headers,
    field_section_size,
)
from ._messages import VERIFIED_AIOQUIC as VERIFIED_AIOQUIC
from ._messages import check_aioquic_version as check_aioquic_version

check_aioquic_version(aioquic.__version__)

#: DATAGRAM frames (RFC 9221) queued while congestion control holds them; more are dropped.
MAX_QUEUED_DATAGRAMS: Final = 512

#: RFC 9000 §18.2: the peer's limit when it sends no ``max_udp_payload_size``.
_DEFAULT_MAX_UDP_PAYLOAD_SIZE: Final = 65527


def has_data_to_send(stream: QuicStream) -> bool:
    """Return True if the stream has data or a FIN not sent yet (or lost: to resend).

    (``buffer_is_empty`` is no answer: aioquic clears it only when it next
    looks for a frame and finds none.)
    """
    sender = stream.sender
    return len(sender._pending) > 0 or sender._pending_eof


class _QuietLogger(QuicConnectionAdapter):
    """aioquic's connection log with its INFO lines (a few per connection) at DEBUG."""

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)


class AioquicConnection(QuicConnection):
    """aioquic's ``QuicConnection`` with the internals hface needs behind methods.

    :param max_concurrent_streams: how many bidirectional streams the peer
        may have open at once (``initial_max_streams_bidi``, RFC 9000 §4.6).
    :param connection_id_generator: makes every connection ID this endpoint
        issues, of the configuration's ``connection_id_length``; random by default.
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
        original_destination_connection_id: bytes | None = None,
        retry_source_connection_id: bytes | None = None,
        connection_id_generator: Callable[[], bytes] | None = None,
    ) -> None:
        super().__init__(
            configuration=configuration,
            original_destination_connection_id=original_destination_connection_id,
            retry_source_connection_id=retry_source_connection_id,
        )
        self._hface_new_connection_id = connection_id_generator
        if connection_id_generator is not None:  # the first ID: aioquic drew it at random
            first = self._host_cids[0]
            first.cid = self.host_cid = connection_id_generator()
            self._local_initial_source_connection_id = first.cid
        self._logger = _QuietLogger(self._logger.logger, self._logger.extra)
        self._hface_largest_datagram_size = largest_datagram_size or self._max_datagram_size
        # RFC 9000 §4.6: the initial number of streams the peer may open.
        self._local_max_streams_bidi.value = max_concurrent_streams
        self._local_max_streams_bidi.sent = max_concurrent_streams
        self._init_subclass()

    def _init_subclass(self) -> None:
        """Set up the state of a subclass (called last by ``__init__``; nothing here)."""

    # --- the handshake and the close ----------------------------------------

    @property
    def handshake_complete(self) -> bool:
        """True once the handshake has completed."""
        return self._handshake_complete

    def host_connection_ids(self) -> list[bytes]:
        """The connection IDs this endpoint issued (and so answers to)."""
        return [cid.cid for cid in self._host_cids]

    def is_closing(self) -> bool:
        """Return True once a close has started, by either side or a timeout."""
        return self._close_event is not None

    @property
    def close_pending(self) -> bool:
        """True while a close of ours waits to be sent."""
        return self._close_pending

    def close_reason(self) -> CloseReason | None:
        """Why the connection closes, once a close has started (else None)."""
        event = self._close_event
        if event is None:
            return None
        return CloseReason(event.error_code, event.reason_phrase, event.frame_type is not None)

    # --- streams --------------------------------------------------------------

    def stream_exists(self, stream_id: int) -> bool:
        """Return True if the QUIC stream is open (not discarded)."""
        return stream_id in self._streams

    def open_streams(self) -> dict[int, QuicStream]:
        """The QUIC streams not discarded yet, by ID: aioquic's own dict (read only).

        The same dict for the connection's life (aioquic makes it once).
        """
        return self._streams

    def peer_stream_limit_reached(self) -> bool:
        """Return True if the peer's MAX_STREAMS forbids opening another bidi stream."""
        next_id = self.get_next_available_stream_id()
        return next_id // 4 >= self._remote_max_streams_bidi

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

    # --- QUIC DATAGRAM frames (RFC 9221): bounded, and never one no packet carries -----

    def queue_datagram_frame(self, data: bytes) -> bool:
        """Queue a DATAGRAM frame's payload; False (dropped) if too large or too many wait."""
        pending = self._datagrams_pending  # unbounded, and blocked by a frame too large
        if len(data) > self.max_datagram_frame_payload() or len(pending) >= MAX_QUEUED_DATAGRAMS:
            return False
        pending.append(data)
        return True

    def max_datagram_frame_payload(self) -> int:
        """The largest DATAGRAM frame payload that fits in one packet the peer accepts (0: none)."""
        remote = self._remote_max_datagram_frame_size
        if remote is None or self._configuration.max_datagram_frame_size is None:
            return 0
        # Flags, the peer's connection ID, a packet number, the AEAD tag; type and length.
        overhead = 1 + len(self._peer_cid.cid) + 4 + 16 + 1 + 4
        return max(min(self._max_datagram_size - overhead, remote - 5), 0)

    # --- the connection's receive limit (MAX_DATA) ---------------------------

    def connection_receive_limit(self) -> Limit:
        """aioquic's MAX_DATA limit (RFC 9000 §4.1): set ``value`` to move the window.

        ``used`` counts the bytes received (the sum of the streams' highest
        offsets), ``value`` is the limit to send; the same object for the
        connection's life (aioquic makes it once).
        """
        return self._local_max_data

    # --- what waits to be sent ------------------------------------------------

    def frames_pending(self, now: float) -> bool:
        """Return True unless nothing but a delayed ACK (not due) waits to be sent.

        Conservative: True during the handshake and the close, and whenever
        a frame of any kind may be waiting (stream data, resets, limits
        changed, a stream to discard, connection IDs, path validation,
        PING, ...). Window updates the subclass has yet to decide are not
        counted.
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
                has_data_to_send(stream)
                or sender.reset_pending
                or stream.receiver.stop_pending
                # Discarding a finished stream of the peer's raises MAX_STREAMS.
                or (stream.is_finished and (stream_id % 2 == 0) != is_client)
                or stream.max_stream_data_local_sent != stream.max_stream_data_local
            ):
                return True
        return False

    def send_ack_early(self, now: float) -> None:
        """Let a delayed ACK of 1-RTT packets go out with the next packet (RFC 9000 §13.2.1).

        Made overdue (just before ``now``), not due at ``now``: aioquic paces
        a packet whose ACK is due at ``now`` exactly, and would hold the ACK too.
        """
        space = self._spaces[tls.Epoch.ONE_RTT]
        if space.ack_at is not None and space.ack_at >= now:
            space.ack_at = math.nextafter(now, -math.inf)

    # --- overrides: connection IDs ------------------------------------------------

    def _replenish_connection_ids(self) -> None:
        issued = len(self._host_cids)
        super()._replenish_connection_ids()
        generate = self._hface_new_connection_id
        if generate is not None:  # not sent yet: give aioquic's new IDs ours instead
            for connection_id in self._host_cids[issued:]:
                connection_id.cid = generate()

    # --- overrides: window updates --------------------------------------------

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

    # --- overrides: the datagram size -----------------------------------------

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


class _MessageAborted(Exception):
    """Unwinds aioquic's parsing of a stream whose message is malformed (internal)."""


class AioquicH3Connection(H3Connection):
    """aioquic's ``H3Connection``, told which responses carry no content, and stricter.

    aioquic checks a response's ``content-length`` against the DATA it
    received, but a response to HEAD and a 204 or 304 response have no
    content whatever their ``content-length`` says (RFC 9110 §6.4.1,
    §8.6). The client marks its HEAD streams with :meth:`expect_no_content`;
    204 and 304 are spotted as the headers are decoded. Marks live on
    aioquic's stream objects, so they go when aioquic forgets the stream.
    It also enforces what aioquic 1.7 lets through (RFC 9114 §4.3.1: a
    request other than CONNECT has ``:scheme`` and ``:path``, and only
    CONNECT has ``:protocol``, RFC 9220 §3; RFC 9204
    §4.2: the QPACK encoder and decoder streams are never closed), and
    advertises the QPACK limits it is given (SETTINGS_QPACK_MAX_TABLE_CAPACITY
    and SETTINGS_QPACK_BLOCKED_STREAMS, RFC 9204 §5), which its decoder
    enforces: a larger table is a QPACK_ENCODER_STREAM_ERROR (§4.3.1), one
    blocked stream too many a QPACK_DECOMPRESSION_FAILED (§2.1.2).
    It advertises SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 §7.2.4.1) and
    keeps the header sections (decoded whole, so that the QPACK state
    stays in step) that exceed it, for :meth:`take_oversized`: the
    protocol then answers or discards the message (RFC 9114 §4.2.2).

    A malformed message (RFC 9114 §4.1.2) is a stream error, not the
    connection error aioquic makes of every ``MessageError``: the stream's
    parsing stops (with its events not returned yet), the QPACK decoder
    abandons it (Stream Cancellation, RFC 9204 §4.4.2), what the peer still
    sends on it is dropped until it ends or resets it, and
    :meth:`take_message_errors` reports it to the protocol, which resets it.
    This overrides nine private methods of aioquic 1.7: ``_init_connection``,
    ``_get_local_settings``, ``_decode_headers``, ``_check_content_length``,
    ``_receive_stream_data_uni``, ``_receive_stream_reset`` and the three
    ``_*request_or_push*`` methods that read request streams.
    """

    def __init__(
        self,
        quic: QuicConnection,
        *,
        qpack_max_table_capacity: int,
        qpack_blocked_streams: int,
        max_field_section_size: int,
    ) -> None:
        self._qpack_limits = (qpack_max_table_capacity, qpack_blocked_streams)
        self._max_field_section_size = max_field_section_size
        # Header sections over the limit, per stream, until their events are handled.
        self._oversized: dict[int, list[list[tuple[bytes, bytes]]]] = {}
        # Streams of malformed messages, until the peer ends them (dropping
        # what arrives), and the reports the protocol has not taken yet.
        self._discarding: set[int] = set()
        self._message_errors: list[MessageErrorReport] = []
        super().__init__(quic)
        self._no_content: weakref.WeakSet[H3Stream] = weakref.WeakSet()

    # --- the API ------------------------------------------------------------------

    def parser_buffered(self, stream_id: int) -> int:
        """Bytes of a stream the frame parser holds (an incomplete frame)."""
        stream = self._stream.get(stream_id)
        return len(stream.buffer) if stream is not None else 0

    def sending_reset(self, stream_id: int) -> None:
        """Our side of a request stream was reset: aioquic may forget it once the peer's is."""
        stream = self._stream.get(stream_id)
        if stream is not None:
            stream.sending_ended = True

    def peer_accepts_datagrams(self) -> bool:
        """Whether the peer's SETTINGS had SETTINGS_H3_DATAGRAM=1 (RFC 9297 §2.1.1)."""
        return (self._received_settings or {}).get(Setting.H3_DATAGRAM) == 1

    def send_goaway(self, goaway_id: int) -> None:
        """Send GOAWAY with ``goaway_id`` on our control stream (RFC 9114 §5.2, §7.2.6)."""
        control_stream_id = self._local_control_stream_id
        assert control_stream_id is not None  # opened when the connection was made
        payload = encode_frame(FrameType.GOAWAY, encode_uint_var(goaway_id))
        self._quic.send_stream_data(control_stream_id, payload)

    def take_oversized(self, stream_id: int, headers: object) -> bool:
        """Return True if ``headers`` (a ``HeadersReceived``'s) were over the limit."""
        sections = self._oversized.get(stream_id)
        if not sections:
            return False
        for index, section in enumerate(sections):
            if section is headers:
                del sections[index]
                if not sections:
                    del self._oversized[stream_id]
                return True
        return False

    def take_message_errors(self) -> list[MessageErrorReport]:
        """The malformed messages found since the last call (usually none)."""
        errors = self._message_errors
        if errors:
            self._message_errors = []
        return errors

    def expect_no_content(self, stream_id: int) -> None:
        """The response on ``stream_id`` will have no content (a HEAD request's)."""
        stream = self._stream.get(stream_id)
        if stream is not None:
            self._no_content.add(stream)

    # --- overrides ------------------------------------------------------------------

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings[SETTINGS_MAX_FIELD_SECTION_SIZE] = self._max_field_section_size
        if self._quic._configuration.max_datagram_frame_size is not None:
            # RFC 9297 §2.1.1: HTTP Datagrams, with the transport parameter.
            settings[Setting.H3_DATAGRAM] = 1
        return settings

    def _init_connection(self) -> None:
        # aioquic's __init__ has just set its own limits and made the
        # decoder; ours replace them before SETTINGS goes out.
        capacity, blocked = self._qpack_limits
        if (capacity, blocked) != (self._max_table_capacity, self._blocked_streams):
            self._max_table_capacity = capacity
            self._blocked_streams = blocked
            self._decoder = pylsqpack.Decoder(capacity, blocked)
        super()._init_connection()

    def _decode_headers(self, stream_id: int, frame_data: bytes | None) -> h3_events.Headers:
        headers = super()._decode_headers(stream_id, frame_data)
        if field_section_size(headers) > self._max_field_section_size:
            self._oversized.setdefault(stream_id, []).append(headers)
        # :status comes first (RFC 9114 §4.3); aioquic rejects it anywhere else.
        if self._is_client and headers and headers[0] in NO_CONTENT_STATUSES:
            self.expect_no_content(stream_id)
        stream = self._stream.get(stream_id)
        if (
            not self._is_client
            and stream is not None
            and stream.push_id is None
            and stream.headers_recv_state == HeadersState.INITIAL
        ):
            check_request_pseudo_headers(headers)
        return headers

    def _receive_stream_data_uni(
        self, stream: H3Stream, data: bytes, stream_ended: bool
    ) -> list[h3_events.H3Event]:
        events = super()._receive_stream_data_uni(stream, data, stream_ended)
        if stream_ended and stream.stream_type in (
            StreamType.QPACK_ENCODER,
            StreamType.QPACK_DECODER,
        ):
            raise ClosedCriticalStream("Closing a QPACK stream is not allowed")
        return events

    def _check_content_length(self, stream: H3Stream) -> None:
        if stream not in self._no_content:
            super()._check_content_length(stream)

    # --- overrides: a malformed message is a stream error -----------------------

    def _receive_request_or_push_data(
        self, stream: H3Stream, data: bytes, stream_ended: bool
    ) -> list[h3_events.H3Event]:
        if stream.stream_id in self._discarding:
            if stream_ended:
                self._discarding.discard(stream.stream_id)
                stream.receiving_ended = True  # aioquic may forget the stream
            return []
        try:
            return super()._receive_request_or_push_data(stream, data, stream_ended)
        except _MessageAborted:
            return []

    def _handle_request_or_push_frame(
        self, frame_type: int, frame_data: bytes | None, stream: H3Stream, stream_ended: bool
    ) -> list[h3_events.H3Event]:
        if stream.stream_id in self._discarding:
            return []
        try:
            return super()._handle_request_or_push_frame(
                frame_type, frame_data, stream, stream_ended
            )
        except MessageError as exc:
            self._message_error(stream, exc)
            if frame_data is None:  # unblocked by the encoder stream: on to the next one
                return []
            raise _MessageAborted from exc

    def _handle_request_or_push_end(self, stream: H3Stream) -> list[h3_events.H3Event]:
        try:
            return super()._handle_request_or_push_end(stream)
        except MessageError as exc:
            self._message_error(stream, exc)
            raise _MessageAborted from exc

    def _receive_stream_reset(self, stream_id: int) -> None:
        self._discarding.discard(stream_id)
        super()._receive_stream_reset(stream_id)

    def _message_error(self, stream: H3Stream, exc: MessageError) -> None:
        """Stop reading a stream whose message is malformed, and report it."""
        stream_id = stream.stream_id
        self._oversized.pop(stream_id, None)
        stream.buffer = b""
        stream.frame_type = stream.frame_size = None
        stream.sending_ended = True  # the protocol resets our side
        if not stream.receiving_ended:
            self._discarding.add(stream_id)
        report = MessageErrorReport(stream_id, exc.reason_phrase, stream.receiving_ended)
        self._message_errors.append(report)
        # RFC 9204 §4.4.2: the stream's field sections will not be decoded.
        decoder_stream_id = self._local_decoder_stream_id
        assert decoder_stream_id is not None  # opened when the connection was made
        self._quic.send_stream_data(decoder_stream_id, self._decoder.cancel_stream(stream_id))
