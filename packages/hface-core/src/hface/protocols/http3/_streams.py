"""Request streams of the HTTP/3 protocol: submitting, receiving and resetting.

Theory of operation
-------------------

Streams (RFC 9114 §4.1): a client opens a request stream with
``submit_headers`` on the ID from ``get_available_stream_id``; a server
answers on streams the client opened. The protocol keeps a
:class:`~._base.RequestStream` for each, tracking its send and receive
halves to turn misuse into :class:`~hface.errors.LocalProtocolError` before
aioquic sees it, and forgets a stream once both halves have ended or it was
reset. aioquic's HTTP/3 events become hface's ``HeadersReceived`` and
``DataReceived`` (:meth:`HTTP3Streams._on_h3_event`); QUIC's resets become
``StreamResetReceived``.

Header size (RFC 9114 §4.2.2): each side advertises its
:attr:`~hface.protocols.ProtocolLimits.max_header_size` as
SETTINGS_MAX_FIELD_SECTION_SIZE (§7.2.4.1). A header section over it is
still decoded whole (the QPACK state must stay in step), then a server
answers the request with 431 itself and drops the rest of it, and a client
resets the stream with H3_EXCESSIVE_LOAD (``StreamResetSent``); trailers
over it reset the stream on either side.

Malformed messages (RFC 9114 §4.1.2: bad pseudo-headers or field names,
connection-specific fields, a ``content-length`` the DATA contradicts) are
stream errors: aioquic's HTTP/3 layer stops reading the stream (see
:class:`~._aioquic.AioquicH3Connection`), and the protocol resets both of
its halves with H3_MESSAGE_ERROR (``StreamResetSent`` if the application
saw the stream); the other streams and the connection go on. Frames out of
place and QPACK errors stay connection errors (§4.1, §7.1; RFC 9204 §2.2).

Rapid reset (RFC 9114 §10.5, CVE-2023-44487): a server spends one unit of a
budget of ``max_reset_streams`` for each request stream the client resets
or sends malformed, and earns one back, up to the budget, for each
exchange that completes; a client out of budget gets H3_EXCESSIVE_LOAD. Reserved frames and empty
DATA frames cost neither events nor buffered bytes: aioquic skips them as
they arrive. They, tiny DATA frames, control frames and streams of unknown
types spend a second budget, ``max_control_frames``, refilled by progress
and once per :data:`~._guard.FLOOD_WINDOW` seconds (see :mod:`._guard`);
a peer (client or server) out of it gets H3_EXCESSIVE_LOAD too.

HTTP Datagrams (RFC 9297 §2): ``submit_datagram`` sends a QUIC DATAGRAM
frame (RFC 9221) carrying the quarter stream ID, once the peer's SETTINGS
had SETTINGS_H3_DATAGRAM (both sides send it with the
``max_datagram_frame_size`` transport parameter, see
:class:`~._settings.HTTP3Settings`); a frame no packet could carry goes in
a DATAGRAM capsule instead if the stream switched to the Capsule Protocol
(:mod:`hface.protocols._capsules`, which reads capsules on every
version), and is dropped otherwise. Received frames become
``DatagramReceived`` for a stream whose receiving side is open, and are
dropped otherwise (§2.1: they may arrive before the stream's HEADERS).

Flow control: see :mod:`._quic`. Body bytes are counted as held when
``DataReceived`` is emitted and released by ``acknowledge_received_data``.
Outbound, aioquic buffers everything submitted; ``get_pending_data_size``
reports the bytes written to the QUIC stream and not yet sent (HTTP/3
framing included), which stops growing only if the caller stops submitting
while it is above zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from aioquic.h3 import events as h3_events
from aioquic.h3.connection import (
    ProtocolError,
    validate_request_headers,
    validate_response_headers,
    validate_trailers,
)

from hface.common import HTTP3_ERROR_CODES, HeadersType
from hface.errors import LocalProtocolError
from hface.events import (
    DatagramReceived,
    DataReceived,
    HeadersReceived,
    StreamResetReceived,
    StreamResetSent,
)
from hface.protocols import ConnectionState

from .._capsules import encode_varint
from .._headers import CONNECTION_SPECIFIC_HEADERS
from ._aioquic import AioquicH3Connection
from ._base import HTTP3Base, RequestStream
from ._messages import MessageErrorReport

_CODES: Final = HTTP3_ERROR_CODES
_CONNECTION_SPECIFIC: Final = CONNECTION_SPECIFIC_HEADERS
#: RFC 9297 §2.1.1: H3_DATAGRAM_ERROR.
_H3_DATAGRAM_ERROR: Final = 0x33
_OPEN: Final = ConnectionState.OPEN
_DRAINING: Final = ConnectionState.DRAINING
_CLOSING: Final = ConnectionState.CLOSING
_CLOSED: Final = ConnectionState.CLOSED


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


@contextmanager
def _map_local_errors() -> Iterator[None]:
    try:
        yield
    except (ProtocolError, ValueError, AssertionError, RuntimeError) as exc:
        raise LocalProtocolError(str(exc) or type(exc).__name__) from exc


class HTTP3Streams(HTTP3Base):
    """Request streams, both sides (internal)."""

    # --- the caller's side --------------------------------------------------------

    def is_available(self) -> bool:
        quic = self._quic
        return (
            quic is not None
            and self._is_client
            and self._lifecycle.state is _OPEN
            and quic.handshake_complete
            and not quic.peer_stream_limit_reached()
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
            stream = RequestStream()
        elif stream.stopped:
            return  # the server takes no more: dropped (see RequestStream.stopped)
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
        self._capsules.headers_submitted(stream_id, cleaned)
        if end_stream:
            self._end_sending(stream_id, stream)

    def submit_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._output_pending = True
        h3 = self._require_open()
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"unknown stream {stream_id}")
        if stream.stopped:
            return  # the server takes no more: dropped (see RequestStream.stopped)
        if stream.send_ended or stream.reset:
            raise LocalProtocolError(f"stream {stream_id} is closed for sending")
        if not stream.final_headers_sent:
            raise LocalProtocolError(f"stream {stream_id} has sent no final headers")
        with _map_local_errors():
            h3.send_data(stream_id, data, end_stream)
        if end_stream:
            self._end_sending(stream_id, stream)

    def submit_datagram(self, stream_id: int, data: bytes) -> bool:
        # RFC 9297 §2.1: a QUIC DATAGRAM frame, once both sides negotiated
        # them, on a stream whose sending side is open; else (or too large
        # for a packet) a DATAGRAM capsule if the stream switched to them.
        self._output_pending = True
        h3 = self._require_open()
        stream = self._streams.get(stream_id)
        if stream is not None and stream.stopped:
            return False  # the server takes no more (see RequestStream.stopped)
        if stream is None or stream.send_ended or stream.reset:
            raise LocalProtocolError(f"stream {stream_id} is not open for sending")
        capsules = self._capsules.is_active(stream_id)
        quic = self._quic
        assert quic is not None
        if h3.peer_accepts_datagrams():
            frame = encode_varint(stream_id >> 2) + data  # the quarter stream ID
            if len(frame) <= quic.max_datagram_frame_payload() or not capsules:
                return quic.queue_datagram_frame(frame)
        elif not capsules:
            raise LocalProtocolError(
                f"stream {stream_id} carries no HTTP Datagrams: the peer did not enable"
                " SETTINGS_H3_DATAGRAM and the stream does not use the Capsule Protocol"
            )
        self.submit_data(stream_id, self._capsules.encode_datagram(stream_id, data))
        return True

    def submit_stream_reset(self, stream_id: int, error_code: int = 0) -> None:
        self._output_pending = True
        stream = self._streams.get(stream_id)
        if stream is None or stream.reset or self._quic is None or self._lifecycle.state is _CLOSED:
            return
        code = error_code or _CODES.no_error
        stream.reset = True
        send, stop = not stream.send_ended, not stream.recv_ended
        stream.stop_sent = stop
        self._reset_quic_stream(stream_id, code, send=send, stop=stop)
        stream.send_ended = True
        if stream.recv_ended:
            del self._streams[stream_id]
        self._push(StreamResetSent(stream_id=stream_id, error_code=code))

    def _reset_quic_stream(self, stream_id: int, code: int, *, send: bool, stop: bool) -> None:
        """Reset our side of a stream (``send``) and ask the peer to stop its own (``stop``)."""
        quic = self._quic
        assert quic is not None
        try:
            if send:
                quic.reset_stream(stream_id, code)
            if stop and quic.stream_exists(stream_id):
                quic.stop_stream(stream_id, code)
        except ValueError:
            pass  # the QUIC stream is already gone
        quic.forget(stream_id)
        if self._h3 is not None:
            self._h3.sending_reset(stream_id)

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

    def _require_open(self) -> AioquicH3Connection:
        state = self._lifecycle.state
        if self._h3 is None or not (state is _OPEN or state is _DRAINING):
            raise LocalProtocolError("the connection is not open")
        return self._h3

    def _end_sending(self, stream_id: int, stream: RequestStream) -> None:
        stream.send_ended = True
        if stream.recv_ended:
            del self._streams[stream_id]
            self._stream_completed()

    def _stream_completed(self) -> None:
        # A completed exchange earns back one unit of the reset budget.
        self._resets_left = min(self._resets_left + 1, self._max_reset_streams)

    # --- the peer's side ------------------------------------------------------------

    def _answers_our_stop(self, stream_id: int) -> bool:
        """True if a RESET_STREAM from the client answers our own reset of the stream.

        QUIC makes RESET_STREAM the answer to STOP_SENDING (RFC 9000 §3.5):
        a client told to stop its upload (a 413, RFC 9114 §4.1) does not
        reset the request itself, and spends no reset budget.
        """
        stream = self._streams.get(stream_id)
        return stream is not None and stream.stop_sent

    def _on_request_stream_reset(self) -> None:
        """Spend the reset budget: a client resetting streams (RFC 9114 §10.5)."""
        self._resets_left -= 1
        if self._resets_left < 0 and self._lifecycle.state is not _CLOSING:
            self._close_with_error(_CODES.excessive_load, "too many request streams reset")

    def _on_datagram(self, event: h3_events.DatagramReceived) -> None:
        """An HTTP/3 datagram (RFC 9297 §2.1): its stream's, or dropped."""
        stream_id = event.stream_id
        if stream_id >= 1 << 62:
            # §2.1: a quarter stream ID beyond 2**60 is an H3_DATAGRAM_ERROR.
            self._close_with_error(_H3_DATAGRAM_ERROR, "quarter stream ID out of range")
            return
        stream = self._streams.get(stream_id)
        # A stream unknown (not opened yet, or forgotten) or whose receiving
        # side is closed: dropped, as §2.1 allows.
        if stream is not None and not (stream.reset or stream.recv_ended or stream.refused):
            self._push(DatagramReceived(stream_id=stream_id, data=event.data))

    def _on_h3_event(self, event: h3_events.H3Event) -> None:
        if isinstance(event, h3_events.DatagramReceived):
            self._on_datagram(event)
            return
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
                stream = self._streams[stream_id] = RequestStream()
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
            if event.stream_ended and stream.stopped:
                # The response is whole: now the server's STOP_SENDING.
                stream.reset = True
                self._push(StreamResetReceived(stream_id=stream_id, error_code=_CODES.no_error))

    def _refuse_oversized(
        self, stream_id: int, stream: RequestStream, ended: bool, *, request: bool
    ) -> None:
        """Refuse a message whose header section is over the limit (RFC 9114 §4.2.2).

        A server answers a request (not trailers) with 431 itself, and
        reads and drops the rest of the request until the client ends or
        resets the stream: the application never sees it. (Not
        STOP_SENDING, which §4.1.1 allows: hface's client keeps the answer
        (see RequestStream.stopped), but other clients take it for a reset
        of the whole stream and lose it.)
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

    def _on_message_error(self, report: MessageErrorReport) -> None:
        """Reset the stream of a malformed message (RFC 9114 §4.1.2); the connection goes on.

        The stream error is H3_MESSAGE_ERROR, on both halves of the stream.
        The application learns of it (``StreamResetSent``) only if it saw the
        stream; aioquic drops what the peer still sends on it. On a server
        it spends the reset budget, as a request the client reset does.
        """
        stream_id = report.stream_id
        code = _CODES.message_error
        self._output_pending = True
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            if not self._is_client:
                self._max_peer_stream_id = max(self._max_peer_stream_id, stream_id)
            self._reset_quic_stream(stream_id, code, send=True, stop=not report.receiving_ended)
        else:
            self._reset_quic_stream(
                stream_id,
                code,
                send=not (stream.send_ended or stream.reset),
                stop=not (report.receiving_ended or stream.recv_ended),
            )
            if not (stream.reset or stream.refused):  # else never reported, or already
                self._push(StreamResetSent(stream_id=stream_id, error_code=code))
        if not self._is_client:
            self._on_request_stream_reset()

    def _on_peer_reset(self, stream_id: int, error_code: int, *, finished: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if stream.refused:
            # Answered with 431 and never reported: it ends silently.
            if finished:
                del self._streams[stream_id]
            return
        if (
            not finished
            and self._is_client
            and error_code == _CODES.no_error
            and not (stream.reset or stream.recv_ended)
        ):
            # RFC 9114 §4.1: a server that has answered (or is answering)
            # without the rest of the request asks for it to stop with
            # H3_NO_ERROR, and "clients MUST NOT discard complete responses"
            # for it. The STOP_SENDING may come before the response's end
            # (aioquic writes it ahead of stream data in a packet): the
            # response is read to its end first (see RequestStream.stopped).
            stream.stopped = stream.send_ended = True
            return
        if not stream.reset:
            stream.stopped = False
            stream.reset = True
            self._push(StreamResetReceived(stream_id=stream_id, error_code=error_code))
        if finished:
            assert self._quic is not None
            self._quic.forget(stream_id)
            del self._streams[stream_id]
