"""One connection of an :class:`ASGIServer`: workers that accept its streams.

Theory of operation. A *worker* waits in :meth:`HTTPConnection.accept_stream
<hface.connections.HTTPConnection.accept_stream>` for the next request and
runs the application on it, then accepts the next one. The connection's
transport task wakes the waiting worker itself, so a request reaches the
application in one task hop. On HTTP/2 and HTTP/3 a worker that takes a
request while no other worker waits starts one more first, so that
requests run concurrently; a worker whose request is done waits for the
next rather than ending (starting a task costs more than serving a small
request), unless :data:`_MAX_IDLE_WORKERS` wait already. On HTTP/1.1 one
worker serves every request. Workers are tasks of the handler's task
group, or on asyncio plain asyncio tasks (lighter by some 2.5 KB, which
counts with thousands of requests in flight, and with no cancel scope
above their own, which keeps every cancellation check cheap) that the
handler stops and waits for before it returns; no task outlives its
connection. The handler's own task only waits for its workers.

Each request runs in a context of its own, as in a task of its own: the
first request of a worker in the worker's (a copy of the handler's), the
next ones in a copy of the handler's (:class:`_InContext`). A worker's
requests share one cancel scope: cancelling a request (its client gone
for longer than ``disconnect_grace``) ends its worker (another takes its
place if none waits for requests).

The handler returns once its workers are done: ``accept_stream`` said
the connection is done (ended, or expired with no request in flight:
GOAWAY at shutdown, ``Connection: close`` on HTTP/1.1), or it waited
longer than ``header_read`` (before its first request) or ``keep_alive``
(after it) for a request: then the connection closes, with GOAWAY on
HTTP/2 and HTTP/3, and on HTTP/1.1 ``408`` if part of a request came
(:func:`~hface.server._base.close_after_waiting`).

An extended CONNECT with ``:protocol websocket`` (every version's
WebSocket request) runs the application with the ``websocket`` scope
(:class:`~hface.server._asgi_websocket.WebSocketSession`, imported with
the first one: wsproto and the session's modules cost a server that
never sees one half a MiB). Other CONNECT
requests (extended CONNECT for other protocols included) and requests over
the header-count, path-length or declared body-size limit are answered
(501, 431, 414, 413) without running the application.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from hface.connections import HTTPConnection, HTTPStream
from hface.events import HeadersReceived

from ._asgi_heads import connection_addresses
from ._asgi_settings import ASGISettings
from ._asgi_stream import ASGIStream, Spawn
from ._asgi_types import ASGIApp, Receive, Scope, Send
from ._base import close_after_waiting

if TYPE_CHECKING:
    from ._asgi_websocket import WebSocketSession

logger = logging.getLogger("hface.server")

#: Idle workers kept per connection for the requests to come.
_MAX_IDLE_WORKERS = 16


class _Worker:
    """What the handler knows of one worker task: its scope and its request, if any."""

    __slots__ = ("request", "scope")

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None
        self.request: ASGIStream | WebSocketSession | None = None


class _ConnectionHandler:
    """Serves one connection (see the module docstring)."""

    def __init__(self, settings: ASGISettings, connection: HTTPConnection) -> None:
        self._settings = settings
        self._connection = connection
        # Once per connection, not per request.
        self._addresses = connection_addresses(connection)
        # The context of each request is a copy of this one (see _work()).
        self._context = contextvars.copy_context()
        self._served = 0  # requests so far
        self._accepting = 0  # workers waiting in accept_stream()
        self._done = False  # accept_stream() said the connection is done
        self._idle_closed = False
        self._workers: set[_Worker] = set()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._spawn: Spawn = _no_task
        # On asyncio, workers are asyncio tasks of their own, not tasks of the
        # task group: anyio's costs some 2.5 KB more per task, and a server
        # may have thousands of requests in flight; with no cancel scope
        # around them but their own, cancellation checks stay cheap. run()
        # stops them before it returns (see _stop_workers()); elsewhere, the
        # task group does.
        self._loop = _running_asyncio_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed: anyio.Event | None = None  # made by run() to wait for workers
        self._worker_error: BaseException | None = None
        self._abort_scope: anyio.CancelScope | None = None
        self._closing = False  # workers end after their request

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                self._spawn = task_group.start_soon  # one bound method, not one per request
                try:
                    with anyio.CancelScope() as self._abort_scope:
                        self._start_worker()
                        while self._workers:  # until the last has seen the connection done
                            self._changed = anyio.Event()
                            await self._changed.wait()
                finally:
                    task_group.cancel_scope.cancel()  # timers (and Trio's workers)
        finally:
            if self._tasks:
                await self._stop_workers()
        if self._worker_error is not None:
            raise self._worker_error

    def _wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def _work(self, worker: _Worker) -> None:
        """Accept requests and run them until the connection is done (see the module docstring).

        A worker also ends when a request cancelled its scope (another takes
        its place if none waits), or after a request when enough others wait.
        """
        connection = self._connection
        settings = self._settings
        first = True  # a worker's first request runs in its task's own context
        # One cancel scope for all the worker's requests, not one each: a
        # request cancelled (ASGIStream.cancel) ends the worker with it.
        try:
            with anyio.CancelScope() as scope:
                worker.scope = scope
                while not self._closing:  # (a worker started as they were being stopped)
                    self._accepting += 1
                    # The idle rule: header_read before the first request, keep_alive after.
                    limit = settings.keep_alive if self._served else settings.header_read
                    try:
                        stream = await connection.accept_stream(idle_timeout=limit)
                    except TimeoutError:
                        self._close_idle()
                        stream = None
                    finally:
                        self._accepting -= 1
                    if stream is None:
                        self._done = True
                        return
                    if connection.multiplexed and not self._accepting and not self._closing:
                        self._start_worker()  # one waits for the next request
                    http_request = self._start_request(stream)
                    request: ASGIStream | WebSocketSession = http_request
                    app: ASGIApp = settings.app
                    refusal = _refusal(http_request, settings)
                    if refusal is not None:
                        app = _Refuse(http_request, *refusal)
                    elif http_request.extended_connect:  # a WebSocket (see _refusal())
                        request = _websocket_session(http_request, settings)
                    worker.request = request
                    request.bind_cancel_scope(scope)
                    try:
                        # Awaited here, not through a coroutine of ours that
                        # would stay on the stack (and in memory) with every request.
                        if first:
                            first = False
                            await request.run(app)
                        else:
                            await _InContext(request.run(app), self._context.copy())
                    finally:
                        worker.request = None
                        await stream.aclose()  # unread data credited back
                    # Not kept alive (scope, headers, h2's stream) by this
                    # frame while it waits for the next request.
                    del stream, http_request, request, app
                    if scope.cancel_called:
                        break  # a late cancellation: not for the next request
                    if self._accepting >= _MAX_IDLE_WORKERS or self._closing:
                        return
            # Here once a request cancelled the scope (or the workers are stopping).
            if not (self._done or self._closing or self._accepting):
                self._start_worker()  # nobody would wait for the next request
        finally:
            self._workers.discard(worker)
            if not self._workers:
                self._wake()

    def _start_request(self, stream: HTTPStream) -> ASGIStream:
        event = stream.receive_event_nowait()
        assert isinstance(event, HeadersReceived)  # a stream's first event
        request = ASGIStream(
            self._settings, stream, event.headers, addresses=self._addresses, spawn=self._spawn
        )
        if event.end_stream:
            request.end_request()
        # What came meanwhile, then each event as it comes (the request is
        # its own observer: no bound method to make per request).
        stream.observe(request)
        self._served += 1
        return request

    def _close_idle(self) -> None:
        """The connection waited too long for a request: close it (once)."""
        if self._idle_closed:
            return
        self._idle_closed = True
        limit = self._settings.idle_timeout(self._served)
        what = "a first request" if not self._served else "another request"
        logger.debug("closed a connection that waited %gs for %s", limit, what)
        close_after_waiting(self._connection)  # 408 for a partial HTTP/1.1 request

    def _start_worker(self) -> None:
        worker = _Worker()
        self._workers.add(worker)  # counted from now: run() waits for it
        # Started in a copy of the handler's context: the starting worker's
        # own may hold its first request's variables.
        if self._loop is None:
            task_group = self._task_group
            assert task_group is not None
            self._context.run(lambda: task_group.start_soon(self._work, worker))
        else:
            task = self._context.run(self._loop.create_task, self._work(worker))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """An asyncio worker ended: forget it; an error ends the connection (as in a task group)."""
        self._tasks.discard(task)
        if not task.cancelled():
            error = task.exception()
            if error is not None and self._worker_error is None:
                self._worker_error = error
                if self._abort_scope is not None:
                    self._abort_scope.cancel()
        if not self._tasks:
            self._wake()

    async def _stop_workers(self) -> None:
        """End the asyncio workers as the task group would end its tasks, and wait for them.

        The requests in flight are abandoned (:meth:`ASGIStream.abandon`:
        cancelled through their cancel scopes, so that shielded sections
        still complete, and not answered), the workers waiting for a request
        are cancelled, and a worker between the two ends after the request
        it finishes.
        """
        self._closing = True
        for worker in self._workers:
            if worker.request is not None:
                worker.request.abandon()
            elif worker.scope is not None:
                worker.scope.cancel()
        with anyio.CancelScope(shield=True):
            while self._tasks:
                self._changed = anyio.Event()
                await self._changed.wait()


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


def _no_task(*args: Any) -> None:
    """What ``_ConnectionHandler._spawn`` is before its task group runs: never called."""
    raise RuntimeError("the connection handler is not running")


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


def _websocket_session(request: ASGIStream, settings: ASGISettings) -> WebSocketSession:
    """A WebSocket session over ``request``, its module imported the first time."""
    from ._asgi_websocket import WebSocketSession

    return WebSocketSession(request, settings)


def _refusal(request: ASGIStream, settings: ASGISettings) -> tuple[int, str] | None:
    """The status and reason to refuse a request with at once: CONNECT, or over a limit."""
    if request.raw_method == b"CONNECT":
        # RFC 9110 §9.3.6: CONNECT asks for a tunnel, which an origin server
        # does not make (the ASGI application would be asked to, and over
        # HTTP/1.1 a 2xx from it would turn the connection into one). 501 as
        # for any method the server does not implement (RFC 9110 §15.6.2);
        # extended CONNECT (RFC 8441, RFC 9220) for any protocol but WebSocket likewise.
        protocol = request.extended_connect
        if protocol is None:
            return 501, "CONNECT is not supported: this is an origin server, not a proxy"
        if protocol != b"websocket":
            return 501, f"extended CONNECT for {protocol.decode('latin-1')!r} is not supported"
    limit = settings.max_header_count
    if limit is not None and request.field_count > limit:
        return 431, f"more than {limit} header fields"
    limit = settings.max_path_length
    if limit is not None and len(request.raw_target) > limit:
        return 414, f"the request target is over {limit} bytes"
    limit = settings.max_body_size
    if limit is not None:
        length = request.content_length
        if length is not None and length.isdigit() and int(length) > limit:
            return 413, f"the request body is over {limit} bytes"
    return None


class _Refuse:
    """The application that stands in for the real one on a request refused at once."""

    def __init__(self, request: ASGIStream, status: int, message: str) -> None:
        self._request = request
        self._status = status
        self._message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream_id = self._request.stream_id
        logger.info("refused stream %d with %d: %s", stream_id, self._status, self._message)
        await self._request.abort(self._status, self._message)
