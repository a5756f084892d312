"""What users pass to and get from the client: URLs, origins, requests, responses."""

from __future__ import annotations

import codecs
import enum
import ipaddress
import json
import re
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple
from urllib.parse import quote, urlsplit

import idna

from hface.common import AddressType, HeaderType

from ._headers import Headers, HeadersInput, header_pairs
from .errors import HTTPStatusError

#: The statuses that redirect (RFC 9110 §15.4), when a ``Location`` comes with them.
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
#: The port of each supported scheme when the URL gives none.
DEFAULT_PORTS: Final = {"http": 80, "https": 443}

# RFC 3986 §3.2.2 reg-name characters (percent-encoded octets allowed); a
# non-ASCII name (an IDN) is first encoded by IDNA 2008 with UTS #46 mapping.
_REG_NAME = re.compile(r"^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$")
# RFC 9110 §5.6.2 token characters, for request methods.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# RFC 3986 §3.3/§3.4: what stays as it is in a path or query; anything else
# (a space, non-ASCII as UTF-8, a lone ``%``) is percent-encoded.
_PATH_SAFE: Final = "-._~!$&'()*+,;=:@/%"
_QUERY_SAFE: Final = _PATH_SAFE + "?"
_PLAIN = re.compile(r"^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# C0 controls and DEL: never part of a URL (urlsplit would drop some silently).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _encode(text: str, safe: str) -> str:
    """Percent-encode what RFC 3986 does not allow in ``text``, keeping ``%XX`` as given."""
    return quote(_LONE_PERCENT.sub("%25", text), safe=safe)


def _idna(host: str, value: str, what: str) -> str:
    """The ASCII form of a host name that is not (IDNA 2008, UTS #46 mapping)."""
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"invalid {what} {value!r}: bad host {host!r} ({exc})") from None


class ClientProtocol(enum.Enum):
    """The HTTP versions a client may speak to a server (or to a proxy)."""

    #: TLS with ALPN choosing HTTP/2 or HTTP/1.1; HTTP/1.1 on cleartext.
    TCP = "tcp"
    #: HTTP/1.1 only.
    HTTP1 = "http1"
    #: HTTP/2 only (prior knowledge on cleartext).
    HTTP2 = "http2"
    #: HTTP/3 over QUIC (always TLS).
    HTTP3 = "http3"


