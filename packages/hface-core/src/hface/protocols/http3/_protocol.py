"""HTTP/3 over aioquic behind hface's sans-IO interface.

Theory of operation
-------------------

One :class:`FlowControlledQuicConnection` (QUIC, RFC 9000) carries one
aioquic ``H3Connection`` (HTTP/3, RFC 9114). Input enters through
:meth:`datagram_received` and :meth:`clock`; after each, the QUIC events are
pumped through the HTTP/3 layer and translated into hface events. Output is
pulled with :meth:`datagrams_to_send`. Time only ever comes from the last
:meth:`clock` call, which must be made before the first
:meth:`datagrams_to_send`: a client starts its handshake then.

Streams (RFC 9114 §4.1): a client opens a request stream with
:meth:`submit_headers` on the ID from :meth:`get_available_stream_id`; a
server answers on streams the client opened. The protocol tracks each
stream's send and receive halves to turn misuse into
:class:`~hface.errors.LocalProtocolError` before aioquic sees it, and forgets
a stream once both halves have ended or it was reset.

Closing: :meth:`submit_goaway` and :meth:`submit_close` send GOAWAY (RFC
9114 §5.2) on the control stream with the next :meth:`datagrams_to_send`.
:meth:`submit_close` with an error code closes QUIC (RFC 9000 §10.2) in the
same batch; a graceful close, once the streams in flight are done (or at
:meth:`submit_close` with the no-error code, which abandons them), first
lingers until the peer has acknowledged all that was sent, at most
:data:`CLOSE_LINGER` seconds without progress; :meth:`abandon_linger` cuts
that short. ``ConnectionTerminated`` is emitted
once: when the close was sent or received, on the idle timeout (RFC 9000
§10.1) or on :meth:`connection_lost`. Transport-level closes are reported
with the HTTP/3 no-error or general-protocol-error code and the QUIC code
in the message. The error code 0 given to :meth:`submit_close` or
:meth:`submit_stream_reset` means H3_NO_ERROR (0x100), as HTTP/3 has no 0x0.

GOAWAY received: aioquic skips GOAWAY frames, so
:class:`~._control.PeerControlStreamReader` reads them alongside. A client
gets ``GoawayReceived(last_stream_id=ID - 4)`` (negative: no stream was
processed) and ``StreamResetReceived`` with H3_REQUEST_REJECTED for its
streams at or above the ID; a server gets ``last_stream_id=push ID - 1``.

Peer errors hface detects itself (an increased GOAWAY identifier, RFC 9114
§5.2; too many request streams reset) close QUIC with the HTTP/3 code
(H3_ID_ERROR, H3_EXCESSIVE_LOAD) like aioquic's own checks do; from then on
nothing received is processed, and ``ConnectionTerminated`` follows once the
close was sent.

Rapid reset (RFC 9114 §10.5, CVE-2023-44487): a server spends one unit of a
budget of ``max_reset_streams`` for each request stream the client resets
and earns one back, up to the budget, for each exchange that completes;
a client out of budget gets H3_EXCESSIVE_LOAD. Reserved frames and empty
DATA frames cost neither events nor buffered bytes: aioquic skips them as
they arrive. They, tiny DATA frames, control frames and streams of unknown
types spend a second budget, ``max_control_frames``, refilled by progress
and once per :data:`~._guard.FLOOD_WINDOW` seconds (see :mod:`._guard`);
a peer (client or server) out of it gets H3_EXCESSIVE_LOAD too.

Header size (RFC 9114 §4.2.2): each side advertises
``max_field_section_size`` as SETTINGS_MAX_FIELD_SECTION_SIZE (§7.2.4.1).
A header section over it is still decoded whole (the QPACK state must stay
in step), then a server answers the request with 431 itself and drops the
rest of it, and a client resets the stream with H3_EXCESSIVE_LOAD
(``StreamResetSent``); trailers over it reset the stream on either side.

Flow control: see :mod:`._quic`. Body bytes are counted as held when
``DataReceived`` is emitted and released by :meth:`acknowledge_received_data`.
Outbound, aioquic buffers everything submitted;
:meth:`get_pending_data_size` reports the bytes written to the QUIC stream
and not yet sent (HTTP/3 framing included), which stops growing only if the
caller stops submitting while it is above zero.
"""

from __future__ import annotations

import ipaddress
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import pylsqpack
from aioquic.buffer import encode_uint_var
from aioquic.h3 import events as h3_events
from aioquic.h3.connection import (
    ClosedCriticalStream,
    FrameType,
    H3Connection,
    H3Stream,
    HeadersState,
    IdError,
    MessageError,
    ProtocolError,
    StreamType,
    encode_frame,
    validate_request_headers,
    validate_response_headers,
    validate_trailers,
)
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration

from hface.common import HTTP3_ERROR_CODES, AddressType, DatagramType, HeadersType
from hface.errors import LocalProtocolError, TerminationReason
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoawayReceived,
    HeadersReceived,
    StreamResetReceived,
    StreamResetSent,
)
from hface.protocols import ConnectionState, HTTP3Protocol

