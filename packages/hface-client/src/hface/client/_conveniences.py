"""What :meth:`ClientSession.request` adds to ``dispatch``: bodies, timeouts, auth, redirects.

Each concern is a plain value or a pure function here; the session's
request loop (:mod:`._client`) applies them in order:

1. :func:`build_request` makes a :class:`Request` of ``params`` (added to
   the URL's query), ``headers`` (any :data:`HeadersInput`) and one body:
   ``content`` (bytes or an async iterable), ``data`` (a form, sent
   ``application/x-www-form-urlencoded``), ``files`` (with ``data``'s
   fields, ``multipart/form-data``, RFC 7578) or ``json``.
2. :class:`Timeout` bounds the request: ``total`` the whole (up to the
   last byte of the body, or for a stream up to the response headers),
   ``connect`` getting a stream (a pooled or new connection, and the
   request headers sent), ``read`` each wait for the response.
3. :class:`BasicAuth` (or a ``(user, password)`` pair) adds
   ``Authorization`` to every request to the first request's origin;
   :class:`DigestAuth` answers that origin's 401 Digest challenges
   (:mod:`._auth`).
4. :func:`redirect_request` is the request a redirect response asks for,
   by RFC 9110 §15.4: 303 turns every method but HEAD into GET, 301 and
   302 turn POST into GET (as every browser does), 307 and 308 keep the
   method and the body; a body dropped takes its ``Content-*`` fields
   with it, and a new origin loses ``Authorization`` and ``Cookie``.
"""

from __future__ import annotations

import json as json_module
import secrets
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, TypedDict
from urllib.parse import urlencode, urljoin

import anyio

from . import errors
from ._auth import AuthInput
from ._exchange import Exchange
from ._headers import HeadersInput, header_pairs
from ._models import URL, Request, Response

#: Bytes of a redirect's body read (and dropped) to keep its connection; past it, reset.
_REDIRECT_BODY_KEPT: Final = 64 * 1024

#: Query parameters: a mapping (a value may be a list of values) or pairs.
ParamsInput: TypeAlias = (
    "Mapping[str, str | int | float | Sequence[str | int | float]]"
    " | Sequence[tuple[str, str | int | float]]"
)

#: A ``files=`` argument: by field name, the file's content, or
#: ``(filename, content)``, or ``(filename, content, content_type)``.
FilesInput: TypeAlias = "Mapping[str, bytes | tuple[str, bytes] | tuple[str, bytes, str]]"

#: A ``timeout=`` argument: seconds for the whole request, or a :class:`Timeout`.
TimeoutInput: TypeAlias = "float | Timeout | None"


@dataclass(frozen=True, kw_only=True)
class Timeout:
    """Per-request time limits, in seconds; ``None`` leaves the session's.

    >>> Timeout(total=10, read=2)
    Timeout(total=10, connect=None, read=2)
    """

    #: The whole request: up to the last byte of the body (redirects
    #: included); for :meth:`ClientSession.stream`, up to the response headers.
    total: float | None = None
    #: Getting a stream: waiting for a pooled connection or making one
    #: (TCP + TLS, or QUIC), then sending the request headers.
    connect: float | None = None
    #: Each wait for the response: its headers, then every body chunk.
    read: float | None = None

    @classmethod
    def of(cls, value: TimeoutInput) -> Timeout:
        """A :class:`Timeout` from a ``timeout=`` argument (a number is ``total``)."""
        if value is None:
            return cls()
        if isinstance(value, Timeout):
            return value
        number: object = value  # from users: any type may come
        if isinstance(number, bool) or not isinstance(number, int | float) or number <= 0:
            raise ValueError(f"timeout must be a positive number or a Timeout, not {value!r}")
        return cls(total=float(number))


class QueryOptions(TypedDict, total=False):
    """The keywords of a request without a body (``get``, ``head``, ``options``, ``delete``).

    Each is described at :meth:`ClientSession.request`.
    """

    params: ParamsInput | None
    headers: HeadersInput | None
    auth: AuthInput
    follow_redirects: bool | None
    timeout: TimeoutInput


class RequestOptions(QueryOptions, total=False):
    """Every keyword of :meth:`ClientSession.request`: :class:`QueryOptions` and a body."""

    content: bytes | AsyncIterable[bytes] | None
    data: Mapping[str, Any] | None
    files: FilesInput | None
    json: Any


#: The keywords each kind of request takes (checked at run time too: a
#: typo, or a body given to ``get()``, is a TypeError, not ignored).
QUERY_KEYWORDS: Final = QueryOptions.__optional_keys__
REQUEST_KEYWORDS: Final = RequestOptions.__optional_keys__


def check_keywords(call: str, options: Mapping[str, object], allowed: frozenset[str]) -> None:
    """Raise TypeError, as Python would, if ``options`` has a keyword ``call`` does not take."""
    unknown = options.keys() - allowed
    if unknown:
        raise TypeError(f"{call}() got an unexpected keyword argument {min(unknown)!r}")


def prepare_request(
    method: str, url: URL | str, options: RequestOptions
) -> tuple[Request, AuthInput, bool | None, Timeout]:
    """The request ``options`` describe, with its auth, redirect choice and timeouts.

    :raises TypeError: for an unknown keyword, or as :func:`build_request`.
    """
    check_keywords("request", options, REQUEST_KEYWORDS)
    request = build_request(
        method,
        url,
        params=options.get("params"),
        headers=options.get("headers"),
        content=options.get("content"),
        data=options.get("data"),
        files=options.get("files"),
        json=options.get("json"),
    )
    timeout = Timeout.of(options.get("timeout"))
    return request, options.get("auth"), options.get("follow_redirects"), timeout


