"""``HTTPOverQUICConnection``: HTTP/3 over a datagram stream (QUIC inside).

Theory of operation: see :class:`HTTPOverQUICConnection` and, for what
every connection shares, :mod:`hface.connections._connection`. The
transport task waits for the next datagram or the protocol's next timer,
whichever comes first; sending a datagram never waits for the peer. A
datagram the stream already holds (a
:class:`~hface.networking.NowaitDatagramStream`) is taken at once, with
no cancel scope: the flush that ends each round yields to the other tasks.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import SocketAttribute, TaskStatus

from hface.errors import TerminationReason, TransportError, TransportErrorKind
from hface.events import ConnectionTerminated
from hface.networking import (
    DatagramStream,
    NowaitDatagramStream,
    QUICStream,
    Signal,
    current_loop_tools,
)
from hface.protocols import HTTPOverQUICProtocol

from ._connection import HTTPConnection
from ._core import TRANSPORT_ERRORS, ended_error
from ._options import ConnectionOptions


class _Flush(enum.Enum):
    """Whether a flush is about to build datagrams (see :meth:`HTTPOverQUICConnection._flush`)."""

    #: Nobody is about to flush.
    IDLE = "idle"
    #: A flusher lets the tasks ready now run first; it sends what they produce too.
    GATHERING = "gathering"


#: Datagrams the transport task takes from its stream's queue in a row
#: without a cancellable checkpoint (see _serve_datagrams).
_NOWAIT_STREAK = 32
#: Seconds :meth:`HTTPConnection.aclose` waits at most for an HTTP/3 close
#: that lingers for acknowledgements (the protocol gives up sooner itself).
_QUIC_CLOSE_TIMEOUT = 5.0


def _os_error(error: BaseException) -> OSError | None:
    """The :exc:`OSError` behind a stream's exception (anyio chains it), if any."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, OSError):
            return current
        current = current.__cause__
    return None


def _udp_failure(error: OSError, port: int | None) -> str:
    """Why a UDP socket failed, for people: a refusal is ICMP port unreachable."""
    reason = error.strerror or str(error)
    if isinstance(error, ConnectionRefusedError):
        where = "there" if port is None else f"on UDP port {port}"
        return f"{reason}: nothing listens {where} (ICMP port unreachable)"
    return reason


