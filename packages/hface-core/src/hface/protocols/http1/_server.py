"""The server side of HTTP/1.1.

Each request becomes a stream (IDs 1, 3, 5, ...) whose first event is a
``HeadersReceived`` in the HTTP/2 style: ``:method``, ``:scheme`` (from
the transport, since HTTP/1.1 does not send it), ``:authority`` (from
``Host``) and ``:path`` (the request target as sent). The response is
submitted the same way, with ``:status``; interim (1xx) responses may
come first. A response of unknown length is chunked by h11 (or delimited
by closing the connection for HTTP/1.0 clients); a response that ends
with its headers gets ``content-length: 0`` where it could have had a
body (RFC 9110 §8.6).

A request h11 cannot parse is answered here, with the status h11 hints
(400, 431, ...), ``connection: close`` and a one-line ``text/plain`` body
saying what was wrong, unless a response was already started; then the
connection terminates with that status as error code. Requests h11 parses
but that are ambiguous or invalid (both Transfer-Encoding and
Content-Length, control characters in a field, a bad Host or request
target, see :func:`check_request`) are answered the same way before the
application sees them. So is a header field line folded over two lines
(obs-fold, a line starting with SP or HTAB): h11 would join the lines,
but RFC 9112 §5.2 lets a server outside message/http refuse the request
with 400 instead, as nginx and h2o do, since another parser in the path
may read the fold as a field of its own. The check reads the raw bytes of
the request head (see :meth:`HTTP1ServerProtocol.bytes_received`); the
answer is 400 with the reason ``obsolete line folding (obs-fold) in a
field``. A fold before the first field is h11's own error (400 too).
The target of a CONNECT request (and its Host, which is dropped) is left
to the application, as it is on HTTP/2 and HTTP/3, so that a proxy
explains a bad target the same way on every version.

:meth:`HTTP1ServerProtocol.submit_close` with an error code (HTTP/1.1 error
codes are statuses) answers a request that is owed a response with that
status before closing: ``submit_close(408)`` is how a server that timed out
waiting for a request says so (RFC 9110 §15.5.9). A request in absolute-form gets its
``:scheme``, ``:authority`` and ``:path`` from the target (RFC 9112 §3.2.2).
"""

from __future__ import annotations

import re
from typing import Final

import h11

from hface.common import HeadersType
from hface.errors import LocalProtocolError, TerminationReason
from hface.events import HeadersReceived, StreamResetReceived, StreamResetSent

from ._base import DONE, IDLE, OPEN, PROTOCOL_ERROR, HTTP1Base, remote_error_reason
from ._headers import REASONS, OutgoingHeaders, check_request, request_headers, response_status

#: The longest explanation sent in the body of an error response, in characters.
_MAX_EXPLANATION = 200

#: The end of a request head (h11's own pattern: bare LF line ends are allowed).
_HEAD_END: Final = re.compile(rb"\n\r?\n")

#: The reason a request with an obs-fold is refused (RFC 9112 §5.2).
OBS_FOLD_REASON: Final = "obsolete line folding (obs-fold) in a field"


