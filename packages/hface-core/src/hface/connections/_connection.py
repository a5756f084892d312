"""``HTTPConnection``: one sans-IO protocol joined to one network stream; ``HTTPStream``.

Theory of operation. A connection owns a task group with one background
task, the *transport task*, the only reader of the network stream: it
feeds what arrives to the protocol (and, on QUIC, fires its timers), hands
the events the protocol produces to the connection's router
(:mod:`hface.connections._router`), which queues each where it will be
read (the connection's one queue, or its :class:`HTTPStream`'s: the task
serving a stream is woken by the transport task itself), and writes what
the protocol has to send. Application tasks call ``send_*`` (which
submit to the protocol and write its output) and take events from their
queue. Writes from every task go through one lock, so bytes leave in the
order the protocol produced them. On TCP a write can wait on the peer:
there the transport task never waits for another writer, and writes are
shielded from cancellation (see ``_tcp.py``; QUIC's is ``_quic.py``).

Backpressure, both ways:

- Sending: ``send_data`` returns once the protocol holds at most
  ``max_pending_data`` bytes of the stream (data beyond the peer's
  flow-control window), so a slow peer slows the sender. On HTTP/1.1 the
  socket write itself blocks.
- Receiving: received data is acknowledged to the protocol only when it
  is taken from a queue (or when the consumer acknowledges it, with
  ``auto_acknowledge`` off), so HTTP/2 and HTTP/3 windows reopen only as
  data is consumed. HTTP/1.1 has no windows: the transport task stops
  reading while more than ``max_buffered_data`` bytes of received data
  wait in the queues.

HTTP Datagrams (RFC 9297) are neither: ``send_datagram`` never waits
(a datagram the protocol cannot queue, or one behind more than
``max_pending_data`` held bytes, is dropped), and a stream's queue holds
at most ``max_buffered_datagrams`` bytes of received ones, dropping the rest.

Once the protocol reports ``ConnectionTerminated`` the transport task
flushes, closes the stream and ends; ``receive_event`` (and every
stream's) then returns that same event on every call.
"""

from __future__ import annotations

from types import TracebackType

import anyio
import anyio.abc
import anyio.lowlevel
from anyio import TypedAttributeProvider
from anyio.abc import SocketAttribute

from hface.common import AddressType, HeadersType, HTTPErrorCodes
from hface.errors import LocalProtocolError, TransportError
from hface.events import ConnectionTerminated, Event
from hface.protocols import HTTPProtocol

from ._core import ConnectionCore
from ._options import ConnectionOptions
from ._router import Observer, RoutedStream, RoutingMode


