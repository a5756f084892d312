"""``ASGIServer``: serve an ASGI 3.0 application over HTTP/1.1, HTTP/2 and HTTP/3.

Theory of operation. :meth:`ASGIServer.run` runs the application's
lifespan startup (:mod:`hface.server._asgi_lifespan`), then serves
(:meth:`BaseServer.run`), then runs its lifespan shutdown. Once its
listeners are bound it takes a snapshot of its settings
(:class:`~hface.server._asgi_settings.ASGISettings`), which every
connection and request reads from then on; until then its attributes are
plain, mutable ones. Each connection is served by
:meth:`ASGIServer.handle_connection`, with workers that accept the
connection's streams and run the application on each
(:mod:`hface.server._asgi_connection`); each request is an
:class:`~hface.server._asgi_stream.ASGIStream`.

Connections run with ``auto_acknowledge=False``: request body data is
credited back to the client only when the application takes it with
``receive()``. On HTTP/1.1, which has no flow control, the connection
stops reading while more than :attr:`ASGIServer.max_buffered_data` bytes
of the request's body wait.

Limits and timeouts (:attr:`~BaseServer.limits`, :attr:`~BaseServer.timeouts`).
A request over the header-count, path-length or declared body-size limit is
answered (431, 414, 413) without running the application; a body that
grows over the limit is cut short with 413. A connection that has waited
for a request longer than :attr:`ServerTimeouts.header_read` (before its
first) or :attr:`ServerTimeouts.keep_alive` (after it) is closed, with
GOAWAY on HTTP/2 and HTTP/3, and on HTTP/1.1 ``408`` if part of a request
came.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import anyio
from anyio.abc import TaskStatus

from hface.common import AddressType
from hface.connections import (
    ConnectionOptions,
    HTTPConnection,
    HTTPListener,
    HTTPOverQUICListener,
)

from ._access_log import AccessLogFormat
from ._asgi_connection import _ConnectionHandler
from ._asgi_lifespan import Lifespan
from ._asgi_settings import ASGISettings
from ._asgi_types import ASGIApp
from ._base import BaseServer
from ._forwarded import ForwardedStyle, TrustedProxies
from ._models import Endpoint


class ASGIServer(BaseServer):
    """Serves an ASGI 3.0 application (``http``, ``websocket`` and ``lifespan`` scopes).

    ::

        server = ASGIServer(application)
        server.tls_config.certfile = "certs/cert.pem"
        server.tls_config.keyfile = "certs/key.pem"
        await server.run([Endpoint("https", "localhost", 5443)])

    The attributes may be changed until :meth:`run` is called; a running
    server keeps the values it started with.

    :param app: the ASGI application.
    """

    #: The ASGI application.
    app: ASGIApp
    #: The ``server`` response header, unless the application sets one; None for none.
    server_header: str | None
    #: Add a ``date`` response header unless the application sets one.
    date_header: bool
    #: Advertise HTTP/3 with ``alt-svc`` on HTTP/1.1 and HTTP/2 responses when
    #: an HTTP/3 endpoint is served (unless the application sets ``alt-svc``).
    alt_svc: bool
    #: Log a line per request on the ``hface.server.access`` logger (INFO).
    access_log: bool
    #: The access log line as a ``%``-style format with named fields
    #: (``'%(client)s "%(method)s %(path)s" %(status)s %(duration).3f'``;
    #: the fields are listed in :doc:`/deployment`); None for the default
    #: line. WebSocket sessions keep their own line.
    access_log_format: str | None
    #: The peers whose forwarding headers are believed, as uvicorn's
    #: ``--forwarded-allow-ips``: IP addresses and networks, comma-separated
    #: or as a list, or ``"*"`` for every peer; ``""`` (the default) for
    #: none. A request from one of them gets the client, scheme
    #: (``http``/``https``, ``ws``/``wss``) and host its
    #: ``X-Forwarded-For``/``-Proto``/``-Host`` headers (or ``Forwarded``,
    #: per :attr:`forwarded_style`) say, in the scope's ``client``,
    #: ``scheme``, ``host`` field and ``server``. A Unix socket peer is
    #: trusted only by ``"*"``.
    forwarded_allow_ips: str | Sequence[str]
    #: Which forwarding headers are read: ``X-Forwarded-*`` (the default) or
    #: ``Forwarded`` (RFC 7239), never both (a proxy rewrites one family and
    #: passes the other on from the client).
    forwarded_style: ForwardedStyle
    #: Seconds an application gets to return after its client went away
    #: before its task is cancelled.
    disconnect_grace: float
    #: Request body bytes held per request on HTTP/1.1 before reading stops
    #: (HTTP/2 and HTTP/3 are bounded by their flow-control windows).
    max_buffered_data: int
    #: Seconds the lifespan shutdown may take.
    lifespan_timeout: float
    #: The path the application is mounted at behind a proxy (e.g. ``"/api"``),
    #: given as the scope's ``root_path`` and prefixed to ``path`` and
    #: ``raw_path`` (as uvicorn's ``--root-path``); ``""`` for none.
    root_path: str
    #: The largest WebSocket message received, in bytes; a larger one closes
    #: the WebSocket with 1009 (None: no limit). Default 16 MiB.
    ws_max_size: int | None
    #: Seconds between the keep-alive pings sent on each WebSocket (None: none).
    ws_ping_interval: float | None
    #: Seconds a WebSocket client has to answer a keep-alive ping before it is
    #: closed with 1011 (None: forever).
    ws_ping_timeout: float | None
    #: Negotiate ``permessage-deflate`` (RFC 7692) with WebSocket clients that offer it.
    ws_per_message_deflate: bool
    #: Seconds an application has to accept or deny a WebSocket before the
    #: client gets 500 (None: forever).
    ws_handshake_timeout: float | None

    def __init__(self, app: ASGIApp) -> None:
        super().__init__()
        self.app = app
        self.server_header = "hface"
        self.date_header = True
        self.alt_svc = True
        self.access_log = True
        self.access_log_format = None
        self.forwarded_allow_ips = ""
        self.forwarded_style = ForwardedStyle.X_FORWARDED
        self.disconnect_grace = 1.0
        self.max_buffered_data = 1024 * 1024
        self.lifespan_timeout = 30.0
        self.root_path = ""
        self.ws_max_size = 16 * 1024 * 1024
        self.ws_ping_interval = 20.0
        self.ws_ping_timeout = 20.0
        self.ws_per_message_deflate = True
        self.ws_handshake_timeout = 10.0
        self._h3_ports: list[int] = []
        self._alt_svc_value: str | None = None
        self._state: dict[str, Any] = {}
        self._settings: ASGISettings | None = None  # made by run(), once listening
        self._trusted_proxies = TrustedProxies()  # parsed by run()
        self._access_log_format: AccessLogFormat | None = None  # likewise

    async def run(
        self,
        endpoints: Sequence[Endpoint],
        *,
        task_status: TaskStatus[Sequence[AddressType]] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run lifespan startup, serve every endpoint until cancelled (or
        SIGINT/SIGTERM), shut down gracefully, then run lifespan shutdown.

        With ``task_group.start(server.run, endpoints)`` the addresses
        actually bound are returned once the server accepts connections.

        :raises RuntimeError: if the application's lifespan startup failed.
        :raises ValueError: if no endpoint can be served, TLS is not configured,
            :attr:`root_path` is not ``""`` or a path like ``"/api"``,
            :attr:`forwarded_allow_ips` or :attr:`access_log_format` does
            not parse, or a limit or timeout is out of range.
        :raises OSError: if an address cannot be bound.
        """
        self.limits.check()
        self.timeouts.check()
        root_path = self.root_path
        if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
            raise ValueError(
                f"invalid root_path {root_path!r}: it must start with '/' and not end with one"
            )
        self._trusted_proxies = TrustedProxies.parse(self.forwarded_allow_ips)
        log_format = self.access_log_format
        self._access_log_format = None if log_format is None else AccessLogFormat.parse(log_format)
        self._state = {}
        self._h3_ports = []
        self._alt_svc_value = None
        self._settings = None
        lifespan = Lifespan(self.app, self._state)
        error: Exception | None = None
        try:
            async with anyio.create_task_group() as task_group:
                try:
                    await lifespan.startup(task_group)
                    try:
                        await super().run(endpoints, task_status=task_status)
                    finally:
                        with anyio.CancelScope(shield=True):
                            await lifespan.shutdown(self.lifespan_timeout)
                except Exception as exc:  # re-raised as it is, not in a group
                    error = exc
                finally:
                    lifespan.cancel()
                    task_group.cancel_scope.cancel()
        finally:
            lifespan.close()
        if error is not None:
            raise error

    async def _create_listener(self, endpoints: Sequence[Endpoint]) -> HTTPListener:
        listener = await super()._create_listener(endpoints)
        self._settings = self._snapshot()  # the HTTP/3 ports are known now
        return listener

    def _snapshot(self) -> ASGISettings:
        """The settings of the requests to come, as the server's attributes are now."""
        limits = self.limits
        timeouts = self.timeouts
        return ASGISettings(
            app=self.app,
            state=self._state,
            root_path=self.root_path,
            access_log=self.access_log,
            access_log_format=self._access_log_format,
            trusted_proxies=self._trusted_proxies
            if self._trusted_proxies.everyone or self._trusted_proxies.networks
            else None,
            forwarded_style=self.forwarded_style,
            disconnect_grace=self.disconnect_grace,
            max_buffered_data=self.max_buffered_data,
            body_timeout=timeouts.body_read,
            write_timeout=timeouts.write,
            header_read=timeouts.header_read,
            keep_alive=timeouts.keep_alive,
            max_header_count=limits.max_header_count,
            max_path_length=limits.max_path_length,
            max_body_size=limits.max_body_size,
            ws_max_size=self.ws_max_size,
            ws_ping_interval=self.ws_ping_interval,
            ws_ping_timeout=self.ws_ping_timeout,
            ws_per_message_deflate=self.ws_per_message_deflate,
            ws_handshake_timeout=self.ws_handshake_timeout,
            default_headers=ASGISettings.make_default_headers(
                server=self.server_header,
                date=self.date_header,
                alt_svc=self._alt_svc_value if self.alt_svc else None,
            ),
        )

    async def _endpoint_listeners(self, endpoint: Endpoint) -> list[HTTPListener]:
        listeners = await super()._endpoint_listeners(endpoint)
        for listener in listeners:
            if isinstance(listener, HTTPOverQUICListener):
                self._h3_ports.extend(port for _, port in listener.local_addresses)
        ports = sorted(set(self._h3_ports))
        self._alt_svc_value = ", ".join(f'h3=":{port}"; ma=86400' for port in ports) or None
        return listeners

    def alt_svc_value(self, connection: HTTPConnection) -> str | None:
        """The ``alt-svc`` header for a response on ``connection``, or None."""
        if not self.alt_svc or connection.http_version == "3":
            return None
        return self._alt_svc_value

    def _connection_options(self) -> ConnectionOptions:
        # The application acknowledges the body as it takes it; HTTP/1.1
        # stops reading while max_buffered_data of it waits.
        return replace(
            super()._connection_options(),
            auto_acknowledge=False,
            max_buffered_data=self.max_buffered_data,
        )

    async def _shut_down(
        self, listener: HTTPListener, serving_scope: anyio.CancelScope, served: anyio.Event
    ) -> None:
        if self._settings is not None:
            for session in list(self._settings.websockets):
                session.going_away()  # 1001, within the grace period
        await super()._shut_down(listener, serving_scope, served)

    async def handle_connection(self, connection: HTTPConnection) -> None:
        """Serve one connection: its requests, until it ends or expires."""
        settings = self._settings
        if settings is None:  # not through run()
            settings = self._settings = self._snapshot()
        header_read = self._header_read(settings.header_read)
        if header_read != settings.header_read:  # under pressure (see BaseServer)
            settings = replace(settings, header_read=header_read)
        await _ConnectionHandler(settings, connection).run()
