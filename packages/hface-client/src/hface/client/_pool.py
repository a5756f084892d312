"""Connections reused per origin.

HTTP/2 and HTTP/3 connections carry as many exchanges at once as the server
allows (``HTTPConnection.is_available()`` follows the peer's stream limit);
when every connection to an origin is full, another is opened. HTTP/1.1
connections carry one exchange at a time and stay open between exchanges
(keep-alive), at most ``max_idle_connections`` idle per origin.

Openings to one origin are serialised by a lock, so a burst of requests to
a new HTTP/2 or HTTP/3 origin shares the first connection instead of each
opening its own.

The pool owns a task group (entered by :meth:`ConnectionPool.start`, left by
:meth:`ConnectionPool.aclose`) holding the owner task of each connection
and the sessions' upload tasks.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any, Final

import anyio
import anyio.abc
from anyio.abc import TaskGroup

from hface.common import HeadersType
from hface.connections import HTTPConnection, HTTPStream
from hface.errors import LocalProtocolError, TransportError
from hface.networking import TLSVerificationError

from . import errors
from ._connection import PooledConnection
from ._exchange import Exchange
from ._models import Origin

#: Opens (but does not start) a connection to an origin.
Opener = Callable[[Origin], Coroutine[Any, Any, HTTPConnection]]

#: How the HTTP/3 protocol reports a QUIC close with a transport error code.
_QUIC_ERROR: Final = re.compile(r"QUIC transport error (0x[0-9a-fA-F]+)")
#: QUIC CRYPTO_ERROR codes (RFC 9001 §4.8: 0x100 + TLS alert) of certificate
#: alerts (RFC 8446 §6.2): bad_certificate, unsupported_certificate,
#: certificate_revoked, certificate_expired, certificate_unknown, unknown_ca.
_CERTIFICATE_ALERTS: Final = frozenset(0x100 + alert for alert in (42, 43, 44, 45, 46, 48))


def is_quic_certificate_error(message: str) -> bool:
    """True if a failed QUIC handshake's message names a certificate alert.

    aioquic verifies the server's certificate itself and closes the
    connection with CRYPTO_ERROR; the connection layer reports that as a
    ``TransportError`` whose message carries the QUIC code.
    """
    match = _QUIC_ERROR.search(message)
    return match is not None and int(match.group(1), 16) in _CERTIFICATE_ALERTS


#: What the networking layer puts before the reason of a failed connect, which
#: the pool's own message says already (the address is the origin's).
_LOWER_PREFIXES: Final = (
    (re.compile(r"cannot connect to \S+: "), ""),
    (re.compile(r"cannot verify the TLS certificate of \S+: "), ""),
    (re.compile(r"TLS handshake with \S+ failed: "), "the TLS handshake failed: "),
)


def _reason(exc: BaseException) -> str:
    """The reason of a failed connect, without the lower layer's "to where"."""
    message = str(exc) or type(exc).__name__
    for pattern, replacement in _LOWER_PREFIXES:
        match = pattern.match(message)
        if match is not None:
            return replacement + message[match.end() :]
    return message


