"""The server side of HTTP/1.1 on httptools (llhttp), a faster alternative to h11.

Install it with the ``hface-core[httptools]`` extra. It is registered as
the ``http1_server`` implementation named ``httptools`` (an entry point of
hface-core), and the server facades prefer it when httptools is installed
(:meth:`ProtocolRegistry.preferred_name
<hface.protocols.ProtocolRegistry.preferred_name>`); h11 stays the default
otherwise and can always be chosen with ``server.http1_factory =
HTTP1ServerFactory()`` or ``hface server --http1 h11``.

Theory of operation
-------------------

:class:`HTTPToolsServerProtocol` behaves as :class:`HTTP1ServerProtocol
<hface.protocols.http1.HTTP1ServerProtocol>` does, event for event and
byte for byte where the tests compare them: the same streams (IDs 1, 3,
5, ...), the same HTTP/2 style headers, the same checks of a request
(``check_request``, shared), the same framing of responses and the
same error answers with a one-line text body.

llhttp parses everything it is given, callbacks and all, so unlike h11 it
cannot stop after one request. Its callbacks therefore only record what
was parsed (a head, a piece of body, the end of a message) in a queue,
and ``HTTPToolsServerProtocol._advance`` turns the queue into events
one exchange at a time: a pipelined request waits in the queue until the
exchange before it is done. The queue is bounded: a client that pipelines
more than :data:`MAX_PIPELINED` bytes while a request is answered gets
that answer with ``connection: close``, and the rest is dropped (a
pipelining client must be ready to send again what was not answered,
RFC 9112 §9.3.2).

llhttp is stricter than h11 in two ways, neither of which can be read two
ways: a head with bare LF line ends and a request with two identical
``Content-Length`` fields are refused with 400, where h11 takes them.
llhttp keeps no limit on the size of a head, so this module counts the
bytes of a head in progress itself (``max_header_size``, then 431).

A CONNECT request and a request with ``Connection: upgrade`` and
``Upgrade`` stop llhttp (``HttpParserUpgrade``). A CONNECT answered with a
2xx becomes a tunnel, as with h11; the bytes after it are kept raw until
then. Any other upgrade request is a plain request here (the server does
not switch protocols) and parsing resumes after it, with a new parser; a
body on such a request is refused with 400, because llhttp would read it
as the next request.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Final

import httptools

from hface.common import HeadersType, HeaderType
from hface.errors import LocalProtocolError
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HeadersReceived,
    StreamResetReceived,
    StreamResetSent,
)
from hface.protocols import ConnectionState, HTTP1Protocol, HTTPOverTCPFactory, ProtocolLimits

from ._base import DONE, IDLE, OPEN, PROTOCOL_ERROR
from ._headers import (
    REASONS,
    OutgoingHeaders,
    check_request,
    count_body_bytes,
    request_headers,
    response_status,
    trailer_headers,
)
from ._httptools_reader import (
    ITEM_DATA,
    ITEM_END,
    ITEM_ERROR,
    ITEM_HEAD,
    Head,
    Reader,
    check_fields,
)
from ._server import OBS_FOLD_REASON

#: Bytes of requests parsed ahead (pipelined) while one is answered; beyond
#: them the connection closes after that answer.
MAX_PIPELINED: Final = 1024 * 1024

#: The longest explanation sent in the body of an error response, in characters.
_MAX_EXPLANATION = 200

#: Status lines, made once.
_STATUS_LINES: Final[dict[int, bytes]] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, REASONS.get(code, b"")) for code in range(100, 600)
}

#: llhttp errors h11 answers with 501 (a transfer coding it does not implement).
_NOT_IMPLEMENTED: Final = ("Transfer-Encoding",)
#: The llhttp error about the version: h11 answers a version 2 or more with 505.
_BAD_VERSION: Final = "Invalid HTTP version"
#: The llhttp error about a line that starts with whitespace after a field (obs-fold).
_OBS_FOLD: Final = "Unexpected whitespace after header value"
#: The llhttp error about a control character in a field value.
_BAD_VALUE_CHAR: Final = "Invalid header value char"


class HTTPToolsServerProtocol(HTTP1Protocol):
    """The server side of an HTTP/1.1 connection, on httptools.

    The same behaviour as :class:`~hface.protocols.http1.HTTP1ServerProtocol`
    (see this module's theory of operation for the few differences).

    :param tls: True if the connection runs over TLS, so requests get
        ``:scheme`` "https" (else "http").
    :param max_header_size: the largest request line plus header block
        accepted from the client, in bytes; beyond it the answer is 431.
    """

    def __init__(self, *, tls: bool = False, max_header_size: int = 16384) -> None:
        self._scheme = b"https" if tls else b"http"
        self._max_header_size = max_header_size
        self._items: deque[tuple[int, Any]] = deque()
        self._reader = Reader(self._items)
        self._events: deque[Event] = deque()
        self._out: list[bytes] = []
        self._next_stream_id = 1
        self._stream_id: int | None = None
        self._local = IDLE
        self._remote = IDLE
        self._method = b""
        self._head: Head | None = None
        # Bytes of the head in progress counted by whole received pieces.
        self._head_bytes = 0
        # Body framing of the response: bytes owed (None: unknown length),
        # chunked, or delimited by the close (an HTTP/1.0 client).
        self._local_remaining: int | None = None
        self._local_chunked = False
        self._response_started = False
        self._connect = False
        self._tunnel = False
        # Raw bytes after a CONNECT request, until the response decides.
        self._raw_mode = False
        self._raw: list[bytes] = []
        self._raw_size = 0
        self._keep_alive = True
        self._closing = False
        self._expired = False
        self._terminated = False
        self._eof = False
        self._eof_pending = False
        # Set when nothing more is read: after a close was announced or a
        # parse error (RFC 9112 §9.6), or past the pipelining bound.
        self._stop_reading = False

    # -- state ---------------------------------------------------------------

    def is_available(self) -> bool:
        return (
            self._stream_id is None
            and not self._expired
            and not self._closing
            and not self._reader.in_message
            and not self._items
        )

    def has_expired(self) -> bool:
        if self._expired or self._closing:
            return True
        if self._tunnel:
            return self._local == DONE and self._remote == DONE
        return False

    def next_event(self) -> Event | None:
        events = self._events
        return events.popleft() if events else None

    def acknowledge_received_data(self, stream_id: int, amount: int) -> None:
        """Do nothing: HTTP/1.1 has no flow-control windows."""

    def get_pending_data_size(self, stream_id: int) -> int:
        """Return 0: submitted data is never held back."""
        return 0

    def get_available_stream_id(self) -> int:
        """Always raise: a server does not open streams.

        :raises LocalProtocolError: always.
        """
        raise LocalProtocolError("an HTTP/1.1 server cannot open streams")

    # -- bytes ---------------------------------------------------------------

    def bytes_received(self, data: bytes) -> None:
        if not data or self._terminated or self._eof:
            return
        if self._tunnel:
            if self._remote == OPEN:
                assert self._stream_id is not None
                self._events.append(DataReceived(stream_id=self._stream_id, data=data))
            return
        if self._stop_reading:
            return
        if self._raw_mode:
            self._hold_raw(data)
            return
        self._feed(data)
        self._advance()

    def bytes_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        first = out[0]
        data = first if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def eof_received(self) -> None:
        if self._terminated or self._eof:
            return
        self._eof = True
        if self._tunnel:
            self._tunnel_remote_done()
            return
        if self._raw_mode:
            return  # the CONNECT response decides what the bytes were
        self._advance()

    def connection_lost(self) -> None:
        if self._terminated:
            return
        stream_id = self._stream_id
        if stream_id is None:
            self._terminate(0, None)
        else:
            self._events.append(StreamResetReceived(stream_id=stream_id, error_code=PROTOCOL_ERROR))
            self._terminate(PROTOCOL_ERROR, "connection lost")

    # -- parsing -------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Parse ``data``; what llhttp makes of it lands in ``_items``."""
        reader = self._reader
        begun = reader.begun if reader.in_message and not reader.head_done else -1
        while True:
            try:
                reader.parser.feed_data(data)
            except httptools.HttpParserUpgrade as upgrade:
                # A loop, not a recursion: a piece may hold many upgrade requests.
                rest = data[upgrade.args[0] :]
                if not self._on_upgrade(rest) or not rest:
                    return
                data = rest
                reader = self._reader
                begun = -1
                continue
            except httptools.HttpParserError as exc:
                self._on_parse_error(exc)
                return
            break
        if reader.in_message and not reader.head_done:
            # llhttp keeps the field in progress to itself: count the bytes.
            if reader.begun == begun:
                self._head_bytes += len(data)
            else:
                self._head_bytes = self._head_start_size(data)
            if self._head_bytes > self._max_header_size:
                self._refuse(431, "request head too large")
        else:
            self._head_bytes = 0

    def _head_start_size(self, data: bytes) -> int:
        """Return the bytes of the head that began in ``data`` and is still open.

        It starts with the method and the target llhttp has reported; if
        they cannot be found, the fields counted so far are the estimate.
        """
        reader = self._reader
        if reader.url:
            start = data.rfind(reader.url[:64])
            if start >= 0:
                return len(data) - start + 8
        return reader.size

    def _on_upgrade(self, rest: bytes) -> bool:
        """llhttp stopped after a CONNECT or upgrade request; ``rest`` follows it.

        Return True if ``rest`` is to be parsed as requests (by a new parser).
        """
        reader = self._reader
        self._reader = Reader(self._items)
        self._reader.keep_alive = reader.keep_alive
        if reader.connect:
            # Raw bytes, not requests, follow until the response.
            self._raw_mode = True
            if rest:
                self._hold_raw(rest)
            return False
        if reader.has_body:
            # llhttp took the request as ended with its head: it never
            # reaches the application, which would see no body.
            items = self._items
            while items and items.pop()[0] != ITEM_HEAD:
                pass
            self._refuse(400, "a body on an Upgrade request is not supported")
            return False
        return True

    def _hold_raw(self, data: bytes) -> None:
        self._raw.append(data)
        self._raw_size += len(data)
        if self._raw_size > MAX_PIPELINED:
            self._overflow()

    def _on_parse_error(self, exc: httptools.HttpParserError) -> None:
        reader = self._reader
        if not reader.keep_alive and not reader.in_message:
            # Bytes after a request that announced the close: RFC 9112 §9.6
            # has the client send nothing more, so they are ignored.
            self._stop_reading = True
            return
        reason = str(exc) or "invalid request"
        status = 400
        if reason == _OBS_FOLD:
            reason = OBS_FOLD_REASON
        elif reason == _BAD_VERSION:
            status = 505
        elif any(word in reason for word in _NOT_IMPLEMENTED) and "Content-Length" not in reason:
            status = 501
        method = b""
        if reason == _BAD_VALUE_CHAR and reader.in_message and not reader.head_done:
            # h11 parses this head and check_request refuses it, knowing
            # the method: a HEAD request gets no body with its 400.
            method = reader.parser.get_method()
        self._refuse(status, reason, method)

    def _refuse(self, status: int, reason: str, method: bytes = b"") -> None:
        """The bytes parsed last break the rules: answer after what came before."""
        self._stop_reading = True
        self._items.append((ITEM_ERROR, (status, reason, method)))

    def _overflow(self) -> None:
        """Too much was pipelined: answer the request in progress, then close."""
        self._stop_reading = True
        self._closing = True
        self._raw.clear()
        self._raw_size = 0
        items = self._items
        if self._stream_id is not None:
            items.clear()

    def _advance(self) -> None:
        """Turn parsed items into events, one exchange at a time."""
        items = self._items
        events = self._events
        held = 0
        # A DataReceived or HeadersReceived that an end right behind may end.
        pending: DataReceived | HeadersReceived | None = None
        while items and not self._terminated:
            kind, value = items[0]
            if kind == ITEM_HEAD:
                if self._stream_id is not None or self._expired or self._closing:
                    break  # pipelined: waits for the exchange in progress
                items.popleft()
                if pending is not None:  # pragma: no cover - a head follows an end
                    events.append(pending)
                    pending = None
                # The common case, a request without a body, is one event.
                bodyless = bool(items) and items[0] == (ITEM_END, None) and not value.connect
                pending = self._start_exchange(value, bodyless)
                if bodyless and pending is not None:
                    items.popleft()
                    self._remote = DONE
                    events.append(pending)
                    pending = None
            elif kind == ITEM_DATA:
                if self._stream_id is None or self._remote != OPEN:
                    break
                items.popleft()
                if pending is not None:
                    events.append(pending)
                pending = DataReceived(stream_id=self._stream_id, data=value)
            elif kind == ITEM_END:
                if self._stream_id is None or self._remote != OPEN:
                    break
                items.popleft()
                self._end_of_request(value, pending)
                pending = None
            else:
                if self._stream_id is not None and self._remote == DONE:
                    break  # an error in a pipelined request: answered in turn
                items.popleft()
                if pending is not None:
                    events.append(pending)
                    pending = None
                status, reason, method = value
                if method and self._stream_id is None:
                    self._method = method
                self._on_remote_error(status, reason)
        if pending is not None:
            events.append(pending)
        if items and self._stream_id is not None:
            for kind, value in items:
                held += value.size if kind == ITEM_HEAD else len(value) if kind == ITEM_DATA else 0
            if held > MAX_PIPELINED:
                self._overflow()
        if self._eof and not self._terminated and not items:
            self._on_eof()

    def _start_exchange(self, head: Head, end_stream: bool) -> HeadersReceived | None:
        self._method = head.method
        self._head = head
        if head.size > self._max_header_size:
            self._on_remote_error(431, "request head too large")
            return None
        refused = self._check(head)
        if refused is not None:
            self._on_remote_error(*refused)
            return None
        stream_id = self._next_stream_id
        self._next_stream_id = stream_id + 2
        self._stream_id = stream_id
        self._local = IDLE
        self._remote = OPEN
        self._response_started = False
        self._connect = head.connect
        if not head.keep_alive:
            self._keep_alive = False
        return HeadersReceived(
            stream_id=stream_id, headers=request_headers(head, self._scheme), end_stream=end_stream
        )

    def _check(self, head: Head) -> tuple[int, str] | None:
        """What h11 and :func:`check_request` refuse that llhttp lets through."""
        hosts = 0
        for name, value in head.headers:
            if name == b"host":
                hosts += 1
            elif name == b"transfer-encoding" and value.lower() != b"chunked":
                return 501, "Only Transfer-Encoding: chunked is supported"
        if hosts > 1:
            return 400, "Found multiple Host: headers"
        if not hosts and head.http_version == b"1.1":
            return 400, "Missing mandatory Host: header"
        return check_request(head)

    def _end_of_request(
        self, trailers: list[HeaderType] | None, pending: DataReceived | HeadersReceived | None
    ) -> None:
        stream_id = self._stream_id
        assert stream_id is not None
        events = self._events
        if self._connect:
            # The end of a CONNECT request: the response decides whether a
            # tunnel follows (the raw bytes wait in _raw).
            if pending is not None:
                events.append(pending)
            return
        self._remote = DONE
        if trailers:
            if pending is not None:
                events.append(pending)
            events.append(
                HeadersReceived(
                    stream_id=stream_id, headers=trailer_headers(trailers), end_stream=True
                )
            )
        elif pending is None:
            events.append(DataReceived(stream_id=stream_id, data=b"", end_stream=True))
        elif isinstance(pending, DataReceived):
            events.append(DataReceived(stream_id=stream_id, data=pending.data, end_stream=True))
        else:
            events.append(
                HeadersReceived(stream_id=stream_id, headers=pending.headers, end_stream=True)
            )
        if self._local == DONE:
            self._exchange_done()

    def _on_eof(self) -> None:
        """The client will send nothing more: end what cannot finish."""
        reader = self._reader
        stream_id = self._stream_id
        if stream_id is not None:
            if self._remote == DONE:
                if self._local != DONE:
                    self._eof_pending = True  # finish the response first
                return
            self._events.append(StreamResetReceived(stream_id=stream_id, error_code=PROTOCOL_ERROR))
            self._terminate(PROTOCOL_ERROR, "peer unexpectedly closed the connection")
        elif reader.in_message and not self._stop_reading:
            self._terminate(PROTOCOL_ERROR, "peer unexpectedly closed the connection")
        else:
            self._terminate(0, None)

    # -- submitting ----------------------------------------------------------

    def submit_headers(
        self, stream_id: int, headers: HeadersType, end_stream: bool = False
    ) -> None:
        """Send the response (interim ones first, if any) or its trailers.

        :raises LocalProtocolError: for a stream that is not the request in
            progress, a response already sent, a missing or invalid
            ``:status``, an interim response with ``end_stream``, or
            trailers on a response that has a ``content-length``.
        """
        if stream_id != self._stream_id or self._tunnel:
            raise LocalProtocolError(f"stream {stream_id} is not open for a response")
        local = self._local
        if local == OPEN:
            self._submit_trailers(headers, end_stream)
            return
        if local == DONE:
            raise LocalProtocolError(f"the response on stream {stream_id} was already sent")
        outgoing = OutgoingHeaders(headers)
        fields = outgoing.fields
        code = response_status(outgoing)
        check_fields(fields)
        if code < 200:
            if end_stream:
                raise LocalProtocolError("an interim (1xx) response cannot end the stream")
            if code == 101:
                raise LocalProtocolError("switching protocols (101) is not supported")
            self._write_head(code, fields)
            return
        if outgoing.close:
            self._closing = True
        if self._connect:
            self._connect = False
            if code < 300:
                self._write_head(code, fields)
                self._local = DONE if end_stream else OPEN
                self._enter_tunnel()
                return
            # Refused: the CONNECT request itself has ended, and what
            # followed it is parsed as requests once this response is done.
            self._remote = DONE
            self._raw_mode = False
        content_length = outgoing.content_length
        http11 = self._head is not None and self._head.http_version == b"1.1"
        # h11's framing, and its order of the fields it adds.
        unknown_length = content_length is None
        bodyless = code == 204 or code == 304 or self._method == b"HEAD"
        if bodyless:
            # A HEAD response gets the fields a GET would (RFC 9110 §9.3.2).
            unknown_length = unknown_length and code != 204 and code != 304
            content_length = 0
        elif content_length is None and end_stream:
            fields.append((b"content-length", b"0"))
            content_length = 0
            unknown_length = False
        if end_stream and content_length:
            raise LocalProtocolError("too little data for the declared content-length")
        self._local_chunked = content_length is None and http11
        if self._closing:
            fields.append((b"connection", b"close"))
        if unknown_length and http11:
            fields.append((b"Transfer-Encoding", b"chunked"))
        elif unknown_length and not bodyless:
            self._keep_alive = False  # an HTTP/1.0 client: the close ends the body
        if not self._keep_alive:
            fields = [field for field in fields if field[0].lower() != b"connection"]
            fields.append((b"Connection", b"close"))
        self._write_head(code, fields)
        self._response_started = True
        self._local_remaining = content_length
        if end_stream:
            self._end_response(None)
        else:
            self._local = OPEN

    def _write_head(self, code: int, fields: list[HeaderType]) -> None:
        line = _STATUS_LINES.get(code) or b"HTTP/1.1 %d \r\n" % code
        parts = [line]
        for name, value in fields:
            parts.append(name + b": " + value + b"\r\n")
        parts.append(b"\r\n")
        self._out.append(b"".join(parts))

    def submit_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if stream_id != self._stream_id or self._local != OPEN:
            raise LocalProtocolError(f"stream {stream_id} is not open for sending")
        if self._tunnel:
            if data:
                self._out.append(data)
            if end_stream:
                self._local = DONE
                if self._remote == DONE:
                    self._terminate(0, None)
            return
        if self._connect:
            raise LocalProtocolError("the CONNECT tunnel is not established yet")
        self._local_remaining = count_body_bytes(self._local_remaining, len(data), end_stream)
        if data:
            if self._local_chunked:
                self._out.append(b"%x\r\n" % len(data))
                self._out.append(data)
                self._out.append(b"\r\n")
            else:
                self._out.append(data)
        if end_stream:
            self._end_response(None)

    def _submit_trailers(self, headers: HeadersType, end_stream: bool) -> None:
        if not end_stream:
            raise LocalProtocolError("trailers must end the stream")
        if not self._local_chunked:
            raise LocalProtocolError("trailers need a chunked message, not a content-length one")
        outgoing = OutgoingHeaders(headers)
        outgoing.no_pseudo("trailers")
        check_fields(outgoing.fields)
        self._end_response(outgoing.fields)

    def _end_response(self, trailers: list[HeaderType] | None) -> None:
        if self._local_chunked:
            if trailers:
                self._out.append(
                    b"0\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in trailers) + b"\r\n"
                )
            else:
                self._out.append(b"0\r\n\r\n")
        self._local = DONE
        if self._remote == DONE:
            self._exchange_done()
            raw = self._raw
            if raw and not self._expired:
                # What followed a refused CONNECT request: requests after all.
                data = b"".join(raw)
                raw.clear()
                self._raw_size = 0
                self._feed(data)
            if self._items or self._eof:
                self._advance()
        elif self._eof_pending:
            self._terminate(0, None)

    def submit_stream_reset(self, stream_id: int, error_code: int = 0) -> None:
        """Close the connection: HTTP/1.1 cannot cancel one exchange alone."""
        if stream_id != self._stream_id or self._terminated:
            return
        self._out.clear()
        self._events.append(StreamResetSent(stream_id=stream_id, error_code=error_code))
        self._terminate(error_code, "stream reset")

    @property
    def state(self) -> ConnectionState:
        if self._terminated:
            return ConnectionState.CLOSED
        return ConnectionState.DRAINING if self.has_expired() else ConnectionState.OPEN

    def submit_goaway(self) -> None:
        """Begin a graceful close, as :meth:`HTTP1ServerProtocol.submit_goaway
        <hface.protocols.http1.HTTP1ServerProtocol.submit_goaway>` does."""
        self._closing = True
        if self._stream_id is None or self._tunnel:
            self._expired = True

    def submit_close(self, error_code: int | None = None) -> None:
        """Close the connection, as :meth:`HTTP1ServerProtocol.submit_close
        <hface.protocols.http1.HTTP1ServerProtocol.submit_close>` does.

        Without an error code, as :meth:`submit_goaway`; with a status from
        400 to 599 a request that is owed an answer gets it, with a short
        text body, before the connection closes at once.

        :param error_code: None (or 0), or a status (see ``error_codes``).
        """
        if not error_code:
            self.submit_goaway()
            return
        if self._terminated:
            return
        stream_id = self._stream_id
        if stream_id is None:
            owed = self._reader.in_message or bool(self._items)
        else:
            owed = not self._tunnel and self._local == IDLE
        if owed and 400 <= error_code < 600 and not self._eof:
            self._send_error_response(error_code, REASONS.get(error_code, b"").decode())
        if stream_id is not None:
            self._events.append(StreamResetSent(stream_id=stream_id, error_code=error_code))
        self._terminate(error_code, "closed by the server")

    # -- exchange life cycle -------------------------------------------------

    def _exchange_done(self) -> None:
        self._stream_id = None
        self._head = None
        self._method = b""
        if self._eof_pending:
            self._terminate(0, None)
        elif self._closing or not self._keep_alive:
            self._expired = True
            self._items.clear()
            self._stop_reading = True
        else:
            self._local = self._remote = IDLE

    def _on_remote_error(self, status: int, reason: str) -> None:
        stream_id = self._stream_id
        if stream_id is not None:
            self._events.append(StreamResetReceived(stream_id=stream_id, error_code=PROTOCOL_ERROR))
        if not self._eof:
            # RFC 9112 §2.2: answer what we could not parse, then close.
            self._send_error_response(status, reason)
        self._terminate(status, reason)

    def _send_error_response(self, status: int, explanation: str) -> None:
        """Send ``status`` with ``connection: close`` and ``explanation`` as a text body.

        Only before a response was started; a HEAD request gets the headers alone.
        """
        if self._response_started and self._stream_id is not None:
            return
        body = (explanation[:_MAX_EXPLANATION] + "\n").encode("ascii", "replace")
        fields: list[HeaderType] = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        head = self._head
        if head is not None and not head.keep_alive:
            fields[2] = (b"Connection", b"close")
        self._write_head(status, fields)
        if self._method != b"HEAD":
            self._out.append(body)
        self._response_started = True

    def _terminate(self, error_code: int, message: str | None) -> None:
        if self._terminated:
            return
        self._terminated = True
        self._expired = True
        self._stream_id = None
        self._items.clear()
        self._events.append(ConnectionTerminated(error_code=error_code, message=message))

    # -- CONNECT tunnels -----------------------------------------------------

    def _enter_tunnel(self) -> None:
        """Switch to raw bytes after a 2xx response to CONNECT (RFC 9110 §9.3.6)."""
        self._tunnel = True
        self._raw_mode = False
        self._remote = OPEN
        stream_id = self._stream_id
        assert stream_id is not None
        raw = b"".join(self._raw)
        self._raw.clear()
        self._raw_size = 0
        if raw:
            self._events.append(DataReceived(stream_id=stream_id, data=raw))
        if self._eof:
            self._tunnel_remote_done()

    def _tunnel_remote_done(self) -> None:
        if self._remote != OPEN or self._stream_id is None:
            return
        self._remote = DONE
        self._events.append(DataReceived(stream_id=self._stream_id, data=b"", end_stream=True))
        if self._local == DONE:
            self._terminate(0, None)


class HTTPToolsServerFactory(HTTPOverTCPFactory):
    """Makes :class:`HTTPToolsServerProtocol` objects (``hface-core[httptools]``).

    Takes the options of :class:`~hface.protocols.http1.HTTP1ServerFactory`.

    :param max_header_size: the largest request line plus header block
        accepted from a client, in bytes; a larger one is answered with 431.
    """

    def __init__(self, *, max_header_size: int = 16384) -> None:
        self._max_header_size = max_header_size

    @property
    def alpn_protocols(self) -> Sequence[str]:
        """``["http/1.1"]``."""
        return ["http/1.1"]

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTPToolsServerProtocol:
        """Make a server protocol for a new connection; TLS makes ``:scheme`` "https"."""
        return HTTPToolsServerProtocol(
            tls=tls_version is not None, max_header_size=self._max_header_size
        )

    def with_limits(self, limits: ProtocolLimits) -> HTTPToolsServerFactory:
        """Return a factory whose protocols take ``limits.max_header_size`` (HTTP/1.1's only)."""
        return HTTPToolsServerFactory(max_header_size=limits.max_header_size)