class HTTP1ServerProtocol(HTTP1Base):
    """The server side of an HTTP/1.1 connection, on h11.

    :param tls: True if the connection runs over TLS, so requests get
        ``:scheme`` "https" (else "http").
    :param max_header_size: the largest request line plus header block
        accepted from the client, in bytes; beyond it the answer is 431.
    """

    def __init__(self, *, tls: bool = False, max_header_size: int = 16384) -> None:
        super().__init__(our_role=h11.SERVER, max_header_size=max_header_size)
        self._max_header_size = max_header_size
        self._scheme = b"https" if tls else b"http"
        self._method = b""
        # The raw bytes received since the request head in progress began
        # (h11 keeps them too, but unfolds obs-folds as it parses).
        self._head: list[bytes] = []

    def bytes_received(self, data: bytes) -> None:
        """Take bytes from the client; remember them while a request head is awaited."""
        if data and self._h11.their_state is h11.IDLE and not self._terminated:
            head = self._head
            head.append(data)
            if len(head) > 16:
                # A head that trickles in (slowloris) is kept as one piece.
                head[:] = [b"".join(head)]
        super().bytes_received(data)

    def get_available_stream_id(self) -> int:
        """Always raise: a server does not open streams.

        :raises LocalProtocolError: always.
        """
        raise LocalProtocolError("an HTTP/1.1 server cannot open streams")

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
        reason = REASONS.get(code, b"")
        try:
            if code < 200:
                if end_stream:
                    raise LocalProtocolError("an interim (1xx) response cannot end the stream")
                self._send(
                    h11.InformationalResponse(status_code=code, headers=fields, reason=reason)
                )
                return
            if outgoing.close:
                self._closing = True
            method = self._method
            if self._connect:
                self._connect = False
                if code < 300:
                    self._send(h11.Response(status_code=code, headers=fields, reason=reason))
                    self._local = DONE if end_stream else OPEN
                    self._enter_tunnel()
                    return
                # Refused: the CONNECT request itself has ended.
                self._remote = DONE
            content_length = outgoing.content_length
            bodyless = code == 204 or code == 304 or method == b"HEAD"
            if bodyless:
                content_length = 0
            elif content_length is None and end_stream:
                fields.append((b"content-length", b"0"))
                content_length = 0
            if end_stream and content_length:
                raise LocalProtocolError("too little data for the declared content-length")
            if self._closing:
                fields.append((b"connection", b"close"))
            response = h11.Response(status_code=code, headers=fields, reason=reason)
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(str(exc)) from exc
        self._send(response)
        self._local_remaining = content_length
        self._local_chunked = content_length is None and self._h11.their_http_version == b"1.1"
        if end_stream:
            self._send(h11.EndOfMessage())
            self._local_done()
        else:
            self._local = OPEN

    def has_expired(self) -> bool:
        return self._closing or super().has_expired()

    def submit_goaway(self) -> None:
        """Begin a graceful close: after the response in progress (which gets
        ``connection: close``), or at once if there is none."""
        self._closing = True
        if self._stream_id is None or self._tunnel:
            self._expired = True

    def submit_close(self, error_code: int | None = None) -> None:
        """Close the connection.

        Without an error code, as :meth:`submit_goaway` (closing the TCP
        connection is left to the layer above). With one, the connection
        closes at once. HTTP/1.1
        error codes are statuses, so a code from 400 to 599 is first sent as
        a final response with ``connection: close`` and a short text body,
        if one is owed: a request has arrived and has no response yet, or
        part of the next request has arrived. ``submit_close(408)`` is what
        a server that timed out waiting for a request sends (RFC 9110
        §15.5.9). Where nothing of a request has arrived nothing is sent:
        an unsolicited response could be taken for the answer to a request
        the client is sending at that moment.

        :param error_code: None (or 0), or a status (see :attr:`error_codes`).
        """
        if not error_code:
            self.submit_goaway()
            return
        if self._terminated:
            return
        conn = self._h11
        stream_id = self._stream_id
        if stream_id is None:
            owed = conn.our_state is h11.IDLE and bool(conn.trailing_data[0])
        else:
            owed = not self._tunnel and self._local == IDLE
        if owed and 400 <= error_code < 600 and not self._eof:
            self._send_error_response(error_code, REASONS.get(error_code, b"").decode())
        if stream_id is not None:
            self._events.append(StreamResetSent(stream_id=stream_id, error_code=error_code))
        self._terminate(error_code, "closed by the server", reason=TerminationReason.CLOSED_BY_US)

    def _on_message_start(
        self, event: h11.Request | h11.Response | h11.InformationalResponse
    ) -> HeadersReceived | None:
        if not isinstance(event, h11.Request):  # pragma: no cover - h11 never gives one
            raise AssertionError("a server received a response")
        method = self._method = event.method
        too_large, folded = self._inspect_head()
        refused = (431, "request head too large") if too_large else check_request(event)
        if refused is None and folded:
            refused = 400, OBS_FOLD_REASON
        if refused is not None:
            status, reason = refused
            self._on_remote_error(h11.RemoteProtocolError(reason, error_status_hint=status))
            return None
        stream_id = self._next_stream_id
        self._next_stream_id = stream_id + 2
        self._stream_id = stream_id
        self._local = IDLE
        self._remote = OPEN
        self._connect = method == b"CONNECT"
        return HeadersReceived(stream_id=stream_id, headers=request_headers(event, self._scheme))

    def _inspect_head(self) -> tuple[bool, bool]:
        """Return whether the raw head of the request just parsed is too large, and folded.

        h11 bounds only a head that is still incomplete, so a head that
        arrives whole in one read is measured here against
        ``max_header_size``. A line of the head that starts with SP or HTAB
        after the request line is an obs-fold (RFC 9112 §5.2; one right
        after the request line h11 refuses itself). ``_head`` begins where
        the head begins: h11 accepts no bytes before the request line.
        """
        chunks = self._head
        head = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        end = _HEAD_END.search(head)
        stop = end.start() if end is not None else len(head)
        too_large = (end.end() if end is not None else len(head)) > self._max_header_size
        folded = head.find(b"\n ", 0, stop) >= 0 or head.find(b"\n\t", 0, stop) >= 0
        return too_large, folded

    def _exchange_done(self) -> bool:
        started = super()._exchange_done()
        if started:
            # A pipelined request h11 already holds starts the next head.
            buffered = self._h11.trailing_data[0]
            self._head[:] = [buffered] if buffered else []
        return started

    def _on_remote_error(self, exc: h11.RemoteProtocolError) -> None:
        status = exc.error_status_hint
        stream_id = self._stream_id
        if stream_id is not None:
            self._events.append(StreamResetReceived(stream_id=stream_id, error_code=PROTOCOL_ERROR))
        if not self._eof:
            # RFC 9112 §2.2: answer what we could not parse, then close.
            self._send_error_response(status, str(exc))
        self._terminate(status, str(exc), reason=remote_error_reason(self._eof))

    def _send_error_response(self, status: int, explanation: str) -> None:
        """Send ``status`` with ``connection: close`` and ``explanation`` as a text body.

        Only where h11 can still send a response (before one was started);
        a HEAD request gets the headers alone.
        """
        conn = self._h11
        state = conn.our_state
        if state is not h11.IDLE and state is not h11.SEND_RESPONSE:
            return
        body = (explanation[:_MAX_EXPLANATION] + "\n").encode("ascii", "replace")
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        try:
            self._send(
                h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b""))
            )
            if not (state is h11.SEND_RESPONSE and self._method == b"HEAD"):
                self._send(h11.Data(data=body))
            self._send(h11.EndOfMessage())
        except LocalProtocolError:  # pragma: no cover - h11 accepts it in these states
            pass