class HTTPConnection(ConnectionCore["HTTPStream"], TypedAttributeProvider):
    """An HTTP connection of any version, client or server side.

    Connections come from an :class:`~hface.connections.HTTPListener` (servers)
    or an :class:`~hface.connections.HTTPOpener` (clients), not opened yet:
    use ``async with connection:`` (or :meth:`open` and :meth:`aclose` from
    one task). Events are read per stream (:meth:`accept_stream` on
    servers, :meth:`open_stream` on clients: :class:`HTTPStream` objects)
    or all at once (:meth:`receive_event`), as the first call chooses; the
    other way then raises :class:`~hface.errors.LocalProtocolError`.

    :param options: how the connection buffers, acknowledges and closes.
    """

    def _make_stream(self, stream_id: int) -> HTTPStream:
        return HTTPStream(self, stream_id)

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

    @property
    def options(self) -> ConnectionOptions:
        """The options the connection was made with."""
        return self._options

    @property
    def in_flight(self) -> int:
        """Streams in flight: accepted (or waiting to be) or opened, and not yet closed."""
        return len(self._router.streams)

    @property
    def buffered_data(self) -> int:
        """Bytes of received data waiting in the queues, not yet taken."""
        return self._router.buffered

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
        self._router.start(task_group)
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
        self._router.wake_acceptors()  # the connection has expired

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

    async def wait_terminated(self) -> ConnectionTerminated:
        """Wait until the connection has ended; return the event that ended it.

        Whatever ended it: the peer, a failure, or :meth:`aclose` (then a
        ``ConnectionTerminated`` with no message). Needs no reader of events.
        """
        return await self._router.wait_ended()

    # -- the HTTP interface -----------------------------------------------------

    def is_available(self) -> bool:
        """Return True if a new stream can be opened now."""
        return self._terminated is None and self._protocol.is_available()

    def has_expired(self) -> bool:
        """Return True once the connection is closing or closed: no new streams.

        So it is once GOAWAY was sent or received (HTTP/2, HTTP/3), or
        ``Connection: close`` (HTTP/1.1). A server whose connection has
        expired returns from its handler as soon as the streams in flight
        are done (:meth:`accept_stream` returns None then).
        """
        return self._terminated is not None or self._protocol.has_expired()

    def get_available_stream_id(self) -> int:
        """Return the ID for the next stream (clients); see ``HTTPProtocol``."""
        return self._protocol.get_available_stream_id()

    async def accept_stream(self, *, idle_timeout: float | None = None) -> HTTPStream | None:
        """Return the next stream the peer opened (servers), once its request's headers came.

        Its first event is the request's ``HeadersReceived``. Streams that
        came before the connection ended are still returned. Any number of
        tasks may wait here at once; each stream goes to one of them.

        :param idle_timeout: raise ``TimeoutError`` once this many seconds
            passed with no stream in flight, counted from :meth:`open` or
            from the close of the last stream (see :attr:`in_flight`).
        :returns: the stream; None once the connection has ended, or has
            expired (:meth:`has_expired`) with no stream in flight.
        :raises TimeoutError: as ``idle_timeout`` says.
        :raises LocalProtocolError: if the connection is not open, or its
            events are read with :meth:`receive_event` or :meth:`open_stream`.
        """
        self._check_opened()
        router = self._router
        if router.mode is RoutingMode.ACCEPTING and router.ready():
            # One there already: taken without a trip through the event loop.
            await anyio.lowlevel.checkpoint_if_cancelled()
            return router.take_accepted()
        return await router.accept(idle_timeout)

    def open_stream(self) -> HTTPStream:
        """Open the stream of the next stream ID (clients); send its request next.

        It is registered at once, so that no event of its response is missed.

        :raises LocalProtocolError: if no stream can be opened now (see
            :meth:`is_available`), or the connection's events are read
            with :meth:`receive_event` or :meth:`accept_stream`.
        :raises TransportError: if the connection is gone.
        """
        self._check_opened()
        self._router.claim(RoutingMode.OPENING)
        self._check_open()
        return self._router.open()

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
        checkpoint: bool = True,
    ) -> None:
        """Send body data; waits while the peer's flow-control window is full.

        :param max_wait: seconds the call may wait for the peer, to write or
            for flow control (None: no limit). Unlike a cancel scope around
            the call, it costs nothing where the peer takes the bytes at once.
        :param checkpoint: False: data the peer takes at once is sent
            without a look for the task's cancellation first, which costs
            more than such a send (anyio walks the task's cancel scopes).
            For a caller that waits right after anyway, as a writer task
            between bursts. A send that has to wait is a checkpoint anyway.
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
        if max_wait is None and checkpoint:
            await self._flush()
            await self._wait_for_window(stream_id)
            return
        # What the peer takes at once needs no deadline: no scope, no timer.
        if checkpoint:
            await anyio.lowlevel.checkpoint_if_cancelled()
        if self._flush_nowait() and not self._window_full(stream_id):
            return
        with anyio.fail_after(max_wait):
            await self._flush()
            await self._wait_for_window(stream_id)

    async def send_datagram(self, stream_id: int, data: bytes) -> bool:
        """Send an HTTP Datagram (RFC 9297) on a stream; never waits for the peer.

        HTTP/3 sends a QUIC DATAGRAM frame once both sides negotiated them;
        a stream switched to the Capsule Protocol (a 2xx response to an
        extended CONNECT such as ``connect-udp``) sends a DATAGRAM capsule
        in its data (see :meth:`HTTPProtocol.submit_datagram
        <hface.protocols.HTTPProtocol.submit_datagram>`). Datagrams are
        unreliable: one the protocol cannot queue now, or that would go
        behind more than ``max_pending_data`` bytes held by flow control,
        is dropped.

        :returns: True if it was sent (queued), False if it was dropped.
        :raises LocalProtocolError: if the stream cannot carry datagrams.
        :raises TransportError: if the connection is gone.
        """
        self._check_open()
        protocol = self._protocol
        if self._window_full(stream_id):
            return False
        try:
            queued = protocol.submit_datagram(stream_id, data)
        except LocalProtocolError:
            await self._check_terminated_meanwhile()
            raise
        await self._flush()
        return queued

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
        self._router.wake_acceptors()  # the connection has expired
        await self._flush_quietly()

    async def send_shutdown_notice(self) -> None:
        """Announce a graceful close (servers): the first of its two steps.

        HTTP/2 and HTTP/3 send a GOAWAY with the largest stream ID, so the
        client opens no new stream, but the requests it has sent already
        are still taken; HTTP/1.1 makes the exchange in progress, or else
        the next one, the last (``Connection: close``). The connection
        has not expired yet: wait at least a round trip, then
        :meth:`send_goaway` (RFC 9113 §6.8). See
        :meth:`HTTPProtocol.submit_shutdown_notice
        <hface.protocols.HTTPProtocol.submit_shutdown_notice>`.
        """
        if self._terminated is not None or self._protocol.has_expired():
            return
        self._protocol.submit_shutdown_notice()
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

        :raises LocalProtocolError: if the connection is not open, or its
            events are read per stream (:meth:`accept_stream`, :meth:`open_stream`).
        """
        self._check_opened()
        router = self._router
        router.claim(RoutingMode.EVENTS)
        return await router.receive(router.queue)

    async def acknowledge_received_data(self, stream_id: int, amount: int) -> None:
        """Credit consumed data back to the peer (only with ``auto_acknowledge`` off)."""
        if self._terminated is None:
            self._protocol.acknowledge_received_data(stream_id, amount)
            await self._flush_quietly()


