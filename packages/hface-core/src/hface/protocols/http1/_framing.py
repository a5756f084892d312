"""How a server writes an HTTP/1.1 response: the head, the body's framing, trailers.

The rules are h11's, written here once so that every parser shares them
(and so that a response is written without h11's per-message cost):

- a final response gets ``content-length: 0`` when it ends with its head
  and could have had a body (RFC 9110 §8.6), none when it has no body
  (a response to HEAD, 204, 304: RFC 9110 §6.4.1);
- a body of unknown length is chunked for an HTTP/1.1 client and
  delimited by the close for an HTTP/1.0 one (RFC 9112 §6.3, §7.1);
- ``connection: close`` is sent when the server closes after the response,
  and ``Connection: close`` (h11's spelling, in place of any connection
  field) when the request ended keep-alive;
- field names must be tokens and values must hold no CR, LF or NUL, nor
  start or end with whitespace (RFC 9110 §5.1, §5.5; h11's checks).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from hface.common import HeaderType
from hface.errors import LocalProtocolError

from ._headers import REASONS, OutgoingHeaders
from ._states import (
    CHUNKED,
    CLOSE_DELIMITED,
    CONTENT_LENGTH,
    Framing,
)

#: The longest explanation sent in the body of an error response, in characters.
MAX_EXPLANATION: Final = 200

#: Status lines, made once.
_STATUS_LINES: Final[dict[int, bytes]] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, REASONS.get(code, b"")) for code in range(100, 600)
}

#: RFC 9110 §5.1: a field name is a token.
_TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
#: h11's rule for field values: no CR, LF or NUL (here), and no leading or trailing
#: whitespace (:data:`_WHITESPACE`). One character class: an alternation with
#: anchors would be tried at every position, at three times the cost.
_BAD_CHARACTER: Final = re.compile(rb"[\x00\r\n]")
#: SP and HTAB, as byte values.
_WHITESPACE: Final = (0x20, 0x09)


def check_fields(fields: Sequence[HeaderType]) -> None:
    """Refuse what h11 refuses to send: a name that is no token, a value with CR, LF or NUL.

    :raises LocalProtocolError: naming the field.
    """
    for name, value in fields:
        if not _TOKEN.fullmatch(name):
            raise LocalProtocolError(f"illegal header name {name!r}")
        if value and (
            _BAD_CHARACTER.search(value) is not None
            or value[0] in _WHITESPACE
            or value[-1] in _WHITESPACE
        ):
            raise LocalProtocolError(f"illegal header value {value!r}")


def head_bytes(code: int, fields: Sequence[HeaderType]) -> bytes:
    """Return a status line and header block, ready to send."""
    parts = [_STATUS_LINES.get(code) or b"HTTP/1.1 %d \r\n" % code]
    for name, value in fields:
        parts.append(name + b": " + value + b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def frame_response(
    code: int,
    outgoing: OutgoingHeaders,
    method: bytes,
    http11: bool,
    keep_alive: bool,
    closing: bool,
    end_stream: bool,
) -> tuple[list[HeaderType], Framing, int | None]:
    """Frame a final response: return its fields, its framing and the body bytes it owes.

    :param method: the request's method (a response to HEAD has no body).
    :param http11: the request was HTTP/1.1 (or higher): chunked is possible.
    :param keep_alive: the request left the connection open after it.
    :param closing: the server closes the connection after this response.
    :param end_stream: the response ends with its head.
    :raises LocalProtocolError: if the response ends short of its ``content-length``.
    """
    fields = outgoing.fields
    content_length = outgoing.content_length
    unknown_length = content_length is None
    bodyless = code == 204 or code == 304 or method == b"HEAD"
    if bodyless:
        # A HEAD response gets the fields a GET would (RFC 9110 §9.3.2).
        unknown_length = unknown_length and code != 204 and code != 304
        content_length = 0
    elif content_length is None and end_stream:
        fields.append((b"content-length", b"0"))
        content_length = 0
        unknown_length = False
    if end_stream and content_length:
        raise LocalProtocolError("too little data for the declared content-length")
    if content_length is not None:
        framing = CONTENT_LENGTH
    elif http11:
        framing = CHUNKED
    else:
        framing = CLOSE_DELIMITED
    if closing:
        fields.append((b"connection", b"close"))
    if unknown_length and http11:
        fields.append((b"Transfer-Encoding", b"chunked"))
    if not keep_alive:
        fields = [field for field in fields if field[0].lower() != b"connection"]
        fields.append((b"Connection", b"close"))
    return fields, framing, content_length


def chunk(data: bytes) -> tuple[bytes, bytes, bytes]:
    """Return ``data`` as one chunk of a chunked body (RFC 9112 §7.1), in three pieces."""
    return b"%x\r\n" % len(data), data, b"\r\n"


def last_chunk(trailers: Sequence[HeaderType]) -> bytes:
    """Return the end of a chunked body, with its trailer fields (RFC 9112 §7.1.2)."""
    if not trailers:
        return b"0\r\n\r\n"
    return b"0\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in trailers) + b"\r\n"


def error_response(
    status: int,
    explanation: str,
    *,
    head: bool,
    keep_alive: bool,
    extra: Sequence[HeaderType] = (),
) -> bytes:
    """Return an error response: ``status``, ``connection: close`` and ``explanation``.

    The body is the explanation in one line of text (RFC 9110 §15.5: "an
    explanation of the error situation"); a response to HEAD gets the
    head alone (``head``). ``keep_alive`` False spells the close as h11
    does for a request that ended keep-alive. ``extra`` fields go first
    (a 426's ``upgrade``).
    """
    body = (explanation[:MAX_EXPLANATION] + "\n").encode("ascii", "replace")
    fields: list[HeaderType] = [
        *extra,
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close") if keep_alive else (b"Connection", b"close"),
    ]
    data = head_bytes(status, fields)
    return data if head else data + body
