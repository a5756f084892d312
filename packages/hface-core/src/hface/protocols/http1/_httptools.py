"""The HTTP/1.1 server with requests parsed by llhttp (httptools): a faster parser than h11.

Install it with the ``hface-core[httptools]`` extra. It is registered as
the ``http1_server`` implementation named ``httptools`` (an entry point of
hface-core), and the server facades prefer it when httptools is installed
(:meth:`ProtocolRegistry.preferred_name
<hface.protocols.ProtocolRegistry.preferred_name>`); h11 stays the default
otherwise and can always be chosen with ``server.http1_factory =
HTTP1ServerFactory()`` or ``hface server --http1 h11``.

Theory of operation
-------------------

:class:`HTTPToolsServerProtocol` *is* :class:`HTTP1ServerProtocol
<hface.protocols.http1.HTTP1ServerProtocol>`, the one HTTP/1.1 server state
machine, with another parser adapter under it: this module's
``LLHTTPRequestParser`` turns llhttp's callbacks into the neutral items of
:mod:`hface.protocols.http1._parser`. Everything a request means (the
checks, the framing of the response, the answers to errors, CONNECT
tunnels, keep-alive and pipelining) is decided by the state machine, the
same way for both parsers.

llhttp parses everything it is given, callbacks and all, so unlike h11 it
cannot stop after one request: its callbacks (``Reader``) record what was
parsed in a queue, which the adapter hands out one message at a time. The
queue is bounded: a client that pipelines more than :data:`MAX_PIPELINED`
bytes while a request is answered gets that answer with ``connection:
close``, and the rest is dropped (as with h11).

llhttp knows a fixed list of methods and refuses any other token; h11
passes any token on, and so does the adapter: a request that starts a
piece of received bytes (or whose start is kept while its method comes in
pieces) with an unknown method is parsed again with a stand-in method
(its framing does not depend on the method) and handed on with its own.
(One pipelined behind another in the same piece is still refused with
400: llhttp does not say where it stopped.)

llhttp is stricter than h11 in two ways, neither of which can be read two
ways: a head with bare LF line ends and a request with two identical
``Content-Length`` fields are refused with 400, where h11 takes them.
llhttp keeps no limit on the size of a head, so the adapter counts the
bytes of a head in progress itself (``max_header_size``, then 431).

A CONNECT request and a request with ``Connection: upgrade`` and
``Upgrade`` stop llhttp (``HttpParserUpgrade``); the bytes after them are
held raw until the state machine knows what they are: a tunnel's, after a
2xx response to CONNECT, or else the next request, parsed by a new parser.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from typing import Final

import httptools

from hface.common import HeaderType

from ._base import MAX_PIPELINED as _MAX_PIPELINED
from ._factories import HTTP1ServerFactory
from ._headers import RequestHead
from ._parser import (
    AFTER_EOF,
    BETWEEN_MESSAGES,
    END,
    EOF,
    IN_MESSAGE,
    OBS_FOLD_REASON,
    STOPPED,
    End,
    Eof,
    MessageParser,
    ParseError,
)
from ._server import HTTP1ServerProtocol
from ._states import ENDED, Input

__all__ = ("MAX_PIPELINED", "HTTPToolsServerFactory", "HTTPToolsServerProtocol")

#: Bytes of requests parsed ahead (pipelined) while one is answered; beyond
#: them the connection closes after that answer (the state machine's bound,
#: whichever parser reads the requests).
MAX_PIPELINED: Final = _MAX_PIPELINED

#: llhttp errors that h11 answers with 501 (a transfer coding it does not implement).
_NOT_IMPLEMENTED: Final = ("Transfer-Encoding",)
#: The llhttp error about a line that starts with whitespace after a field (obs-fold).
_OBS_FOLD: Final = "Unexpected whitespace after header value"
#: The llhttp error about a control character in a field value.
_BAD_VALUE_CHAR: Final = "Invalid header value char"


#: The versions llhttp reports, as bytes.
_VERSIONS: Final = {"1.1": b"1.1", "1.0": b"1.0"}

#: A method token (RFC 9110 §9.1, §5.6.2) at the start of a request line,
#: after the empty lines a server ignores there (RFC 9112 §2.2).
_METHOD: Final = re.compile(rb"(?:\r?\n)*([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ")
#: The start of a request line whose method is not all there yet.
_METHOD_START: Final = re.compile(rb"(?:\r?\n)*\r?[!#$%&'*+\-.^_`|~0-9A-Za-z]*")
#: The method llhttp parses in the place of one it does not know.
_STAND_IN: Final = b"POST"
#: The bytes of a request line in its method kept for that (a longer method is refused).
_MAX_LINE: Final = 256


class Head:
    """A parsed request head: what :func:`~._headers.check_request` reads, and its size."""

    __slots__ = ("headers", "http_version", "method", "size", "target")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: bytes,
        headers: list[HeaderType],
        size: int,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        #: The bytes of the head, with CRLF line ends.
        self.size = size


#: What the callbacks record.
Item = Head | bytes | End | ParseError


class Reader:
    """The llhttp callbacks: record parsed messages as items."""

    __slots__ = (
        "begun",
        "close",
        "head_done",
        "headers",
        "in_message",
        "items",
        "keep_alive",
        "method",
        "parser",
        "size",
        "trailers",
        "url",
    )

    def __init__(self, items: deque[Item]) -> None:
        self.items = items
        self.parser = httptools.HttpRequestParser(self)
        # A version above 1.1 is read as 1.1 (RFC 9110 §2.5); another major
        # version is refused with 505 by check_request, as with h11.
        self.parser.set_dangerous_leniencies(lenient_version=True)
        self.in_message = False
        self.head_done = False
        self.url = b""
        self.headers: list[HeaderType] = []
        self.trailers: list[HeaderType] | None = None
        # Bytes of the head so far, counted by the fields seen.
        self.size = 0
        # The head in progress has "connection: close".
        self.close = False
        # False once a message said the connection ends after it.
        self.keep_alive = True
        # Messages begun, to tell one head from the next.
        self.begun = 0
        # The method of the next head, where llhttp parses a stand-in.
        self.method = b""

    def on_message_begin(self) -> None:
        self.begun += 1
        self.in_message = True
        self.head_done = False
        self.url = b""
        self.headers = []
        self.trailers = None
        self.size = 0
        self.close = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            trailers = self.trailers
            if trailers is None:
                trailers = self.trailers = []
            trailers.append((name.lower(), value.rstrip(b" \t")))
            return
        name = name.lower()
        # llhttp drops leading whitespace, h11 trailing whitespace too.
        self.headers.append((name, value.rstrip(b" \t")))
        self.size += len(name) + len(value) + 4
        if name == b"connection" and b"close" in value.lower():
            self.close = True

    def on_headers_complete(self) -> None:
        self.head_done = True
        parser = self.parser
        method = self.method or parser.get_method()
        self.method = b""
        version = parser.get_http_version()
        http_version = _VERSIONS.get(version) or version.encode("ascii")
        if self.close or http_version < b"1.1":
            self.keep_alive = False
        self.items.append(
            Head(
                method,
                self.url,
                http_version,
                self.headers,
                # 'METHOD target HTTP/1.1\r\n', the fields, the empty line (with CRLFs).
                self.size + len(method) + 12 + 2,
            )
        )

    def on_body(self, body: bytes) -> None:
        self.items.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        trailers = self.trailers
        self.items.append(END if trailers is None else End(trailers))


# -- the adapter ---------------------------------------------------------------


class _Parsing(enum.Enum):
    #: Bytes go to llhttp.
    PARSING = "parsing"
    #: After a CONNECT or upgrade request: bytes are held raw.
    HOLDING = "holding"
    #: Bytes are dropped (after an error, a tunnel, or the end).
    DROPPING = "dropping"


_PARSING: Final = _Parsing.PARSING
_HOLDING: Final = _Parsing.HOLDING
_DROPPING: Final = _Parsing.DROPPING


class LLHTTPRequestParser(MessageParser[RequestHead]):
    """Requests, parsed by llhttp.

    :param max_header_size: the largest request line plus header block, in bytes.
    """

    __slots__ = (
        "_delivery",
        "_head_bytes",
        "_input",
        "_items",
        "_line",
        "_max_header_size",
        "_parsing",
        "_raw",
        "_raw_size",
        "_reader",
        "_withheld",
    )

    def __init__(self, max_header_size: int) -> None:
        super().__init__()
        self._max_header_size = max_header_size
        self._items: deque[Item] = deque()
        self._reader = Reader(self._items)
        self._parsing = _PARSING
        self._delivery = IN_MESSAGE
        self._input = Input.OPEN
        # Bytes of the head in progress, counted by whole received pieces.
        self._head_bytes = 0
        # Raw bytes after a CONNECT or upgrade request.
        self._raw: list[bytes] = []
        self._raw_size = 0
        self._line = b""
        self._withheld = b""

    def feed(self, data: bytes) -> None:
        parsing = self._parsing
        if parsing is _PARSING:
            if self._withheld:  # an unknown method coming in pieces
                data = self._withheld + data
                self._withheld = b""
            reader = self._reader
            begun = reader.begun if reader.in_message and not reader.head_done else -1
            # For an unknown method: the bytes of a request still in its
            # method, and whether one starts the data (see _parse_unknown_method).
            line = self._line
            self._line = b""
            fresh = not reader.in_message
            count = len(self._items)
            try:
                reader.parser.feed_data(data)
            except httptools.HttpParserUpgrade as upgrade:
                # Raw bytes, not requests, may follow: they wait.
                self._parsing = _HOLDING
                rest = data[upgrade.args[0] :]
                if rest:
                    self._raw.append(rest)
                    self._raw_size += len(rest)
            except httptools.HttpParserInvalidMethodError as exc:
                fresh = fresh and len(self._items) == count
                if not ((line or fresh) and self._parse_unknown_method(line + data)):
                    self._on_parse_error(exc)
            except httptools.HttpParserError as exc:
                self._on_parse_error(exc)
            else:
                if reader.in_message and not reader.head_done:
                    if not reader.url and (line or (fresh and len(self._items) == count)):
                        line += data  # in the method still
                        self._line = line if len(line) <= _MAX_LINE else b""
                    # llhttp keeps the field in progress to itself: count the bytes.
                    if reader.begun == begun:
                        self._head_bytes += len(data)
                    else:
                        self._head_bytes = self._head_start_size(data)
                    if self._head_bytes > self._max_header_size:
                        self._refuse(431, "request head too large")
                else:
                    self._head_bytes = 0
        elif parsing is _HOLDING:
            self._raw.append(data)
            self._raw_size += len(data)
        else:
            return
        held = self._raw_size
        items = self._items
        if items and self._delivery is not IN_MESSAGE:
            for item in items:
                if isinstance(item, Head):
                    held += item.size
                elif isinstance(item, bytes):
                    held += len(item)
        self.held = held

    def feed_eof(self) -> None:
        self._input = ENDED
        if self._parsing is _PARSING and (self._reader.in_message or self._withheld):
            self._refuse(400, "peer unexpectedly closed the connection")

    def next_item(self) -> RequestHead | bytes | End | ParseError | Eof | None:
        items = self._items
        if items:
            if self._delivery is not IN_MESSAGE:
                return None  # pipelined: waits for the exchange in progress
            item = items.popleft()
            if type(item) is End:
                self._delivery = BETWEEN_MESSAGES
            elif type(item) is Head and item.size > self._max_header_size:
                self.stop()
                return ParseError(431, "request head too large", item.method)
            return item
        delivery = self._delivery
        if (
            self._input is ENDED
            and (delivery is IN_MESSAGE or delivery is BETWEEN_MESSAGES)
            and self._parsing is not _HOLDING
        ):
            self._delivery = AFTER_EOF
            return EOF
        return None

    def next_message(self) -> bool:
        self._delivery = IN_MESSAGE
        if self._parsing is not _HOLDING or self._items:
            return bool(self._items) or self._input is ENDED
        # The exchange that made llhttp stop is over, and what followed it
        # is requests after all: a new parser reads them.
        self._parsing = _PARSING
        self._reader = Reader(self._items)
        data = b"".join(self._raw)
        self._raw.clear()
        self._raw_size = 0
        if data:
            self.feed(data)
        if self._input is ENDED:
            self.feed_eof()
        return True

    def take_raw(self) -> bytes:
        data = b"".join(self._raw)
        self.stop()
        return data

    def stop(self) -> None:
        self._withheld = b""
        self._parsing = _DROPPING
        self._delivery = STOPPED
        self._items.clear()
        self._raw.clear()
        self._raw_size = self.held = 0

    def in_message(self) -> bool:
        return self._parsing is not _DROPPING and (
            self._reader.in_message or bool(self._items) or bool(self._withheld)
        )

    # -- parsing -------------------------------------------------------------

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

    def _parse_unknown_method(self, data: bytes) -> bool:
        """Parse ``data`` again with a stand-in for its first method; False if not a token."""
        if not self._reader.keep_alive:
            return False
        match = _METHOD.match(data)
        if match is None:
            if len(data) > _MAX_LINE or not _METHOD_START.fullmatch(data):
                return False
            # The method is still coming: its bytes wait for the rest of it.
            self._reader = Reader(self._items)
            self._withheld = data
            return True
        reader = self._reader = Reader(self._items)
        reader.method = match.group(1)
        self.feed(data[: match.start(1)] + _STAND_IN + data[match.end(1) :])
        return True

    def _on_parse_error(self, exc: httptools.HttpParserError) -> None:
        reader = self._reader
        if not reader.keep_alive and not reader.in_message:
            # Bytes after a request that announced the close: RFC 9112 §9.6
            # has the client send nothing more, so they are ignored.
            self._parsing = _DROPPING
            return
        reason = str(exc) or "invalid request"
        status = 400
        if reason == _OBS_FOLD:
            reason = OBS_FOLD_REASON
        elif any(word in reason for word in _NOT_IMPLEMENTED) and "Content-Length" not in reason:
            status = 501
        method = b""
        if reason == _BAD_VALUE_CHAR and reader.in_message and not reader.head_done:
            # h11 parses this head and check_request refuses it, knowing
            # the method: a HEAD request gets no body with its 400.
            method = reader.parser.get_method()
        self._refuse(status, reason, method)

    def _refuse(self, status: int, reason: str, method: bytes = b"") -> None:
        """The bytes parsed last break the rules: refused after what came before."""
        self._parsing = _DROPPING
        self._items.append(ParseError(status, reason, method))


class HTTPToolsServerProtocol(HTTP1ServerProtocol):
    """The server side of an HTTP/1.1 connection, with requests parsed by llhttp.

    The state machine of :class:`~hface.protocols.http1.HTTP1ServerProtocol`,
    so the same behaviour (see this module's theory of operation for the
    few places where llhttp reads stricter than h11).

    :param tls: True if the connection runs over TLS, so requests get
        ``:scheme`` "https" (else "http").
    :param max_header_size: the largest request line plus header block
        accepted from the client, in bytes; beyond it the answer is 431.
    """

    @staticmethod
    def _make_parser(max_header_size: int) -> MessageParser[RequestHead]:
        return LLHTTPRequestParser(max_header_size)


class HTTPToolsServerFactory(HTTP1ServerFactory):
    """Makes :class:`HTTPToolsServerProtocol` objects (``hface-core[httptools]``).

    Takes the options of :class:`~hface.protocols.http1.HTTP1ServerFactory`.

    :param max_header_size: the largest request line plus header block
        accepted from a client, in bytes; a larger one is answered with 431.
    """

    _protocol_type = HTTPToolsServerProtocol

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTPToolsServerProtocol:
        """Make a server protocol for a new connection, with llhttp reading the requests."""
        protocol = super().__call__(tls_version=tls_version, alpn_protocol=alpn_protocol)
        assert isinstance(protocol, HTTPToolsServerProtocol)
        return protocol