def _split(value: str, what: str, default_scheme: str) -> tuple[str, str, int, str, str]:
    """Split ``value`` into (scheme, host, port, path, query) or raise ValueError."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError(f"empty {what}")
    if not text.isprintable() and _CONTROL.search(text):
        raise ValueError(f"invalid {what} {value!r}: control characters")
    if "://" not in text:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:(?!\d)", text) and not text.startswith("["):
            scheme = text.split(":", 1)[0]
            raise ValueError(f"invalid {what} {value!r}: unsupported scheme {scheme!r}")
        text = f"{default_scheme}://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid {what} {value!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"invalid {what} {value!r}: unsupported scheme {parts.scheme!r}")
    if parts.fragment:
        # Fragments never go to the server (RFC 9110 §4.2.4); drop quietly like browsers do.
        pass
    host = parts.hostname
    if not host:
        raise ValueError(f"invalid {what} {value!r}: no host")
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"invalid {what} {value!r}: bad IPv6 address {host!r}") from None
    elif not host.isascii():
        host = _idna(host, value, what)
    if "[" not in parts.netloc and not _REG_NAME.fullmatch(host):
        raise ValueError(f"invalid {what} {value!r}: bad host {host!r}")
    if port == 0:
        raise ValueError(f"invalid {what} {value!r}: port 0")
    if parts.netloc.endswith(":"):
        raise ValueError(f"invalid {what} {value!r}: empty port")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"invalid {what} {value!r}: credentials are not allowed here")
    path, query = parts.path, parts.query
    if not _PLAIN.fullmatch(path):
        path = _encode(path, _PATH_SAFE)
    if query and not _PLAIN.fullmatch(query):
        query = _encode(query, _QUERY_SAFE)
    return scheme, host, DEFAULT_PORTS[scheme] if port is None else port, path, query


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Origin(NamedTuple):
    """An HTTP origin server: scheme, host and port (RFC 6454)."""

    #: Either ``"http"`` or ``"https"``.
    scheme: str
    #: A host name or an IP address (IPv6 without brackets).
    host: str
    #: The port number.
    port: int

    @classmethod
    def parse(cls, value: str, *, default_scheme: str = "http") -> Origin:
        """Parse an origin such as ``https://example.com`` or ``[::1]:8443``.

        :param value: the text to parse; the scheme defaults to ``default_scheme``
            and the port to the scheme's.
        :raises ValueError: if the text is not an origin (path, query, bad host, ...).
        """
        scheme, host, port, path, query = _split(value, "origin", default_scheme)
        if path not in ("", "/") or query:
            raise ValueError(f"invalid origin {value!r}: an origin has no path or query")
        return cls(scheme, host.lower(), port)

    def __str__(self) -> str:
        return f"{self.scheme}://{_format_host(self.host)}:{self.port}"

    def __repr__(self) -> str:
        return f"<Origin: {str(self)!r}>"

    @property
    def tls(self) -> bool:
        """Whether connections use TLS (``https``)."""
        return self.scheme == "https"

    @property
    def address(self) -> AddressType:
        """``(host, port)``, for connecting."""
        return self.host, self.port

    @property
    def authority(self) -> str:
        """``host[:port]`` as sent in ``:authority``/``Host`` (no default port)."""
        if self.port == DEFAULT_PORTS[self.scheme]:
            return _format_host(self.host)
        return f"{_format_host(self.host)}:{self.port}"


class URL(NamedTuple):
    """An ``http`` or ``https`` URL; ``path`` includes the query string, as sent."""

    #: Either ``"http"`` or ``"https"``.
    scheme: str
    #: A host name or an IP address (IPv6 without brackets).
    host: str
    #: The port number.
    port: int
    #: The request target: path and ``?query``, percent-encoding kept as given.
    path: str = "/"

    @classmethod
    def parse(cls, value: str, *, default_scheme: str = "http") -> URL:
        """Parse what a user types: ``https://example.com/a%20b?q=1``, ``[::1]:8080/x``.

        :raises ValueError: if the text is not an ``http(s)`` URL.
        """
        scheme, host, port, path, query = _split(value, "URL", default_scheme)
        target = path or "/"
        if query:
            target += "?" + query
        return cls(scheme, host.lower(), port, target)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"

    def __repr__(self) -> str:
        return f"<URL: {str(self)!r}>"

    @property
    def origin(self) -> Origin:
        """The server this URL points to."""
        return Origin(self.scheme, self.host, self.port)

    @property
    def authority(self) -> str:
        """``host[:port]`` (no default port)."""
        return self.origin.authority


# RFC 9110 §5.5: no CR, LF or NUL in a field value (they would split the message).
_BAD_VALUE = re.compile(rb"[\r\n\x00]")


def _clean_headers(headers: HeadersInput) -> list[HeaderType]:
    cleaned: list[HeaderType] = []
    pairs = headers if isinstance(headers, list) else header_pairs(headers)
    for name, value in pairs:
        try:
            raw_name = name.encode("ascii") if isinstance(name, str) else bytes(name)
            raw_value = value.encode("latin-1") if isinstance(value, str) else bytes(value)
        except (UnicodeEncodeError, TypeError) as exc:
            raise ValueError(f"invalid header field {name!r}: {exc}") from None
        if raw_name.startswith(b":"):
            raise ValueError(f"pseudo-header {raw_name!r} is set by the client")
        if not _TOKEN.fullmatch(raw_name.decode("ascii", "replace")):
            raise ValueError(f"invalid header field name {raw_name!r}")
        if _BAD_VALUE.search(raw_value):
            raise ValueError(f"invalid value of header field {raw_name!r}: CR, LF or NUL")
        cleaned.append((raw_name.lower(), raw_value))
    return cleaned


def _check_content(content: object) -> bytes | AsyncIterable[bytes]:
    if content is None:
        return b""
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes(content)
    if hasattr(content, "__aiter__"):
        return content
    raise TypeError(
        f"request content must be bytes or an async iterable of bytes, not {type(content).__name__}"
    )


class Request:
    """An HTTP request.

    :param method: the method, e.g. ``"GET"``.
    :param url: a :class:`URL` or text to parse with :meth:`URL.parse`.
    :param headers: extra header fields (names are lower-cased): a
        :class:`Headers`, a ``dict``, or ``str`` or ``bytes`` pairs.
    :param content: the body: ``bytes``, or an async iterable of ``bytes``
        for a streamed upload (sent as it is produced, with backpressure).
    """

    __slots__ = ("content", "headers", "method", "url")

    def __init__(
        self,
        method: str,
        url: URL | str,
        *,
        headers: HeadersInput | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
    ) -> None:
        if not _TOKEN.fullmatch(method):
            raise ValueError(f"invalid HTTP method {method!r}")
        #: The method.
        self.method: str = method
        #: The URL.
        self.url: URL = url if isinstance(url, URL) else URL.parse(url)
        #: Header fields without pseudo-headers, names lower-case.
        self.headers: list[HeaderType] = [] if headers is None else _clean_headers(headers)
        #: The body.
        self.content: bytes | AsyncIterable[bytes] = _check_content(content)

    def __repr__(self) -> str:
        return f"<Request: {self.method} {str(self.url)!r}>"

    @property
    def pseudo_headers(self) -> list[HeaderType]:
        """``:method``, ``:scheme``, ``:authority`` and ``:path``."""
        return [
            (b":method", self.method.encode()),
            (b":scheme", self.url.scheme.encode()),
            (b":authority", self.url.authority.encode()),
            (b":path", self.url.path.encode()),
        ]

    @property
    def protocol_headers(self) -> list[HeaderType]:
        """The pseudo-headers followed by :attr:`headers`, as sent."""
        return [*self.pseudo_headers, *self.headers]


@dataclass(eq=False)
class Response:
    """An HTTP response.

    :meth:`ClientSession.dispatch` returns it with :attr:`content` read;
    :meth:`ClientSession.stream` with the body still to be read through
    :meth:`aiter_bytes` (or :meth:`aread`).
    """

    #: The status code.
    status: int
    #: Header fields without pseudo-headers, names lower-case.
    headers: list[HeaderType]
    #: The HTTP version used: ``"1.1"``, ``"2"`` or ``"3"``.
    http_version: str
    #: The body, once read.
    content: bytes = b""
    #: The request this answers (set by the session; ``None`` if made by hand).
    request: Request | None = field(default=None, repr=False)
    #: The redirect responses followed to get here, first first
    #: (:meth:`ClientSession.request` with ``follow_redirects``).
    history: tuple[Response, ...] = field(default=(), repr=False)
    _body: AsyncGenerator[bytes, None] | None = field(default=None, repr=False)
    _consumed: bool = field(default=False, repr=False)

    def __repr__(self) -> str:
        return f"<Response: {self.status} HTTP/{self.http_version}>"

    def get_header(self, name: str | bytes) -> bytes | None:
        """The first value of the header field ``name`` (any case), or ``None``."""
        raw = (name.encode("ascii") if isinstance(name, str) else name).lower()
        return next((value for key, value in self.headers if key == raw), None)

    @property
    def header_map(self) -> Headers:
        """:attr:`headers` as a case-insensitive :class:`Headers` mapping (a view: changes show)."""
        view = Headers()
        view._raw = self.headers
        return view

    @property
    def url(self) -> URL | None:
        """The URL of :attr:`request` (after redirects, the last one's)."""
        return None if self.request is None else self.request.url

    @property
    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    @property
    def is_redirect(self) -> bool:
        """Whether the status is a redirect with a ``Location`` to follow."""
        return self.status in REDIRECT_STATUSES and self.get_header(b"location") is not None

    @property
    def encoding(self) -> str:
        """The ``charset`` of ``Content-Type``, else ``utf-8`` (for :attr:`text`)."""
        content_type = self.get_header(b"content-type") or b""
        for parameter in content_type.decode("latin-1").split(";")[1:]:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip('"')
                try:
                    return codecs.lookup(charset).name
                except LookupError:
                    break
        return "utf-8"

    @property
    def text(self) -> str:
        """:attr:`content` decoded with :attr:`encoding` (undecodable bytes replaced)."""
        return self.content.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        """:attr:`content` parsed as JSON.

        :raises ValueError: if it is not JSON (``json.JSONDecodeError``).
        """
        return json.loads(self.content)

    def raise_for_status(self) -> Response:
        """Return the response if its status is 1xx, 2xx or 3xx; raise if 4xx or 5xx.

        :raises hface.client.errors.HTTPStatusError: for a 4xx or 5xx status.
        """
        if self.status < 400:
            return self
        kind = "client error" if self.status < 500 else "server error"
        where = "" if self.request is None else f" for {self.request.method} {self.request.url}"
        raise HTTPStatusError(f"{self.status} ({kind}){where}", response=self)

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        """Yield the body as it arrives (streamed responses; once only).

        Flow-control credit goes back to the server as chunks are taken,
        so a slow consumer slows the server down.

        :raises RuntimeError: if the body was already read.
        """
        if self._body is None:
            if self.content:
                yield self.content
            return
        if self._consumed:
            raise RuntimeError("the response body was already read")
        self._consumed = True
        async for chunk in self._body:
            yield chunk

    async def aread(self) -> bytes:
        """Read the rest of the body into :attr:`content` and return it."""
        if self._body is not None and not self._consumed:
            self.content = b"".join([chunk async for chunk in self.aiter_bytes()])
        return self.content

    async def aclose(self) -> None:
        """Stop receiving the body (the stream's end does this too)."""
        if self._body is not None:
            self._consumed = True
            await self._body.aclose()
