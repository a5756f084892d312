"""h11 as a parser adapter: its events turned into the items of :mod:`._parser`.

h11 parses one message at a time and pauses after it by itself, so the
items come one message at a time with no effort. Its own state machine
also wants to see the other side's messages before it reads the next one;
on a server that side is ours, written by :mod:`._framing`, so the request
parser gives every request a fresh ``h11.Connection`` (with the bytes
that followed the last one) instead: h11 then only parses. A client sends
its requests through h11 (:class:`~.HTTP1ClientProtocol`), and its
response parser reads from that same connection.

h11 bounds a head only while it is incomplete, so the request parser
keeps the raw bytes of a head in progress and measures a head that arrived
whole against ``max_header_size`` (431). It also finds obs-folds there
(a field line starting with SP or HTAB, RFC 9112 §5.2), which h11 would
quietly join to the line before: the server refuses them. h11 takes chunk
sizes of up to 20 hex digits, so a chunk announced over :data:`MAX_CHUNK_SIZE`
bytes (llhttp's bound) is refused with 400 as its first bytes come, as
llhttp refuses it, rather than waited for until the body timeout (h11
keeps the size in its chunked reader, which is read there: an h11
without it leaves the check out).
"""

from __future__ import annotations

import re
from abc import abstractmethod
from typing import Final, Generic

import h11

from hface.common import HTTP1_ERROR_CODES

from ._headers import RequestHead
from ._parser import (
    END,
    EOF,
    OBS_FOLD_REASON,
    Delivery,
    End,
    Eof,
    HeadT,
    MessageParser,
    ParseError,
)

#: The end of a request head (h11's own pattern: bare LF line ends are allowed).
_HEAD_END: Final = re.compile(rb"\n\r?\n")

#: The largest chunk size taken (RFC 9112 §7.1): 2**64 - 1, as llhttp.
MAX_CHUNK_SIZE: Final = 2**64 - 1

#: What a client's parser hands out as heads.
ResponseHead = h11.Response | h11.InformationalResponse


class _H11Parser(MessageParser[HeadT], Generic[HeadT]):
    """What both h11 adapters do: h11's events as items."""

    __slots__ = ("_conn", "_delivery")

    def __init__(self, conn: h11.Connection) -> None:
        super().__init__()
        self._conn = conn
        self._delivery = Delivery.MESSAGE

    def feed(self, data: bytes) -> None:
        if self._delivery is not Delivery.STOPPED:
            self._conn.receive_data(data)

    def feed_eof(self) -> None:
        if self._delivery is not Delivery.STOPPED:
            self._conn.receive_data(b"")

    def next_item(self) -> HeadT | bytes | End | ParseError | Eof | None:
        delivery = self._delivery
        if delivery is Delivery.STOPPED or delivery is Delivery.ENDED:
            return None
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            if delivery is Delivery.BETWEEN:
                # Bytes after a message that announced the close: RFC 9112
                # §9.6 has the peer send nothing more, so they are ignored.
                self.stop()
                return None
            self.stop()
            return self._error(exc)
        if isinstance(event, h11.Data):
            if event.chunk_start and self._chunk_too_large(len(event.data)):
                return self._chunk_error()
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            self._delivery = Delivery.BETWEEN
            return End(event.headers) if event.headers else END
        if isinstance(event, (h11.Request, h11.Response, h11.InformationalResponse)):
            return self._on_head(event)
        if isinstance(event, h11.ConnectionClosed):
            self._delivery = Delivery.ENDED
            return EOF
        if event is h11.NEED_DATA and self._chunk_too_large(0):
            return self._chunk_error()  # announced, none of it here yet
        return None  # h11.NEED_DATA, h11.PAUSED

    def _chunk_error(self) -> ParseError:
        self.stop()
        return ParseError(400, "a chunk size is over 2**64-1 bytes")

    def _chunk_too_large(self, taken: int) -> bool:
        """True if the chunk that just began announced more than the largest length."""
        left = getattr(self._conn._reader, "_bytes_in_chunk", 0)  # h11's ChunkedReader
        return isinstance(left, int) and left + taken > MAX_CHUNK_SIZE

    @abstractmethod
    def _on_head(
        self, event: h11.Request | h11.Response | h11.InformationalResponse
    ) -> HeadT | ParseError:
        """Return the head h11 parsed, or why it is refused."""

    @abstractmethod
    def _error(self, exc: h11.RemoteProtocolError) -> ParseError:
        """Return what h11's error means."""

    def take_raw(self) -> bytes:
        data = self._conn.trailing_data[0]
        self.stop()
        return data

    def stop(self) -> None:
        self._delivery = Delivery.STOPPED

    def in_message(self) -> bool:
        return False


