"""``ProxyServer``: an HTTP forward proxy in tunnelling mode (CONNECT and CONNECT-UDP).

Theory of operation. Each connection's handler (:class:`_ProxyConnection`)
is a loop over :meth:`HTTPConnection.accept_stream
<hface.connections.HTTPConnection.accept_stream>`: each request stream,
which the connection's transport task fills with that stream's events,
gets a task running ``_proxy_tunnel.serve_stream``. The queues are
bounded in bytes by flow control (a tunnel acknowledges data only once
its target took it) on HTTP/2 and HTTP/3, and on HTTP/1.1 by the
connection, which stops reading while a stream holds too much.

Every task belongs to the handler's task group: when the connection
ends, or its handler is cancelled, tunnels and target sockets go with it.
Once the connection has expired (GOAWAY sent or received, or HTTP/1.1
closing) and no stream is left, ``accept_stream`` returns None and the
handler returns; it closes the connection when it has waited for a
request longer than :attr:`ServerTimeouts.header_read` (before its first)
or :attr:`ServerTimeouts.keep_alive` (after it). What the handler and
the tunnels use of the server is a snapshot taken when :meth:`ProxyServer.run`
starts (:class:`~hface.server._proxy_target.TunnelPolicy`, the timeouts).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import replace

import anyio
from anyio.abc import TaskStatus

from hface.common import AddressType
from hface.connections import ConnectionOptions, HTTPConnection, HTTPStream
from hface.errors import LocalProtocolError, TransportError
from hface.networking import ClientNetworking, SystemNetworking

from ._base import BaseServer, close_after_waiting
from ._config import ServerTimeouts
from ._models import Endpoint
from ._proxy_target import _READ_SIZE, TunnelPolicy, is_loopback_host
from ._proxy_tunnel import serve_stream


class ProxyServer(BaseServer):
    """An HTTP proxy in tunnelling mode: CONNECT and CONNECT-UDP over HTTP/1.1, HTTP/2 and HTTP/3.

    A CONNECT request for an authority-form target (``host:port``) gets a
    TCP connection to the target and ``200``; then bytes flow both ways,
    with half-close, until both sides are done. A CONNECT-UDP request (RFC
    9298: ``:protocol connect-udp`` and the path
    ``/.well-known/masque/udp/{target_host}/{target_port}/``; on HTTP/1.1
    ``Upgrade: connect-udp``) gets a UDP socket and ``200``; then UDP
    payloads flow both ways as HTTP Datagrams (see :attr:`connect_udp`).
    Other requests get ``405``, malformed targets ``400``, unreachable
    ones ``502``, refused ones ``403``, and requests without the
    configured credentials ``407``, each with a ``proxy-status`` field
    (RFC 9209).

    Safe by default: a proxy listening on a non-loopback address refuses
    targets that resolve to loopback, private, link-local, unspecified or
    other non-public addresses (see :attr:`allow_private_targets`).
    """

    #: Basic proxy credentials ``(user, password)``; None lets everyone in.
    credentials: tuple[str, str] | None
    #: Whether targets on loopback, private and other non-public addresses
    #: may be reached. None (the default) decides by the listening
    #: addresses: allowed only when every endpoint is on loopback (or a Unix socket).
    allow_private_targets: bool | None
    #: Seconds to resolve a target and connect to it.
    connect_timeout: float
    #: Seconds a tunnel may pass no byte either way before it is closed
    #: (None: never).
    idle_timeout: float | None
    #: How targets are reached.
    networking: ClientNetworking
    #: Bytes of the target's data read at once, and so the most that one
    #: tunnel holds while the client's flow control (or socket) is full;
    #: 256 KiB. The client's data is held one stream window at most (the
    #: factories' ``initial_window_size`` and ``stream_receive_window``,
    #: 256 KiB; on HTTP/1.1, one socket read), since it is acknowledged only
    #: once the target took it.
    max_buffered_data: int
    #: Whether CONNECT-UDP (RFC 9298: ``:protocol connect-udp``, and
    #: ``Upgrade: connect-udp`` on HTTP/1.1) is served; True by default.
    #: When False such requests get ``501``.
    connect_udp: bool
    #: Bytes of HTTP Datagrams a CONNECT-UDP tunnel holds from the client
    #: before they reach the target; more are dropped (datagrams are
    #: unreliable). 256 KiB. Toward the client a tunnel holds none: a
    #: datagram the connection cannot take at once is dropped.
    max_datagram_buffer: int

    def __init__(self) -> None:
        super().__init__()
        self.credentials = None
        self.allow_private_targets = None
        self.connect_timeout = 10.0
        self.idle_timeout = 300.0
        self.networking = SystemNetworking()
        self.max_buffered_data = _READ_SIZE
        self.connect_udp = True
        self.max_datagram_buffer = 256 * 1024
        self._loopback_only = False
        # The snapshot run() takes (see the module docstring).
        self._policy: TunnelPolicy | None = None
        self._serving_timeouts: ServerTimeouts | None = None

    async def run(
        self,
        endpoints: Sequence[Endpoint],
        *,
        task_status: TaskStatus[Sequence[AddressType]] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve on every endpoint until cancelled, or until SIGINT or SIGTERM.

        Shutdown is graceful either way: tunnels in flight get
        :attr:`graceful_timeout` seconds. With ``task_group.start(server.run,
        endpoints)`` the addresses actually bound are returned once the
        server accepts connections.

        :raises ValueError: if no endpoint can be served (e.g. HTTP/3 only
            and no ``https`` endpoint), TLS is needed but not configured, or
            a limit (:attr:`max_buffered_data` too) is out of range.
        :raises OSError: if an address cannot be bound.
        """
        for name in ("max_buffered_data", "max_datagram_buffer"):
            size: object = getattr(self, name)  # set by users: any type may come
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"{name} must be a positive integer, not {size!r}")
        # A Unix socket is reached from this machine only, as loopback is.
        loopback = [
            endpoint.unix_path is not None or await is_loopback_host(_listening_host(endpoint))
            for endpoint in endpoints
        ]
        self._loopback_only = bool(loopback) and all(loopback)
        self._policy = self._make_policy()
        self._serving_timeouts = replace(self.timeouts)
        try:
            await super().run(endpoints, task_status=task_status)
        finally:
            self._policy = self._serving_timeouts = None

    def _make_policy(self) -> TunnelPolicy:
        allow_private = self.allow_private_targets
        if allow_private is None:
            allow_private = self._loopback_only
        return TunnelPolicy(
            credentials=self.credentials,
            allow_private=allow_private,
            connect_timeout=self.connect_timeout,
            idle_timeout=self.idle_timeout,
            networking=self.networking,
            read_size=self.max_buffered_data,
            connect_udp=self.connect_udp,
        )

    async def handle_connection(self, connection: HTTPConnection) -> None:
        """Serve CONNECT requests on one connection until it ends."""
        policy = self._policy or self._make_policy()  # not through run(): as set now
        timeouts = self._serving_timeouts or self.timeouts
        await _ProxyConnection(
            connection,
            policy,
            header_read=self._header_read(timeouts.header_read),
            keep_alive=timeouts.keep_alive,
        ).run()

    def _connection_options(self) -> ConnectionOptions:
        # Tunnels acknowledge data once the target has taken it; CONNECT-UDP
        # tunnels hold their datagram budget (see _proxy_udp).
        return replace(
            super()._connection_options(),
            auto_acknowledge=False,
            max_buffered_datagrams=self.max_datagram_buffer,
        )


