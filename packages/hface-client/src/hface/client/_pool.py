"""Connections reused per origin.

HTTP/2 and HTTP/3 connections carry as many exchanges at once as the server
allows (``HTTPConnection.is_available()`` follows the peer's stream limit);
when every connection to an origin is full, another is opened. HTTP/1.1
connections carry one exchange at a time and stay open between exchanges
(keep-alive), at most ``max_idle_connections`` idle per origin.

Openings to one origin are serialised by a lock, so a burst of requests to
a new HTTP/2 or HTTP/3 origin shares the first connection instead of each
opening its own. A *planner* may give an origin several ways to open a
connection (:class:`Attempt`: HTTP/3 at an Alt-Svc alternative, then
TCP): they race, each started after its delay or at once when the one
before failed, and the first connection opened wins (:mod:`._racing`).
:meth:`ConnectionPool.retire` sends an origin's next exchanges to a new
connection (one the planner may open otherwise).

The pool owns a task group (entered by :meth:`ConnectionPool.start`, left by
:meth:`ConnectionPool.aclose`) holding the owner task of each connection
and the sessions' upload tasks.
"""

from __future__ import annotations

import contextlib
import math
from typing import Final

import anyio
import anyio.abc
from anyio.abc import TaskGroup

from hface.common import HeadersType
from hface.connections import HTTPStream
from hface.errors import LocalProtocolError, TransportError, TransportErrorKind

from . import errors
from ._connection import PooledConnection
from ._exchange import Exchange
from ._models import Origin
from ._racing import Attempt as Attempt
from ._racing import Opener as Opener
from ._racing import Planner as Planner
from ._racing import race

#: QUIC CRYPTO_ERROR codes (RFC 9001 §4.8: 0x100 + TLS alert) of certificate
#: alerts (RFC 8446 §6.2): bad_certificate, unsupported_certificate,
#: certificate_revoked, certificate_expired, certificate_unknown, unknown_ca.
_CERTIFICATE_ALERTS: Final = frozenset(0x100 + alert for alert in (42, 43, 44, 45, 46, 48))


def is_quic_certificate_error(exc: TransportError) -> bool:
    """True if a failed QUIC handshake ended with a certificate alert.

    aioquic verifies the server's certificate itself and closes the
    connection with CRYPTO_ERROR; the HTTP/3 protocol gives the code in
    ``ConnectionTerminated.transport_error_code``, which the connection
    layer raises in the ``TransportError``'s field of the same name.
    """
    return exc.transport_error_code in _CERTIFICATE_ALERTS


def _reason(exc: TransportError | OSError) -> str:
    """Why a connect failed, without the lower layer's "to where" (the pool names it)."""
    if isinstance(exc, TransportError) and exc.reason is not None:
        if exc.kind is TransportErrorKind.TLS_HANDSHAKE:
            return f"the TLS handshake failed: {exc.reason}"
        return exc.reason
    return str(exc) or type(exc).__name__


def _connect_error(exc: TransportError | OSError, named: str, origin: str) -> errors.ConnectError:
    """The client's error for a connection to ``named`` that could not be made."""
    if isinstance(exc, TransportError):
        if is_quic_certificate_error(exc):
            return errors.TLSVerificationError(
                f"cannot verify the TLS certificate of {named} (QUIC): {exc}", origin=origin
            )
        if exc.kind is TransportErrorKind.TLS_VERIFICATION:
            return errors.TLSVerificationError(
                f"cannot verify the TLS certificate of {named}: {_reason(exc)}",
                origin=origin,
                reason=exc.reason,
            )
    handshake = isinstance(exc, TransportError) and exc.kind is TransportErrorKind.TLS_HANDSHAKE
    reason = _reason(exc)
    return errors.ConnectError(
        f"cannot connect to {named}: {reason}",
        origin=origin,
        kind=TransportErrorKind.TLS_HANDSHAKE if handshake else TransportErrorKind.CONNECT,
        reason=exc.reason if isinstance(exc, TransportError) else reason,
    )


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
        planner: Planner | None = None,
    ) -> None:
        self._opener = opener
        self._planner = planner
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
        self,
        origin: Origin,
        headers: HeadersType,
        *,
        end_stream: bool,
        purpose: str | None = None,
    ) -> Exchange:
        """Send request headers on a free stream to ``origin``; return the exchange.

        A connection found dead while sending (closed by the server since it
        was last used) is replaced, once, without failing the request.

        :param purpose: what the exchange is for, if the errors of a new
            connection should say it next to the server's name
            (``"tunnel to example.com:443"``).
        """
        for attempt in range(3):
            pooled = await self._get_connection(origin, purpose)
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

    async def _get_connection(self, origin: Origin, purpose: str | None) -> PooledConnection:
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
            return await self._open(origin, purpose)

    def _find(self, origin: Origin) -> PooledConnection | None:
        connections = self._connections.get(origin, [])
        for pooled in list(connections):
            if pooled.is_dead() and pooled.active == 0:
                pooled.close()  # e.g. an idle HTTP/1.1 connection the server closed
        for pooled in connections:
            if pooled.is_usable():
                return pooled
        return None

    async def _open(self, origin: Origin, purpose: str | None) -> PooledConnection:
        label = str(origin)
        named = label if self.what == "origin" else f"the {self.what} {label}"
        if purpose is not None:
            named = f"{named} ({purpose})"
        timeout = self.connect_timeout
        timed_out = f"timed out after {timeout} s connecting to {named}"

        async def start(opener: Opener) -> PooledConnection:
            with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
                connection = await opener(origin)
            if scope.cancelled_caught:
                raise TimeoutError(timed_out)
            pooled = PooledConnection(
                connection, origin, on_closed=self._forget, on_idle=self._release
            )
            try:
                await self.task_group.start(self._run_connection, pooled)
            except TimeoutError as exc:  # the owner's deadline: the rest of connect_timeout
                raise TimeoutError(timed_out) from exc
            return pooled

        attempts = () if self._planner is None else self._planner(origin)
        try:
            if len(attempts) > 1:
                pooled = await race(attempts, start)
            else:
                pooled = await start(attempts[0].opener if attempts else self._opener)
        except (errors.ClientError, TimeoutError):
            # Ours, or one from below that names its server (a proxy's).
            raise
        except (TransportError, OSError) as exc:
            raise _connect_error(exc, named, label) from exc
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

    def retire(self, origin: Origin) -> None:
        """Start no new exchange on the connections open to ``origin`` now.

        The exchanges in flight go on; each connection closes once idle.
        """
        for pooled in list(self._connections.get(origin, [])):
            pooled.retired = True
            if pooled.active == 0:
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