class H11RequestParser(_H11Parser[RequestHead]):
    """Requests, parsed by h11 (a server's parser).

    :param max_header_size: the largest request line plus header block, in bytes.
    """

    __slots__ = ("_head", "_max_header_size")

    def __init__(self, max_header_size: int) -> None:
        super().__init__(h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_size))
        self._max_header_size = max_header_size
        # The raw bytes received since the request head in progress began
        # (h11 keeps them too, but unfolds obs-folds as it parses).
        self._head: list[bytes] = []

    def feed(self, data: bytes) -> None:
        delivery = self._delivery
        if delivery is Delivery.STOPPED:
            return
        conn = self._conn
        if delivery is Delivery.BETWEEN:
            self.held += len(data)
        elif conn.their_state is h11.IDLE:
            head = self._head
            head.append(data)
            if len(head) > 16:
                # A head that trickles in (slowloris) is kept as one piece.
                head[:] = [b"".join(head)]
        conn.receive_data(data)

    def next_message(self) -> bool:
        """Start a fresh h11 connection with what followed the message."""
        data, closed = self._conn.trailing_data
        conn = self._conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self._max_header_size
        )
        self._delivery = Delivery.MESSAGE
        self.held = 0
        self._head[:] = [data] if data else []
        if data:
            conn.receive_data(data)
        if closed:
            conn.receive_data(b"")
        return bool(data) or closed

    def stop(self) -> None:
        super().stop()
        self._head.clear()
        self.held = 0

    def in_message(self) -> bool:
        return bool(self._head)

    def _on_head(
        self, event: h11.Request | h11.Response | h11.InformationalResponse
    ) -> RequestHead | ParseError:
        """Measure the raw head of the request just parsed, and look for obs-folds.

        A line of the head that starts with SP or HTAB after the request
        line is an obs-fold (RFC 9112 §5.2; one right after the request
        line h11 refuses itself). ``_head`` begins where the head begins:
        h11 accepts no bytes before the request line.
        """
        if not isinstance(event, h11.Request):  # pragma: no cover - h11 gives a server none
            raise AssertionError("a server received a response")
        chunks = self._head
        head = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        end = _HEAD_END.search(head)
        stop = end.start() if end is not None else len(head)
        if (end.end() if end is not None else len(head)) > self._max_header_size:
            self.stop()
            return ParseError(431, "request head too large", event.method)
        if head.find(b"\n ", 0, stop) >= 0 or head.find(b"\n\t", 0, stop) >= 0:
            self.stop()
            return ParseError(400, OBS_FOLD_REASON, event.method)
        return event

    def _error(self, exc: h11.RemoteProtocolError) -> ParseError:
        return ParseError(exc.error_status_hint, str(exc))


class H11ResponseParser(_H11Parser[ResponseHead]):
    """Responses, parsed by the h11 connection the client sends its requests through."""

    __slots__ = ()

    def next_message(self) -> bool:
        conn = self._conn
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            # h11 ended keep-alive where the client did not see it end:
            # no response is read here again (nor a request sent).
            self.stop()
            return False
        conn.start_next_cycle()
        self._delivery = Delivery.MESSAGE
        return True

    def _on_head(
        self, event: h11.Request | h11.Response | h11.InformationalResponse
    ) -> ResponseHead | ParseError:
        if isinstance(event, h11.Request):  # pragma: no cover - h11 gives a client none
            raise AssertionError("a client received a request")
        return event

    def _error(self, exc: h11.RemoteProtocolError) -> ParseError:
        # A client answers nothing: the status is its error code.
        return ParseError(HTTP1_ERROR_CODES.protocol_error, str(exc))
