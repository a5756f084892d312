"""llhttp's callbacks, for :mod:`hface.protocols.http1._httptools`: what the parser reports.

llhttp calls back as it parses, for every request in the bytes it is
given; :class:`Reader` records each head, piece of body and end of
message as the neutral items of :mod:`._parser`, in a queue the adapter
hands out one message at a time.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import httptools

from hface.common import HeaderType

from ._parser import END, End, ParseError

#: The versions llhttp reports, as bytes.
_VERSIONS: Final = {"1.1": b"1.1", "1.0": b"1.0"}


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
        method = parser.get_method()
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
