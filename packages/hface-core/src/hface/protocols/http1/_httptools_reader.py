"""The llhttp side of :mod:`hface.protocols.http1._httptools`: what the parser reports.

llhttp calls back as it parses, for every request in the bytes it is
given; :class:`Reader` records each head, piece of body and end of
message as a ``(kind, value)`` item for the protocol to turn into events
one exchange at a time. Also here: the check of the fields of a response,
which h11 makes for the h11 server.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

import httptools

from hface.common import HeaderType
from hface.errors import LocalProtocolError

#: RFC 9110 §5.1: a field name is a token.
_TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
#: h11's rule for field values: no CR, LF or NUL, and no leading or trailing whitespace.
_BAD_VALUE: Final = re.compile(rb"[\x00\r\n]|^[ \t]|[ \t]$")

#: The versions llhttp reports, as bytes.
_VERSIONS: Final = {"1.1": b"1.1", "1.0": b"1.0"}

# What the llhttp callbacks record, in order.
ITEM_HEAD: Final = 0
ITEM_DATA: Final = 1
ITEM_END: Final = 2
ITEM_ERROR: Final = 3


class Head:
    """A parsed request head: what ``check_request`` reads, and more."""

    __slots__ = ("connect", "headers", "http_version", "keep_alive", "method", "size", "target")

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
        self.size = size
        self.connect = method == b"CONNECT"
        self.keep_alive = http_version == b"1.1"


class Reader:
    """The llhttp callbacks: record parsed messages as ``(kind, value)`` items."""

    __slots__ = (
        "begun",
        "chunked",
        "close",
        "connect",
        "has_body",
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

    def __init__(self, items: deque[tuple[int, Any]]) -> None:
        self.items = items
        self.parser = httptools.HttpRequestParser(self)
        self.in_message = False
        self.head_done = False
        self.url = b""
        self.headers: list[HeaderType] = []
        self.trailers: list[HeaderType] | None = None
        # Bytes of the head so far, counted by the fields seen.
        self.size = 0
        self.has_body = False
        self.chunked = False
        # The head in progress has "connection: close".
        self.close = False
        # False once a message said the connection ends after it.
        self.keep_alive = True
        # Messages begun, to tell one head from the next.
        self.begun = 0
        self.connect = False

    def on_message_begin(self) -> None:
        self.begun += 1
        self.in_message = True
        self.head_done = False
        self.url = b""
        self.headers = []
        self.trailers = None
        self.size = 0
        self.has_body = False
        self.chunked = False
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
        if name == b"content-length":
            self.has_body = value != b"0"
        elif name == b"transfer-encoding":
            self.has_body = self.chunked = True
        elif name == b"connection" and b"close" in value.lower():
            self.close = True

    def on_headers_complete(self) -> None:
        self.head_done = True
        parser = self.parser
        method = parser.get_method()
        version = parser.get_http_version()
        head = Head(
            method,
            self.url,
            _VERSIONS.get(version) or version.encode("ascii"),
            self.headers,
            # 'METHOD target HTTP/1.1\r\n', the fields, the empty line (with CRLFs).
            self.size + len(method) + 12 + 2,
        )
        self.connect = head.connect
        if self.close:
            head.keep_alive = False
        if not head.keep_alive:
            self.keep_alive = False
        self.items.append((ITEM_HEAD, head))

    def on_body(self, body: bytes) -> None:
        self.items.append((ITEM_DATA, body))

    def on_message_complete(self) -> None:
        self.in_message = False
        self.items.append((ITEM_END, self.trailers))


def check_fields(fields: Sequence[HeaderType]) -> None:
    """Refuse what h11 refuses to send: a name that is no token, a value with CR, LF or NUL.

    :raises LocalProtocolError: naming the field.
    """
    for name, value in fields:
        if not _TOKEN.fullmatch(name):
            raise LocalProtocolError(f"illegal header name {name!r}")
        if value and _BAD_VALUE.search(value):
            raise LocalProtocolError(f"illegal header value {value!r}")
