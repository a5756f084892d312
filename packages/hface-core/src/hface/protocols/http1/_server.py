"""The server side of HTTP/1.1: one state machine, whichever parser reads the requests.

Each request becomes a stream (IDs 1, 3, 5, ...) whose first event is a
``HeadersReceived`` in the HTTP/2 style: ``:method``, ``:scheme`` (from
the transport, since HTTP/1.1 does not send it), ``:authority`` (from
``Host``) and ``:path`` (the request target as sent). A request in
absolute-form gets its ``:scheme``, ``:authority`` and ``:path`` from the
target (RFC 9112 §3.2.2). The response is submitted the same way, with
``:status``; interim (1xx) responses may come first. It is framed as
:mod:`._framing` says: a response of unknown length is chunked (or
delimited by closing the connection for HTTP/1.0 clients); a response
that ends with its headers gets ``content-length: 0`` where it could have
had a body (RFC 9110 §8.6).

The parser (h11 here, llhttp for :class:`HTTPToolsServerProtocol
<hface.protocols.http1._httptools.HTTPToolsServerProtocol>`) only parses;
what a request means is decided here, once for both. A request the parser
cannot read is answered with the status it gives (400, 431, 501, ...),
``connection: close`` and a one-line ``text/plain`` body saying what was
wrong, unless a response was already started; then the connection
terminates with that status as error code. Requests that parse but are
ambiguous or invalid (both Transfer-Encoding and Content-Length, control
characters in a field, a bad Host or request target, see
:func:`check_request`) are answered the same way before the application
sees them. So is a header field line folded over two lines (obs-fold, a
line starting with SP or HTAB): RFC 9112 §5.2 lets a server outside
message/http refuse it with 400, as nginx and h2o do, since another
parser in the path may read the fold as a field of its own; the answer
says ``obsolete line folding (obs-fold) in a field``. The target of a
CONNECT request (and its Host, which is dropped) is left to the
application, as it is on HTTP/2 and HTTP/3, so that a proxy explains a
bad target the same way on every version.

A WebSocket upgrade request (RFC 6455 §4) is presented as HTTP/2 and
HTTP/3 present theirs, as an extended CONNECT with ``:protocol
websocket``; a 2xx response to it goes out as ``101 Switching Protocols``
and the connection becomes a tunnel, as after CONNECT; a malformed one is
answered 400 or 426 (see :mod:`._upgrade`).

:meth:`HTTP1ServerProtocol.submit_close` with an error code (HTTP/1.1 error
codes are statuses) answers a request that is owed a response with that
status before closing: ``submit_close(408)`` is how a server that timed
out waiting for a request says so (RFC 9110 §15.5.9).
"""

from __future__ import annotations

from hface.common import HeadersType, HeaderType
from hface.errors import LocalProtocolError, TerminationReason
from hface.events import StreamResetSent
from hface.protocols._lifecycle import LifecycleInput

from ._base import HTTP1Base
from ._framing import check_fields, chunk, error_response, frame_response, head_bytes, last_chunk
from ._h11_parser import H11RequestParser
from ._headers import (
    REASONS,
    OutgoingHeaders,
    RequestHead,
    check_request,
    keeps_alive,
    request_headers,
    response_status,
)
from ._parser import MessageParser, ParseError
from ._states import (
    CHUNKED,
    CLOSED,
    CONNECT,
    CONNECTION_OPEN,
    DONE,
    IDLE,
    MESSAGE,
    OPEN,
    TUNNEL,
    UPGRADE,
    Input,
)
from ._upgrade import (
    VERSION_FIELDS,
    switching_protocols,
    upgrade_request_headers,
    upgrade_token,
    websocket_key,
    websocket_request_headers,
)