def _query(params: ParamsInput) -> str:
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, str]] = []
    for key, value in items:
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((str(key), _text(item)) for item in values)
    return urlencode(pairs)


def _text(value: object) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return "" if value is None else str(value)


def _quoted(text: str) -> str:
    """A name or file name in a ``Content-Disposition`` (RFC 7578 §4.2, as browsers do)."""
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _multipart(data: Mapping[str, Any] | None, files: FilesInput) -> tuple[bytes, str]:
    """``(body, content_type)``: ``data``'s fields, then ``files``, as ``multipart/form-data``."""
    boundary = secrets.token_hex(16)
    parts: list[tuple[str, str | None, bytes, str | None]] = []
    for name, value in (data or {}).items():
        for item in value if isinstance(value, list | tuple) else [value]:
            parts.append((str(name), None, _text(item).encode(), None))
    for name, file in files.items():
        if isinstance(file, bytes | bytearray | memoryview):
            parts.append((name, name, bytes(file), "application/octet-stream"))
        else:
            filename, content, *rest = file
            kind = rest[0] if rest else "application/octet-stream"
            parts.append((name, filename, bytes(content), kind))
    chunks: list[bytes] = []
    for field, sent_name, octets, sent_type in parts:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(field)}"'
        if sent_name is not None:
            head += f'; filename="{_quoted(sent_name)}"'
        if sent_type is not None:
            head += f"\r\nContent-Type: {sent_type}"
        chunks.append(head.encode() + b"\r\n\r\n" + octets + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def build_request(
    method: str,
    url: URL | str,
    *,
    params: ParamsInput | None = None,
    headers: HeadersInput | None = None,
    content: bytes | AsyncIterable[bytes] | None = None,
    data: Mapping[str, Any] | None = None,
    files: FilesInput | None = None,
    json: Any = None,
) -> Request:
    """A :class:`Request` with ``params``, ``headers`` and a body of one kind.

    :raises TypeError: if more than one of ``content``, ``data`` (or
        ``files``, which ``data`` may come with) and ``json`` is given.
    """
    if params:
        parsed = url if isinstance(url, URL) else URL.parse(url)
        query = _query(params)
        separator = "&" if "?" in parsed.path else "?"
        url = parsed._replace(path=f"{parsed.path}{separator}{query}") if query else parsed
    bodies = [name for name, given in (("content", content), ("data", data)) if given is not None]
    if json is not None:
        bodies.append("json")
    if len(bodies) > 1:
        raise TypeError(f"give one body, not {' and '.join(bodies)}")
    fields = list(header_pairs(headers)) if headers is not None else []
    names = {name.lower() for name, _ in fields if isinstance(name, str)}
    names |= {name.decode("latin-1").lower() for name, _ in fields if isinstance(name, bytes)}
    content_type: str | None = None
    if files is not None:
        if content is not None or json is not None:
            raise TypeError("give one body, not files and content or json")
        content, content_type = _multipart(data, files)
    elif data is not None:
        content = _query(data).encode()
        content_type = "application/x-www-form-urlencoded"
    elif json is not None:
        content = json_module.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
        content_type = "application/json"
    if content_type is not None and "content-type" not in names:
        fields.append(("content-type", content_type))
    return Request(method, url, headers=fields, content=content)


#: Fields that describe a body: dropped with it when a redirect turns a request into a GET.
_BODY_FIELDS = frozenset(
    {
        b"content-type",
        b"content-length",
        b"content-encoding",
        b"content-language",
        b"content-location",
        b"transfer-encoding",
    }
)
#: Fields never sent on to another origin.
_CREDENTIAL_FIELDS = frozenset({b"authorization", b"cookie", b"proxy-authorization"})


def redirect_request(request: Request, response: Response) -> Request | None:
    """The request ``response`` redirects ``request`` to, or ``None`` if it is no redirect.

    :raises ValueError: if the ``Location`` is not an http(s) URL, or a 307/308
        asks to send again a body that was streamed.
    """
    location = response.get_header(b"location")
    if not response.is_redirect or location is None:
        return None
    target = URL.parse(urljoin(str(request.url), location.decode("latin-1")))
    method, content = request.method, request.content
    status = response.status
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, content = "GET", b""
    headers = request.headers
    if method != request.method:
        headers = [(name, value) for name, value in headers if name not in _BODY_FIELDS]
    elif not isinstance(content, bytes):
        raise ValueError(f"cannot send a streamed body again to follow a {status} redirect")
    if target.origin != request.url.origin:
        headers = [(name, value) for name, value in headers if name not in _CREDENTIAL_FIELDS]
    return Request(method, target, headers=headers, content=content)


def drop_field(request: Request, field: tuple[bytes, bytes | None]) -> None:
    """Remove ``field`` from ``request``'s headers, if there (nothing if its value is None)."""
    if field[1] is not None:
        request.headers = [old for old in request.headers if old != field]


def accept_codings(request: Request, codings: bytes) -> None:
    """Add ``Accept-Encoding`` to ``request`` unless it has one."""
    if all(name != b"accept-encoding" for name, _ in request.headers):
        request.headers.append((b"accept-encoding", codings))


async def discard_response(response: Response, exchange: Exchange) -> None:
    """Read a little of a body nobody wants (a redirect's), then release the stream."""
    try:
        read = 0
        async for chunk in response.aiter_bytes():
            read += len(chunk)
            if read > _REDIRECT_BODY_KEPT:
                break
    except errors.ClientError:
        pass  # the redirect is all that counts
    finally:
        with anyio.CancelScope(shield=True):
            await response.aclose()
            await exchange.aclose()
