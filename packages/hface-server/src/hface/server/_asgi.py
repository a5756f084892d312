"""``ASGIServer``: serve an ASGI 3.0 application over HTTP/1.1, HTTP/2 and HTTP/3.

Theory of operation. :meth:`ASGIServer.run` runs the application's
lifespan startup, then serves (:meth:`BaseServer.run`), then runs its
lifespan shutdown. Each connection is served by
:meth:`ASGIServer.handle_connection`: one task reads the connection's
events and routes them by stream ID to :class:`ASGIStream` objects, and
each request runs the application in a worker task of the connection: in
the connection's task group, or on asyncio a plain asyncio task (lighter
by some 2.5 KB, which counts with thousands of requests in flight) that
the handler stops and waits for before it returns; no task outlives its
connection. A worker whose request is
done waits for the connection's next request rather than ending (starting
a task costs more than serving a small request); each request still runs
in a copy of the reader's context, as a task of its own would
(:class:`_InContext`), so its context variables stay its own. A worker's
requests share one cancel scope: cancelling a request (its client gone
for longer than :attr:`ASGIServer.disconnect_grace`) ends its worker. The handler returns
once the connection has ended, or has expired (GOAWAY sent at shutdown,
``Connection: close`` on HTTP/1.1) with no request left in flight.

Connections run with ``auto_acknowledge=False``: request body data is
credited back to the client only when the application takes it with
``receive()``. On HTTP/1.1, which has no flow control, the reader stops
while the request's queue is over :attr:`ASGIServer.max_buffered_data`.

CONNECT requests (extended CONNECT included) are answered 501 without
running the application: an ASGI application cannot make tunnels.

Limits and timeouts (:attr:`~BaseServer.limits`, :attr:`~BaseServer.timeouts`).
A request over the header-count, path-length or declared body-size limit is
answered (431, 414, 413) without running the application; a body that
grows over the limit is cut short by :meth:`ASGIStream.abort`. The
handler closes a connection that has waited for a request longer than
:attr:`ServerTimeouts.header_read` (before its first) or
:attr:`ServerTimeouts.keep_alive` (after it); closing sends GOAWAY on
HTTP/2 and HTTP/3, and on HTTP/1.1 ``408`` if part of a request came.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
from collections.abc import Coroutine, Generator, Sequence
from dataclasses import replace
from typing import Any

import anyio
import anyio.abc
from anyio.abc import TaskStatus

from hface.common import AddressType
from hface.connections import ConnectionOptions, HTTPConnection, HTTPListener, HTTPOverQUICListener
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    HeadersReceived,
    StreamReset,
)

from ._asgi_lifespan import Lifespan
from ._asgi_stream import (
    ASGIApp,
    ASGIStream,
    DefaultHeaders,
    Receive,
    Scope,
    Send,
    connection_addresses,
)
from ._base import BaseServer, close_after_waiting
from ._models import Endpoint

logger = logging.getLogger("hface.server")


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
    #: The path the application is mounted at behind a proxy (e.g. ``"/api"``),
    #: given as the scope's ``root_path`` and prefixed to ``path`` and
    #: ``raw_path`` (as uvicorn's ``--root-path``); ``""`` for none.
    root_path: str

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
        self.root_path = ""
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
        :raises ValueError: if no endpoint can be served, TLS is not configured,
            :attr:`root_path` is not ``""`` or a path like ``"/api"``, or a
            limit or timeout is out of range.
        :raises OSError: if an address cannot be bound.
        """
        self.limits.check()
        self.timeouts.check()
        root_path = self.root_path
        if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
            raise ValueError(
                f"invalid root_path {root_path!r}: it must start with '/' and not end with one"
            )
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

    def _connection_options(self) -> ConnectionOptions:
        return replace(super()._connection_options(), auto_acknowledge=False)

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
        self._served = 0  # requests so far
        self._idle_since = anyio.current_time()
        # Once per connection, not per request.
        self._addresses = connection_addresses(connection)
        # Made at the first request: a cleartext connection learns its version then.
        self._defaults: DefaultHeaders | None = None
        # Workers whose request is done, each waiting for the next (see _work()).
        self._idle_workers: list[_Worker] = []
        # On asyncio, workers are asyncio tasks of their own, not tasks of the
        # connection's task group: anyio's costs some 2.5 KB more per task, and
        # a server may have thousands of requests in flight. run() stops them
        # before it returns (see _stop_workers()); elsewhere, the task group.
        self._loop = _running_asyncio_loop()
        self._workers: set[asyncio.Task[None]] = set()
        self._workers_done: anyio.Event | None = None  # made by _stop_workers()
        self._worker_error: BaseException | None = None
        self._closing = False  # workers end after their request

    def wake(self) -> None:
        """Have :meth:`run` check again whether the connection is done."""
        self._changed.set()

    async def run(self) -> None:
        try:
            await self._serve()
        finally:
            if self._workers:
                await self._stop_workers()
        if self._worker_error is not None:
            raise self._worker_error

    async def _serve(self) -> None:
        connection = self._connection
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._read_events, task_group)
            while True:
                if self._worker_error is not None:
                    break
                if (self._terminated or connection.has_expired()) and not self._streams:
                    break
                deadline = math.inf
                limit = self._server._idle_timeout(self._served)
                if limit is not None:
                    # Not woken per request (a task hop each): with streams in
                    # flight, look again after `limit`; idle, at the deadline.
                    start = self._idle_since if not self._streams else anyio.current_time()
                    deadline = start + limit
                with anyio.CancelScope(deadline=deadline) as scope:
                    await self._changed.wait()
                if scope.cancelled_caught:
                    idle_until = self._idle_since + (limit or 0.0)
                    if self._streams or anyio.current_time() < idle_until:
                        continue  # busy, or a request came and went meanwhile
                    what = "a first request" if not self._served else "another request"
                    logger.debug("closed a connection that waited %gs for %s", limit, what)
                    close_after_waiting(connection)  # 408 for a partial HTTP/1.1 request
                    break  # closing the connection sends GOAWAY (HTTP/2, HTTP/3)
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
                    await self._on_data(event, task_group)
                elif isinstance(event, StreamReset):
                    reset = streams.get(event.stream_id)
                    if reset is not None:
                        self._disconnect(reset, task_group)
                # GoawayReceived: the client opens no new stream; nothing to do.
                if not streams and connection.has_expired():
                    self.wake()
        finally:
            self.wake()

    async def _on_data(self, event: DataReceived, task_group: anyio.abc.TaskGroup) -> None:
        stream = self._streams.get(event.stream_id)
        connection = self._connection
        size = len(event.data)
        limit = self._server.limits.max_body_size
        if stream is not None and limit is not None and stream.body_received + size > limit:
            # Not for the application: the request fails with 413 instead.
            first = stream.body_received <= limit
            stream.body_received += size
            if size:
                await connection.acknowledge_received_data(event.stream_id, size)
            if first and not stream.finished:
                message = f"the request body is over {limit} bytes"
                task_group.start_soon(self._abort, stream, 413, message)
            return
        ack = size if stream is None else stream.feed_data(event.data, event.end_stream)
        if ack:
            await connection.acknowledge_received_data(event.stream_id, ack)
        if stream is not None and not connection.multiplexed:
            await stream.wait_for_room()

    def _start_stream(self, event: HeadersReceived, task_group: anyio.abc.TaskGroup) -> None:
        server = self._server
        if self._defaults is None:
            self._defaults = DefaultHeaders(server, self._connection)
        stream = ASGIStream(
            server,
            self._connection,
            event.stream_id,
            event.headers,
            state=server._state,
            max_buffered_data=server.max_buffered_data,
            body_timeout=server.timeouts.body_read,
            write_timeout=server.timeouts.write,
            addresses=self._addresses,
            defaults=self._defaults,
        )
        if event.end_stream:
            stream.end_request()
        self._streams[event.stream_id] = stream
        self._served += 1
        if self._served == 1:
            self.wake()  # the idle limit is now keep_alive, not header_read
        app = server.app
        refusal = _refusal(stream, server)
        if refusal is not None:
            app = _Refuse(stream, *refusal)
        if self._idle_workers:
            # The context a task started here would get: the application's
            # context variables stay its own, though the task is reused.
            self._idle_workers.pop().hand(stream, app, contextvars.copy_context())
        elif self._loop is None:
            task_group.start_soon(self._work, stream, app)
        else:
            task = self._loop.create_task(self._work(stream, app))
            self._workers.add(task)
            task.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        """An asyncio worker ended: forget it; an error ends the connection (as in a task group)."""
        self._workers.discard(task)
        if not task.cancelled():
            error = task.exception()
            if error is not None and self._worker_error is None:
                self._worker_error = error
                self.wake()
        if not self._workers and self._workers_done is not None:
            self._workers_done.set()

    async def _stop_workers(self) -> None:
        """End the asyncio workers as the task group would end its tasks, and wait for them.

        The requests in flight are abandoned (:meth:`ASGIStream.abandon`:
        cancelled through their cancel scopes, so that shielded sections
        still complete, and not answered), idle workers are told to end, and
        a worker between two requests ends after the one it finishes.
        """
        self._closing = True
        for worker in self._idle_workers:
            worker.stop()
        self._idle_workers.clear()
        for stream in self._streams.values():
            stream.abandon()
        self._workers_done = anyio.Event()
        with anyio.CancelScope(shield=True):
            while self._workers:
                await self._workers_done.wait()

    async def _work(self, stream: ASGIStream, app: ASGIApp) -> None:
        """Run requests, the first given, the next ones handed over while idle.

        Starting a task costs more than the rest of a small request, so a
        worker whose request is done waits for the next one (at most
        :data:`_MAX_IDLE_WORKERS` wait per connection; the others end). Idle
        workers end with the connection's task group. The first request
        runs in the task's own context (a copy of the reader's, made as the
        task started); each next one in a copy of its own (:class:`_InContext`).
        """
        worker: _Worker | None = None
        context: contextvars.Context | None = None
        # One cancel scope for all the worker's requests, not one each: a
        # request cancelled (ASGIStream.cancel) ends its worker with it.
        with anyio.CancelScope() as scope:
            while True:
                stream.bind_cancel_scope(scope)
                # stream.run() is awaited here, not through a coroutine of ours
                # that would stay on the stack (and in memory) with every request.
                try:
                    if context is None:
                        await stream.run(app)
                    else:
                        await _InContext(stream.run(app), context)
                finally:
                    await self._request_done(stream)
                idle = self._idle_workers
                if (
                    scope.cancel_called
                    or len(idle) >= _MAX_IDLE_WORKERS
                    or self._terminated
                    or self._closing
                    or self._connection.has_expired()
                ):
                    return
                if worker is None:
                    worker = _Worker()
                idle.append(worker)
                work = await worker.wait()
                if work is None:
                    return  # stopped
                stream, app, context = work

    async def _abort(self, stream: ASGIStream, status: int, message: str) -> None:
        logger.info("stream %d: %s: %d", stream.stream_id, message, status)
        await stream.abort(status, message)
        await self._cancel_later(stream)

    async def _request_done(self, stream: ASGIStream) -> None:
        """Forget a request whose application has returned (or was cancelled)."""
        self._streams.pop(stream.stream_id, None)
        if not self._streams:
            self._idle_since = anyio.current_time()
        unconsumed = stream.take_unconsumed()
        if unconsumed:
            with anyio.CancelScope(shield=True):
                await self._connection.acknowledge_received_data(stream.stream_id, unconsumed)
        if not self._streams and (self._terminated or self._connection.has_expired()):
            self.wake()  # the last stream of a connection that is done

    def _disconnect(self, stream: ASGIStream, task_group: anyio.abc.TaskGroup) -> None:
        if stream.disconnected:
            return
        stream.disconnect()
        task_group.start_soon(self._cancel_later, stream)

    async def _cancel_later(self, stream: ASGIStream) -> None:
        await anyio.sleep(self._server.disconnect_grace)
        stream.cancel()


