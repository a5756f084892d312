"""One pooled client connection, and the task that owns it.

Theory of operation. ``HTTPConnection.open()`` and ``aclose()`` must run in
one task, so every connection gets an *owner task* in the session's task
group (:meth:`PooledConnection.run`). The owner opens the connection, then
waits for its end (or to be told to close it). It reads no event: each
exchange opens a stream of its own (``HTTPConnection.open_stream``), whose
events the connection's transport task queues for it, and whose unread
data is credited back when the exchange releases it.

GOAWAY (or ``Connection: close``) from the server expires the connection
(``has_expired()``): no new exchange; those in flight go on. When the
owner ends, for whatever reason, the connection is closed and the pool
forgets it. The owner never raises once started, so a dying connection
never cancels the session's other tasks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from hface.connections import HTTPConnection
from hface.events import ConnectionTerminated

from ._models import Origin


class PooledConnection:
    """An :class:`HTTPConnection` in a pool, and the state of its owner task."""

    def __init__(
        self,
        connection: HTTPConnection,
        origin: Origin,
        *,
        on_closed: Callable[[PooledConnection], None],
        on_idle: Callable[[PooledConnection], None] | None = None,
    ) -> None:
        self.connection = connection
        self.origin = origin
        self._on_closed = on_closed
        self._on_idle = on_idle
        self._close_requested = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        #: Set once the pool gave up on the connection (GOAWAY: ``has_expired()``).
        self.retired = False
        #: The event that ended the connection, once it ended.
        self.terminated: ConnectionTerminated | None = None
        #: Exchanges in progress.
        self.active = 0
        #: Exchanges started so far (a reused HTTP/1.1 connection may have gone stale).
        self.exchanges_started = 0
        self.closed = False

    @property
    def multiplexed(self) -> bool:
        """True for HTTP/2 and HTTP/3 (several exchanges at once)."""
        return self.connection.multiplexed

    def is_usable(self) -> bool:
        """True if a new exchange can start here now.

        An HTTP/1.1 connection takes the next exchange only once the last one
        was released: its protocol is ready as soon as the whole response is
        parsed, but the exchange may not have read the last events yet.
        """
        return (
            (self.multiplexed or self.active == 0)
            and not self.retired
            and not self.closed
            and self.terminated is None
            and not self.connection.has_expired()
            and self.connection.is_available()
        )

    def is_dead(self) -> bool:
        """True if no new exchange can ever start here."""
        return (
            self.retired
            or self.closed
            or self.terminated is not None
            or self.connection.has_expired()
        )

    # -- the owner task ---------------------------------------------------------

    async def run(self, *, connect_timeout: float | None, task_status: TaskStatus[None]) -> None:
        """Open the connection, serve it until closed, then close it (the owner task).

        :raises TimeoutError: if opening takes longer than ``connect_timeout``.
        :raises TransportError: if opening fails (both before ``started()`` only).
        """
        started = False
        deadline = math.inf if connect_timeout is None else anyio.current_time() + connect_timeout
        # One scope around everything: open() enters the connection's task
        # group, which must be left (by aclose) before this scope is.
        with anyio.CancelScope(deadline=deadline) as self._scope:
            try:
                await self.connection.open()
                self._scope.deadline = math.inf
                started = True
                task_status.started()
                if self._close_requested.is_set():
                    return
                # RFC 9113 §6.8 / RFC 9114 §5.2: after GOAWAY the connection
                # has expired (no new streams), and ends once its streams are done.
                self._finish(await self.connection.wait_terminated())
            finally:
                # Not under a scope of ours: it leaves the connection's task
                # group, and shields its own polite close (GOAWAY) itself.
                await self.connection.aclose()
                self._finish(ConnectionTerminated(message="the connection was closed"))
        if not started:
            raise TimeoutError

    def _finish(self, event: ConnectionTerminated) -> None:
        if self.terminated is None:
            self.terminated = event
        if not self.closed:
            self.closed = True
            self._on_closed(self)

    # -- used by exchanges and the pool ---------------------------------------------

    def release(self) -> None:
        """End one exchange; the pool decides whether to keep the connection."""
        self.active -= 1
        if self.active > 0:
            return
        if self._on_idle is not None:
            self._on_idle(self)
        elif self.is_dead():
            self.close()

    def close(self) -> None:
        """Ask the owner task to close the connection (returns at once)."""
        self.retired = True
        self._close_requested.set()
        if self._scope is not None:
            self._scope.cancel()
