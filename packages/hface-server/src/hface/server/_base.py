"""The machinery every server facade shares: endpoints, listeners, graceful shutdown.

Theory of operation. :meth:`BaseServer.run` opens a listener per endpoint
and version (TCP and, for ``https``, QUIC on the same port; a Unix socket
endpoint has no QUIC; an ``fd`` endpoint's inherited socket, duplicated, is
served as TCP or, a UDP socket, as QUIC, by ``_inherited_listeners``), with
the PROXY protocol read first on TCP and Unix connections when
:attr:`BaseServer.proxy_protocol` says so, then serves until it is
cancelled or receives SIGINT or SIGTERM. Connection handlers run in a task
group of their own, shielded from the cancellation of ``run()``, so that
shutdown can be graceful, in two steps as RFC 9113 §6.8 has it: stop
accepting; tell every connection a close is coming
(:meth:`HTTPConnection.send_shutdown_notice
<hface.connections.HTTPConnection.send_shutdown_notice>`: GOAWAY with the
largest stream ID, or ``Connection: close`` on the exchange in progress or
the next one), so that the requests already on their way are still
served; :data:`_NOTICE_WINDOW` later, the real GOAWAY (or the close of an
HTTP/1.1 connection between exchanges); meanwhile and then, wait up to
:attr:`BaseServer.graceful_timeout` for every connection to end, and
only then cancel what is left. Connections still in their TLS or QUIC
handshake get the notice window to open, then the same two steps. So a worker that
drains while clients keep connecting (a reload) fails none of them.

Limits and timeouts (:class:`ServerLimits`, :class:`ServerTimeouts`) are
applied here where they concern whole connections: the TLS handshake (by
the listener, and on QUIC :attr:`BaseServer.quic_handshake_limits` too),
the number of connections (:meth:`BaseServer._handle`: at the limit, the
connection open longest among those with no request in flight gives way
to the new one, as nginx frees its reusable connections, and past half of
it new connections get a tenth of the header timeout, so that silent
connections cannot lock clients out);
the protocol limits by the factories the server makes from them
(:meth:`BaseServer._limited_factories`); the time a connection may wait
for a request by the handlers of the subclasses, through the idle clock of
:meth:`HTTPConnection.accept_stream <hface.connections.HTTPConnection.accept_stream>`
(:func:`close_after_waiting` closes it then); the rest per request, by the
subclasses.
"""

from __future__ import annotations

import enum
import logging
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import anyio
import anyio.abc
from anyio.abc import TaskStatus

from hface.common import AddressType, ServerTLSConfig
from hface.connections import (
    DEFAULT_LINGER_TIMEOUT,
    ConnectionOptions,
    HTTPConnection,
    HTTPListener,
    HTTPMultiListener,
    HTTPOverQUICListener,
    HTTPOverTCPListener,
)
from hface.errors import LocalProtocolError, TransportError
from hface.networking import QUICHandshakeLimits, SystemNetworking, release_memory
from hface.protocols import (
    HTTPOverQUICServerFactory,
    HTTPOverTCPFactory,
    ProtocolLimits,
    protocol_registry,
)
from hface.protocols.http2 import HTTP2ServerFactory
from hface.protocols.http3 import HTTP3ServerFactory

from ._config import ServerLimits, ServerTimeouts
from ._listening import InheritedServing, inherited_listeners, tcp_factory_for
from ._models import Endpoint, ServerProtocol

logger = logging.getLogger("hface.server")

#: Seconds an HTTP/1.1 connection over :attr:`ServerLimits.max_connections`
#: is given to send the request that is answered with 503.
_REFUSAL_WAIT = 2.0

_SERVICE_UNAVAILABLE = b"Service Unavailable: too many connections\n"

#: The HTTP/1.1, HTTP/2 and HTTP/3 factories a server serves with.
_Factories = tuple[HTTPOverTCPFactory, HTTPOverTCPFactory, HTTPOverQUICServerFactory]

#: RFC 9110 §15.5.9; on HTTP/1.1 error codes are statuses.
_REQUEST_TIMEOUT = 408

#: The part of the header timeout a connection gets when more than half of
#: :attr:`ServerLimits.max_connections` are taken (see :meth:`BaseServer._header_read`).
_PRESSED_HEADER_READ = 0.1


#: Seconds after a flood of connections before its memory is released: the
#: time their teardown takes (they still hold it when they stop counting).
_RELEASE_DELAY = 2.0


