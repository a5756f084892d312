"""``HTTPOverTCPConnection``: HTTP/1.1 and HTTP/2 over a TCP or TLS byte stream.

Theory of operation: see :class:`HTTPOverTCPConnection` (one writer at a
time, shielded writes, the lingering close of servers) and, for what every
connection shares, :mod:`hface.connections._connection`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from hface.errors import TransportError
from hface.networking import ByteStream, NowaitByteStream, Signal
from hface.protocols import HTTPOverTCPProtocol

from ._connection import HTTPConnection
from ._core import TRANSPORT_ERRORS
from ._options import ConnectionOptions

#: Bytes read from a TCP stream at once: as much as uvloop reads at once (256 KiB),
#: so that a large body or a tunnel's data costs a quarter of the passes above.
_READ_SIZE = 262144

#: Seconds a writer cancelled by a deadline may still take to finish its write.
_WRITE_GRACE = 1.0

#: Seconds the last flush before closing a TCP stream may wait for the peer.
_CLOSE_FLUSH_TIMEOUT = 1.0
#: Seconds of silence from the peer that end a linger before its time (nginx's
#: ``lingering_timeout``, shorter: TLS cannot tell the peer that we are done).
_LINGER_IDLE_TIMEOUT = 0.5


class HTTPOverTCPConnection(HTTPConnection):
    """:class:`HTTPConnection` for HTTP/1.1 and HTTP/2 over a TCP or TLS byte stream.

    Writes, unlike QUIC's, can wait on the peer: a socket write blocks
    while the peer does not read. Hence three rules.

    - One task writes at a time (a flag and an event, not the send lock),
      and it writes until the protocol has nothing left, including what
      other tasks produced meanwhile; those wait for it to finish, all at
      once. A task that must not wait for a writer (the transport task,
      acknowledgements, GOAWAY) leaves its output to the writer: were the
      transport task to wait, it would stop reading, and a peer blocked in
      its own write would never read ours.
    - Writes are shielded from cancellation: a writer cancelled halfway
      would cut a TLS record or an HTTP/2 frame and break every stream.
      A writer cancelled by a deadline gets :data:`_WRITE_GRACE` more
      seconds; a write still not done then is cut, and the connection fails.
    - Events are processed before each write, so that a close that starts
      on our side (an HTTP/1.1 reset) is reported at once, and the
      transport task, woken, closes the stream without waiting for the peer.

    Lingering close (servers; RFC 9112 §9.6, nginx's ``lingering_close``).
    Closing a socket with unread bytes in its receive buffer, or bytes
    still coming, makes the kernel send a TCP RST, which can destroy our
    last bytes before the client reads them: the 413 answering a body
    still being uploaded, the 400 of a malformed request, HTTP/2's GOAWAY
    for a flood. With ``linger_timeout`` set (:class:`HTTPOverTCPListener`
    sets it), a connection that closes while the peer may still be sending
    writes what is pending, shuts down its sending side (plain TCP: a FIN;
    TLS cannot half-close, so it goes on to read), then the transport task
    reads and discards until the peer's EOF, ``linger_timeout`` seconds,
    ``linger_max_bytes`` bytes or half a second without a byte, whichever
    comes first, and only then closes. "May still be sending" means: no
    EOF from the peer, no broken transport, and either an HTTP/1.1 request
    not received to its end when :meth:`aclose` is called (a body answered
    early, a CONNECT tunnel), an HTTP/2 close with an error code
    (:meth:`begin_close`, :meth:`aclose`), or an end the protocol reported
    with an error code (400, 431, a flood's GOAWAY). Any other close (an
    idle connection, a graceful GOAWAY) is at once. :meth:`aclose` waits
    for the linger without shielding it: a cancelled caller ends it.

    The options' ``linger_timeout`` bounds how long a lingering close may
    read (``None``, the default, never lingers, as clients should not), and
    ``linger_max_bytes`` how much.
    """

    _stream: ByteStream

    def __init__(
        self,
        protocol: HTTPOverTCPProtocol,
        stream: ByteStream,
        *,
        options: ConnectionOptions | None = None,
    ) -> None:
        super().__init__(protocol, options=options)
        self._tcp_protocol = protocol
        self._stream = stream
        self._linger_timeout = self._options.linger_timeout
        self._linger_max_bytes = self._options.linger_max_bytes
        self._max_buffered_data = self._options.max_buffered_data
        # Set by aclose() and begin_close(): whether the peer may still be
        # sending; None leaves it to the protocol's end (an error lingers).
        self._linger_wanted: bool | None = None
        self._eof = False  # the peer's end of stream has come
        self._lost = False  # the transport failed
        # Set once the transport task has closed the stream (after any linger).
        self._transport_ended = False
        self._transport_end: anyio.Event | None = None
        # Writes that cannot wait need no shielded scope (see _flush()).
        self._send_nowait = stream.send_nowait if isinstance(stream, NowaitByteStream) else None
        # The transport task's loop of reads (and its wait after the peer's
        # EOF); cancelled once the connection has ended, to close the stream at once.
        self._read_scope: anyio.CancelScope | None = None
        # One writer at a time (see _flush()), and the waiters' wake-up.
        self._writing = False
        self._written: Signal | None = None
        # Set once a write was cut halfway: nothing more may be written.
        self._broken = False
        # Taken from the protocol by _flush_nowait() but not written: first out.
        self._unsent = b""

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The stream's typed attributes (``anyio.abc.SocketAttribute``, ``TLSAttribute``)."""
        return self._stream.extra_attributes

    def _protocol_connection_lost(self) -> None:
        self._lost = True
        self._tcp_protocol.connection_lost()

    def begin_close(self, error_code: int) -> None:
        """Close with ``error_code`` (one of :attr:`error_codes`) when :meth:`aclose` is called.

        As :meth:`HTTPConnection.begin_close`; on HTTP/2 a code other than
        ``no_error`` makes a server's close linger (see the class's docstring).
        """
        if self._closed or self._terminated is not None:
            return
        protocol = self._protocol
        if protocol.multiplexed:
            if error_code != protocol.error_codes.no_error:
                self._linger_wanted = True
        elif self._request_ended and protocol.is_available():
            # HTTP/1.1's codes are statuses, and an idle connection ends
            # with one too (408, without a word), which must not linger.
            self._linger_wanted = False
        super().begin_close(error_code)

    async def aclose(self, error_code: int | None = None) -> None:
        """Close the connection, lingering first if the peer may still send.

        As :meth:`HTTPConnection.aclose`; see the class's docstring for
        when a server's connection lingers.
        """
        if not self._closed and not self._request_ended and not self._protocol.multiplexed:
            # A request whose body may still come (answered early, e.g.
            # 413), or a CONNECT tunnel the client still writes to.
            self._linger_wanted = True
        await super().aclose(error_code)

    def _must_linger(self) -> bool:
        """Return True if closing now should linger: the peer may still be sending."""
        if self._linger_timeout is None or self._eof or self._lost or self._broken:
            return False
        if self._linger_wanted is not None:
            return self._linger_wanted
        terminated = self._terminated
        return terminated is not None and terminated.error_code != self.error_codes.no_error

    async def _wait_for_linger(self) -> None:
        if not self._must_linger() or self._transport_ended:
            return
        self._wake_all()  # the transport task leaves its loop of reads, to linger
        if self._transport_end is None:
            self._transport_end = anyio.Event()
        # Bounded: the transport task may be stuck in a write to a peer
        # that does not read, which only closing the stream ends.
        assert self._linger_timeout is not None
        with anyio.move_on_after(self._linger_timeout + _CLOSE_FLUSH_TIMEOUT + _WRITE_GRACE):
            await self._transport_end.wait()

    async def _linger(self) -> None:
        """Shut down our sending side, then read and discard for a bounded time."""
        stream = self._stream
        with contextlib.suppress(NotImplementedError, *TRANSPORT_ERRORS):
            await stream.send_eof()  # TCP's FIN; TLS cannot half-close (NotImplementedError)
        budget = self._linger_max_bytes
        # A deadline for the whole linger, not only per read: a client
        # sending a byte now and then must not keep the connection any longer.
        with anyio.move_on_after(self._linger_timeout or 0.0):
            while budget > 0:
                # A peer silent for a while has nothing more in flight: TLS
                # sent no EOF, and a peer waiting for ours would wait in vain.
                with anyio.move_on_after(_LINGER_IDLE_TIMEOUT) as idle:
                    try:
                        data = await stream.receive(min(_READ_SIZE, budget))
                    except TRANSPORT_ERRORS:
                        return  # the peer's EOF (or its reset): done
                if idle.cancelled_caught:
                    return
                budget -= len(data)

    async def _run_transport(self, *, task_status: TaskStatus[None]) -> None:
        try:
            await self._serve_bytes(task_status=task_status)
        finally:
            self._transport_ended = True
            if self._transport_end is not None:
                self._transport_end.set()

    async def _serve_bytes(self, *, task_status: TaskStatus[None]) -> None:
        protocol = self._tcp_protocol
        stream = self._stream
        router = self._router
        multiplexed = protocol.multiplexed
        await self._flush_quietly()  # an HTTP/2 preface and SETTINGS
        task_status.started()
        eof = False
        # One scope for the whole loop, not one per read (a scope costs as
        # much as a small read): cancelled only once the connection has
        # ended, when the loop is done anyway. Writes in it are shielded.
        with anyio.CancelScope() as self._read_scope:
            while not self._finished():
                if not multiplexed and router.buffered > self._max_buffered_data:
                    await router.wait_for_room()
                    continue
                if eof:
                    # Nothing more will come; the exchange in progress may
                    # still answer. Wait for the end, without spinning.
                    await anyio.sleep_forever()
                data: bytes | None = None
                try:
                    data = await stream.receive(_READ_SIZE)
                except anyio.EndOfStream:
                    eof = self._eof = True
                except TRANSPORT_ERRORS as error:
                    self._fail(f"connection lost: {error!r}")
                if self._finished():
                    break  # failed, or ended by another task
                if data is None:
                    protocol.eof_received()
                else:
                    if multiplexed:  # HTTP/2's budgets refill with time
                        protocol.clock(anyio.current_time())
                    protocol.bytes_received(data)
                    # A cleartext server's first bytes may decide HTTP/2
                    # (prior knowledge), whose flow control bounds what it
                    # holds: its reads must not stop at HTTP/1.1's limit.
                    multiplexed = multiplexed or protocol.multiplexed
                self._process_events()
                # The events are processed: only what the protocol has to send is
                # left (most often nothing), not a second round of its events.
                if not self._write_nowait():
                    await self._flush_quietly()
        self._read_scope = None
        await self._flush_before_close()
        if self._must_linger():
            await self._linger()
        await self._close_transport()

    def _finished(self) -> bool:
        # A method, not the attributes: mypy would keep what the loop's
        # condition found across the awaits in which other tasks change them.
        return self._terminated is not None or self._closed

    def _wake_all(self) -> None:
        super()._wake_all()
        if self._read_scope is not None and self._finished():
            self._read_scope.cancel()

    async def _flush_quietly(self) -> None:
        """Write what there is, unless another task is writing: that task writes it too."""
        with contextlib.suppress(TransportError):
            await self._flush(wait=False)

    async def _flush_before_close(self) -> None:
        """Flush for at most :data:`_CLOSE_FLUSH_TIMEOUT` s: a peer may never read."""
        with anyio.move_on_after(_CLOSE_FLUSH_TIMEOUT), contextlib.suppress(TransportError):
            await self._flush()

    async def _flush(self, *, wait: bool = True) -> None:
        """Write what the protocol has to send; see the class's docstring.

        :param wait: wait for the send lock if another task holds it;
            otherwise leave the output to that task and return.
        :raises TransportError: if the stream cannot take the bytes.
        """
        if wait:
            # The writes are shielded and a free turn is taken at once: without
            # this, a cancelled task that keeps sending would never notice.
            await anyio.lowlevel.checkpoint_if_cancelled()
        while self._writing:
            if not wait:
                return
            # The writer writes until the protocol has nothing left, what we
            # produced included. Every task waiting wakes when it is done, not
            # one after another as on a lock, which on a busy HTTP/2
            # connection would make a convoy of tasks with nothing to write.
            if self._written is None:
                self._written = self._router.new_signal()
            await self._written.wait()
        self._writing = True
        try:
            if self._terminated is None:
                self._process_events()
            deadline: float | None = None  # looked up only if a write may wait
            protocol = self._tcp_protocol
            send_nowait = self._send_nowait
            while not self._broken and (data := self._unsent or protocol.bytes_to_send()):
                self._unsent = b""
                if send_nowait is not None and send_nowait(data):
                    # Taken at once, as send() would have (no wait for the
                    # peer), without the cost of a scope per write.
                    continue
                if deadline is None:
                    deadline = anyio.current_effective_deadline()
                    if deadline != math.inf:
                        deadline = max(deadline, anyio.current_time()) + _WRITE_GRACE
                with anyio.CancelScope(shield=True, deadline=deadline) as scope:
                    try:
                        await self._stream.send(data)
                    except TRANSPORT_ERRORS as error:
                        if self._terminated is None:
                            self._fail(f"cannot send: {error!r}")
                        raise TransportError(f"cannot send: {error!r}") from error
                if scope.cancelled_caught:
                    # Cut halfway: the stream is broken from here on.
                    self._broken = True
                    if self._terminated is None:
                        self._fail("a write was cancelled halfway")
        finally:
            self._writing = False
            written, self._written = self._written, None
            if written is not None:
                written.set()
        if self._broken:
            await anyio.lowlevel.checkpoint_if_cancelled()  # the caller's cancellation
            raise TransportError("a write was cancelled halfway")

    def _flush_nowait(self) -> bool:
        """:meth:`_flush` without an ``await``, where no write has to wait.

        Only on a stream that can write without an ``await``
        (:class:`~hface.networking.NowaitByteStream`), with no other writer
        in the way. Bytes the stream does not take at once are kept for
        :meth:`_flush`, which writes them first.
        """
        if self._send_nowait is None or self._writing or self._broken:
            return False
        if self._terminated is None:
            self._process_events()
        return self._write_nowait()

    def _write_nowait(self) -> bool:
        """The writes of :meth:`_flush_nowait`, its events processed already."""
        send_nowait = self._send_nowait
        if send_nowait is None or self._writing or self._broken:
            return False
        protocol = self._tcp_protocol
        while data := self._unsent or protocol.bytes_to_send():
            if not send_nowait(data):
                self._unsent = data
                return False
            self._unsent = b""
        return True
