"""The client side of HTTP/1.1, on h11.

A request is submitted as an HTTP/2 style header block: ``:method`` and
``:path`` become the request line and ``:authority`` the ``Host`` field.
A request with a body of unknown length is sent chunked (the only framing
that allows trailers); a request that ends with its headers has no body
and gets no framing fields at all. h11 writes the requests and reads the
responses (through :class:`~._h11_parser.H11ResponseParser`); the states
of the exchange, its events and its tunnels are the machinery every
HTTP/1.1 side shares (:mod:`._base`). A CONNECT request (``:method`` and
``:authority`` only, RFC 9113 §8.5) turns into a raw tunnel when the
response is 2xx.

An extended CONNECT with ``:protocol websocket`` (RFC 8441 §4, RFC 9220:
how HTTP/2 and HTTP/3 open a WebSocket) goes out as HTTP/1.1's upgrade
instead (RFC 6455 §4.1; :mod:`._upgrade`): a ``GET`` of ``:path`` with
``Upgrade: websocket``, ``Connection: Upgrade`` and a fresh
``Sec-WebSocket-Key``. The ``101 Switching Protocols`` that accepts it,
with the ``Sec-WebSocket-Accept`` of that key, is presented as a ``200``
(without the upgrade fields) and makes the raw tunnel, so the layer above
opens a WebSocket the same way on every version. Any other final response
is an ordinary response to the ``GET``, except a 2xx, which did not switch
protocols and would be taken for the tunnel: it ends the connection.
"""

from __future__ import annotations

import h11

from hface.common import HeadersType, HeaderType
from hface.errors import LocalProtocolError, TerminationReason
from hface.events import HeadersReceived
from hface.protocols import ConnectionState
from hface.protocols._lifecycle import LifecycleInput

from ._base import PROTOCOL_ERROR, HTTP1Base
from ._h11_parser import H11ResponseParser, ResponseHead
from ._headers import OutgoingHeaders, response_head, response_headers
from ._states import Framing, Half, Input, Mode
from ._upgrade import accepted_websocket_headers, websocket_upgrade_fields