from .._flood import FloodBudget
from .._headers import CONNECTION_SPECIFIC_HEADERS
from ._control import PeerControlStreamReader
from ._guard import DEFAULT_MAX_CONTROL_FRAMES, FLOOD_WINDOW, RequestFrameCounter
from ._packets import InvalidQUICPacket, sniff_quic_packet
from ._quic import FlowControlledQuicConnection

_CODES = HTTP3_ERROR_CODES
_CONNECTION_SPECIFIC = CONNECTION_SPECIFIC_HEADERS
#: Seconds a graceful close waits, without progress, for the peer to
#: acknowledge what was sent before it closes QUIC anyway.
CLOSE_LINGER = 1.0
#: Peer resets of request streams a server tolerates beyond the streams
#: that completed (RFC 9114 §10.5, the HTTP/3 form of CVE-2023-44487).
DEFAULT_MAX_RESET_STREAMS = 200
#: The QPACK dynamic table capacity a peer's encoder may use (RFC 9204 §3.2.3).
DEFAULT_QPACK_MAX_TABLE_CAPACITY = 4096
#: The streams a peer's header blocks may keep blocked at once (RFC 9204 §2.1.2).
DEFAULT_QPACK_BLOCKED_STREAMS = 16
#: ls-qpack's bounds of the two (LSQPACK_MAX_DYN_TABLE_SIZE, LSQPACK_MAX_MAX_RISKED_STREAMS).
MAX_QPACK_MAX_TABLE_CAPACITY = 2**30 - 1
MAX_QPACK_BLOCKED_STREAMS = 2**16 - 1
#: The largest field section (RFC 9114 §4.2.2: names, values and 32 bytes
#: per field) a peer may send by default, advertised as
#: SETTINGS_MAX_FIELD_SECTION_SIZE (§7.2.4.1); HTTP/2's default list size.
DEFAULT_MAX_FIELD_SECTION_SIZE = 64 * 1024
#: RFC 9114 §7.2.4.1: the identifier of SETTINGS_MAX_FIELD_SECTION_SIZE.
_SETTINGS_MAX_FIELD_SECTION_SIZE = 0x6
#: The largest value a QUIC variable-length integer holds (RFC 9000 §16).
MAX_FIELD_SECTION_SIZE = 2**62 - 1
#: Responses without content, whatever their content-length (RFC 9110 §15.3.5, §15.4.5).
_NO_CONTENT_STATUSES = frozenset({(b":status", b"204"), (b":status", b"304")})


