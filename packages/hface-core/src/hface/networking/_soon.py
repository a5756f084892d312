"""Calling a function once the running task has yielded, on asyncio or Trio.

A consumer that batches work for a task of its own (a writer that
coalesces the frames an application sends in one burst) can do the work
itself where it knows the burst has ended, and needs only a safety net
for where it does not: a plain function called once the running task
yields, which wakes the worker task if work is still waiting. That costs
far less than waking a task for every burst: no event, no task switch.
:func:`current_call_soon` gives that function's scheduler for the event
loop in use: asyncio's ``loop.call_soon``, or Trio's
``TrioToken.run_sync_soon``.

The worker's side of the same pattern is a wait for the next change,
many times a second: :class:`Signal` is one wake-up reused for each. On
asyncio a wait is one future of the loop the signal found at its first
wait. ``anyio.Event`` would make an event for each (finding the backend)
and look the running loop up at each wait: on Python 3.11 each lookup
is a ``getpid()`` system call, which is as much as the rest of the wait.
On Trio a wait is an ``anyio.Event``, made for the round.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable
from typing import Final

import anyio

from ._asyncio_streams import on_asyncio

#: Schedules ``callback()``: it runs in the event loop's thread once the running task yields.
CallSoon = Callable[[Callable[[], None]], object]


def current_call_soon() -> CallSoon:
    """The running event loop's way to call a function once the running task has yielded.

    On asyncio ``loop.call_soon``; on Trio ``TrioToken.run_sync_soon``.
    The function must return at once and raise nothing; it may set events.

    :raises RuntimeError: outside a running asyncio or Trio event loop.
    """
    if on_asyncio():
        return asyncio.get_running_loop().call_soon
    import trio

    return trio.lowlevel.current_trio_token().run_sync_soon


class _Backend(enum.Enum):
    """What a :class:`Signal` waits with, found at its first wait."""

    UNKNOWN = "unknown"
    ASYNCIO = "asyncio"  # futures of the running loop
    OTHER = "other"  # anyio.Event (Trio)


_UNKNOWN: Final = _Backend.UNKNOWN
_ASYNCIO: Final = _Backend.ASYNCIO
_OTHER: Final = _Backend.OTHER


class Signal:
    """A reusable wake-up: :meth:`wait` returns at the next :meth:`set`.

    Each :meth:`set` wakes the tasks waiting then (none: it does nothing),
    and the next :meth:`wait` waits for the next :meth:`set`, like a new
    ``anyio.Event`` made by each waiter and set by the notifier, at less
    cost (see the module docstring). For state a task waits to change:
    ``while not ready: await signal.wait()``, and ``signal.set()`` where
    it changes. A wait is cancelled as any other (anyio's cancel scopes).
    Use it in one event loop; set it from that loop's thread only.
    """

    __slots__ = ("_backend", "_event", "_loop", "_waiters")

    def __init__(self) -> None:
        self._backend = _UNKNOWN
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._event: anyio.Event | None = None

    @property
    def waiting(self) -> bool:
        """Whether a task waits: :meth:`set` would wake it."""
        return bool(self._waiters) or self._event is not None

    def set(self) -> None:
        """Wake the tasks waiting now, if any."""
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        event = self._event
        if event is not None:
            self._event = None
            event.set()

    async def wait(self) -> None:
        """Wait for the next :meth:`set`."""
        backend = self._backend
        if backend is _UNKNOWN:
            if on_asyncio():
                self._backend = backend = _ASYNCIO
                self._loop = asyncio.get_running_loop()
            else:
                self._backend = backend = _OTHER
        loop = self._loop
        if loop is None:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
            return
        waiter = loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:  # cancelled
            with contextlib.suppress(ValueError):  # set() took it already
                self._waiters.remove(waiter)
            raise