class _ProxyConnection:
    """The handler of one connection: a task per request stream."""

    def __init__(
        self,
        connection: HTTPConnection,
        policy: TunnelPolicy,
        *,
        header_read: float | None,
        keep_alive: float | None,
    ) -> None:
        self._connection = connection
        self._policy = policy
        self._header_read = header_read
        self._keep_alive = keep_alive

    async def run(self) -> None:
        connection = self._connection
        served = 0  # requests so far
        async with anyio.create_task_group() as task_group:
            try:
                while True:
                    limit = self._header_read if not served else self._keep_alive
                    try:
                        stream = await connection.accept_stream(idle_timeout=limit)
                    except TimeoutError:
                        close_after_waiting(connection)  # 408 for a partial HTTP/1.1 request
                        return  # closing the connection sends GOAWAY (HTTP/2, HTTP/3)
                    if stream is None:
                        return  # ended, or expired with no stream left
                    served += 1
                    task_group.start_soon(self._serve_stream, stream)
            finally:
                task_group.cancel_scope.cancel()  # the connection is gone: its tunnels too

    async def _serve_stream(self, stream: HTTPStream) -> None:
        try:
            async with stream:
                await serve_stream(stream, self._policy)
        except (TransportError, LocalProtocolError):
            pass  # the connection or the stream is gone: nothing left to tell


def _listening_host(endpoint: Endpoint) -> str:
    """The host an endpoint listens on; for an ``fd`` endpoint, its socket's (else any)."""
    if endpoint.fd is None:
        return endpoint.host
    try:
        with socket.socket(fileno=os.dup(endpoint.fd)) as sock:
            address = sock.getsockname()
    except OSError:
        return "0.0.0.0"  # not a socket: run() says so
    return str(address[0]) if isinstance(address, tuple) else "0.0.0.0"
