"""A TCP listener whose serve() returns cleanly when the listener is closed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

import anyio
from anyio.abc import Listener, TaskGroup

from ._streams import ByteStream


class TCPListener(Listener[ByteStream]):
    """Accepts TCP connections on one or more sockets (IPv4 and IPv6).

    Wraps the listener of :func:`anyio.create_tcp_listener`. Unlike that
    one, :meth:`serve` *returns* once :meth:`aclose` is called, rather than
    failing with :exc:`~anyio.ClosedResourceError` (in an exception group
    when there are several sockets), so that stopping a server is not an error.
    Connections already handed to the handler are not touched by :meth:`aclose`.

    Extra attributes are those of the sockets (``local_address``, ``local_port``).
    """

    def __init__(self, listener: Listener[ByteStream]) -> None:
        self._listener = listener
        # Each running serve() call: the scope that stops it, and its exit.
        self._serving: dict[anyio.CancelScope, anyio.Event] = {}
        self._closed = False

    async def serve(
        self,
        handler: Callable[[ByteStream], Any],
        task_group: TaskGroup | None = None,
    ) -> None:
        """Call ``handler`` with each accepted connection, in a task of its own.

        Returns after :meth:`aclose`, once the handlers have returned if
        ``task_group`` was not given (the handlers then run in a task group
        of :meth:`serve`'s own).
        """
        async with AsyncExitStack() as stack:
            if task_group is None:
                task_group = await stack.enter_async_context(anyio.create_task_group())
            # Accepting is stopped by cancelling this scope: the handlers live
            # in task_group, outside it, and are not cancelled with it.
            with anyio.CancelScope() as scope:
                if self._closed:
                    return
                self._serving[scope] = exited = anyio.Event()
                try:
                    await self._listener.serve(handler, task_group)
                finally:
                    del self._serving[scope]
                    exited.set()

    async def aclose(self) -> None:
        """Stop accepting connections and close the sockets; :meth:`serve` returns."""
        self._closed = True
        # Stop the accept loops before closing their sockets: closing first
        # would make them fail with ClosedResourceError instead of returning.
        serving = list(self._serving.items())
        for scope, _ in serving:
            scope.cancel()
        with anyio.CancelScope(shield=True):
            for _, exited in serving:
                await exited.wait()
            await self._listener.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._listener.extra_attributes
