"""Translation between HTTP/1.1 header fields and the HTTP/2 style hface speaks.

Received headers come from h11 with lower-case names already; they gain
pseudo-headers (``:method``, ``:scheme``, ``:authority``, ``:path`` or
``:status``) and lose the connection-specific fields HTTP/2 forbids
(RFC 9113 §8.2.2). Submitted headers lose their pseudo-headers (which
become the request or status line) and the connection-specific fields,
because the framing of an HTTP/1.1 message is this package's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Final

import h11

from hface.common import HeadersType, HeaderType
from hface.errors import LocalProtocolError

from .._headers import CONNECTION_SPECIFIC_HEADERS

#: Fields that only make sense hop by hop (RFC 9113 §8.2.2); ``te`` is kept
#: when it is exactly "trailers", and ``host`` is kept apart as ``:authority``.
CONNECTION_SPECIFIC: Final = CONNECTION_SPECIFIC_HEADERS | {b"te"}

#: The standard reason phrase of each status code.
REASONS: Final[dict[int, bytes]] = {
    status.value: status.phrase.encode("ascii") for status in HTTPStatus
}

_STATUS_BYTES: Final[dict[int, bytes]] = {code: b"%d" % code for code in range(100, 600)}

_DROP_FROM_REQUEST: Final = CONNECTION_SPECIFIC | {b"host"}


def status_bytes(code: int) -> bytes:
    """Return a status code as the value of a ``:status`` pseudo-header."""
    return _STATUS_BYTES.get(code) or b"%d" % code


def request_headers(event: h11.Request, scheme: bytes) -> list[HeaderType]:
    """Return the HTTP/2 style header list of a received request."""
    fields: list[HeaderType] = []
    authority: bytes | None = None
    for name, value in event.headers:
        if name in _DROP_FROM_REQUEST:
            if name == b"host":
                authority = value
            elif name == b"te" and value.lower() == b"trailers":
                fields.append((name, value))
            continue
        fields.append((name, value))
    method = event.method
    if method == b"CONNECT":
        # RFC 9113 §8.5: a CONNECT request has only :method and :authority.
        result: list[HeaderType] = [(b":method", method), (b":authority", event.target)]
    elif authority is None:
        result = [(b":method", method), (b":scheme", scheme), (b":path", event.target)]
    else:
        result = [
            (b":method", method),
            (b":scheme", scheme),
            (b":authority", authority),
            (b":path", event.target),
        ]
    result += fields
    return result


def response_headers(event: h11.Response | h11.InformationalResponse) -> list[HeaderType]:
    """Return the HTTP/2 style header list of a received response."""
    result: list[HeaderType] = [(b":status", status_bytes(event.status_code))]
    _copy_fields(event.headers, result)
    return result


def trailer_headers(headers: Sequence[HeaderType]) -> list[HeaderType]:
    """Return the received trailer fields, connection-specific ones dropped."""
    result: list[HeaderType] = []
    _copy_fields(headers, result)
    return result


def _copy_fields(headers: Sequence[HeaderType], result: list[HeaderType]) -> None:
    for name, value in headers:
        if name in CONNECTION_SPECIFIC and not (name == b"te" and value.lower() == b"trailers"):
            continue
        result.append((name, value))


class OutgoingHeaders:
    """A submitted header block, split into pseudo-headers and HTTP/1.1 fields."""

    __slots__ = ("close", "content_length", "fields", "has_host", "pseudo")

    def __init__(self, headers: HeadersType) -> None:
        #: The pseudo-headers, by name.
        self.pseudo: dict[bytes, bytes] = {}
        #: The fields to send, connection-specific ones dropped.
        self.fields: list[HeaderType] = []
        #: The declared ``content-length``, or None.
        self.content_length: int | None = None
        #: True if the caller gave a ``host`` field.
        self.has_host = False
        #: True if the caller asked for ``connection: close``.
        self.close = False
        fields = self.fields
        for name, value in headers:
            if name[:1] == b":":
                self.pseudo[name] = value
            elif name in CONNECTION_SPECIFIC:
                if name == b"te":
                    if value.lower() == b"trailers":
                        fields.append((name, value))
                elif name == b"connection" and b"close" in value.lower():
                    self.close = True
            else:
                if name == b"content-length":
                    self.content_length = _parse_content_length(value)
                elif name == b"host":
                    self.has_host = True
                fields.append((name, value))

    def no_pseudo(self, what: str) -> None:
        """Raise if any pseudo-header was given.

        :raises LocalProtocolError: naming ``what`` the headers were for.
        """
        if self.pseudo:
            raise LocalProtocolError(f"pseudo-headers are not allowed in {what}")


def _parse_content_length(value: bytes) -> int:
    if not value.isdigit():
        raise LocalProtocolError(f"invalid content-length {value!r}")
    return int(value)
