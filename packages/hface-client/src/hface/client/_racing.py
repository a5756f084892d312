"""Racing ways to open a connection (Happy Eyeballs, RFC 8305 §5, between QUIC and TCP).

Theory of operation. A pool's planner may give an origin several
:class:`Attempt` objects, most preferred first (HTTP/3 at an Alt-Svc
alternative, then TCP). :func:`race` starts the first at once and each
next one after its ``delay``, or as soon as the one before it failed;
the first connection opened (its handshake done, its owner task started)
wins, and the attempts still running are cancelled (a connection that
opens anyway is closed). An attempt's ``prepare`` (importing the HTTP/3
stack, a few tenths of a second the first time) is awaited before the
race starts, so that the delays measure the handshakes alone: otherwise
TCP, started 0.2 s after QUIC, would win every first race of a process.
An attempt that fails tells its ``on_failure`` (the Alt-Svc cache
forgets the alternative) and is otherwise silent: only if every attempt
fails does the race fail, with the last attempt's error (the plain TCP
connection's, which the user asked for).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from hface.connections import HTTPConnection

from ._models import Origin

if TYPE_CHECKING:
    from ._connection import PooledConnection

#: Opens (but does not start) a connection to an origin.
Opener = Callable[[Origin], Coroutine[Any, Any, HTTPConnection]]


@dataclass(frozen=True)
class Attempt:
    """One way to open a connection to an origin, in a race with others."""

    #: Seconds after the attempt before it (0 for the first) this one starts,
    #: unless the one before fails sooner.
    delay: float
    #: Opens the connection.
    opener: Opener
    #: Told the error if this attempt fails.
    on_failure: Callable[[BaseException], None] | None = None
    #: Awaited before the race starts (see the module docstring).
    prepare: Callable[[], Awaitable[None]] | None = None


#: The attempts for an origin; none: the pool's opener alone.
Planner = Callable[[Origin], Sequence[Attempt]]


async def race(
    attempts: Sequence[Attempt], start: Callable[[Opener], Awaitable[PooledConnection]]
) -> PooledConnection:
    """Run ``attempts`` (see the module docstring); return the connection that opened first.

    :param start: opens and starts a connection with an opener.
    :raises Exception: the last attempt's error, if every attempt failed.
    """
    for attempt in attempts:
        if attempt.prepare is not None:
            await attempt.prepare()
    failed = [anyio.Event() for _ in attempts]
    failures: dict[int, Exception] = {}
    winner: PooledConnection | None = None

    async def run(index: int) -> None:
        nonlocal winner
        attempt = attempts[index]
        if index > 0:
            with anyio.move_on_after(attempt.delay):
                await failed[index - 1].wait()
        try:
            pooled = await start(attempt.opener)
        except Exception as exc:
            failures[index] = exc
            if attempt.on_failure is not None:
                attempt.on_failure(exc)
            failed[index].set()
            return
        if winner is None:
            winner = pooled
            task_group.cancel_scope.cancel()
        else:
            pooled.close()

    async with anyio.create_task_group() as task_group:
        for index in range(len(attempts)):
            task_group.start_soon(run, index)
    if winner is not None:
        return winner
    raise failures[len(attempts) - 1]
