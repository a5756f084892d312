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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

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