class ConnectionPool:
    """Connections per origin, each owned by a task of the pool's task group.

    :param what: ``"proxy"`` makes error messages say "the proxy https://...".

    Call :meth:`start` before use and :meth:`aclose` after, from one task.
    """

    def __init__(
        self,
        opener: Opener,
        *,
        connect_timeout: float | None,
        max_idle_connections: int,
        what: str = "origin",
    ) -> None:
        self._opener = opener
        #: How errors name the servers: ``"origin"`` (by URL alone) or ``"proxy"``.
        self.what = what
        self._task_group: TaskGroup | None = None
        self.connect_timeout = connect_timeout
        self.max_idle_connections = max_idle_connections
        self._connections: dict[Origin, list[PooledConnection]] = {}
        self._locks: dict[Origin, anyio.Lock] = {}
        self._closed = False
        #: Connections opened so far (for tests and statistics).
        self.connections_opened = 0

    async def start(self) -> None:
        """Enter the pool's task group (in the task that will call :meth:`aclose`)."""
        if self._task_group is not None or self._closed:
            raise RuntimeError("a pool can be started only once")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group

    async def aclose(self) -> None:
        """Close every connection and end every task of the pool."""
        self.close_all()
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            # The owner tasks close their connections shielded (GOAWAY
            # first), so cancelling here still closes them politely.
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)

    @property
    def task_group(self) -> TaskGroup:
        """The task group of the pool's background tasks (once started)."""
        if self._task_group is None:
            raise RuntimeError("the pool is not running")
        return self._task_group

    async def open_exchange(
        self, origin: Origin, headers: HeadersType, *, end_stream: bool
    ) -> Exchange:
        """Send request headers on a free stream to ``origin``; return the exchange.

        A connection found dead while sending (closed by the server since it
        was last used) is replaced, once, without failing the request.
        """
        for attempt in range(3):
            pooled = await self._get_connection(origin)
            connection = pooled.connection
            stream: HTTPStream | None = None
            pooled.active += 1
            try:
                # No await between opening the stream and submitting the
                # headers: concurrent exchanges never pick the same ID.
                stream = connection.open_stream()
                reused = pooled.exchanges_started > 0
                pooled.exchanges_started += 1
                await stream.send_headers(headers, end_stream)
            except BaseException as exc:
                pooled.active -= 1
                if stream is not None:
                    stream.close()
                stale = isinstance(exc, (TransportError, LocalProtocolError)) and (
                    pooled.is_dead() or not pooled.is_usable()
                )
                if not stale:
                    if pooled.active == 0 and pooled.is_dead():
                        pooled.close()
                    raise
                pooled.close()
                if attempt == 2:
                    raise errors.ConnectionLostError(
                        f"cannot send a request to {origin}: {exc}", origin=str(origin)
                    ) from exc
                continue
            return Exchange(pooled, stream, request_complete=end_stream, reused=reused)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get_connection(self, origin: Origin) -> PooledConnection:
        if self._closed:
            raise RuntimeError("the session is closed")
        found = self._find(origin)
        if found is not None:
            return found
        lock = self._locks.setdefault(origin, anyio.Lock())
        async with lock:
            found = self._find(origin)
            if found is not None:
                return found
            return await self._open(origin)

    def _find(self, origin: Origin) -> PooledConnection | None:
        connections = self._connections.get(origin, [])
        for pooled in list(connections):
            if pooled.is_dead() and pooled.active == 0:
                pooled.close()  # e.g. an idle HTTP/1.1 connection the server closed
        for pooled in connections:
            if pooled.is_usable():
                return pooled
        return None

    async def _open(self, origin: Origin) -> PooledConnection:
        label = str(origin)
        named = label if self.what == "origin" else f"the {self.what} {label}"
        timeout = self.connect_timeout
        try:
            with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
                connection = await self._opener(origin)
            if scope.cancelled_caught:
                raise TimeoutError(f"timed out after {timeout} s connecting to {named}")
            pooled = PooledConnection(
                connection, origin, on_closed=self._forget, on_idle=self._release
            )
            await self.task_group.start(self._run_connection, pooled)
        except TLSVerificationError as exc:
            raise errors.TLSVerificationError(
                f"cannot verify the TLS certificate of {named}: {_reason(exc)}", origin=label
            ) from exc
        except errors.ClientError:
            raise
        except TimeoutError as exc:
            if str(exc):
                raise
            raise TimeoutError(f"timed out after {timeout} s connecting to {named}") from exc
        except (TransportError, OSError) as exc:
            if isinstance(exc, TransportError) and is_quic_certificate_error(str(exc)):
                raise errors.TLSVerificationError(
                    f"cannot verify the TLS certificate of {named} (QUIC): {exc}", origin=label
                ) from exc
            raise errors.ConnectError(
                f"cannot connect to {named}: {_reason(exc)}", origin=label
            ) from exc
        self._connections.setdefault(origin, []).append(pooled)
        self.connections_opened += 1
        return pooled

    async def _run_connection(
        self, pooled: PooledConnection, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        # Raises only before it started (the caller of start() gets the error).
        await pooled.run(connect_timeout=self.connect_timeout, task_status=task_status)

    def _release(self, pooled: PooledConnection) -> None:
        """A connection has no exchange left: close it if dead or beyond the idle cap."""
        if pooled.is_dead():
            pooled.close()
            return
        if pooled.multiplexed:
            return
        idle = [
            other
            for other in self._connections.get(pooled.origin, [])
            if not other.multiplexed and other.active == 0 and not other.is_dead()
        ]
        if len(idle) > self.max_idle_connections:
            pooled.close()

    def _forget(self, pooled: PooledConnection) -> None:
        connections = self._connections.get(pooled.origin)
        if connections is not None:
            with contextlib.suppress(ValueError):
                connections.remove(pooled)

    def count_connections(self, origin: Origin | None = None) -> int:
        """Connections open now (to ``origin``, or in all)."""
        if origin is not None:
            return len(self._connections.get(origin, []))
        return sum(len(connections) for connections in self._connections.values())

    def close_all(self) -> None:
        """Ask every connection to close; their owner tasks end soon after."""
        self._closed = True
        for connections in list(self._connections.values()):
            for pooled in list(connections):
                pooled.close()
