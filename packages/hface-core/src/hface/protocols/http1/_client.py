"""The client side of HTTP/1.1.

A request is submitted as an HTTP/2 style header block: ``:method`` and
``:path`` become the request line and ``:authority`` the ``Host`` field.
A request with a body of unknown length is sent chunked (the only framing
that allows trailers); a request that ends with its headers has no body
and gets no framing fields at all. A CONNECT request (``:method`` and
``:authority`` only, RFC 9113 §8.5) turns into a raw tunnel when the
response is 2xx.
"""

from __future__ import annotations

import h11

from hface.common import HeadersType
from hface.errors import LocalProtocolError, TerminationReason
from hface.events import HeadersReceived

from ._base import DONE, IDLE, OPEN, PROTOCOL_ERROR, HTTP1Base
from ._headers import OutgoingHeaders, response_headers


class HTTP1ClientProtocol(HTTP1Base):
    """The client side of an HTTP/1.1 connection, on h11.

    :param max_header_size: the largest request line plus header block
        accepted from the server, in bytes.
    """

    def __init__(self, *, max_header_size: int = 16384) -> None:
        super().__init__(our_role=h11.CLIENT, max_header_size=max_header_size)
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
            not self._terminated
            and not self._tunnel
            and conn.their_state in (h11.IDLE, h11.SEND_RESPONSE)
        ):
            room = limit + 1 - len(conn.trailing_data[0])
            if len(data) - start <= room or room < 1:
                break
            super().bytes_received(data[start : start + room])
            start += room
        super().bytes_received(data[start:] if start else data)

    def get_available_stream_id(self) -> int:
        """Return the ID of the next exchange: 1, 3, 5, ...

        :raises LocalProtocolError: if an exchange is in progress or the
            connection cannot be reused.
        """
        if not self.is_available():
            raise LocalProtocolError("the connection cannot take a new request now")
        return self._next_stream_id

    def submit_headers(
        self, stream_id: int, headers: HeadersType, end_stream: bool = False
    ) -> None:
        """Send a request, or the trailers of the request in progress.

        :raises LocalProtocolError: if the connection cannot take a request,
            for a stream ID other than :meth:`get_available_stream_id`'s,
            for missing pseudo-headers, or for trailers on a request that
            has a ``content-length``.
        """
        if stream_id == self._stream_id and self._local == OPEN and not self._tunnel:
            if self._connect:
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
        chunked = False
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
                chunked = True
        try:
            request = h11.Request(method=method, target=target, headers=fields)
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(str(exc)) from exc
        self._send(request)
        self._stream_id = stream_id
        self._next_stream_id = stream_id + 2
        self._remote = IDLE
        self._local_chunked = chunked
        self._local_remaining = outgoing.content_length
        if connect:
            # The request has no body: the tunnel (if any) carries the data.
            self._send(h11.EndOfMessage())
            self._connect = True
            self._local = DONE if end_stream else OPEN
        elif end_stream:
            self._send(h11.EndOfMessage())
            self._local = DONE
        else:
            self._local = OPEN

    def submit_goaway(self) -> None:
        """Stop using the connection: no more requests; it has expired."""
        self._closing = True
        self._expired = True

    def submit_close(self, error_code: int | None = None) -> None:
        """As :meth:`submit_goaway`: closing the TCP connection is left to the layer above."""
        self.submit_goaway()

    def _on_message_start(
        self, event: h11.Request | h11.Response | h11.InformationalResponse
    ) -> HeadersReceived | None:
        if self._stream_id is None:
            # h11 lets a server answer before any request (a 408, say):
            # there is no stream to give it to.
            self._terminate(
                PROTOCOL_ERROR,
                "a response came with no request in progress",
                reason=TerminationReason.PEER_PROTOCOL_ERROR,
            )
            return None
        if isinstance(event, h11.Response):
            self._remote = OPEN
            if self._connect and not 200 <= event.status_code < 300:
                # Refused: no tunnel, and our side of the exchange is over.
                self._connect = False
                self._local = DONE
        elif isinstance(event, h11.Request):  # pragma: no cover - h11 never gives one
            raise AssertionError("a client received a request")
        return HeadersReceived(stream_id=self._stream_id, headers=response_headers(event))
