"""What the running event loop offers, looked up once: scheduling, signals, the clock.

Theory of operation. anyio's module-level functions find the running
async library on every call (``anyio.Event()``, ``anyio.current_time()``
each ask sniffio and anyio's backend registry first), which costs more
than the work itself on a path taken for every request. A connection
asks once, when it opens, with :func:`current_loop_tools`, and keeps what
it gets:

- ``call_soon``: a plain function called once the running task has
  yielded (asyncio's ``loop.call_soon``, Trio's
  ``TrioToken.run_sync_soon``). A consumer that batches work for a task
  of its own (a writer that coalesces the frames an application sends in
  one burst) does the work itself where it knows the burst has ended, and
  needs only this safety net where it does not: no event, no task switch.
- ``new_signal``: makes a one-shot :class:`Signal` (``set()`` wakes every
  waiter, for good), as :class:`anyio.Event` but, on asyncio, a future per
  waiter and nothing else (``anyio.Event`` wraps an :class:`asyncio.Event`
  and its deque, some 600 bytes each). Under Trio it is ``anyio.Event``.
- ``time``: the event loop's clock, as :func:`anyio.current_time`.

A task that waits for the next change of some state, many times a
second, waits on a :class:`Pulse`: one object, a new signal per round.

A waiter cancelled by its cancel scope gets the cancellation as it would
from :meth:`anyio.Event.wait`; waiting on a signal already set is a
checkpoint, as there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

from ._asyncio_streams import on_asyncio

#: Schedules ``callback()``: it runs in the event loop's thread once the running task yields.
CallSoon = Callable[[Callable[[], None]], object]


class Signal(Protocol):
    """A one-shot wake-up, as :class:`anyio.Event`: once set, it stays set."""

    def set(self) -> None:
        """Wake every waiter, now and for good."""

    def is_set(self) -> bool:
        """True once :meth:`set` was called."""

    async def wait(self) -> None:
        """Return once the signal is set (at once if it is: a checkpoint)."""


@dataclass(frozen=True, slots=True)
class LoopTools:
    """The running event loop's scheduling, signals and clock (:func:`current_loop_tools`)."""

    #: Calls a function once the running task has yielded (see :func:`current_call_soon`).
    call_soon: CallSoon
    #: Makes a new, unset :class:`Signal`.
    new_signal: Callable[[], Signal]
    #: The event loop's clock in seconds, as :func:`anyio.current_time`.
    time: Callable[[], float]


class _FutureSignal:
    """A :class:`Signal` on asyncio: a future per waiter, made as it waits."""

    __slots__ = ("_loop", "_set", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        if waiters is not None:
            for future in waiters:
                if not future.done():  # (a waiter cancelled meanwhile)
                    future.set_result(None)

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._set:
            await asyncio.sleep(0)  # anyio's checkpoint on asyncio
            return
        # A future per waiter: cancelling one waiter cancels its own future only.
        future = self._loop.create_future()
        if self._waiters is None:
            self._waiters = [future]
        else:
            self._waiters.append(future)
        try:
            await future
        except BaseException:  # cancelled: forget the future, or waits under timeouts pile up
            waiters = self._waiters
            if waiters and future in waiters:  # (None once set)
                waiters.remove(future)
            raise


def current_loop_tools() -> LoopTools:
    """The running event loop's :class:`LoopTools`, to keep while it runs.

    :raises RuntimeError: outside a running asyncio or Trio event loop.
    """
    if on_asyncio():
        loop = asyncio.get_running_loop()
        return LoopTools(
            call_soon=loop.call_soon,
            new_signal=lambda: _FutureSignal(loop),
            time=loop.time,
        )
    import trio

    return LoopTools(
        call_soon=trio.lowlevel.current_trio_token().run_sync_soon,
        new_signal=anyio.Event,
        time=trio.current_time,
    )


class Pulse:
    """A reusable wake-up: :meth:`wait` returns at the next :meth:`set`.

    Each :meth:`set` wakes the tasks waiting then (with none waiting it
    does nothing), and the next :meth:`wait` waits for the next
    :meth:`set`: a new one-shot :class:`Signal` per round, made by the
    first waiter of the round. For state a task waits to change:
    ``while not ready: await pulse.wait()``, and ``pulse.set()`` where it
    changes. The signals come from :func:`current_loop_tools` (looked up
    at the first wait) or from the ``new_signal`` given. Use it in one
    event loop; set it from that loop's thread only.
    """

    __slots__ = ("_new_signal", "_round")

    def __init__(self, new_signal: Callable[[], Signal] | None = None) -> None:
        self._new_signal = new_signal
        self._round: Signal | None = None

    def set(self) -> None:
        """Wake the tasks waiting now, if any."""
        round_ = self._round
        if round_ is not None:
            self._round = None
            round_.set()

    async def wait(self) -> None:
        """Wait for the next :meth:`set`."""
        round_ = self._round
        if round_ is None:
            new_signal = self._new_signal
            if new_signal is None:
                self._new_signal = new_signal = current_loop_tools().new_signal
            self._round = round_ = new_signal()
        await round_.wait()


def current_call_soon() -> CallSoon:
    """The running event loop's way to call a function once the running task has yielded.

    On asyncio ``loop.call_soon``; on Trio ``TrioToken.run_sync_soon``.
    The function must return at once and raise nothing; it may set events.

    :raises RuntimeError: outside a running asyncio or Trio event loop.
    """
    return current_loop_tools().call_soon