#: Idle workers kept per connection for the requests to come.
_MAX_IDLE_WORKERS = 16


class _Worker:
    """A worker task of a connection, idle: waiting to be handed a request."""

    __slots__ = ("_event", "_work")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._work: tuple[ASGIStream, ASGIApp, contextvars.Context] | None = None

    def hand(self, stream: ASGIStream, app: ASGIApp, context: contextvars.Context) -> None:
        """Give the worker its next request (it must be idle, waiting in :meth:`wait`)."""
        self._work = (stream, app, context)
        self._event.set()

    def stop(self) -> None:
        """Have the worker end instead (it must be idle, waiting in :meth:`wait`)."""
        self._work = None
        self._event.set()

    async def wait(self) -> tuple[ASGIStream, ASGIApp, contextvars.Context] | None:
        """Wait to be handed a request; return it, or None if told to :meth:`stop`."""
        await self._event.wait()
        work, self._work = self._work, None
        self._event = anyio.Event()
        return work


class _InContext:
    """Await a coroutine with each of its steps run in ``context``.

    As a task of its own would: context variables the coroutine sets stay
    in ``context``, not in the task that awaits, which runs one request
    after another (:meth:`_ConnectionHandler._work`). What the coroutine
    yields to the event loop and what the loop sends back (or throws in,
    cancellation included) pass through unchanged, on asyncio and Trio alike.
    """

    __slots__ = ("_context", "_coroutine")

    def __init__(self, coroutine: Coroutine[Any, Any, None], context: contextvars.Context) -> None:
        self._coroutine = coroutine
        self._context = context

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine = self._coroutine
        run = self._context.run
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                if error is None:
                    yielded = run(coroutine.send, value)
                else:
                    yielded = run(coroutine.throw, error)
            except StopIteration:
                return
            finally:
                error = None  # no reference cycle through the traceback
            try:
                value = yield yielded
            except GeneratorExit:
                run(coroutine.close)
                raise
            except BaseException as exc:
                error = exc
                value = None


