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
from ._headers import OutgoingHeaders, keeps_alive, response_headers
from ._states import Framing, Half, Input, Mode


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
        if b":protocol" in pseudo:
            # Not a plain CONNECT, which is what it would go out as.
            raise LocalProtocolError("the HTTP/1.1 client sends no extended CONNECT (:protocol)")
        if authority is not None and not outgoing.has_host:
            fields.insert(0, (b"Host", authority))
        if outgoing.close:
            fields.append((b"connection", b"close"))
        connect = method == b"CONNECT"
        framing = Framing.CONTENT_LENGTH
        if connect:
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
        headers = response_headers(head)
        if isinstance(head, h11.Response):
            self._remote = Half.OPEN
            if not keeps_alive(head) and self._lifecycle.state is ConnectionState.OPEN:
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