def is_loopback(host: str) -> bool:
    """Return True if ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def clean_headers(headers: HeadersType) -> list[tuple[bytes, bytes]]:
    """Lower-case names and drop connection-specific fields (RFC 9114 §4.2)."""
    cleaned = []
    for name, value in headers:
        name = name.lower()
        if name in _CONNECTION_SPECIFIC:
            continue
        if name == b"te" and value.lower() != b"trailers":
            continue
        cleaned.append((name, value))
    return cleaned


def check_max_field_section_size(max_field_section_size: int) -> None:
    """Raise ``ValueError`` unless the field section limit is a valid setting value."""
    if not 1 <= max_field_section_size <= MAX_FIELD_SECTION_SIZE:
        raise ValueError(
            f"max_field_section_size must be between 1 and 2**62-1, not {max_field_section_size}"
        )


def field_section_size(headers: list[tuple[bytes, bytes]]) -> int:
    """The size of a field section as RFC 9114 §4.2.2 counts it (32 bytes per field)."""
    return sum(len(name) + len(value) for name, value in headers) + 32 * len(headers)


def check_qpack_options(*, qpack_max_table_capacity: int, qpack_blocked_streams: int) -> None:
    """Raise ``ValueError`` unless the QPACK settings are in the range hface supports."""
    if not 0 <= qpack_max_table_capacity <= MAX_QPACK_MAX_TABLE_CAPACITY:
        raise ValueError(
            f"qpack_max_table_capacity must be between 0 and {MAX_QPACK_MAX_TABLE_CAPACITY},"
            f" not {qpack_max_table_capacity}"
        )
    if not 0 <= qpack_blocked_streams <= MAX_QPACK_BLOCKED_STREAMS:
        raise ValueError(
            f"qpack_blocked_streams must be between 0 and {MAX_QPACK_BLOCKED_STREAMS},"
            f" not {qpack_blocked_streams}"
        )


@contextmanager
def _map_local_errors() -> Iterator[None]:
    try:
        yield
    except (ProtocolError, ValueError, AssertionError, RuntimeError) as exc:
        raise LocalProtocolError(str(exc) or type(exc).__name__) from exc


class _H3Connection(H3Connection):
    """aioquic's ``H3Connection``, told which responses carry no content.

    aioquic checks a response's ``content-length`` against the DATA it
    received, but a response to HEAD and a 204 or 304 response have no
    content whatever their ``content-length`` says (RFC 9110 §6.4.1,
    §8.6). The client marks its HEAD streams with :meth:`expect_no_content`;
    204 and 304 are spotted as the headers are decoded. Marks live on
    aioquic's stream objects, so they go when aioquic forgets the stream.
    It also enforces what aioquic 1.7 lets through (RFC 9114 §4.3.1: a
    request other than CONNECT has ``:scheme`` and ``:path``; RFC 9204
    §4.2: the QPACK encoder and decoder streams are never closed), and
    advertises the QPACK limits it is given (SETTINGS_QPACK_MAX_TABLE_CAPACITY
    and SETTINGS_QPACK_BLOCKED_STREAMS, RFC 9204 §5), which its decoder
    enforces: a larger table is a QPACK_ENCODER_STREAM_ERROR (§4.3.1), one
    blocked stream too many a QPACK_DECOMPRESSION_FAILED (§2.1.2).
    It advertises SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 §7.2.4.1) and
    keeps the header sections (decoded whole, so that the QPACK state
    stays in step) that exceed it, for :meth:`take_oversized`: the
    protocol then answers or discards the message (RFC 9114 §4.2.2).
    This overrides five private methods (``_init_connection``,
    ``_get_local_settings``, ``_decode_headers``, ``_check_content_length``,
    ``_receive_stream_data_uni``) of aioquic 1.7.
    """

    def __init__(
        self,
        quic: FlowControlledQuicConnection,
        *,
        qpack_max_table_capacity: int = DEFAULT_QPACK_MAX_TABLE_CAPACITY,
        qpack_blocked_streams: int = DEFAULT_QPACK_BLOCKED_STREAMS,
        max_field_section_size: int = DEFAULT_MAX_FIELD_SECTION_SIZE,
    ) -> None:
        self._qpack_limits = (qpack_max_table_capacity, qpack_blocked_streams)
        self._max_field_section_size = max_field_section_size
        # Header sections over the limit, per stream, until their events are handled.
        self._oversized: dict[int, list[list[tuple[bytes, bytes]]]] = {}
        super().__init__(quic)
        self._no_content: weakref.WeakSet[H3Stream] = weakref.WeakSet()

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings[_SETTINGS_MAX_FIELD_SECTION_SIZE] = self._max_field_section_size
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

    def expect_no_content(self, stream_id: int) -> None:
        """The response on ``stream_id`` will have no content (a HEAD request's)."""
        stream = self._stream.get(stream_id)
        if stream is not None:
            self._no_content.add(stream)

    def _decode_headers(self, stream_id: int, frame_data: bytes | None) -> h3_events.Headers:
        headers = super()._decode_headers(stream_id, frame_data)
        if field_section_size(headers) > self._max_field_section_size:
            self._oversized.setdefault(stream_id, []).append(headers)
        # :status comes first (RFC 9114 §4.3); aioquic rejects it anywhere else.
        if self._is_client and headers and headers[0] in _NO_CONTENT_STATUSES:
            self.expect_no_content(stream_id)
        stream = self._stream.get(stream_id)
        if (
            not self._is_client
            and stream is not None
            and stream.push_id is None
            and stream.headers_recv_state == HeadersState.INITIAL
        ):
            _check_request_pseudo_headers(headers)
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


def _check_request_pseudo_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Raise ``MessageError`` unless a non-CONNECT request has :scheme and :path."""
    names = {name for name, _ in headers if name.startswith(b":")}
    if (b":method", b"CONNECT") in headers and b":protocol" not in names:
        return
    missing = {b":scheme", b":path"} - names
    if missing and b":method" in names:
        raise MessageError(f"Pseudo-headers {sorted(missing)} are missing")


@dataclass(slots=True)
class _Stream:
    headers_sent: bool = False
    final_headers_sent: bool = False
    send_ended: bool = False
    recv_ended: bool = False
    reset: bool = False
    #: The request was refused with 431 (RFC 9114 §4.2.2): what the client
    #: still sends on it is dropped.
    refused: bool = False


class _HTTP3Protocol(HTTP3Protocol):
    _is_client: bool

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        max_concurrent_streams: int,
        max_reset_streams: int = DEFAULT_MAX_RESET_STREAMS,
        qpack_max_table_capacity: int = DEFAULT_QPACK_MAX_TABLE_CAPACITY,
        qpack_blocked_streams: int = DEFAULT_QPACK_BLOCKED_STREAMS,
        max_control_frames: int = DEFAULT_MAX_CONTROL_FRAMES,
        max_field_section_size: int = DEFAULT_MAX_FIELD_SECTION_SIZE,
    ) -> None:
        if max_reset_streams < 1:
            raise ValueError("max_reset_streams must be at least 1")
        if max_control_frames < 1:
            raise ValueError("max_control_frames must be at least 1")
        check_max_field_section_size(max_field_section_size)
        self._max_field_section_size = max_field_section_size
        check_qpack_options(
            qpack_max_table_capacity=qpack_max_table_capacity,
            qpack_blocked_streams=qpack_blocked_streams,
        )
        self._qpack_max_table_capacity = qpack_max_table_capacity
        self._qpack_blocked_streams = qpack_blocked_streams
        self._max_reset_streams = self._resets_left = max_reset_streams
        self._configuration = configuration
        self._max_concurrent_streams = max_concurrent_streams
        self._quic: FlowControlledQuicConnection | None = None
        self._h3: _H3Connection | None = None
        self._events: deque[Event] = deque()
        self._streams: dict[int, _Stream] = {}
        self._control = PeerControlStreamReader()
        self._flood = FloodBudget(max_control_frames, window=FLOOD_WINDOW)
        self._frames = RequestFrameCounter(self._flood)
        self._now: float | None = None
        # False once datagrams_to_send() has run and nothing could have
        # changed its answer since (no input, no expired timer, no submit).
        self._output_pending = True
        self._terminated = False
        self._close_requested: int | None = None
        # The close went out because it was asked for (see _close_reason).
        self._closed_on_request = False
        self._goaway_received = False
        self._last_goaway_id: int | None = None
        self._closing_on_error = False
        self._failed = False
        self._goaway_sent = False
        self._draining = False
        # A graceful close waiting for acknowledgements: until when, and
        # the backlog it last saw (a smaller one moves the deadline on).
        self._linger_deadline: float | None = None
        self._linger_backlog = 0
        # True once abandon_linger() cut a lingering close short.
        self._linger_cut = False
        self._max_peer_stream_id = -1
        self._address: AddressType | None = None

    def _attach(self, quic: FlowControlledQuicConnection) -> None:
        self._quic = quic
        self._h3 = h3 = _H3Connection(
            quic,
            qpack_max_table_capacity=self._qpack_max_table_capacity,
            qpack_blocked_streams=self._qpack_blocked_streams,
            max_field_section_size=self._max_field_section_size,
        )

        def parser_buffered(stream_id: int) -> int:
            # aioquic keeps an incomplete frame in H3Stream.buffer.
            stream = h3._stream.get(stream_id)
            return len(stream.buffer) if stream is not None else 0

        quic.parser_buffered = parser_buffered

    # --- QUIC side ------------------------------------------------------------

    @property
    def connection_ids(self) -> Sequence[bytes]:
        if self._quic is None:
            return []
        ids = [cid.cid for cid in self._quic._host_cids]
        if not self._is_client:
            ids.append(self._quic.original_destination_connection_id)
        return ids

    @property
    def handshake_completed(self) -> bool:
        return self._quic is not None and self._quic._handshake_complete

    def clock(self, now: float) -> None:
        self._now = now
        quic = self._connect()
        if quic is None or self._terminated:
            return
        timer = quic.get_timer()
        if timer is not None and timer <= now:
            self._output_pending = True
            was_closing = quic.is_closing()
            try:
                quic.handle_timer(now)
            except Exception as exc:
                self._fail(_CODES.internal_error, f"timer handling failed: {exc!r}")
                return
            if not was_closing and quic.is_closing():
                if self.handshake_completed:
                    self._terminate(_CODES.no_error, "idle timeout", TerminationReason.TIMEOUT)
                else:
                    self._terminate(
                        _CODES.internal_error, "handshake timed out", TerminationReason.TIMEOUT
                    )
            self._pump()

    def get_timer(self) -> float | None:
        if self._quic is None or self._terminated or self._now is None:
            return None
        if self._is_client and not self._quic._connect_called:
            return None
        timer = self._quic.get_timer()
        linger = self._linger_deadline
        if linger is not None and self._close_requested is not None:
            return linger if timer is None else min(timer, linger)
        return timer

    def datagram_received(self, datagram: DatagramType) -> None:
        data, address = datagram
        if self._terminated:
            return
        if self._quic is None and (self._is_client or not self._start_server(data, address)):
            return
        quic = self._quic
        assert quic is not None
        now = self._now if self._now is not None else 0.0
        was_pending = self._output_pending
        self._output_pending = True
        self._flood.refill(now)
        try:
            quic.receive_datagram(data, address, now=now)
            self._pump()
        except Exception as exc:
            self._fail(_CODES.internal_error, f"datagram handling failed: {exc!r}")
            return
        if not was_pending and not quic.output_due(now):
            # Only ACKs came, or what came needs only a delayed ACK (its
            # timer makes clock() flag output): datagrams_to_send() can skip.
            self._output_pending = False

    def datagrams_to_send(self) -> Sequence[DatagramType]:
        if self._now is None:
            raise LocalProtocolError("clock() must be called before datagrams_to_send()")
        quic = self._connect()
        if quic is None or self._terminated:
            return []
        if self._draining and not self._streams and self._close_requested is None:
            self._close_requested = _CODES.no_error  # the last stream in flight is done
        if not self._output_pending and self._close_requested is None:
            # aioquic's answer depends only on its state and the time, and
            # every timer it set makes clock() flag new output: skip the
            # call, which costs as much as building a packet.
            return []
        self._output_pending = False
        try:
            datagrams = quic.datagrams_to_send(now=self._now)
            if self._close_requested is not None and self._may_close(quic, self._now):
                # What was pending went out above; the close follows in the same batch.
                quic.close(error_code=self._close_requested, reason_phrase="")
                self._close_requested = None
                self._closed_on_request = True
                self._linger_deadline = None
                datagrams += quic.datagrams_to_send(now=self._now)
        except Exception as exc:
            self._fail(_CODES.internal_error, f"sending failed: {exc!r}")
            return []
        self._check_closed()
        return datagrams

    def _may_close(self, quic: FlowControlledQuicConnection, now: float) -> bool:
        """Return True if the requested close may go out now.

        A QUIC close (RFC 9000 §10.2) ends the connection at once: data sent
        but lost, or not sent yet (held by congestion control or pacing),
        would never arrive, and under load a datagram with the last response
        or the GOAWAY does get lost. So a graceful close lingers until the
        peer has acknowledged everything sent, and gives up when
        :data:`CLOSE_LINGER` seconds pass with no progress (a peer gone, or
        one that stopped reading). A close for an error does not wait.
        """
        if self._close_requested != _CODES.no_error or self._linger_cut:
            return True
        backlog = quic.unacknowledged_bytes()
        if backlog == 0:
            return True
        if self._linger_deadline is None or backlog < self._linger_backlog:
            self._linger_deadline = now + CLOSE_LINGER
        self._linger_backlog = backlog
        return now >= self._linger_deadline

    def connection_lost(self) -> None:
        self._terminate(_CODES.internal_error, "connection lost", TerminationReason.TRANSPORT_LOST)

    # --- HTTP side -------------------------------------------------------------

    def is_available(self) -> bool:
        quic = self._quic
        return (
            quic is not None
            and self._is_client
            and not self.has_expired()
            and quic._handshake_complete
            and not quic.peer_stream_limit_reached()
        )

    @property
    def state(self) -> ConnectionState:
        if self._terminated:
            return ConnectionState.CLOSED
        quic = self._quic
        if (
            self._close_requested is not None
            or self._closing_on_error
            or (quic is not None and quic.is_closing())
        ):
            return ConnectionState.CLOSING
        if self._goaway_sent or self._goaway_received:
            return ConnectionState.DRAINING
        return ConnectionState.OPEN

    def has_expired(self) -> bool:
        quic = self._quic
        return (
            self._terminated
            or self._goaway_received
            or self._goaway_sent
            or self._close_requested is not None
            or (quic is not None and quic.is_closing())
        )

    def get_available_stream_id(self) -> int:
        if not self._is_client:
            raise LocalProtocolError("only clients open HTTP/3 request streams")
        if not self.is_available():
            raise LocalProtocolError("no stream can be opened on this connection now")
        assert self._quic is not None
        return self._quic.get_next_available_stream_id()

    def submit_headers(
        self, stream_id: int, headers: HeadersType, end_stream: bool = False
    ) -> None:
        self._output_pending = True
        h3 = self._require_open()
        stream = self._streams.get(stream_id)
        if stream is None:
            if not self._is_client:
                raise LocalProtocolError(f"unknown stream {stream_id}")
            if stream_id != self.get_available_stream_id():
                raise LocalProtocolError(f"stream {stream_id} is not the next stream to open")
            stream = _Stream()
        elif stream.send_ended or stream.reset:
            raise LocalProtocolError(f"stream {stream_id} is closed for sending")
        cleaned = clean_headers(headers)
        interim = head = False
        with _map_local_errors():
            if stream.final_headers_sent:
                if not end_stream:
                    raise LocalProtocolError("trailers must end the stream")
                validate_trailers(cleaned)
            elif self._is_client:
                validate_request_headers(cleaned)
                head = (b":method", b"HEAD") in cleaned
            else:
                validate_response_headers(cleaned)
                interim = dict(cleaned)[b":status"].startswith(b"1")
            h3.send_headers(stream_id, cleaned, end_stream)
        if head:
            h3.expect_no_content(stream_id)  # RFC 9110 §9.3.2
        self._streams[stream_id] = stream
        stream.headers_sent = True
        stream.final_headers_sent = stream.final_headers_sent or not interim
        if end_stream:
            self._end_sending(stream_id, stream)

    def submit_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._output_pending = True
        h3 = self._require_open()
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"unknown stream {stream_id}")
        if stream.send_ended or stream.reset:
            raise LocalProtocolError(f"stream {stream_id} is closed for sending")
        if not stream.final_headers_sent:
            raise LocalProtocolError(f"stream {stream_id} has sent no final headers")
        with _map_local_errors():
            h3.send_data(stream_id, data, end_stream)
        if end_stream:
            self._end_sending(stream_id, stream)

    def submit_stream_reset(self, stream_id: int, error_code: int = 0) -> None:
        self._output_pending = True
        stream = self._streams.get(stream_id)
        quic = self._quic
        if stream is None or stream.reset or quic is None or self._terminated:
            return
        code = error_code or _CODES.no_error
        stream.reset = True
        try:
            if not stream.send_ended:
                quic.reset_stream(stream_id, code)
            if not stream.recv_ended and quic.stream_exists(stream_id):
                quic.stop_stream(stream_id, code)
        except ValueError:
            pass  # the QUIC stream is already gone
        quic.forget(stream_id)
        h3_stream = self._h3._stream.get(stream_id) if self._h3 is not None else None
        if h3_stream is not None:
            # Let aioquic drop its state once the peer's reset arrives.
            h3_stream.sending_ended = True
        stream.send_ended = True
        if stream.recv_ended:
            del self._streams[stream_id]
        self._push(StreamResetSent(stream_id=stream_id, error_code=code))

    def submit_goaway(self) -> None:
        self._output_pending = True
        if self._terminated or self._quic is None or self._h3 is None:
            self._terminate(_CODES.no_error, None, TerminationReason.CLOSED_BY_US)
            return
        if self._quic.is_closing() or self._close_requested is not None or self._goaway_sent:
            return
        if not self._send_goaway():
            # No control stream yet: nothing can be in flight; close instead.
            self._close_requested = _CODES.no_error
            return
        # Graceful (RFC 9114 §5.2): streams in flight finish, then QUIC closes.
        self._draining = True

    def submit_close(self, error_code: int | None = None) -> None:
        code = error_code or _CODES.no_error  # 0: HTTP/3 has no 0x0
        self._output_pending = True
        if self._terminated or self._quic is None or self._h3 is None:
            self._terminate(code, None, TerminationReason.CLOSED_BY_US)
            return
        if self._quic.is_closing():
            return
        if self._close_requested is not None:
            if code != _CODES.no_error:
                self._close_requested = code  # an error cuts a lingering close short
            return
        self._send_goaway()
        self._close_requested = code

    def abandon_linger(self) -> None:
        if self._close_requested is not None:
            self._output_pending = True
            self._linger_cut = True

    def _send_goaway(self) -> bool:
        """Send GOAWAY on the control stream unless sent; False if there is none yet."""
        assert self._quic is not None
        assert self._h3 is not None
        if self._goaway_sent:
            return True
        control_stream_id = self._h3._local_control_stream_id
        if control_stream_id is None:
            return False
        if self._is_client:
            goaway_id = 0  # no push was allowed to be used
        else:
            goaway_id = self._max_peer_stream_id + 4 if self._max_peer_stream_id >= 0 else 0
        payload = encode_frame(FrameType.GOAWAY, encode_uint_var(goaway_id))
        self._quic.send_stream_data(control_stream_id, payload)
        self._goaway_sent = True
        return True

    def next_event(self) -> Event | None:
        try:
            return self._events.popleft()
        except IndexError:
            return None

    def acknowledge_received_data(self, stream_id: int, amount: int) -> None:
        quic = self._quic
        if quic is not None:
            quic.release(stream_id, amount)
            if not self._output_pending and quic.update_due(stream_id):
                self._output_pending = True

    def get_pending_data_size(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        if self._quic is None or (stream is not None and stream.reset):
            return 0
        return self._quic.unsent_bytes(stream_id)

    # --- internals ------------------------------------------------------------------

    def _connect(self) -> FlowControlledQuicConnection | None:
        return self._quic

    def _start_server(self, data: bytes, address: AddressType) -> bool:
        return False

    def _require_open(self) -> _H3Connection:
        quic = self._quic
        if (
            self._h3 is None
            or quic is None
            or self._terminated
            or self._close_requested is not None
            or quic.is_closing()
        ):
            raise LocalProtocolError("the connection is not open")
        return self._h3

    def _end_sending(self, stream_id: int, stream: _Stream) -> None:
        stream.send_ended = True
        if stream.recv_ended:
            del self._streams[stream_id]
            self._stream_completed()

    def _stream_completed(self) -> None:
        # A completed exchange earns back one unit of the reset budget.
        self._resets_left = min(self._resets_left + 1, self._max_reset_streams)

    def _on_request_stream_reset(self) -> None:
        """Spend the reset budget: a client resetting streams (RFC 9114 §10.5)."""
        self._resets_left -= 1
        if self._resets_left < 0 and not self._closing_on_error:
            self._close_with_error(_CODES.excessive_load, "too many request streams reset")

    def _flooded(self) -> None:
        """Close for a flood of frames or streams without progress (RFC 9114 §10.5)."""
        self._close_with_error(
            _CODES.excessive_load, "too many frames or streams without requests or data (a flood)"
        )

    def _push(self, event: Event) -> None:
        if not self._terminated:
            self._events.append(event)

    def _terminate(
        self,
        error_code: int,
        message: str | None,
        reason: TerminationReason,
        transport_error_code: int | None = None,
    ) -> None:
        if not self._terminated:
            self._events.append(
                ConnectionTerminated(
                    error_code=error_code,
                    message=message,
                    reason=reason,
                    transport_error_code=transport_error_code,
                )
            )
            self._terminated = True
            self._streams.clear()

    def _is_closing_on_error(self) -> bool:
        return self._closing_on_error

    def _close_with_error(self, error_code: int, message: str) -> None:
        """Close the connection for a peer's error; ``ConnectionTerminated`` follows once sent."""
        self._output_pending = True
        self._closing_on_error = True
        assert self._quic is not None
        self._quic.close(error_code=error_code, reason_phrase=message)

    def _fail(self, error_code: int, message: str) -> None:
        """End the connection for an internal error, telling the peer when possible.

        The CONNECTION_CLOSE goes out with the next :meth:`datagrams_to_send`
        and ``ConnectionTerminated`` follows it, as for a peer's error: a peer
        must not learn of the end only at its idle timeout. A second failure
        (sending itself failed) ends the connection at once, unsent.
        """
        self._output_pending = True
        quic = self._quic
        if quic is not None and not self._failed:
            self._failed = True
            with suppress(Exception):
                quic.close(error_code=error_code, reason_phrase=message)
                if quic._close_pending:
                    self._closing_on_error = True
                    return
        self._terminate(error_code, message, TerminationReason.LOCAL_ERROR)

    def _check_closed(self) -> None:
        quic = self._quic
        if quic is None or self._terminated or quic._close_pending:
            return
        details = quic.close_details()
        if details is None:
            return
        code, reason = details
        if not self._terminated:
            close_event = quic._close_event
            transport_code = None
            if close_event is not None and close_event.frame_type is not None:
                # A transport-level close (RFC 9000 §20.1), not an HTTP/3 one.
                transport_code = code
                reason = f"QUIC transport error {code:#x}" + (f": {reason}" if reason else "")
                code = _CODES.no_error if code == 0 else _CODES.protocol_error
            why = self._close_reason(transport_code)
            self._terminate(code, reason or None, why, transport_code)

    def _close_reason(self, transport_error_code: int | None) -> TerminationReason:
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
        if self._failed:
            return TerminationReason.LOCAL_ERROR
        if self._closing_on_error:
            return TerminationReason.PEER_PROTOCOL_ERROR
        if self._closed_on_request:
            return TerminationReason.CLOSED_BY_US
        return TerminationReason.CLOSED_BY_PEER

    def _pump(self) -> None:
        quic = self._quic
        h3 = self._h3
        assert quic is not None
        assert h3 is not None
        while (event := quic.next_event()) is not None:
            if self._closing_on_error:
                continue  # the connection is closing: nothing more is processed
            if isinstance(event, quic_events.StreamDataReceived):
                stream_id = event.stream_id
                kind = stream_id % 4
                if kind == 0:
                    if not self._frames.feed(stream_id, event.data, event.end_stream):
                        self._flooded()
                        continue
                elif kind == (2 if not self._is_client else 3):
                    control = self._control
                    spent = control.spent
                    goaways = control.feed(stream_id, event.data, event.end_stream)
                    if control.spent != spent and not self._flood.spend(control.spent - spent):
                        self._flooded()
                        continue
                    for goaway_id in goaways:
                        self._on_goaway(goaway_id)
                    if self._is_closing_on_error():
                        continue
            elif isinstance(event, quic_events.StreamReset):
                stream_id = event.stream_id
                if stream_id % 4 == 0:
                    self._frames.forget(stream_id)
                    if not self._is_client:
                        self._on_request_stream_reset()
                        if self._is_closing_on_error():
                            continue
                else:
                    self._control.forget(stream_id)
                self._on_peer_reset(event.stream_id, event.error_code, finished=True)
            elif isinstance(event, quic_events.StopSendingReceived):
                self._on_peer_reset(event.stream_id, event.error_code, finished=False)
            elif isinstance(event, quic_events.ConnectionTerminated):
                self._check_closed()
                continue
            for h3_event in h3.handle_event(event):
                self._on_h3_event(h3_event)
        self._check_closed()

    def _on_h3_event(self, event: h3_events.H3Event) -> None:
        if isinstance(event, h3_events.HeadersReceived | h3_events.DataReceived):
            if event.push_id is not None:
                return
            stream_id = event.stream_id
            too_large = isinstance(event, h3_events.HeadersReceived) and (
                self._h3 is not None and self._h3.take_oversized(stream_id, event.headers)
            )
            stream = self._streams.get(stream_id)
            first = stream is None
            if stream is None:
                # A stream is forgotten only once the peer can send nothing
                # more on it, so only a new request stream gets here.
                if self._is_client or not isinstance(event, h3_events.HeadersReceived):
                    return
                self._max_peer_stream_id = max(self._max_peer_stream_id, stream_id)
                stream = self._streams[stream_id] = _Stream()
            if stream.reset:
                return
            if stream.refused:
                if event.stream_ended:
                    stream.recv_ended = True
                    if stream.send_ended:
                        del self._streams[stream_id]
                return
            if too_large:
                self._refuse_oversized(stream_id, stream, event.stream_ended, request=first)
                return
            if event.stream_ended:
                stream.recv_ended = True
                if stream.send_ended:
                    del self._streams[stream_id]
                    self._stream_completed()
            if isinstance(event, h3_events.HeadersReceived):
                self._push(
                    HeadersReceived(
                        stream_id=stream_id, headers=event.headers, end_stream=event.stream_ended
                    )
                )
            else:
                assert self._quic is not None
                self._quic.hold(stream_id, len(event.data))
                self._push(
                    DataReceived(
                        stream_id=stream_id, data=event.data, end_stream=event.stream_ended
                    )
                )

    def _refuse_oversized(
        self, stream_id: int, stream: _Stream, ended: bool, *, request: bool
    ) -> None:
        """Refuse a message whose header section is over the limit (RFC 9114 §4.2.2).

        A server answers a request (not trailers) with 431 itself, and
        reads and drops the rest of the request until the client ends or
        resets the stream: the application never sees it. (Not
        STOP_SENDING, which §4.1.1 allows: hface's client, like others,
        takes it for a reset of the whole stream and loses the answer.)
        Trailers, and every response on a client (which "can discard
        responses that it cannot process"), reset the stream with
        H3_EXCESSIVE_LOAD, reported as ``StreamResetSent``.
        """
        if self._is_client or not request:
            self.submit_stream_reset(stream_id, _CODES.excessive_load)
            return
        assert self._h3 is not None
        stream.refused = True
        stream.recv_ended = ended
        headers = [(b":status", b"431"), (b"content-length", b"0")]
        self._h3.send_headers(stream_id, headers, end_stream=True)
        stream.headers_sent = stream.final_headers_sent = stream.send_ended = True
        if ended:
            del self._streams[stream_id]

    def _on_peer_reset(self, stream_id: int, error_code: int, *, finished: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if stream.refused:
            # Answered with 431 and never reported: it ends silently.
            if finished:
                del self._streams[stream_id]
            return
        if not stream.reset:
            stream.reset = True
            self._push(StreamResetReceived(stream_id=stream_id, error_code=error_code))
        if finished:
            assert self._quic is not None
            self._quic.forget(stream_id)
            del self._streams[stream_id]

    def _on_goaway(self, goaway_id: int) -> None:
        if self._last_goaway_id is not None and goaway_id > self._last_goaway_id:
            # RFC 9114 §5.2: the identifier in GOAWAY never increases.
            self._close_with_error(IdError.error_code, "GOAWAY identifier increased")
            return
        self._last_goaway_id = goaway_id
        self._goaway_received = True
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


class HTTP3ClientProtocol(_HTTP3Protocol):
    """The client side of an HTTP/3 connection (aioquic).

    Made by :class:`~hface.protocols.http3.HTTP3ClientFactory`. The QUIC
    handshake starts at the first :meth:`clock` call. Datagrams grow from
    the configuration's ``max_datagram_size`` to ``largest_datagram_size``
    once the server's transport parameters allow it (see :mod:`._quic`).
    """

    _is_client = True

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        remote_address: AddressType,
        max_concurrent_streams: int,
        largest_datagram_size: int | None = None,
        qpack_max_table_capacity: int = DEFAULT_QPACK_MAX_TABLE_CAPACITY,
        qpack_blocked_streams: int = DEFAULT_QPACK_BLOCKED_STREAMS,
        max_control_frames: int = DEFAULT_MAX_CONTROL_FRAMES,
        max_field_section_size: int = DEFAULT_MAX_FIELD_SECTION_SIZE,
    ) -> None:
        super().__init__(
            configuration=configuration,
            max_concurrent_streams=max_concurrent_streams,
            qpack_max_table_capacity=qpack_max_table_capacity,
            qpack_blocked_streams=qpack_blocked_streams,
            max_control_frames=max_control_frames,
            max_field_section_size=max_field_section_size,
        )
        self._address = remote_address
        self._attach(
            FlowControlledQuicConnection(
                configuration=configuration,
                max_concurrent_streams=max_concurrent_streams,
                largest_datagram_size=largest_datagram_size,
            )
        )

    def _connect(self) -> FlowControlledQuicConnection | None:
        quic = self._quic
        if quic is not None and not quic._connect_called and self._now is not None:
            assert self._address is not None
            quic.connect(self._address, now=self._now)
        return quic


class HTTP3ServerProtocol(_HTTP3Protocol):
    """The server side of an HTTP/3 connection (aioquic).

    Made by :class:`~hface.protocols.http3.HTTP3ServerFactory`. The QUIC
    connection is created by the first datagram, which gives the original
    destination connection ID unless the factory was given one. If
    ``loopback_max_datagram_size`` is given and that datagram came from a
    loopback address, datagrams of up to that size are sent (see
    :mod:`._factories`).
    """

    _is_client = False

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        max_concurrent_streams: int,
        max_reset_streams: int = DEFAULT_MAX_RESET_STREAMS,
        original_destination_connection_id: bytes | None = None,
        retry_source_connection_id: bytes | None = None,
        loopback_max_datagram_size: int | None = None,
        qpack_max_table_capacity: int = DEFAULT_QPACK_MAX_TABLE_CAPACITY,
        qpack_blocked_streams: int = DEFAULT_QPACK_BLOCKED_STREAMS,
        max_control_frames: int = DEFAULT_MAX_CONTROL_FRAMES,
        max_field_section_size: int = DEFAULT_MAX_FIELD_SECTION_SIZE,
    ) -> None:
        super().__init__(
            configuration=configuration,
            max_concurrent_streams=max_concurrent_streams,
            max_reset_streams=max_reset_streams,
            qpack_max_table_capacity=qpack_max_table_capacity,
            qpack_blocked_streams=qpack_blocked_streams,
            max_control_frames=max_control_frames,
            max_field_section_size=max_field_section_size,
        )
        self._loopback_max_datagram_size = loopback_max_datagram_size
        self._original_dcid = original_destination_connection_id
        self._retry_scid = retry_source_connection_id
        if original_destination_connection_id is not None:
            self._create(original_destination_connection_id)

    def _create(self, original_dcid: bytes) -> None:
        self._attach(
            FlowControlledQuicConnection(
                configuration=self._configuration,
                max_concurrent_streams=self._max_concurrent_streams,
                original_destination_connection_id=original_dcid,
                retry_source_connection_id=self._retry_scid,
            )
        )

    def _start_server(self, data: bytes, address: AddressType) -> bool:
        try:
            info = sniff_quic_packet(
                data, connection_id_length=self._configuration.connection_id_length
            )
        except InvalidQUICPacket:
            return False
        if not info.is_initial:
            return False
        if self._loopback_max_datagram_size is not None and is_loopback(address[0]):
            self._configuration.max_datagram_size = self._loopback_max_datagram_size
        try:
            self._create(info.destination_connection_id)
        except Exception:
            return False
        return True
