"""Translation between HTTP/1.1 header fields and the HTTP/2 style hface speaks.

Received headers come from the parser with lower-case names; they gain
pseudo-headers (``:method``, ``:scheme``, ``:authority``, ``:path`` or
``:status``) and lose the connection-specific fields HTTP/2 forbids
(RFC 9113 §8.2.2). Submitted headers lose their pseudo-headers (which
become the request or status line) and the connection-specific fields,
because the framing of an HTTP/1.1 message is this package's business.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Final, Protocol

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

#: RFC 9110 §5.5: control characters other than HTAB are not field content
#: (h11 itself refuses NUL, CR and LF).
_INVALID_VALUE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

#: RFC 9110 §7.2, RFC 3986 §3.2.2: an IP literal or reg-name, then a port.
_HOST: Final = re.compile(rb"(?:\[[0-9A-Za-z:.%_~-]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")

#: The largest Content-Length taken (RFC 9110 §8.6): 2**63 - 1.
MAX_CONTENT_LENGTH: Final = 2**63 - 1

#: RFC 9112 §3.2.2: absolute-form, split into scheme, authority and the rest.
_ABSOLUTE_FORM: Final = re.compile(rb"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^#]*)")


class MessageHead(Protocol):
    """What :func:`keeps_alive` reads of a request or a response."""

    @property
    def http_version(self) -> bytes:
        """The version, e.g. ``b"1.1"``."""

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]:
        """The fields, names in lower case."""


class RequestHead(MessageHead, Protocol):
    """What :func:`check_request` and :func:`request_headers` read of a request.

    An ``h11.Request`` is one; so is the head llhttp's adapter makes.
    """

    @property
    def method(self) -> bytes:
        """The method, as received."""

    @property
    def target(self) -> bytes:
        """The request target, as received."""


class UpgradeAsked:
    """What :func:`check_request` returns for a request that asks to switch protocols.

    (``Upgrade`` with the ``upgrade`` connection option: rare, so the
    common requests pay nothing for telling them apart.)
    """

    __slots__ = ("keep_alive",)

    def __init__(self, keep_alive: bool) -> None:
        #: What :func:`keeps_alive` says of the request.
        self.keep_alive = keep_alive


def check_request(event: RequestHead) -> tuple[int, str] | bool | UpgradeAsked:
    """Return ``(status, reason)`` if a parsed request must be refused, else :func:`keeps_alive`.

    A request that asks to switch protocols gets :class:`UpgradeAsked` instead.

    Every parser parses the syntax; this refuses, once for all of them,
    what one of them lets through and what would let a request be read
    two ways (request smuggling):

    - a major version other than 1 (505, RFC 9112 §2.3; a higher minor
      version is read as 1.1, RFC 9110 §2.5);
    - a Host field missing from an HTTP/1.1 request, or more than one
      (400, RFC 9112 §3.2), or one that is not a host and port;
    - a transfer coding other than ``chunked`` (501, RFC 9112 §6.1);
    - both Transfer-Encoding and Content-Length, or Transfer-Encoding in an
      HTTP/1.0 request (400, RFC 9112 §6.1 and §6.3: the framing is faulty);
    - a Content-Length over ``2**63 - 1`` (400: RFC 9110 §8.6 has a
      recipient guard against numbers it cannot hold; no body is that large);
    - a body on a request that switches protocols, CONNECT or ``Upgrade``
      with the ``upgrade`` connection option (400: RFC 9110 §9.3.6 gives
      it no meaning, and what follows such a request is not read as HTTP);
    - control characters in a field value (400, RFC 9110 §5.5);
    - a request target in none of the four forms (400, RFC 9112 §3.2):
      origin-form, absolute-form (with a host and no userinfo, RFC 9110
      §4.2), authority-form (CONNECT only) and asterisk-form (OPTIONS only).

    A CONNECT request's target, and its Host (which :func:`request_headers`
    drops for the target), are the application's to judge, as its
    ``:authority`` is on HTTP/2 and HTTP/3: a proxy then refuses a bad
    target with the same explanation on every version.
    """
    version = event.http_version
    if version[:2] != b"1.":
        return 505, "unsupported HTTP version"
    method = event.method
    connect = method == b"CONNECT"
    hosts = 0
    codings: list[bytes] = []
    length: bytes | None = None
    upgrade = False
    options: list[bytes] = []
    for name, value in event.headers:
        if _INVALID_VALUE.search(value):
            return 400, f"invalid character in the {name.decode('ascii')} field"
        if name == b"host":
            hosts += 1
            if not connect and not _HOST.fullmatch(value):
                return 400, "invalid Host field"
        elif name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            codings.append(value)
        elif name == b"connection":
            options.append(value)
        elif name == b"upgrade":
            upgrade = True
    if hosts > 1:
        return 400, "Found multiple Host: headers"
    if not hosts and version >= b"1.1":
        return 400, "Missing mandatory Host: header"
    if codings:
        if comma_tokens(codings) != [b"chunked"]:
            return 501, "Only Transfer-Encoding: chunked is supported"
        if length is not None:
            return 400, "both Transfer-Encoding and Content-Length (request smuggling?)"
        if version == b"1.0":
            return 400, "Transfer-Encoding in an HTTP/1.0 request"
    elif length is not None and length.isdigit() and int(length) > MAX_CONTENT_LENGTH:
        return 400, "Content-Length too large"
    if codings or (length is not None and length != b"0"):
        if connect:
            return 400, "a body on a CONNECT request is not supported"
        if upgrade and b"upgrade" in comma_tokens(options):
            return 400, "a body on an Upgrade request is not supported"
    target = event.target
    if not connect and target[:1] != b"/":
        if target == b"*":
            if method != b"OPTIONS":
                return 400, "the * target is for OPTIONS only"
        elif (absolute := _ABSOLUTE_FORM.fullmatch(target)) is None:
            return 400, "invalid request target"
        # RFC 9110 §4.2.1, §4.2.4: a host is required, and userinfo is an error.
        elif not absolute[2] or not _HOST.fullmatch(absolute[2]):
            return 400, "invalid authority in the request target"
    keep_alive = version >= b"1.1" and not (options and _closes(options))
    if upgrade and b"upgrade" in comma_tokens(options):
        return UpgradeAsked(keep_alive)
    return keep_alive


def keeps_alive(head: MessageHead) -> bool:
    """Return False if a message ends its connection after it (RFC 9112 §9.3).

    It does if it has ``Connection: close`` or is older than HTTP/1.1 (an
    HTTP/1.0 ``keep-alive`` is not honoured: h11's rule).
    """
    if head.http_version < b"1.1":
        return False
    return not _closes([value for name, value in head.headers if name == b"connection"])


def _closes(options: list[bytes]) -> bool:
    """Return True if ``Connection`` field values hold the ``close`` option."""
    if len(options) == 1:
        value = options[0].lower()
        # The common cases, told at once: "keep-alive", "close", "Upgrade".
        if b"close" not in value:
            return False
        if value == b"close":
            return True
        options = [value]
    return b"close" in comma_tokens(options)


def comma_tokens(values: Iterable[bytes]) -> list[bytes]:
    """Return the elements of comma-separated field values, lower-cased (RFC 9110 §5.6.1)."""
    return [
        token
        for value in values
        for element in value.lower().split(b",")
        if (token := element.strip(b" \t"))
    ]


def status_bytes(code: int) -> bytes:
    """Return a status code as the value of a ``:status`` pseudo-header."""
    return _STATUS_BYTES.get(code) or b"%d" % code


def request_headers(event: RequestHead, scheme: bytes) -> list[HeaderType]:
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
    target = event.target
    if method == b"CONNECT":
        # RFC 9113 §8.5: a CONNECT request has only :method and :authority.
        result: list[HeaderType] = [(b":method", method), (b":authority", target)]
        result += fields
        return result
    if target[:1] != b"/" and (absolute := _ABSOLUTE_FORM.fullmatch(target)) is not None:
        # RFC 9112 §3.2.2: the target's authority wins over Host, and the
        # URI parts go where HTTP/2 puts them (RFC 9113 §8.3.1).
        scheme = absolute[1].lower()
        authority = absolute[2]
        target = absolute[3] or b"/"
    if authority is None:
        result = [(b":method", method), (b":scheme", scheme), (b":path", target)]
    else:
        result = [
            (b":method", method),
            (b":scheme", scheme),
            (b":authority", authority),
            (b":path", target),
        ]
    result += fields
    return result


def response_headers(event: h11.Response | h11.InformationalResponse) -> list[HeaderType]:
    """Return the HTTP/2 style header list of a received response."""
    result: list[HeaderType] = [(b":status", status_bytes(event.status_code))]
    _copy_fields(event.headers, result)
    return result


def response_head(event: h11.Response) -> tuple[list[HeaderType], bool]:
    """Return the header list of a final response, and :func:`keeps_alive` of it.

    One pass over the fields for both, on every response a client receives.
    """
    result: list[HeaderType] = [(b":status", status_bytes(event.status_code))]
    options = _copy_fields(event.headers, result)
    keep_alive = event.http_version >= b"1.1" and not (options and _closes(options))
    return result, keep_alive


def trailer_headers(headers: Sequence[HeaderType]) -> list[HeaderType]:
    """Return the received trailer fields, connection-specific ones dropped."""
    result: list[HeaderType] = []
    _copy_fields(headers, result)
    return result


def _copy_fields(headers: Sequence[HeaderType], result: list[HeaderType]) -> list[bytes]:
    """Append the fields HTTP/2 allows to ``result``; return the ``Connection`` values."""
    options: list[bytes] = []
    # h11's Headers is a Sequence without __iter__: iterating it costs two
    # calls a field (Sequence.__iter__, __getitem__); its list of
    # (raw name, name, value) costs none.
    full: list[tuple[bytes, bytes, bytes]] | None = getattr(headers, "_full_items", None)
    for _, name, value in full if full is not None else [(n, n, v) for n, v in headers]:
        if name in CONNECTION_SPECIFIC:
            if name == b"connection":
                options.append(value)
            elif name == b"te" and value.lower() == b"trailers":
                result.append((name, value))
            continue
        result.append((name, value))
    return options


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


def response_status(outgoing: OutgoingHeaders) -> int:
    """Return the status of a response submitted HTTP/2-style.

    :raises LocalProtocolError: if ``:status`` is missing or invalid, or
        another pseudo-header is present.
    """
    status = outgoing.pseudo.get(b":status")
    if status is None or len(outgoing.pseudo) != 1:
        raise LocalProtocolError("a response needs :status and no other pseudo-header")
    if not status.isdigit() or len(status) != 3:
        raise LocalProtocolError(f"invalid :status {status!r}")
    return int(status)


def count_body_bytes(remaining: int | None, size: int, end_stream: bool) -> int | None:
    """Return the body bytes still owed after sending ``size`` more (``None``: unknown length).

    :raises LocalProtocolError: if that is more than ``content-length``
        declared, or the body ends short of it.
    """
    if remaining is None:
        return None
    remaining -= size
    if remaining < 0:
        raise LocalProtocolError("too much data for the declared content-length")
    if end_stream and remaining:
        raise LocalProtocolError("too little data for the declared content-length")
    return remaining


def _parse_content_length(value: bytes) -> int:
    if not value.isdigit():
        raise LocalProtocolError(f"invalid content-length {value!r}")
    return int(value)