def _running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio event loop, or None under another async library (Trio)."""
    try:
        import sniffio
    except ImportError:  # pragma: no cover - Trio needs sniffio: without it, asyncio
        return asyncio.get_running_loop()
    try:
        if sniffio.current_async_library() != "asyncio":
            return None
    except sniffio.AsyncLibraryNotFoundError:  # pragma: no cover - called from a task
        return None
    return asyncio.get_running_loop()


def _refusal(stream: ASGIStream, server: ASGIServer) -> tuple[int, str] | None:
    """The status and reason to refuse a request with at once: CONNECT, or over a limit."""
    limits = server.limits
    if stream.raw_method == b"CONNECT":
        # RFC 9110 §9.3.6: CONNECT asks for a tunnel, which an origin server
        # does not make (the ASGI application would be asked to, and over
        # HTTP/1.1 a 2xx from it would turn the connection into one). 501 as
        # for any method the server does not implement (RFC 9110 §15.6.2);
        # extended CONNECT (RFC 8441, RFC 9220: WebSockets) likewise.
        if stream.extended_connect:
            return 501, "extended CONNECT (e.g. WebSockets over HTTP/2 or HTTP/3) is not supported"
        return 501, "CONNECT is not supported: this is an origin server, not a proxy"
    if limits.max_header_count is not None and stream.field_count > limits.max_header_count:
        return 431, f"more than {limits.max_header_count} header fields"
    if limits.max_path_length is not None and len(stream.raw_target) > limits.max_path_length:
        return 414, f"the request target is over {limits.max_path_length} bytes"
    if limits.max_body_size is not None:
        length = stream.content_length
        if length is not None and length.isdigit() and int(length) > limits.max_body_size:
            return 413, f"the request body is over {limits.max_body_size} bytes"
    return None


class _Refuse:
    """The application that stands in for the real one on a request refused at once."""

    def __init__(self, stream: ASGIStream, status: int, message: str) -> None:
        self._stream = stream
        self._status = status
        self._message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream_id = self._stream.stream_id
        logger.info("refused stream %d with %d: %s", stream_id, self._status, self._message)
        await self._stream.abort(self._status, self._message)
