"""``ASGISettings``: what the requests of a running ``ASGIServer`` need to know of it.

An :class:`~hface.server.ASGIServer`'s attributes stay mutable until it
runs (``server.tls_config.certfile = ...``, ``server.timeouts.keep_alive =
2.0``); :meth:`~hface.server.ASGIServer.run` then takes this snapshot once,
as soon as its listeners are bound, and hands it to every connection
handler and request. Requests see a frozen value, not the server: a
setting changed while the server runs does not change half of its
requests, and the request modules import nothing of the server's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from ._access_log import AccessLogFormat
from ._asgi_types import ASGIApp, GoingAway
from ._forwarded import ForwardedStyle, TrustedProxies

#: The HTTP versions a server answers on, as ASGI spells them.
_VERSIONS = ("1.1", "2", "3")


@dataclass(frozen=True, slots=True, kw_only=True)
class ASGISettings:
    """A running :class:`~hface.server.ASGIServer`'s settings, as its requests see them."""

    #: The application.
    app: ASGIApp
    #: The lifespan state; each request's scope gets a shallow copy.
    state: dict[str, Any]
    #: The scope's ``root_path`` (``""`` for none), also prefixed to ``path``.
    root_path: str = ""
    #: Log a line per request on ``hface.server.access``.
    access_log: bool = True
    #: Seconds an application gets to return once its client went away.
    disconnect_grace: float = 1.0
    #: Request body bytes held per request on HTTP/1.1 before reading stops.
    max_buffered_data: int = 1024 * 1024
    #: Seconds ``receive()`` waits for the next piece of a body (None: forever).
    body_timeout: float | None = None
    #: Seconds one ``send()`` may wait on the client (None: forever).
    write_timeout: float | None = None
    #: Seconds a connection may wait for its first request (None: forever).
    header_read: float | None = None
    #: Seconds a connection may wait for another request (None: forever).
    keep_alive: float | None = None
    #: The most header fields a request may have (None: no limit).
    max_header_count: int | None = None
    #: The longest request target (None: no limit).
    max_path_length: int | None = None
    #: The largest request body (None: no limit).
    max_body_size: int | None = None
    #: The fields each version's responses get unless the application sets them.
    default_headers: Mapping[str, DefaultHeaders] = field(default_factory=dict)
    #: The largest WebSocket message received, in bytes (None: no limit).
    ws_max_size: int | None = 16 * 1024 * 1024
    #: Seconds between keep-alive pings on a WebSocket (None: none).
    ws_ping_interval: float | None = 20.0
    #: Seconds a WebSocket client has to answer a ping (None: forever).
    ws_ping_timeout: float | None = 20.0
    #: Whether ``permessage-deflate`` is negotiated with WebSocket clients that offer it.
    ws_per_message_deflate: bool = True
    #: Seconds an application has to accept or deny a WebSocket (None: forever).
    ws_handshake_timeout: float | None = 10.0
    #: The peers whose ``Forwarded``/``X-Forwarded-*`` headers are believed
    #: (None: nobody's, and the headers are not even read).
    trusted_proxies: TrustedProxies | None = None
    #: Which of those headers are read.
    forwarded_style: ForwardedStyle = ForwardedStyle.X_FORWARDED
    #: Formats the access log line (None: the default line).
    access_log_format: AccessLogFormat | None = None
    #: The WebSocket sessions open now (shutdown closes them with 1001).
    websockets: set[GoingAway] = field(default_factory=set)

    @staticmethod
    def make_default_headers(
        *, server: str | None, date: bool, alt_svc: str | None
    ) -> dict[str, DefaultHeaders]:
        """The :attr:`default_headers` of every version (``alt-svc`` is not for HTTP/3)."""
        server_value = server.encode() if server else None
        alt_svc_value = alt_svc.encode() if alt_svc else None
        return {
            version: DefaultHeaders(
                version,
                server=server_value,
                date=date,
                alt_svc=None if version == "3" else alt_svc_value,
            )
            for version in _VERSIONS
        }

    def idle_timeout(self, served: int) -> float | None:
        """Seconds a connection that served ``served`` requests may wait for the next."""
        return self.header_read if not served else self.keep_alive


class DefaultHeaders:
    """The fields every response on one HTTP version gets unless the application sets them.

    ``server``, ``date`` (formatted once a second) and ``alt-svc``, as bytes.
    """

    __slots__ = ("alt_svc", "date", "http_version", "server")

    def __init__(
        self, http_version: str, *, server: bytes | None, date: bool, alt_svc: bytes | None
    ) -> None:
        #: The HTTP version (``"1.1"``, ``"2"``, ``"3"``).
        self.http_version = http_version
        #: The ``server`` value, or None for none.
        self.server = server
        #: Whether to add ``date``.
        self.date = date
        #: The ``alt-svc`` value, or None for none.
        self.alt_svc = alt_svc

    def add_to(self, headers: list[tuple[bytes, bytes]], names: set[bytes]) -> None:
        """Append the defaults to ``headers`` whose names are not in ``names``."""
        if self.server is not None and b"server" not in names:
            headers.append((b"server", self.server))
        if self.date and b"date" not in names:
            headers.append((b"date", _date_header()))
        if self.alt_svc is not None and b"alt-svc" not in names:
            headers.append((b"alt-svc", self.alt_svc))


_date_cache: tuple[int, bytes] = (0, b"")


def _date_header() -> bytes:
    """The ``date`` header value for now, formatted once a second."""
    global _date_cache
    now = int(time.time())
    second, value = _date_cache
    if second != now:
        value = formatdate(now, usegmt=True).encode()
        _date_cache = (now, value)
    return value