class _Pressure(enum.Enum):
    """How full :attr:`ServerLimits.max_connections` is (see :meth:`BaseServer._handle`)."""

    #: Until more than half of the limit is taken.
    CALM = "calm"
    #: From then until less than a quarter is: new connections wait less.
    PRESSED = "pressed"
    #: From then until almost none is (a sixteenth), when the memory the
    #: flood took is released (:func:`release_memory`); pressed again past half.
    EASING = "easing"


_CALM = _Pressure.CALM
_PRESSED = _Pressure.PRESSED
_EASING = _Pressure.EASING


class _Phase(enum.Enum):
    """Where :meth:`BaseServer.run` is: serving, or draining for a graceful shutdown."""

    SERVING = "serving"
    #: The listener is closed; every connection gets a shutdown notice, and
    #: its GOAWAY a :data:`_NOTICE_WINDOW` later (see :meth:`BaseServer._drain`).
    DRAINING = "draining"


#: Seconds between a connection's shutdown notice and its GOAWAY: time for
#: the requests on their way to arrive (at least a round trip, RFC 9113
#: §6.8; h2o waits a second too). At most a quarter of the grace period.
_NOTICE_WINDOW = 1.0


def close_after_waiting(connection: HTTPConnection) -> None:
    """Begin closing a connection that waited too long for a request.

    On HTTP/1.1 a request that has begun to arrive is answered ``408
    Request Timeout`` with ``connection: close`` (see
    :meth:`HTTP1ServerProtocol.submit_close
    <hface.protocols.http1.HTTP1ServerProtocol.submit_close>`); an idle
    connection is closed without a word. HTTP/2 and HTTP/3 say GOAWAY when
    the connection closes. The bytes go out as the connection is closed.
    """
    if connection.multiplexed or connection.has_expired():
        return
    connection.begin_close(_REQUEST_TIMEOUT)  # sent by aclose() when the handler returns