class HTTP1ClientProtocol(HTTP1Base[ResponseHead]):
    """The client side of an HTTP/1.1 connection, on h11.

    :param max_header_size: the largest request line plus header block
        accepted from the server, in bytes.
    """

    _client_side = True

    def __init__(self, *, max_header_size: int = 16384) -> None:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_size)
        super().__init__(H11ResponseParser(conn))
        self._h11 = conn
        self._max_header_size = max_header_size
        # The Sec-WebSocket-Key of a WebSocket upgrade request in progress.
        self._websocket_key: bytes | None = None

    def bytes_received(self, data: bytes) -> None:
        """Take bytes from the server; a head over ``max_header_size`` is an error.

        h11 bounds a head only while it is incomplete, so one that arrives
        whole (in one read, or completed by the next) would pass whatever
        its size. While a response head is awaited, h11 gets at most the
        bytes that bring its buffer one past ``max_header_size``: a head
        still incomplete then is too large, and h11 says so.
        """
        limit = self._max_header_size
        conn = self._h11
        start = 0
        while (
            self._input is Input.OPEN
            and self._mode is not Mode.TUNNEL
            and conn.their_state in (h11.IDLE, h11.SEND_RESPONSE)
        ):
            room = limit + 1 - len(conn.trailing_data[0])
            if len(data) - start <= room or room < 1:
                break
            super().bytes_received(data[start : start + room])
            start += room
        super().bytes_received(data[start:] if start else data)

    def is_available(self) -> bool:
        conn = self._h11
        return (
            self._stream_id is None
            and self._lifecycle.state is ConnectionState.OPEN
            and conn.our_state is h11.IDLE
            and conn.their_state is h11.IDLE
        )

    def get_available_stream_id(self) -> int:
        """Return the ID of the next exchange: 1, 3, 5, ...

        :raises LocalProtocolError: if an exchange is in progress or the
            connection cannot be reused.
        """
        if not self.is_available():
            raise LocalProtocolError("the connection cannot take a new request now")
        return self._next_stream_id

    # -- requests ------------------------------------------------------------

    def submit_headers(
        self, stream_id: int, headers: HeadersType, end_stream: bool = False
    ) -> None:
        """Send a request, or the trailers of the request in progress.

        :raises LocalProtocolError: if the connection cannot take a request,
            for a stream ID other than :meth:`get_available_stream_id`'s,
            for missing pseudo-headers, or for trailers on a request that
            has a ``content-length``.
        """
        mode = self._mode
        if stream_id == self._stream_id and self._local is Half.OPEN and mode is not Mode.TUNNEL:
            if mode is Mode.CONNECT:
                raise LocalProtocolError("the CONNECT tunnel is not established yet")
            self._submit_trailers(headers, end_stream)
            return
        if stream_id != self._next_stream_id or not self.is_available():
            raise LocalProtocolError(f"stream {stream_id} cannot take a request now")
        outgoing = OutgoingHeaders(headers)
        pseudo = outgoing.pseudo
        fields = outgoing.fields
        method = pseudo.get(b":method")
        authority = pseudo.get(b":authority")
        if method is None:
            raise LocalProtocolError("a request needs :method")
        if authority is not None and not outgoing.has_host:
            fields.insert(0, (b"Host", authority))
        if outgoing.close:
            fields.append((b"connection", b"close"))
        connect = method == b"CONNECT"
        framing = Framing.CONTENT_LENGTH
        upgrade = pseudo.get(b":protocol")
        if upgrade is not None:
            if not connect or upgrade != b"websocket":
                raise LocalProtocolError("only CONNECT with :protocol websocket is supported")
            path = pseudo.get(b":path")
            if path is None:
                raise LocalProtocolError("an extended CONNECT needs :path")
            key, upgrade_fields = websocket_upgrade_fields()
            fields += upgrade_fields
            method, target = b"GET", path
        elif connect:
            if authority is None:
                raise LocalProtocolError("a CONNECT request needs :authority")
            target = authority
        else:
            path = pseudo.get(b":path")
            if path is None:
                raise LocalProtocolError("a request needs :path")
            target = path
            if end_stream and outgoing.content_length:
                raise LocalProtocolError("too little data for the declared content-length")
            if not end_stream and outgoing.content_length is None:
                fields.append((b"transfer-encoding", b"chunked"))
                framing = Framing.CHUNKED
        try:
            request = h11.Request(method=method, target=target, headers=fields)
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(str(exc)) from exc
        self._send(request)
        self._stream_id = stream_id
        self._next_stream_id = stream_id + 2
        self._remote = Half.IDLE
        self._framing = framing
        self._local_remaining = outgoing.content_length
        if outgoing.close:
            # The last request: the connection closes after its exchange.
            self._lifecycle.handle(LifecycleInput.SUBMIT_GOAWAY)
        if connect:
            # The request has no body: the tunnel (if any) carries the data.
            self._send(h11.EndOfMessage())
            self._mode = Mode.CONNECT
            if upgrade is not None:
                self._mode = Mode.UPGRADE
                self._websocket_key = key
            self._local = Half.DONE if end_stream else Half.OPEN
        elif end_stream:
            self._send(h11.EndOfMessage())
            self._local = Half.DONE
        else:
            self._local = Half.OPEN

    def _send_body(self, data: bytes, end_stream: bool) -> None:
        if data:
            self._send(h11.Data(data=data))
        if end_stream:
            self._send(h11.EndOfMessage())
            self._local_done()

    def _send_trailers(self, fields: list[HeaderType]) -> None:
        try:
            event = h11.EndOfMessage(headers=fields)
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(str(exc)) from exc
        self._send(event)
        self._local_done()

    def _send(self, event: h11.Event) -> None:
        try:
            data = self._h11.send_with_data_passthrough(event)
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(str(exc)) from exc
        if data:
            self._out += data

    def submit_close(self, error_code: int | None = None) -> None:
        """As :meth:`submit_goaway`: closing the TCP connection is left to the layer above."""
        self.submit_goaway()

    # -- responses -----------------------------------------------------------

    def _on_head(self, head: ResponseHead) -> list[HeaderType] | None:
        if self._mode is Mode.UPGRADE and self._upgrade_answered(head):
            return None
        stream_id = self._stream_id
        if stream_id is None:
            # h11 lets a server answer before any request (a 408, say):
            # there is no stream to give it to.
            self._terminate(
                PROTOCOL_ERROR,
                "a response came with no request in progress",
                reason=TerminationReason.PEER_PROTOCOL_ERROR,
            )
            return None
        if not isinstance(head, h11.Response):
            return response_headers(head)  # an interim response
        headers, keep_alive = response_head(head)
        self._remote = Half.OPEN
        if not keep_alive and self._lifecycle.state is ConnectionState.OPEN:
            # The server closes after this response (RFC 9112 §9.6).
            self._lifecycle.handle(LifecycleInput.GOAWAY_RECEIVED)
        if self._mode is Mode.CONNECT:
            if 200 <= head.status_code < 300:
                self._events.append(HeadersReceived(stream_id=stream_id, headers=headers))
                self._enter_tunnel()
                return None
            # Refused: no tunnel, and our side of the exchange is over.
            self._mode = Mode.MESSAGE
            self._local = Half.DONE
        return headers

    def _upgrade_answered(self, head: ResponseHead) -> bool:
        """Take a response to a WebSocket upgrade; False: it is an ordinary response.

        See the module docstring: a 101 opens the tunnel (if it accepts our
        key), a 2xx ends the connection; a refusal becomes an ordinary
        response to the ``GET``, and an interim response stays one.
        """
        stream_id = self._stream_id
        key = self._websocket_key
        assert stream_id is not None
        assert key is not None
        status = head.status_code
        if status != 101 and not 200 <= status < 300:
            if isinstance(head, h11.Response):  # refused: our side of the exchange is over
                self._websocket_key = None
                self._mode = Mode.MESSAGE
                self._local = Half.DONE
            return False
        self._websocket_key = None
        if status == 101:
            headers = response_headers(head)
            accepted = accepted_websocket_headers(key, head.headers, headers)
            if accepted is not None:
                self._events.append(HeadersReceived(stream_id=stream_id, headers=accepted))
                self._enter_tunnel()
                return True
            message = "the server accepted the WebSocket upgrade without the right key"
        else:
            message = f"the server answered the WebSocket upgrade with {status}, not 101"
        self._terminate(PROTOCOL_ERROR, message, reason=TerminationReason.PEER_PROTOCOL_ERROR)
        return True
