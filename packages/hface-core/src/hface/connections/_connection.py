"""``HTTPConnection``: one sans-IO protocol joined to one network stream.

Theory of operation. A connection owns a task group with one background
task, the *transport task*, which is the only reader of the network stream:
it feeds what arrives to the protocol (and, on QUIC, fires the protocol's
timers), queues the events the protocol produces, and writes what the
protocol has to send. Application tasks call ``send_*`` (which submit to the
protocol and write its output) and ``receive_event`` (which takes the next
queued event). Writes from every task go through one lock, so bytes leave in
the order the protocol produced them. On TCP a write can wait on the peer:
there the transport task never waits for another writer, and writes are
shielded from cancellation (see :class:`HTTPOverTCPConnection`).

Backpressure, both ways:

- Sending: ``send_data`` returns once the protocol holds at most
  ``max_pending_data`` bytes of the stream (data beyond the peer's
  flow-control window), so a slow peer slows the sender. On HTTP/1.1 the
  socket write itself blocks.
- Receiving: received data is acknowledged to the protocol only when the
  application takes it from ``receive_event`` (or calls
  ``acknowledge_received_data`` itself when ``auto_acknowledge`` is off),
  so HTTP/2 and HTTP/3 windows reopen only as data is consumed. HTTP/1.1
  has no windows: the transport task stops reading while more than
  ``max_buffered_data`` bytes of received data wait in the queue.

Once the protocol reports ``ConnectionTerminated`` the transport task
flushes, closes the stream and ends; ``receive_event`` then returns that
same event on every call.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
from anyio import TypedAttributeProvider
from anyio.abc import SocketAttribute, TaskStatus

from hface.common import AddressType, HeadersType, HTTPErrorCodes
from hface.errors import (
    LocalProtocolError,
    TerminationReason,
    TransportError,
    TransportErrorKind,
)
from hface.events import ConnectionTerminated, DataReceived, Event, HeadersReceived
from hface.networking import ByteStream, DatagramStream, NowaitByteStream, QUICStream
from hface.protocols import HTTPOverQUICProtocol, HTTPOverTCPProtocol, HTTPProtocol

#: Bytes read from a TCP stream at once.
_READ_SIZE = 65536

#: Seconds a writer cancelled by a deadline may still take to finish its write.
_WRITE_GRACE = 1.0

#: Seconds a QUIC handshake may take by default (as a TLS handshake on a server).
DEFAULT_QUIC_HANDSHAKE_TIMEOUT = 10.0

#: Seconds the last flush before closing a TCP stream may wait for the peer.
_CLOSE_FLUSH_TIMEOUT = 1.0
#: Seconds a server's TCP connection lingers at most after its last write,
#: reading and discarding what the client still sends (nginx's ``lingering_time``).
DEFAULT_LINGER_TIMEOUT = 2.0
#: Seconds of silence from the peer that end a linger before its time (nginx's
#: ``lingering_timeout``, shorter: TLS cannot tell the peer that we are done).
_LINGER_IDLE_TIMEOUT = 0.5
#: Bytes a lingering TCP connection reads and discards at most before it closes.
DEFAULT_LINGER_MAX_BYTES = 1024 * 1024
#: Seconds :meth:`HTTPConnection.aclose` waits at most for an HTTP/3 close
#: that lingers for acknowledgements (the protocol gives up sooner itself).
_QUIC_CLOSE_TIMEOUT = 5.0

_TRANSPORT_ERRORS = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    OSError,
)


def ended_error(
    ended: ConnectionTerminated | None,
    default: str,
    kind: TransportErrorKind = TransportErrorKind.CLOSED,
) -> TransportError:
    """The error for using a connection that has ended: the end's message and fields.

    :param ended: the protocol's ``ConnectionTerminated``, if it gave one.
    :param default: the message if the end gave none.
    """
    if ended is None:
        return TransportError(default, kind=kind)
    return TransportError(
        ended.message or default,
        kind=kind,
        termination=ended.reason,
        transport_error_code=ended.transport_error_code,
    )


class HTTPConnection(TypedAttributeProvider, ABC):
    """An HTTP connection of any version, client or server side.

    Connections come from an :class:`~hface.connections.HTTPListener` (servers)
    or an :class:`~hface.connections.HTTPOpener` (clients), not opened yet:
    use ``async with connection:`` (or :meth:`open` and :meth:`aclose` from
    one task). Events for every stream come from :meth:`receive_event`.

    :param max_pending_data: :meth:`send_data` waits while the protocol holds
        more than this many bytes of the stream (flow control).
    :param max_buffered_data: HTTP/1.1 stops reading the socket while more
        than this many received bytes wait to be taken.
    :param auto_acknowledge: acknowledge received data as
        :meth:`receive_event` returns it; turn off to acknowledge with
        :meth:`acknowledge_received_data` as the data is really consumed.
    """

    #: The network stream underneath (set by the subclasses).
    _stream: anyio.abc.AsyncResource

    def __init__(
        self,
        protocol: HTTPProtocol,
        *,
        max_pending_data: int = 256 * 1024,
        max_buffered_data: int = 1024 * 1024,
        auto_acknowledge: bool = True,
    ) -> None:
        self._protocol = protocol
        self._max_pending_data = max_pending_data
        self._max_buffered_data = max_buffered_data
        self._auto_acknowledge = auto_acknowledge
        # The events for receive_event(); a deque and an event made only when
        # a reader waits, lighter than a memory object stream (which makes a
        # trip through the event loop on every receive).
        self._events: deque[Event] = deque()
        self._events_waiter: anyio.Event | None = None
        self._events_ended = False  # terminated or closed: no event comes anymore
        self._buffered_data = 0
        self._room = anyio.Event()
        # Made by _wait_for_progress() only: _wake_all() runs on every read and write.
        self._progress: anyio.Event | None = None
        self._send_lock = anyio.Lock()
        self._terminated: ConnectionTerminated | None = None
        # HTTP/1.1: whether the last message received has ended (a server
        # closing before the request's end lingers; see HTTPOverTCPConnection).
        self._request_ended = True
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closed = False

    # -- properties ---------------------------------------------------------

    @property
    def http_version(self) -> str:
        """The HTTP version: ``"1.1"``, ``"2"`` or ``"3"``."""
        return self._protocol.http_version

    @property
    def multiplexed(self) -> bool:
        """True if streams run concurrently (HTTP/2 and HTTP/3)."""
        return self._protocol.multiplexed

    @property
    def error_codes(self) -> HTTPErrorCodes:
        """This version's error codes, for :meth:`send_stream_reset`."""
        return self._protocol.error_codes

    @property
    def local_address(self) -> AddressType:
        """Our end of the connection, ``(host, port)``."""
        address = self.extra(SocketAttribute.local_address)
        assert isinstance(address, tuple)
        return (str(address[0]), int(address[1]))

    @property
    def remote_address(self) -> AddressType:
        """The peer's end of the connection, ``(host, port)``."""
        address = self.extra(SocketAttribute.remote_address)
        assert isinstance(address, tuple)
        return (str(address[0]), int(address[1]))

    @property
    def protocol(self) -> HTTPProtocol:
        """The sans-IO protocol underneath (for inspection; don't feed it)."""
        return self._protocol

    # -- lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        """Start the transport task; for HTTP/3 clients, also complete the handshake.

        :raises TransportError: if the connection fails while opening.
        """
        if self._task_group is not None or self._closed:
            raise LocalProtocolError("a connection can be opened only once")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            await task_group.start(self._run_transport)
            await self._opened()
        except BaseException:
            await self.aclose()
            raise

    def begin_close(self, error_code: int) -> None:
        """Close with ``error_code`` (one of :attr:`error_codes`) when :meth:`aclose` is called.

        Hands the close to the protocol now and writes nothing: the bytes
        go out with the next write, or with :meth:`aclose`. HTTP/2 and
        HTTP/3 send GOAWAY (HTTP/3 also CONNECTION_CLOSE) with the code;
        any code but ``no_error`` ends every stream at once. On an HTTP/1.1
        server the code is a status: a request that has begun to arrive is
        answered with it (e.g. ``408``), and the connection takes no other.
        Does nothing once the connection is closing or closed.
        """
        if self._closed or self._terminated is not None:
            return
        if error_code == self._protocol.error_codes.no_error:
            self._protocol.submit_goaway()
        else:
            self._protocol.submit_close(error_code)

    async def aclose(self, error_code: int | None = None) -> None:
        """Close the connection the way its version does, and end its tasks.

        HTTP/2 and HTTP/3 send GOAWAY (and HTTP/3 CONNECTION_CLOSE); every
        version then closes the transport. Streams still open are abandoned.

        :param error_code: close with this code, as :meth:`begin_close`
            does; by default ``no_error`` (a graceful close).
        """
        if error_code is not None:
            self.begin_close(error_code)
        if self._closed:
            return
        self._closed = True
        if self._task_group is None:  # never opened
            await self._close_transport()
            return
        with anyio.CancelScope(shield=True):
            if self._terminated is None:
                try:
                    if not self._protocol.has_expired():
                        self._protocol.submit_goaway()  # GOAWAY first
                    if self._protocol.multiplexed:
                        self._protocol.submit_close()  # then at once
                    await self._flush_before_close()
                except (TransportError, LocalProtocolError):
                    pass
        try:
            # Not shielded: a cancelled caller (a server past its grace
            # period) cuts the wait short, and the stream closes at once.
            await self._wait_for_linger()
        finally:
            with anyio.CancelScope(shield=True):
                await self._close_transport()
            await self._end_tasks()

    async def _end_tasks(self) -> None:
        """The end of :meth:`aclose`: cancel the transport task and wait for it."""
        self._wake_all()
        task_group, self._task_group = self._task_group, None
        try:
            if task_group is not None:
                # Exited here, outside any scope of ours: anyio wants scopes closed in order.
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)
        finally:
            self._events.clear()
            self._events_ended = True
            self._wake_receiver()

    async def __aenter__(self) -> HTTPConnection:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the HTTP interface -----------------------------------------------------

    def is_available(self) -> bool:
        """Return True if a new stream can be opened now."""
        return self._terminated is None and self._protocol.is_available()

    def has_expired(self) -> bool:
        """Return True once the connection is closing or closed: no new streams.

        A server whose connection has expired returns from its handler as
        soon as the streams in flight are done.
        """
        return self._terminated is not None or self._protocol.has_expired()

    def get_available_stream_id(self) -> int:
        """Return the ID for the next stream (clients); see ``HTTPProtocol``."""
        return self._protocol.get_available_stream_id()

    async def send_headers(
        self,
        stream_id: int,
        headers: HeadersType,
        end_stream: bool = False,
        *,
        flush: bool = True,
        max_wait: float | None = None,
    ) -> None:
        """Send a request, a response or trailers (HTTP/2-style headers).

        :param flush: False to only hand the headers to the protocol: they go
            out with the next send on this connection, in the same write.
            For headers followed at once by :meth:`send_data` (a response
            with its whole body), which then costs one write, not two.
        :param max_wait: seconds the call may wait for the peer (None: no
            limit). Unlike a cancel scope around the call, it costs nothing
            where the peer takes the bytes at once, as it mostly does.
        :raises LocalProtocolError: if the stream cannot take headers now.
        :raises TransportError: if the connection is gone.
        :raises TimeoutError: if the peer did not let the headers through in time.
        """
        self._check_open()
        try:
            self._protocol.submit_headers(stream_id, headers, end_stream)
        except LocalProtocolError:
            await self._check_terminated_meanwhile()
            raise
        if flush or end_stream:
            if max_wait is None:
                await self._flush()
                return
            await anyio.lowlevel.checkpoint_if_cancelled()
            if self._flush_nowait():
                return
            with anyio.fail_after(max_wait):
                await self._flush()

    async def send_data(
        self,
        stream_id: int,
        data: bytes,
        end_stream: bool = False,
        *,
        max_wait: float | None = None,
    ) -> None:
        """Send body data; waits while the peer's flow-control window is full.

        :param max_wait: seconds the call may wait for the peer, to write or
            for flow control (None: no limit). Unlike a cancel scope around
            the call, it costs nothing where the peer takes the bytes at once.
        :raises LocalProtocolError: if the stream is not open for sending.
        :raises TransportError: if the connection is gone.
        :raises TimeoutError: if the peer did not let the data through in time.
        """
        self._check_open()
        try:
            self._protocol.submit_data(stream_id, data, end_stream)
        except LocalProtocolError:
            await self._check_terminated_meanwhile()
            raise
        if max_wait is None:
            await self._flush()
            await self._wait_for_window(stream_id)
            return
        # What the peer takes at once needs no deadline: no scope, no timer.
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._flush_nowait() and not self._window_full(stream_id):
            return
        with anyio.fail_after(max_wait):
            await self._flush()
            await self._wait_for_window(stream_id)

    def _window_full(self, stream_id: int) -> bool:
        return self._protocol.get_pending_data_size(stream_id) > self._max_pending_data

    async def _wait_for_window(self, stream_id: int) -> None:
        """Flow control: wait while the protocol holds too much of the stream's data."""
        while self._window_full(stream_id):
            self._check_open()
            await self._wait_for_progress()

    async def send_goaway(self) -> None:
        """Begin a graceful close: the peer opens no new stream; streams in flight go on.

        HTTP/2 and HTTP/3 send GOAWAY; HTTP/1.1 ends after the exchange in
        progress (``Connection: close``). Call :meth:`aclose` once the
        streams in flight are done, or when a grace period runs out.
        """
        if self._terminated is not None or self._protocol.has_expired():
            return
        self._protocol.submit_goaway()
        await self._flush_quietly()

    async def send_stream_reset(self, stream_id: int, error_code: int = 0) -> None:
        """Cancel a stream (HTTP/1.1: close the connection).

        An HTTP/1.1 reset ends the connection at once, without waiting for
        a writer blocked on a peer that does not read: the transport task
        then closes the stream, which ends that write.
        """
        if self._terminated is not None:
            return
        self._protocol.submit_stream_reset(stream_id, error_code)
        if not self._protocol.multiplexed:
            self._process_events()  # reports the end, waking the transport task
        await self._flush()

    async def receive_event(self) -> Event:
        """Return the next event of any stream; waits until there is one.

        After ``ConnectionTerminated`` every call returns that same event.
        """
        if self._task_group is None and not self._closed:
            raise LocalProtocolError("open the connection first (async with connection: ...)")
        events = self._events
        if events or self._events_ended or self._closed:
            # An event already queued (or the end) is taken without a trip
            # through the event loop; otherwise the wait below is the
            # cancellation point.
            await anyio.lowlevel.checkpoint_if_cancelled()
        while not events:
            if self._events_ended or self._closed:
                return self._terminated or ConnectionTerminated()
            if self._events_waiter is None:
                self._events_waiter = anyio.Event()
            await self._events_waiter.wait()
        event = events.popleft()
        if isinstance(event, DataReceived) and event.data:
            size = len(event.data)
            self._buffered_data -= size
            if self._buffered_data <= self._max_buffered_data:
                self._room.set()
            if self._auto_acknowledge and self._terminated is None:
                self._protocol.acknowledge_received_data(event.stream_id, size)
                await self._flush_quietly()
        return event

    async def acknowledge_received_data(self, stream_id: int, amount: int) -> None:
        """Credit consumed data back to the peer (only with ``auto_acknowledge`` off)."""
        if self._terminated is None:
            self._protocol.acknowledge_received_data(stream_id, amount)
            await self._flush_quietly()

    # -- internals shared by both transports ------------------------------------

    def _check_open(self) -> None:
        if self._terminated is not None or self._closed:
            raise ended_error(self._terminated, "the connection was closed")

    async def _check_terminated_meanwhile(self) -> None:
        """Raise TransportError if the protocol is ending the connection by itself.

        The protocol may have begun closing the connection (a flood, an
        internal error) with its close not yet sent and its events not yet
        processed: a send then fails as "not open", which is the
        connection's end, not a misuse. Sending what is pending lets the
        protocol report the end.
        """
        if self._protocol.has_expired():
            await self._flush_quietly()
            self._process_events()
        self._check_open()

    def _process_events(self) -> None:
        """Move the protocol's events to the queue; note termination."""
        protocol = self._protocol
        events = self._events
        while (event := protocol.next_event()) is not None:
            if isinstance(event, ConnectionTerminated):
                self._terminate(event)
                continue
            if self._events_ended:
                continue  # after the end: nobody may see it
            if isinstance(event, DataReceived):
                self._buffered_data += len(event.data)
                self._request_ended = event.end_stream
            elif isinstance(event, HeadersReceived):
                self._request_ended = event.end_stream
            events.append(event)
        self._wake_receiver()
        self._wake_all()

    def _terminate(self, event: ConnectionTerminated) -> None:
        """Queue the last event: later ``receive_event`` calls return it again."""
        if self._terminated is None:
            self._terminated = event
            if not self._events_ended:
                self._events.append(event)
                self._events_ended = True
            self._wake_receiver()

    def _wake_receiver(self) -> None:
        """Wake the tasks waiting in :meth:`receive_event`, if any."""
        waiter = self._events_waiter
        if waiter is not None:
            self._events_waiter = None
            waiter.set()

    def _wake_all(self) -> None:
        progress = self._progress
        if progress is not None:
            self._progress = None
            progress.set()
        if self._terminated is not None or self._closed:
            self._room.set()

    async def _wait_for_progress(self) -> None:
        """Wait for the next :meth:`_wake_all` (events processed, data sent, the end)."""
        if self._progress is None:
            self._progress = anyio.Event()
        await self._progress.wait()

    async def _wait_for_room(self) -> None:
        """HTTP/1.1 backpressure: wait until the application has taken enough data."""
        while self._buffered_data > self._max_buffered_data and self._terminated is None:
            self._room = anyio.Event()
            await self._room.wait()

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(TransportError):
            await self._flush()

    def _fail(self, message: str) -> None:
        """The transport failed: tell the protocol and queue what it says."""
        self._protocol_connection_lost()
        self._process_events()
        error_code = self._protocol.error_codes.internal_error
        reason = TerminationReason.TRANSPORT_LOST
        self._terminate(ConnectionTerminated(error_code=error_code, message=message, reason=reason))
        self._wake_all()

    @abstractmethod
    def _protocol_connection_lost(self) -> None: ...

    @abstractmethod
    async def _run_transport(self, *, task_status: TaskStatus[None]) -> None: ...

    @abstractmethod
    async def _flush(self) -> None:
        """Write what the protocol has to send. Raises TransportError if it cannot."""

    def _flush_nowait(self) -> bool:
        """Write what the protocol has to send if that needs no wait; return whether it did.

        False leaves the rest to :meth:`_flush` (in its order); the caller
        has checked for its own cancellation first, as :meth:`_flush` does.
        """
        return False

    async def _flush_before_close(self) -> None:
        """The last flush of :meth:`aclose` (TCP bounds how long it may wait)."""
        await self._flush()

    async def _wait_for_linger(self) -> None:
        """Part of :meth:`aclose`: wait while the transport task lingers (TCP servers)."""

    async def _close_transport(self) -> None:
        with anyio.CancelScope(shield=True), contextlib.suppress(*_TRANSPORT_ERRORS):
            await self._stream.aclose()

    async def _opened(self) -> None:
        """Called once the transport task runs; HTTP/3 clients wait for the handshake."""


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

    :param linger_timeout: seconds a lingering close may read at most;
        ``None`` (the default) never lingers, as clients should not.
    :param linger_max_bytes: bytes a lingering close reads at most.
    """

    _stream: ByteStream

    def __init__(
        self,
        protocol: HTTPOverTCPProtocol,
        stream: ByteStream,
        *,
        linger_timeout: float | None = None,
        linger_max_bytes: int = DEFAULT_LINGER_MAX_BYTES,
        **options: Any,
    ) -> None:
        super().__init__(protocol, **options)
        if linger_timeout is not None and not linger_timeout >= 0:
            raise ValueError(f"linger_timeout must be 0 or more, not {linger_timeout!r}")
        if not linger_max_bytes >= 0:
            raise ValueError(f"linger_max_bytes must be 0 or more, not {linger_max_bytes!r}")
        self._tcp_protocol = protocol
        self._stream = stream
        self._linger_timeout = linger_timeout
        self._linger_max_bytes = linger_max_bytes
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
        self._written: anyio.Event | None = None
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
        with contextlib.suppress(NotImplementedError, *_TRANSPORT_ERRORS):
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
                    except _TRANSPORT_ERRORS:
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
        multiplexed = protocol.multiplexed
        await self._flush_quietly()  # an HTTP/2 preface and SETTINGS
        task_status.started()
        eof = False
        # One scope for the whole loop, not one per read (a scope costs as
        # much as a small read): cancelled only once the connection has
        # ended, when the loop is done anyway. Writes in it are shielded.
        with anyio.CancelScope() as self._read_scope:
            while not self._finished():
                if not multiplexed and self._buffered_data > self._max_buffered_data:
                    await self._wait_for_room()
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
                except _TRANSPORT_ERRORS as error:
                    self._fail(f"connection lost: {error!r}")
                if self._finished():
                    break  # failed, or ended by another task
                if data is None:
                    protocol.eof_received()
                else:
                    protocol.bytes_received(data)
                self._process_events()
                if not self._flush_nowait():  # most often nothing to write
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
                self._written = anyio.Event()
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
                    except _TRANSPORT_ERRORS as error:
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
        send_nowait = self._send_nowait
        if send_nowait is None or self._writing or self._broken:
            return False
        if self._terminated is None:
            self._process_events()
        protocol = self._tcp_protocol
        while data := self._unsent or protocol.bytes_to_send():
            if not send_nowait(data):
                self._unsent = data
                return False
            self._unsent = b""
        return True


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

    :param handshake_timeout: seconds from :meth:`open` for the QUIC
        handshake to complete; after that the connection fails
        (``ConnectionTerminated``; :meth:`open` raises on a client). Without
        it a server would wait for a peer gone silent after its Initial
        until QUIC's idle timeout. ``None``: no limit of its own.
    """

    _stream: DatagramStream

    def __init__(
        self,
        protocol: HTTPOverQUICProtocol,
        stream: DatagramStream,
        *,
        handshake_timeout: float | None = DEFAULT_QUIC_HANDSHAKE_TIMEOUT,
        **options: Any,
    ) -> None:
        super().__init__(protocol, **options)
        if handshake_timeout is not None and not handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be positive, not {handshake_timeout!r}")
        self._handshake_timeout = handshake_timeout
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
        protocol.clock(anyio.current_time())
        self._route()
        await self._flush_quietly()  # a client's Initial
        task_status.started()
        timeout = self._handshake_timeout
        handshake_deadline = math.inf if timeout is None else anyio.current_time() + timeout
        while self._terminated is None:
            if handshake_deadline != math.inf:
                if protocol.handshake_completed:
                    handshake_deadline = math.inf
                elif anyio.current_time() >= handshake_deadline:
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
            delay = math.inf if timer is None else timer - anyio.current_time()
            datagram = None
            if delay > 0:
                with anyio.CancelScope(deadline=math.inf if timer is None else timer) as scope:
                    self._wait_scope = scope
                    try:
                        datagram = await stream.receive()
                    except _TRANSPORT_ERRORS as error:
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
            protocol.clock(anyio.current_time())
            if datagram is not None:
                protocol.datagram_received(datagram)
            self._route()
            self._process_events()
            await self._flush_quietly()  # which queues what sending produced
        await self._close_transport()

    async def _flush(self) -> None:
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
                except _TRANSPORT_ERRORS as error:
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