class BaseServer(ABC):
    """What :class:`ASGIServer` and :class:`ProxyServer` share."""

    #: The certificate and key; needed for ``https`` endpoints.
    tls_config: ServerTLSConfig
    #: Which HTTP versions to listen for.
    protocol: ServerProtocol
    #: Makes HTTP/2 protocols (h2 by default).
    http2_factory: HTTPOverTCPFactory
    #: Makes HTTP/3 protocols (aioquic by default). These two, as the
    #: server made them, are served with :attr:`limits` applied; a factory
    #: set in their place keeps its own options.
    http3_factory: HTTPOverQUICServerFactory
    #: How much one client may ask (connections, header fields, body size).
    limits: ServerLimits
    #: How long the server waits for clients (handshake, headers, body, writes).
    timeouts: ServerTimeouts
    #: What HTTP/3 allows of QUIC handshakes not yet complete: when new
    #: clients must prove their address with a Retry, and how many may be
    #: half-open (a flood of spoofed Initials; see the class for the defaults).
    quic_handshake_limits: QUICHandshakeLimits
    #: Stop gracefully on SIGINT and SIGTERM (when run in the main thread).
    handle_signals: bool
    #: Behind a load balancer speaking the PROXY protocol (HAProxy's
    #: ``send-proxy``/``send-proxy-v2``, nginx's ``proxy_protocol``, an AWS
    #: NLB): every TCP and Unix connection must begin with a v1 or v2
    #: header, within :attr:`ServerTimeouts.proxy_header` seconds, and the
    #: client it names is the connection's ``remote_address`` (the ASGI
    #: scope's ``client``). Connections without a valid header are closed,
    #: logged at debug level. HTTP/3 (UDP) is not concerned.
    proxy_protocol: bool
    #: Makes every QUIC connection ID the server issues (and those of its
    #: Retry packets), for the HTTP/3 factory served; None: random IDs. A
    #: worker sets its ID layout's here, so that the kernel steers each
    #: datagram to it (see ``--workers``); ``--quic-server-id`` sets one
    #: carrying a server ID for ID-aware load balancers.
    quic_connection_id_generator: Callable[[], bytes] | None

    def __init__(self) -> None:
        self.tls_config = ServerTLSConfig()
        self.protocol = ServerProtocol.ALL
        # Made on first use (see http1_factory): choosing it imports
        # httptools and reads the entry points, for nothing if it is replaced.
        self._http1_factory: HTTPOverTCPFactory | None = None
        self._own_http1_factory: HTTPOverTCPFactory | None = None
        self.http2_factory = HTTP2ServerFactory()
        self.http3_factory = HTTP3ServerFactory()
        # Served with the limits applied (see _limited_factories) unless replaced.
        self._own_factories = (self.http2_factory, self.http3_factory)
        self._serving_factories: _Factories | None = None  # set as listening begins
        self.limits = ServerLimits()
        self.timeouts = ServerTimeouts()
        self.quic_handshake_limits = QUICHandshakeLimits()
        self.handle_signals = True
        self.proxy_protocol = False
        self.quic_connection_id_generator = None
        # Oldest first (a dict keeps the order): see _make_room().
        self._connections: dict[HTTPConnection, None] = {}
        self._pressure = _CALM
        self._background: anyio.abc.TaskGroup | None = None  # run()'s, for _release_later()
        self._phase = _Phase.SERVING
        self._all_closed: anyio.Event | None = None  # set when _connections empties

    @property
    def http1_factory(self) -> HTTPOverTCPFactory:
        """Makes HTTP/1.1 protocols.

        On httptools when it is installed (the ``hface-core[httptools]``
        extra), else on h11; ``HTTP1ServerFactory()`` picks h11 (see
        :meth:`~hface.protocols.ProtocolRegistry.preferred_name`). As the
        server made it, it is served with :attr:`limits` applied; a factory
        set in its place keeps its own options.
        """
        factory = self._http1_factory
        if factory is None:
            factory = protocol_registry.create(
                "http1_server", protocol_registry.preferred_name("http1_server")
            )
            self._http1_factory = self._own_http1_factory = factory
        return factory

    @http1_factory.setter
    def http1_factory(self, factory: HTTPOverTCPFactory) -> None:
        self._http1_factory = factory

    @property
    def graceful_timeout(self) -> float:
        """Seconds that requests in flight get to finish at shutdown.

        The same as :attr:`ServerTimeouts.graceful_shutdown` of :attr:`timeouts`.
        """
        return self.timeouts.graceful_shutdown

    @graceful_timeout.setter
    def graceful_timeout(self, seconds: float) -> None:
        self.timeouts.graceful_shutdown = seconds

    @property
    def connections(self) -> frozenset[HTTPConnection]:
        """The connections being served now (for monitoring; a snapshot)."""
        return frozenset(self._connections)

    @abstractmethod
    async def handle_connection(self, connection: HTTPConnection) -> None:
        """Serve one connection until it ends."""

    async def run(
        self,
        endpoints: Sequence[Endpoint],
        *,
        task_status: TaskStatus[Sequence[AddressType]] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve on every endpoint until cancelled, or until SIGINT or SIGTERM.

        Shutdown is graceful either way. With ``task_group.start(server.run,
        endpoints)`` the addresses actually bound are returned once the
        server accepts connections.

        :raises ValueError: if no endpoint can be served (e.g. HTTP/3 only
            and no ``https`` endpoint), TLS is needed but not configured, or
            a limit or timeout is out of range.
        :raises OSError: if an address cannot be bound.
        """
        self.limits.check()
        self.timeouts.check()
        listener = await self._create_listener(endpoints)
        async with listener, anyio.create_task_group() as outer:
            self._background = outer
            serving_scope = anyio.CancelScope(shield=True)
            served = anyio.Event()  # every connection's handler has returned
            outer.start_soon(self._serve, listener, serving_scope, served)
            stopping = anyio.Event()
            if self.handle_signals and threading.current_thread() is threading.main_thread():
                # Started (not start_soon): the handlers are in place before
                # anyone is told the server runs, so no early signal kills it.
                await outer.start(self._wait_for_signal, stopping)
            task_status.started(list(listener.local_addresses))
            try:
                await stopping.wait()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._shut_down(listener, serving_scope, served)
                outer.cancel_scope.cancel()

    async def _serve(
        self, listener: HTTPListener, scope: anyio.CancelScope, served: anyio.Event
    ) -> None:
        try:
            with scope:
                await listener.serve(self._handle)
        finally:
            served.set()

    async def _handle(self, connection: HTTPConnection) -> None:
        limit = self.limits.max_connections
        if limit is not None and len(self._connections) >= limit and not self._make_room():
            await self._refuse(connection)
            return
        connections = self._connections
        connections[connection] = None
        if self._pressure is not _PRESSED and limit is not None and 2 * len(connections) > limit:
            self._pressure = _PRESSED
        try:
            if self._phase is _Phase.SERVING:
                await self.handle_connection(connection)
            else:  # opened as the server began to drain: served as the others were
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(self._drain, connection)
                    await self.handle_connection(connection)
                    task_group.cancel_scope.cancel()
        finally:
            connections.pop(connection, None)
            if not connections and self._all_closed is not None:
                self._all_closed.set()
            self._ease(limit or 0)

    def _ease(self, limit: int) -> None:
        """Move :class:`_Pressure` on as connections end; release the memory at the end."""
        pressure = self._pressure
        if pressure is _CALM:
            return
        count = len(self._connections)
        if pressure is _PRESSED and 4 * count < limit:
            self._pressure = _EASING
        elif pressure is _EASING and 16 * count < limit:
            self._pressure = _CALM
            if self._background is not None:
                self._background.start_soon(self._release_later)

    async def _release_later(self) -> None:
        """The flood is over: once its connections are torn down, release what they took."""
        await anyio.sleep(_RELEASE_DELAY)
        release_memory()

    def _make_room(self) -> bool:
        """Close the connection open longest with no request in flight; False if none.

        True at once if a connection is closing already (it is on its way out).

        It stops counting at once; on HTTP/1.1 it closes without a word (or
        with 408 if a request has begun to arrive), on HTTP/2 and HTTP/3
        with GOAWAY, as when it waits too long for a request.
        """
        for idle in self._connections:
            if idle.has_expired():
                return True  # closing already: its place is as good as free
            if not idle.in_flight:
                break
        else:
            return False
        del self._connections[idle]
        logger.debug("closed an idle connection to make room for a new one (max_connections)")
        if idle.multiplexed:
            idle.begin_close(idle.error_codes.no_error)
        else:
            close_after_waiting(idle)
        return True

    def _header_read(self, header_read: float | None) -> float | None:
        """The header timeout of a connection accepted now: a tenth under pressure.

        Under pressure (:class:`_Pressure`): from more than half of
        :attr:`ServerLimits.max_connections` taken until less than a quarter is.
        ``header_read`` is the configured timeout (None: no limit, kept).
        """
        if header_read is None or self._pressure is not _PRESSED:
            return header_read
        return header_read * _PRESSED_HEADER_READ

    async def _refuse(self, connection: HTTPConnection) -> None:
        """Turn away a connection over :attr:`ServerLimits.max_connections`.

        HTTP/2 and HTTP/3 get GOAWAY as the connection closes. HTTP/1.1 has
        no way to refuse before a request, so its first request gets 503.
        """
        logger.warning(
            "refusing a connection: %d connections already (limits.max_connections)",
            len(self._connections),
        )
        if connection.multiplexed:
            return  # closing it sends GOAWAY
        wait = min(self.timeouts.header_read or _REFUSAL_WAIT, _REFUSAL_WAIT)
        with anyio.move_on_after(wait):
            stream = await connection.accept_stream()
            if stream is None:
                return
            headers = [
                (b":status", b"503"),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(_SERVICE_UNAVAILABLE)).encode()),
            ]
            async with stream:
                try:
                    await stream.send_headers(headers)
                    await stream.send_data(_SERVICE_UNAVAILABLE, end_stream=True)
                except (TransportError, LocalProtocolError):
                    pass

    async def _wait_for_signal(
        self, stopping: anyio.Event, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                logger.info("received %s, shutting down", signal.Signals(signum).name)
                stopping.set()
                return

    async def _shut_down(
        self, listener: HTTPListener, serving_scope: anyio.CancelScope, served: anyio.Event
    ) -> None:
        """Drain every connection (see the module docstring); after the grace, cancel the rest."""
        # Those _handle() registers from now on drain themselves.
        self._phase = _Phase.DRAINING
        open_now = list(self._connections)
        await listener.aclose()
        with anyio.move_on_after(self.timeouts.graceful_shutdown):
            async with anyio.create_task_group() as task_group:
                for connection in open_now:
                    task_group.start_soon(self._drain, connection)
                # Connections still in their TLS or QUIC handshake get the
                # notice window to open (a half-open one the grace at most).
                with anyio.move_on_after(self._notice_window()):
                    await served.wait()
                while self._connections and not served.is_set():
                    self._all_closed = anyio.Event()
                    await self._all_closed.wait()
                task_group.cancel_scope.cancel()
        if self._connections:
            logger.info("closing %d connections after the grace period", len(self._connections))
        serving_scope.cancel()

    async def _drain(self, connection: HTTPConnection) -> None:
        """Close gracefully in two steps: the shutdown notice, then GOAWAY (RFC 9113 §6.8).

        A handler waiting for a stream returns once the GOAWAY went out and
        nothing is in flight (:meth:`HTTPConnection.accept_stream`).
        """
        await connection.send_shutdown_notice()
        await anyio.sleep(self._notice_window())
        await connection.send_goaway()

    def _notice_window(self) -> float:
        return min(_NOTICE_WINDOW, self.timeouts.graceful_shutdown / 4)

    async def _create_listener(self, endpoints: Sequence[Endpoint]) -> HTTPListener:
        listeners: list[HTTPListener] = []
        self._serving_factories = self._limited_factories()
        try:
            for endpoint in endpoints:
                listeners.extend(await self._endpoint_listeners(endpoint))
        except BaseException:
            for listener in listeners:
                await listener.aclose()
            raise
        if not listeners:
            raise ValueError("no endpoint to listen on for the chosen protocol")
        return listeners[0] if len(listeners) == 1 else HTTPMultiListener(listeners)

    def _limited_factories(self) -> _Factories:
        """The factories to serve with: :attr:`limits` applied to the server's own."""
        server_limits = self.limits
        limits = ProtocolLimits(
            max_header_size=server_limits.max_header_size,
            max_concurrent_streams=server_limits.max_concurrent_streams,
            header_table_size=server_limits.header_table_size,
            max_reset_streams=server_limits.max_reset_streams,
        )
        http1, http2, http3 = self.http1_factory, self.http2_factory, self.http3_factory
        own2, own3 = self._own_factories
        if http1 is self._own_http1_factory:
            http1 = http1.with_limits(limits)
        if http2 is own2:
            http2 = http2.with_limits(limits)
        if http3 is own3:
            http3 = http3.with_limits(limits)
        if self.quic_connection_id_generator is not None:
            http3 = http3.with_connection_id_generator(self.quic_connection_id_generator)
        return http1, http2, http3

    async def _endpoint_listeners(self, endpoint: Endpoint) -> list[HTTPListener]:
        if endpoint.tls and not self.tls_config.certfile:
            raise ValueError(f"{endpoint} needs a certificate: set tls_config.certfile")
        factories = self._serving_factories
        if factories is None:  # not through _create_listener()
            factories = self._serving_factories = self._limited_factories()
        http1, http2, http3 = factories
        tcp_factory = tcp_factory_for(self.protocol, endpoint.tls, http1, http2)
        if endpoint.fd is not None:
            return await inherited_listeners(
                endpoint,
                endpoint.fd,
                InheritedServing(
                    tcp_factory,
                    http3,
                    tls_config=self.tls_config,
                    protocol=self.protocol,
                    networking=self._networking(),  # the PROXY protocol applies to its TCP too
                    options=self._connection_options(),
                    handshake_limits=self.quic_handshake_limits,
                ),
            )
        listeners: list[HTTPListener] = []
        networking = self._networking()
        unix_path = endpoint.unix_path
        if tcp_factory is not None and unix_path is not None:
            unix_listener = await networking.listen_unix(
                unix_path,
                tls_config=self.tls_config if endpoint.tls else None,
                alpn_protocols=tcp_factory.alpn_protocols,
            )
            listeners.append(
                HTTPOverTCPListener(unix_listener, tcp_factory, options=self._connection_options())
            )
        elif tcp_factory is not None:
            listeners.append(
                await HTTPOverTCPListener.create(
                    tcp_factory,
                    local_address=endpoint.address,
                    tls_config=self.tls_config if endpoint.tls else None,
                    networking=networking,
                    options=self._connection_options(),
                )
            )
        quic = self.protocol in (ServerProtocol.ALL, ServerProtocol.HTTP3)
        if quic and endpoint.tls and unix_path is None:
            address = endpoint.address
            if address[1] == 0 and listeners:  # HTTP/3 on the port TCP got
                address = (address[0], listeners[0].local_addresses[0][1])
            try:
                listeners.append(
                    await HTTPOverQUICListener.create(
                        http3,
                        local_address=address,
                        tls_config=self.tls_config,
                        options=self._connection_options(),
                        handshake_limits=self.quic_handshake_limits,
                        connection_id_generator=http3.quic_connection_id_generator,
                    )
                )
            except BaseException:
                for listener in listeners:
                    await listener.aclose()
                raise
        return listeners

    def _networking(self) -> SystemNetworking:
        """The networking of this server's listeners: its TLS and PROXY header timeouts."""
        return SystemNetworking(
            tls_handshake_timeout=self.timeouts.tls_handshake,
            proxy_protocol=self.proxy_protocol,
            proxy_header_timeout=self.timeouts.proxy_header,
        )

    def _connection_options(self) -> ConnectionOptions:
        """Options for every HTTPConnection this server makes (overridable).

        TCP connections linger on close (:data:`~hface.connections.DEFAULT_LINGER_TIMEOUT`);
        the QUIC handshake is bounded by :attr:`ServerTimeouts.tls_handshake`.
        """
        return ConnectionOptions(
            linger_timeout=DEFAULT_LINGER_TIMEOUT, handshake_timeout=self.timeouts.tls_handshake
        )