class HTTPOverQUICConnection(HTTPConnection):
    """:class:`HTTPConnection` for HTTP/3 over a datagram stream (QUIC inside).

    The options' ``handshake_timeout`` bounds the QUIC handshake, from
    :meth:`open`: after it the connection fails (``ConnectionTerminated``;
    :meth:`open` raises on a client). A socket that fails meanwhile (the
    kernel's ICMP port unreachable: nothing listens on that UDP port) ends
    the handshake at once: :meth:`open` raises a ``TransportError`` whose
    ``reason`` says so, from the socket's :exc:`OSError`.
    """

    _stream: DatagramStream

    def __init__(
        self,
        protocol: HTTPOverQUICProtocol,
        stream: DatagramStream,
        *,
        options: ConnectionOptions | None = None,
    ) -> None:
        super().__init__(protocol, options=options)
        self._handshake_timeout = self._options.handshake_timeout
        self._quic_protocol = protocol
        self._stream = stream
        self._connection_ids: frozenset[bytes] = frozenset()
        # The transport task's wait for a datagram; cancelled once the
        # connection has ended, so that the task closes the stream at once.
        self._wait_scope: anyio.CancelScope | None = None
        # Sending a datagram never waits for the peer, so the lock is rarely
        # contended: taking it free must not cost a trip through the event
        # loop, as it would on every flush (a few per request) otherwise.
        self._send_lock = anyio.Lock(fast_acquire=True)
        # True while the transport task reads datagrams (and acknowledgements).
        self._transport_running = False
        # What the socket raised when it failed, if it did (an ICMP error,
        # say), and why that was, for people.
        self._socket_error: OSError | None = None
        self._socket_failure = ""
        # One flusher at a time gathers the output of every task ready to
        # run (see _flush()); the others wait for it, on this event.
        self._flush_state = _Flush.IDLE
        self._flushed: Signal | None = None
        # Once a send failed, every flush fails with it: the connection is gone.
        self._flush_error: TransportError | None = None

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The socket's typed attributes, plus TLS ones (QUIC does its own TLS)."""
        from anyio.streams.tls import TLSAttribute

        return {
            **self._stream.extra_attributes,
            TLSAttribute.alpn_protocol: lambda: "h3",
            TLSAttribute.tls_version: lambda: "TLSv1.3",
        }

    def _protocol_connection_lost(self) -> None:
        self._quic_protocol.connection_lost()

    async def _opened(self) -> None:
        while not self._quic_protocol.handshake_completed:
            ended = self._terminated
            if ended is not None:
                # The handshake failed, unless no datagram got through at all.
                lost = ended.reason is TerminationReason.TRANSPORT_LOST
                kind = TransportErrorKind.CONNECT if lost else TransportErrorKind.TLS_HANDSHAKE
                error = ended_error(ended, "the QUIC handshake failed", kind)
                if lost and self._socket_error is not None:
                    # The kernel said why: the error names it (a refusal: exit 7, not 28).
                    error.reason = self._socket_failure
                    raise error from self._socket_error
                raise error
            await self._wait_for_progress()

    def _note_socket_error(self, error: BaseException) -> None:
        """Keep the :exc:`OSError` behind a failed receive, and say what it means."""
        os_error = _os_error(error)
        if os_error is not None:
            self._socket_error = os_error
            port = self._stream.extra(SocketAttribute.remote_port, None)
            self._socket_failure = _udp_failure(os_error, port)

    def _route(self) -> None:
        if isinstance(self._stream, QUICStream):
            connection_ids = frozenset(self._quic_protocol.connection_ids)
            if connection_ids != self._connection_ids:
                self._connection_ids = connection_ids
                self._stream.update_connection_ids(list(connection_ids))

    async def _run_transport(self, *, task_status: TaskStatus[None]) -> None:
        self._transport_running = True
        try:
            await self._serve_datagrams(task_status=task_status)
        finally:
            # Cancelled (its task group, or an outer scope) or ended: a close
            # lingering for acknowledgements stops waiting for them.
            self._transport_running = False
            self._wake_all()

    async def _serve_datagrams(self, *, task_status: TaskStatus[None]) -> None:
        protocol = self._quic_protocol
        stream = self._stream
        receive_nowait = stream.receive_nowait if isinstance(stream, NowaitDatagramStream) else None
        now = current_loop_tools().time  # anyio.current_time(), without its look-ups
        protocol.clock(now())
        self._route()
        await self._flush_quietly()  # a client's Initial
        task_status.started()
        timeout = self._handshake_timeout
        handshake_deadline = math.inf if timeout is None else now() + timeout
        streak = 0  # datagrams taken in a row without a cancellable checkpoint
        while self._terminated is None:
            if handshake_deadline != math.inf:
                if protocol.handshake_completed:
                    handshake_deadline = math.inf
                elif now() >= handshake_deadline:
                    # Reported before the protocol's own "connection lost".
                    message = f"the QUIC handshake did not complete within {timeout} s"
                    error_code = protocol.error_codes.internal_error
                    self._terminate(
                        ConnectionTerminated(
                            error_code=error_code, message=message, reason=TerminationReason.TIMEOUT
                        )
                    )
                    self._protocol_connection_lost()
                    self._wake_all()
                    break
            timer = protocol.get_timer()
            if handshake_deadline != math.inf and (timer is None or timer > handshake_deadline):
                timer = handshake_deadline
            delay = math.inf if timer is None else timer - now()
            datagram = None if receive_nowait is None else receive_nowait()
            if datagram is not None:
                # Already here: no wait (the flush below yields, shielded).
                # A peer that keeps the queue full must not make the task
                # deaf to cancellation: one checkpoint every so many.
                streak += 1
                if streak >= _NOWAIT_STREAK:
                    streak = 0
                    await anyio.lowlevel.checkpoint()
            elif delay > 0:
                streak = 0
                with anyio.CancelScope(deadline=math.inf if timer is None else timer) as scope:
                    self._wait_scope = scope
                    try:
                        datagram = await stream.receive()
                    except TRANSPORT_ERRORS as error:
                        self._note_socket_error(error)
                        self._fail(f"connection lost: {error!r}")
                        break
                    finally:
                        self._wait_scope = None
                if self._ended():
                    break  # by another task's flush
            else:
                # Only a timer fired: yield anyway, so that a timer aioquic
                # leaves in the past cannot starve every other task.
                await anyio.lowlevel.checkpoint()
            protocol.clock(now())
            if datagram is not None:
                protocol.datagram_received(datagram)
            self._route()
            self._process_events()
            await self._flush_quietly()  # which queues what sending produced
        await self._close_transport()

    async def _flush(self) -> None:
        """Send what the protocol has, together with what the tasks ready now add.

        Building datagrams costs far more than a turn of the event loop
        (aioquic packs, encrypts and pads each), and the tasks of a server
        answer their requests in the same turn: sent one by one, ten
        responses make ten datagrams, where one flush after all of them
        makes as few as their bytes fill. So the first flusher lets every
        task ready to run go first (a checkpoint no cancellation cuts
        short: it sends for the others too), and flushes that come
        meanwhile wait for it and share its outcome, a
        :exc:`~hface.errors.TransportError` included.
        """
        if self._flush_state is _Flush.GATHERING:
            if self._flushed is None:
                self._flushed = self._router.new_signal()
            flushed = self._flushed
            await flushed.wait()
            if self._flush_error is not None:
                raise self._flush_error
            return
        self._flush_state = _Flush.GATHERING
        try:
            await anyio.lowlevel.cancel_shielded_checkpoint()
        finally:
            # The round is closed: later flushes gather a round of their own.
            self._flush_state = _Flush.IDLE
            waiting, self._flushed = self._flushed, None
        try:
            await self._send_datagrams()
        except TransportError as error:
            self._flush_error = error
            raise
        finally:
            if waiting is not None:
                waiting.set()

    async def _send_datagrams(self) -> None:
        async with self._send_lock:
            protocol = self._quic_protocol
            datagrams = protocol.datagrams_to_send()
            if datagrams:
                try:
                    # Shielded: the protocol counts these as sent (a close it
                    # took as sent reports ConnectionTerminated at once), so a
                    # task cancelled on seeing that event must not lose them.
                    with anyio.CancelScope(shield=True):
                        for datagram in datagrams:
                            await self._stream.send(datagram)
                except TRANSPORT_ERRORS as error:
                    if self._terminated is None:
                        self._fail(f"cannot send: {error!r}")
                    self._stop_waiting()
                    raise TransportError(f"cannot send: {error!r}") from error
            if self._terminated is None and protocol.has_expired():
                # Sending can end the connection: a close that was pending
                # (a local error, a certificate aioquic rejected, the end of
                # a graceful close) is reported only once it went out, and
                # no timer or datagram may come to report it later. Sending
                # adds no other event, so an open connection needs no look.
                self._process_events()
                if self._ended():
                    self._stop_waiting()

    async def _flush_before_close(self) -> None:
        """Flush, then wait while the protocol's graceful close lingers.

        The HTTP/3 protocol sends its QUIC close only once the peer has
        acknowledged what was sent (or a linger time passed without
        progress); meanwhile the transport task reads the acknowledgements.
        Not if that task was cancelled (a cancelled owner or server): then
        nothing can arrive, and the close goes out at once, as it does
        after :data:`_QUIC_CLOSE_TIMEOUT` seconds.
        """
        await self._flush_quietly()
        with anyio.move_on_after(_QUIC_CLOSE_TIMEOUT):
            while self._transport_running and not self._ended():
                await self._wait_for_progress()
        if not self._ended():
            self._quic_protocol.submit_close()
            self._quic_protocol.abandon_linger()  # at once
            await self._flush_quietly()

    async def _close_transport(self) -> None:
        with anyio.CancelScope(shield=True):
            async with self._send_lock:  # after the datagrams another task is sending
                await super()._close_transport()

    def _ended(self) -> bool:
        # A method, not the attribute: mypy would take the attribute to be
        # what the enclosing check found, across awaits and calls.
        return self._terminated is not None

    def _stop_waiting(self) -> None:
        """Have the transport task stop waiting for datagrams: the connection ended."""
        if self._wait_scope is not None:
            self._wait_scope.cancel()
