"""``ProxyServer``: an HTTP forward proxy in tunnelling mode (CONNECT only).

Theory of operation. Each connection has one *dispatcher* loop, the only
caller of ``receive_event``: a request's headers start a stream task
(``_proxy_tunnel.serve_stream``) with a queue of that stream's events, and
later events of the stream go to its queue. The dispatcher never waits on
one stream on HTTP/2 and HTTP/3 (the queues are unbounded in items, but a
tunnel acknowledges data only once its target took it, so flow control
bounds them in bytes); on HTTP/1.1 the queue holds nothing and the
dispatcher waits for the tunnel, so the connection stops reading.

Every task belongs to the connection's task group: when the connection
ends, or its handler is cancelled, tunnels and target sockets go with it.
Once the connection has expired (GOAWAY sent or received, or HTTP/1.1
closing) and no stream is left, the handler returns; so it does when the
connection has waited for a request longer than
:attr:`ServerTimeouts.header_read` (before its first) or
:attr:`ServerTimeouts.keep_alive` (after it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hface.common import AddressType
from hface.connections import ConnectionOptions, HTTPConnection
from hface.errors import LocalProtocolError, TransportError
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived, StreamEvent
from hface.networking import ClientNetworking, SystemNetworking

from ._base import BaseServer, close_after_waiting
from ._models import Endpoint
from ._proxy_target import is_loopback_host
from ._proxy_tunnel import _READ_SIZE, TunnelPolicy, serve_stream

#: Seconds between checks whether an idle, expired connection can be let go.
_EXPIRY_POLL_INTERVAL = 0.5


class ProxyServer(BaseServer):
    """An HTTP proxy in tunnelling mode: CONNECT over HTTP/1.1, HTTP/2 and HTTP/3.

    A CONNECT request for an authority-form target (``host:port``) gets a
    TCP connection to the target and ``200``; then bytes flow both ways,
    with half-close, until both sides are done. Other requests get ``405``,
    malformed targets ``400``, unreachable ones ``502``, refused ones
    ``403``, and requests without the configured credentials ``407``.

    Safe by default: a proxy listening on a non-loopback address refuses
    targets that resolve to loopback, private, link-local, unspecified or
    other non-public addresses (see :attr:`allow_private_targets`).
    """

    #: Basic proxy credentials ``(user, password)``; None lets everyone in.
    credentials: tuple[str, str] | None
    #: Whether targets on loopback, private and other non-public addresses
    #: may be reached. None (the default) decides by the listening
    #: addresses: allowed only when every endpoint is on loopback.
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

    def __init__(self) -> None:
        super().__init__()
        self.credentials = None
        self.allow_private_targets = None
        self.connect_timeout = 10.0
        self.idle_timeout = 300.0
        self.networking = SystemNetworking()
        self.max_buffered_data = _READ_SIZE
        self._loopback_only = False

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
        size: object = self.max_buffered_data  # set by users: any type may come
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"max_buffered_data must be a positive integer, not {size!r}")
        loopback = [await is_loopback_host(endpoint.host) for endpoint in endpoints]
        self._loopback_only = bool(loopback) and all(loopback)
        await super().run(endpoints, task_status=task_status)

    async def handle_connection(self, connection: HTTPConnection) -> None:
        """Serve CONNECT requests on one connection until it ends."""
        allow_private = self.allow_private_targets
        if allow_private is None:
            allow_private = self._loopback_only
        policy = TunnelPolicy(
            credentials=self.credentials,
            allow_private=allow_private,
            connect_timeout=self.connect_timeout,
            idle_timeout=self.idle_timeout,
            networking=self.networking,
            read_size=self.max_buffered_data,
        )
        await _ProxyConnection(connection, policy, self._idle_timeout).run()

    def _connection_options(self) -> ConnectionOptions:
        # Tunnels acknowledge data once the target has taken it.
        return replace(super()._connection_options(), auto_acknowledge=False)


class _ProxyConnection:
    """The dispatcher and the streams of one connection."""

    def __init__(
        self,
        connection: HTTPConnection,
        policy: TunnelPolicy,
        idle_timeout: Callable[[int], float | None],
    ) -> None:
        self._connection = connection
        self._policy = policy
        self._idle_timeout = idle_timeout
        self._served = 0  # requests so far
        self._idle_since = anyio.current_time()
        self._streams: dict[int, MemoryObjectSendStream[StreamEvent]] = {}
        self._receivers: set[MemoryObjectReceiveStream[StreamEvent]] = set()
        self._stream_ended = anyio.Event()

    async def run(self) -> None:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._watch_expiry, task_group.cancel_scope)
            try:
                await self._dispatch(task_group)
            finally:
                task_group.cancel_scope.cancel()
                for queue in self._streams.values():
                    queue.close()
                for events in self._receivers:  # of tasks cancelled before they ran
                    events.close()

    async def _dispatch(self, task_group: TaskGroup) -> None:
        connection = self._connection
        buffer_size = math.inf if connection.multiplexed else 0
        while True:
            event = await connection.receive_event()
            if isinstance(event, ConnectionTerminated):
                return
            if not isinstance(event, StreamEvent):
                continue  # GOAWAY: streams in flight go on; _watch_expiry ends the rest
            queue = self._streams.get(event.stream_id)
            if queue is None and isinstance(event, HeadersReceived):
                queue, events = anyio.create_memory_object_stream[StreamEvent](buffer_size)
                self._streams[event.stream_id] = queue
                self._served += 1
                self._receivers.add(events)
                task_group.start_soon(self._serve_stream, event, events)
                continue
            if queue is not None:
                try:
                    await queue.send(event)
                    continue
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
            if isinstance(event, DataReceived) and event.data:
                # Nobody reads this stream any more: free the window all the same.
                await connection.acknowledge_received_data(event.stream_id, len(event.data))

    async def _serve_stream(
        self, request: HeadersReceived, events: MemoryObjectReceiveStream[StreamEvent]
    ) -> None:
        stream_id = request.stream_id
        try:
            await serve_stream(self._connection, request, events, self._policy)
        except (TransportError, LocalProtocolError):
            pass  # the connection or the stream is gone: nothing left to tell
        finally:
            queue = self._streams.pop(stream_id, None)
            if queue is not None:
                queue.close()
            if not self._streams:
                self._idle_since = anyio.current_time()
            events.close()
            self._receivers.discard(events)
            self._stream_ended.set()

    async def _watch_expiry(self, scope: anyio.CancelScope) -> None:
        """End the handler once the connection has expired, or waited too long,
        and no stream is left."""
        while not (self._connection.has_expired() and not self._streams):
            wait = _EXPIRY_POLL_INTERVAL
            limit = self._idle_timeout(self._served)
            if not self._streams and limit is not None:
                left = self._idle_since + limit - anyio.current_time()
                if left <= 0:
                    close_after_waiting(self._connection)  # 408 for a partial HTTP/1.1 request
                    break  # closing the connection sends GOAWAY (HTTP/2, HTTP/3)
                wait = min(wait, left)
            with anyio.move_on_after(wait):
                await self._stream_ended.wait()
            self._stream_ended = anyio.Event()
        scope.cancel()
