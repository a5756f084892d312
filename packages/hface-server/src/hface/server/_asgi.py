"""``ASGIServer``: serve an ASGI 3.0 application over HTTP/1.1, HTTP/2 and HTTP/3.

Theory of operation. :meth:`ASGIServer.run` runs the application's
lifespan startup, then serves (:meth:`BaseServer.run`), then runs its
lifespan shutdown. Each connection is served by
:meth:`ASGIServer.handle_connection`: one task reads the connection's
events and routes them by stream ID to :class:`ASGIStream` objects, and
each request runs the application in a task of its own, in a task group
per connection, so no task outlives its connection. The handler returns
once the connection has ended, or has expired (GOAWAY sent at shutdown,
``Connection: close`` on HTTP/1.1) with no request left in flight.

Connections run with ``auto_acknowledge=False``: request body data is
credited back to the client only when the application takes it with
``receive()``. On HTTP/1.1, which has no flow control, the reader stops
while the request's queue is over :attr:`ASGIServer.max_buffered_data`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc
from anyio.abc import TaskStatus

from hface.common import AddressType
from hface.connections import HTTPConnection, HTTPListener, HTTPOverQUICListener
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    HeadersReceived,
    StreamReset,
)

from ._asgi_lifespan import Lifespan
from ._asgi_stream import ASGIApp, ASGIStream
from ._base import BaseServer
from ._models import Endpoint


class ASGIServer(BaseServer):
    """Serves an ASGI 3.0 application (``http`` and ``lifespan`` scopes).

    ::

        server = ASGIServer(application)
        server.tls_config.certfile = "certs/cert.pem"
        server.tls_config.keyfile = "certs/key.pem"
        await server.run([Endpoint("https", "localhost", 5443)])

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
    #: Seconds an application gets to return after its client went away
    #: before its task is cancelled.
    disconnect_grace: float
    #: Request body bytes held per request on HTTP/1.1 before reading stops
    #: (HTTP/2 and HTTP/3 are bounded by their flow-control windows).
    max_buffered_data: int
    #: Seconds the lifespan shutdown may take.
    lifespan_timeout: float

    def __init__(self, app: ASGIApp) -> None:
        super().__init__()
        self.app = app
        self.server_header = "hface"
        self.date_header = True
        self.alt_svc = True
        self.access_log = True
        self.disconnect_grace = 1.0
        self.max_buffered_data = 1024 * 1024
        self.lifespan_timeout = 30.0
        self._h3_ports: list[int] = []
        self._alt_svc_value: str | None = None
        self._state: dict[str, Any] = {}
        self._handlers: dict[HTTPConnection, _ConnectionHandler] = {}

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
        :raises ValueError: if no endpoint can be served or TLS is not configured.
        :raises OSError: if an address cannot be bound.
        """
        self._state = {}
        self._h3_ports = []
        self._alt_svc_value = None
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

    def _connection_options(self) -> dict[str, Any]:
        return {**super()._connection_options(), "auto_acknowledge": False}

    def _goaway_sent(self, connection: HTTPConnection) -> None:
        handler = self._handlers.get(connection)
        if handler is not None:
            handler.wake()

    async def handle_connection(self, connection: HTTPConnection) -> None:
        """Serve one connection: a task per request, until it ends or expires."""
        handler = _ConnectionHandler(self, connection)
        self._handlers[connection] = handler
        try:
            await handler.run()
        finally:
            self._handlers.pop(connection, None)


class _ConnectionHandler:
    def __init__(self, server: ASGIServer, connection: HTTPConnection) -> None:
        self._server = server
        self._connection = connection
        self._streams: dict[int, ASGIStream] = {}
        self._terminated = False
        self._changed = anyio.Event()

    def wake(self) -> None:
        """Have :meth:`run` check again whether the connection is done."""
        self._changed.set()

    async def run(self) -> None:
        connection = self._connection
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._read_events, task_group)
            while True:
                if self._terminated or connection.has_expired():
                    if not self._streams:
                        break
                await self._changed.wait()
                self._changed = anyio.Event()
            task_group.cancel_scope.cancel()

    async def _read_events(self, task_group: anyio.abc.TaskGroup) -> None:
        connection = self._connection
        streams = self._streams
        try:
            while True:
                event = await connection.receive_event()
                if isinstance(event, ConnectionTerminated):
                    self._terminated = True
                    for stream in list(streams.values()):
                        self._disconnect(stream, task_group)
                    return
                if isinstance(event, HeadersReceived):
                    known = streams.get(event.stream_id)
                    if known is None:
                        self._start_stream(event, task_group)
                    elif event.end_stream:
                        known.end_request()  # trailers: not passed to ASGI
                elif isinstance(event, DataReceived):
                    await self._on_data(event)
                elif isinstance(event, StreamReset):
                    reset = streams.get(event.stream_id)
                    if reset is not None:
                        self._disconnect(reset, task_group)
                # GoawayReceived: the client opens no new stream; nothing to do.
                self.wake()
        finally:
            self.wake()

    async def _on_data(self, event: DataReceived) -> None:
        stream = self._streams.get(event.stream_id)
        connection = self._connection
        if stream is None:
            ack = len(event.data)
        else:
            ack = stream.feed_data(event.data, event.end_stream)
        if ack:
            await connection.acknowledge_received_data(event.stream_id, ack)
        if stream is not None and not connection.multiplexed:
            await stream.wait_for_room()

    def _start_stream(self, event: HeadersReceived, task_group: anyio.abc.TaskGroup) -> None:
        server = self._server
        stream = ASGIStream(
            server,
            self._connection,
            event.stream_id,
            event.headers,
            state=server._state,
            max_buffered_data=server.max_buffered_data,
        )
        if event.end_stream:
            stream.end_request()
        self._streams[event.stream_id] = stream
        task_group.start_soon(self._run_stream, stream)

    async def _run_stream(self, stream: ASGIStream) -> None:
        try:
            await stream.run(self._server.app)
        finally:
            self._streams.pop(stream.stream_id, None)
            unconsumed = stream.take_unconsumed()
            if unconsumed:
                with anyio.CancelScope(shield=True):
                    await self._connection.acknowledge_received_data(stream.stream_id, unconsumed)
            self.wake()

    def _disconnect(self, stream: ASGIStream, task_group: anyio.abc.TaskGroup) -> None:
        if stream.disconnected:
            return
        stream.disconnect()
        task_group.start_soon(self._cancel_later, stream)

    async def _cancel_later(self, stream: ASGIStream) -> None:
        await anyio.sleep(self._server.disconnect_grace)
        stream.cancel_scope.cancel()
