"""The machinery under :class:`~hface.connections.HTTPConnection`, shared by every transport.

Theory of operation. :class:`ConnectionCore` holds a connection's state and
the contract between it and its transport (``_tcp.py``, ``_quic.py``): the
transport task calls :meth:`~ConnectionCore._process_events` after feeding
the protocol, which routes each event (:mod:`hface.connections._router`)
and notes the end; :meth:`~ConnectionCore._wake_all` wakes the tasks
waiting for progress (a window that reopened, a write done, the end).
Sending flushes through the transport's ``_flush``; the end, from any
side, is ``ConnectionTerminated`` (:meth:`~ConnectionCore._terminate`),
after which sends raise :class:`~hface.errors.TransportError`. Nothing
here is public: the interface is :class:`~hface.connections.HTTPConnection`.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Generic

import anyio
import anyio.abc
from anyio.abc import TaskStatus

from hface.errors import (
    LocalProtocolError,
    TerminationReason,
    TransportError,
    TransportErrorKind,
)
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived
from hface.networking import Signal
from hface.protocols import HTTPProtocol

from ._options import DEFAULT_OPTIONS, ConnectionOptions
from ._router import S, StreamRouter

#: What a failed or closed network stream raises.
TRANSPORT_ERRORS = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    OSError,
)


def ended_error(
    ended: ConnectionTerminated | None,
    default: str,
    kind: TransportErrorKind = TransportErrorKind.CLOSED,
) -> TransportError:
    """The error for using a connection that has ended: the end's message and fields.

    :param ended: the protocol's ``ConnectionTerminated``, if it gave one.
    :param default: the message if the end gave none.
    """
    if ended is None:
        return TransportError(default, kind=kind)
    return TransportError(
        ended.message or default,
        kind=kind,
        termination=ended.reason,
        transport_error_code=ended.transport_error_code,
    )


class ConnectionCore(ABC, Generic[S]):
    """The state of a connection and its transport's contract (see the module docstring)."""

    #: The network stream underneath (set by the subclasses).
    _stream: anyio.abc.AsyncResource

    def __init__(self, protocol: HTTPProtocol, *, options: ConnectionOptions | None = None) -> None:
        options = options or DEFAULT_OPTIONS
        self._protocol = protocol
        self._options = options
        self._max_pending_data = options.max_pending_data
        self._router: StreamRouter[S] = StreamRouter(
            protocol, options, make_stream=self._make_stream, flush=self._flush_quietly
        )
        # Made by _wait_for_progress() only: _wake_all() runs on every read and write.
        self._progress: Signal | None = None
        self._send_lock = anyio.Lock()
        self._terminated: ConnectionTerminated | None = None
        # HTTP/1.1: whether the last message received has ended (a server
        # closing before the request's end lingers; see HTTPOverTCPConnection).
        self._request_ended = True
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closed = False

    @abstractmethod
    def _make_stream(self, stream_id: int) -> S:
        """The stream object of a new stream."""

    async def _end_tasks(self) -> None:
        """The end of :meth:`aclose`: cancel the transport task and wait for it."""
        self._wake_all()
        task_group, self._task_group = self._task_group, None
        try:
            if task_group is not None:
                # Exited here, outside any scope of ours: anyio wants scopes closed in order.
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)
        finally:
            self._router.end(None)

    def _check_opened(self) -> None:
        if self._task_group is None and not self._closed:
            raise LocalProtocolError("open the connection first (async with connection: ...)")

    def _check_open(self) -> None:
        if self._terminated is not None or self._closed:
            raise ended_error(self._terminated, "the connection was closed")

    async def _check_terminated_meanwhile(self) -> None:
        """Raise TransportError if the protocol is ending the connection by itself.

        The protocol may have begun closing the connection (a flood, an
        internal error) with its close not yet sent and its events not yet
        processed: a send then fails as "not open", which is the
        connection's end, not a misuse. Sending what is pending lets the
        protocol report the end.
        """
        if self._protocol.has_expired():
            await self._flush_quietly()
            self._process_events()
        self._check_open()

    def _process_events(self) -> None:
        """Route the protocol's events to their queues; note termination."""
        protocol = self._protocol
        route = self._router.route
        while (event := protocol.next_event()) is not None:
            if isinstance(event, (DataReceived, HeadersReceived)):
                self._request_ended = event.end_stream
            elif isinstance(event, ConnectionTerminated):
                self._terminate(event)
                continue
            route(event)
        self._wake_all()

    def _terminate(self, event: ConnectionTerminated) -> None:
        """The end: later ``receive_event`` calls (and every stream's) return it."""
        if self._terminated is None:
            self._terminated = event
            self._router.end(event)

    def _wake_all(self) -> None:
        progress = self._progress
        if progress is not None:
            self._progress = None
            progress.set()
        if self._terminated is not None or self._closed:
            self._router.wake_room()

    async def _wait_for_progress(self) -> None:
        """Wait for the next :meth:`_wake_all` (events processed, data sent, the end)."""
        if self._progress is None:
            self._progress = self._router.new_signal()
        await self._progress.wait()

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(TransportError):
            await self._flush()

    def _fail(self, message: str) -> None:
        """The transport failed: tell the protocol and queue what it says."""
        self._protocol_connection_lost()
        self._process_events()
        error_code = self._protocol.error_codes.internal_error
        reason = TerminationReason.TRANSPORT_LOST
        self._terminate(ConnectionTerminated(error_code=error_code, message=message, reason=reason))
        self._wake_all()

    @abstractmethod
    def _protocol_connection_lost(self) -> None: ...
    @abstractmethod
    async def _run_transport(self, *, task_status: TaskStatus[None]) -> None: ...

    @abstractmethod
    async def _flush(self) -> None:
        """Write what the protocol has to send. Raises TransportError if it cannot."""

    def _flush_nowait(self) -> bool:
        """Write what the protocol has to send if that needs no wait; return whether it did.

        False leaves the rest to :meth:`_flush` (in its order); the caller
        has checked for its own cancellation first, as :meth:`_flush` does.
        """
        return False

    async def _flush_before_close(self) -> None:
        """The last flush of :meth:`aclose` (TCP bounds how long it may wait)."""
        await self._flush()

    async def _wait_for_linger(self) -> None:
        """Part of :meth:`aclose`: wait while the transport task lingers (TCP servers)."""

    async def _close_transport(self) -> None:
        with anyio.CancelScope(shield=True), contextlib.suppress(*TRANSPORT_ERRORS):
            await self._stream.aclose()

    async def _opened(self) -> None:
        """Called once the transport task runs; HTTP/3 clients wait for the handshake."""