class HTTPStream(RoutedStream):
    """One stream of an :class:`HTTPConnection`: its own events, and the sends of its ID.

    Made by :meth:`HTTPConnection.accept_stream` (a request the peer sent)
    or :meth:`HTTPConnection.open_stream` (a request to send); the transport
    task queues its events here as they arrive. It is in flight until
    closed (:meth:`aclose`, :meth:`close`, the end of ``async with``),
    which credits back the data still queued and all that comes later.
    Closing does not reset it: call :meth:`send_reset` first if unfinished.

    ``stream.stream_id`` is its ID; ``stream.connection`` its connection.
    """

    __slots__ = ("connection",)

    def __init__(self, connection: HTTPConnection, stream_id: int) -> None:
        super().__init__(stream_id)
        #: The connection the stream belongs to.
        self.connection = connection

    @property
    def buffered_data(self) -> int:
        """Bytes of received data queued for this stream, not yet taken."""
        return self._buffered

    async def receive_event(self) -> Event:
        """Return the next event of this stream; waits until there is one.

        Once the connection has ended, every call returns its
        ``ConnectionTerminated`` (after the events queued before it).
        Data is acknowledged as it is returned, with ``auto_acknowledge``.

        :raises LocalProtocolError: once the stream is closed.
        """
        return await self.connection._router.receive(self)

    def receive_event_nowait(self) -> Event | None:
        """Return the next event of this stream if one is queued (or the end), else None.

        With ``auto_acknowledge`` its data is acknowledged to the protocol,
        and the credit goes out with the connection's next write.
        """
        return self.connection._router.receive_nowait(self)

    def observe(self, observer: Observer | None) -> None:
        """Have ``observer`` see each event of this stream as it arrives (None: stop).

        For consumers that must react to a reset while they do not read (a
        server cancels the application). ``observer(event)`` returns True to
        queue the event, False to drop it (its data credited back at once).
        It sees the events queued already first, and the connection's
        ``ConnectionTerminated``. It runs in the transport task (or whichever
        task writes): it must return at once, raise nothing, and not call
        the connection (setting events and starting tasks is fine).
        """
        self.connection._router.observe(self, observer)

    async def send_headers(
        self,
        headers: HeadersType,
        end_stream: bool = False,
        *,
        flush: bool = True,
        max_wait: float | None = None,
    ) -> None:
        """Send headers on this stream; see :meth:`HTTPConnection.send_headers`."""
        await self.connection.send_headers(
            self.stream_id, headers, end_stream, flush=flush, max_wait=max_wait
        )

    async def send_data(
        self,
        data: bytes,
        end_stream: bool = False,
        *,
        max_wait: float | None = None,
        checkpoint: bool = True,
    ) -> None:
        """Send body data on this stream; see :meth:`HTTPConnection.send_data`."""
        await self.connection.send_data(
            self.stream_id, data, end_stream, max_wait=max_wait, checkpoint=checkpoint
        )

    async def send_datagram(self, data: bytes) -> bool:
        """Send an HTTP Datagram on this stream; see :meth:`HTTPConnection.send_datagram`."""
        return await self.connection.send_datagram(self.stream_id, data)

    async def send_reset(self, error_code: int | None = None) -> None:
        """Reset this stream (HTTP/1.1: close the connection); ``cancel`` by default.

        See :meth:`HTTPConnection.send_stream_reset`.
        """
        connection = self.connection
        code = connection.error_codes.cancel if error_code is None else error_code
        await connection.send_stream_reset(self.stream_id, code)

    async def acknowledge(self, amount: int) -> None:
        """Credit ``amount`` consumed bytes back to the peer (``auto_acknowledge`` off)."""
        await self.connection.acknowledge_received_data(self.stream_id, amount)

    def close(self) -> None:
        """Release the stream; its unread data's credit goes with the next write."""
        self.connection._router.release(self)

    async def aclose(self) -> None:
        """Release the stream, and write the credit for its unread data at once."""
        if self.connection._router.release(self):
            with anyio.CancelScope(shield=True):
                await self.connection._flush_quietly()

    async def __aenter__(self) -> HTTPStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