class HTTP1ServerProtocol(HTTP1Base[RequestHead]):
    """The server side of an HTTP/1.1 connection (requests parsed by h11).

    :param tls: True if the connection runs over TLS, so requests get
        ``:scheme`` "https" (else "http").
    :param max_header_size: the largest request line plus header block
        accepted from the client, in bytes; beyond it the answer is 431.
    """

    _client_side = False

    def __init__(self, *, tls: bool = False, max_header_size: int = 16384) -> None:
        super().__init__(self._make_parser(max_header_size))
        self._scheme = b"https" if tls else b"http"
        # What the request in progress said: its method, and whether it was
        # HTTP/1.1 (so that a body of unknown length can be chunked).
        self._method = b""
        self._http11 = True
        # The Sec-WebSocket-Key of a WebSocket upgrade request in progress
        # (empty for another upgrade), and its upgrade token.
        self._websocket_key = b""
        self._upgrade = b"websocket"
        # True once a shutdown notice came between exchanges: the next one
        # is the last (see submit_shutdown_notice).
        self._last_exchange_noticed = False

    @staticmethod
    def _make_parser(max_header_size: int) -> MessageParser[RequestHead]:
        """Return the parser adapter that reads the requests."""
        return H11RequestParser(max_header_size)

    def submit_shutdown_notice(self) -> None:
        """Make the exchange in progress, or else the next one, the last (``Connection: close``).

        A connection idle between exchanges closes at once, as a keep-alive
        connection does on every server's graceful shutdown (a client sends
        again what it sent on a reused connection that closed); only one
        that has not had its first request yet waits for it.
        """
        if self._lifecycle.state is not CONNECTION_OPEN:
            return
        if self._stream_id is None and self._next_stream_id == 1:
            self._last_exchange_noticed = True
        else:
            self.submit_goaway()

    def is_available(self) -> bool:
        return self._stream_id is None and not self.has_expired() and not self._parser.in_message()

    def get_available_stream_id(self) -> int:
        """Always raise: a server does not open streams.

        :raises LocalProtocolError: always.
        """
        raise LocalProtocolError("an HTTP/1.1 server cannot open streams")

    # -- requests ------------------------------------------------------------

    def _on_head(self, head: RequestHead) -> list[HeaderType] | None:
        method = self._method = head.method
        checked = check_request(head)
        key: bytes | ParseError | None = None
        if type(checked) is bool:  # the common case, told apart at once
            self._keep_alive = checked
        elif isinstance(checked, tuple):
            self._keep_alive = keeps_alive(head)  # for the spelling of the close
            self._on_parse_error(ParseError(*checked, method))
            return None
        else:  # UpgradeAsked: to WebSocket (RFC 6455 §4), or ignored
            self._keep_alive = checked.keep_alive
            if method == b"GET":
                key = websocket_key(head)
                if key is None and (token := upgrade_token(head)) is not None:
                    key = b""  # an upgrade without a key: CONNECT-UDP
                    self._upgrade = token
            if type(key) is ParseError:
                self._on_parse_error(key)
                return None
        stream_id = self._next_stream_id
        self._next_stream_id = stream_id + 2
        self._stream_id = stream_id
        self._local = IDLE
        self._remote = OPEN
        if self._last_exchange_noticed and self._lifecycle.state is CONNECTION_OPEN:
            self._lifecycle.handle(LifecycleInput.SUBMIT_GOAWAY)  # answered, then closed
        self._http11 = head.http_version >= b"1.1"
        if method == b"CONNECT":
            self._mode = CONNECT
        elif type(key) is bytes:
            self._mode = UPGRADE
            self._websocket_key = key
            if not key:
                return upgrade_request_headers(request_headers(head, self._scheme), self._upgrade)
            self._upgrade = b"websocket"
            return websocket_request_headers(request_headers(head, self._scheme))
        return request_headers(head, self._scheme)

    def _answer_parse_error(self, error: ParseError) -> None:
        if self._input is Input.OPEN:
            # RFC 9112 §2.2: answer what we could not parse, then close.
            self._send_error_response(error.status, error.reason, error.method)

    def _send_error_response(self, status: int, explanation: str, method: bytes = b"") -> None:
        """Send ``status`` with ``connection: close`` and ``explanation`` as a text body.

        Only before a response was started; a HEAD request gets the headers alone.
        """
        if self._local is not IDLE:
            return
        if not method and self._stream_id is not None:
            method = self._method
        self._out.append(
            error_response(
                status,
                explanation,
                head=method == b"HEAD",
                keep_alive=self._keep_alive,
                extra=VERSION_FIELDS if status == 426 else (),
            )
        )

    # -- responses -----------------------------------------------------------

    def submit_headers(
        self, stream_id: int, headers: HeadersType, end_stream: bool = False
    ) -> None:
        """Send the response (interim ones first, if any) or its trailers.

        :raises LocalProtocolError: for a stream that is not the request in
            progress, a response already sent, a missing or invalid
            ``:status``, an interim response with ``end_stream``, a 101
            (a 2xx response to a WebSocket upgrade goes out as 101), or
            trailers on a response that has a ``content-length``.
        """
        if stream_id != self._stream_id or self._mode is TUNNEL:
            raise LocalProtocolError(f"stream {stream_id} is not open for a response")
        local = self._local
        if local is OPEN:
            self._submit_trailers(headers, end_stream)
            return
        if local is DONE:
            raise LocalProtocolError(f"the response on stream {stream_id} was already sent")
        outgoing = OutgoingHeaders(headers)
        code = response_status(outgoing)
        check_fields(outgoing.fields)
        if code < 200:
            if end_stream:
                raise LocalProtocolError("an interim (1xx) response cannot end the stream")
            if code == 101:
                raise LocalProtocolError("switching protocols (101) is not supported")
            self._out.append(head_bytes(code, outgoing.fields))
            return
        if outgoing.close:
            self._lifecycle.handle(LifecycleInput.SUBMIT_GOAWAY)
        mode = self._mode
        if mode is not MESSAGE:
            if code < 300:
                if mode is UPGRADE:  # RFC 6455 §4.2.2, RFC 9298 §3.3: 101, and the tunnel
                    self._out.append(
                        switching_protocols(self._websocket_key, outgoing.fields, self._upgrade)
                    )
                else:
                    self._out.append(head_bytes(code, outgoing.fields))
                self._local = DONE if end_stream else OPEN
                self._capsules.headers_submitted(stream_id, headers)
                self._enter_tunnel()
                return
            # Refused: the request itself has ended, and what followed
            # it is read as requests once this response is done.
            self._mode = MESSAGE
            self._remote = DONE
        fields, self._framing, self._local_remaining = frame_response(
            code,
            outgoing,
            self._method,
            self._http11,
            self._keep_alive,
            self._lifecycle.state is not CONNECTION_OPEN,
            end_stream,
        )
        self._out.append(head_bytes(code, fields))
        if end_stream:
            self._end_response(())
        else:
            self._local = OPEN

    def _send_body(self, data: bytes, end_stream: bool) -> None:
        if data:
            if self._framing is CHUNKED:
                self._out += chunk(data)
            else:
                self._out.append(data)
        if end_stream:
            self._end_response(())

    def _send_trailers(self, fields: list[HeaderType]) -> None:
        check_fields(fields)
        self._end_response(fields)

    def _end_response(self, trailers: list[HeaderType] | tuple[()]) -> None:
        if self._framing is CHUNKED:
            self._out.append(last_chunk(trailers))
        self._local = DONE
        if self._remote is DONE and self._exchange_done():
            self._receive()  # what waited for the next exchange

    # -- closing -------------------------------------------------------------

    def submit_close(self, error_code: int | None = None) -> None:
        """Close the connection.

        Without an error code, as :meth:`submit_goaway` (closing the TCP
        connection is left to the layer above). With one, the connection
        closes at once. HTTP/1.1 error codes are statuses, so a code from
        400 to 599 is first sent as a final response with ``connection:
        close`` and a short text body, if one is owed: a request has
        arrived and has no response yet, or part of the next request has
        arrived. ``submit_close(408)`` is what a server that timed out
        waiting for a request sends (RFC 9110 §15.5.9). Where nothing of a
        request has arrived nothing is sent: an unsolicited response could
        be taken for the answer to a request the client is sending at that
        moment.

        :param error_code: None (or 0), or a status (see :attr:`error_codes`).
        """
        if not error_code:
            self.submit_goaway()
            return
        if self._lifecycle.state is CLOSED:
            return
        stream_id = self._stream_id
        if stream_id is None:
            owed = self._parser.in_message()
        else:
            owed = self._mode is not TUNNEL and self._local is IDLE
        if owed and 400 <= error_code < 600 and self._input is Input.OPEN:
            self._send_error_response(error_code, REASONS.get(error_code, b"").decode())
        if stream_id is not None:
            self._events.append(StreamResetSent(stream_id=stream_id, error_code=error_code))
        self._terminate(
            error_code,
            "closed by the server",
            LifecycleInput.SUBMIT_CLOSE_WITH_ERROR,
            reason=TerminationReason.CLOSED_BY_US,
        )
