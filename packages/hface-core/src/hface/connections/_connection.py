"""``HTTPConnection``: one sans-IO protocol joined to one network stream.

Theory of operation. A connection owns a task group with one background
task, the *transport task*, which is the only reader of the network stream:
it feeds what arrives to the protocol (and, on QUIC, fires the protocol's
timers), queues the events the protocol produces, and writes what the
protocol has to send. Application tasks call ``send_*`` (which submit to the
protocol and write its output) and ``receive_event`` (which takes the next
queued event). Writes from every task go through one lock, so bytes leave in
the order the protocol produced them.

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
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
from anyio import TypedAttributeProvider
from anyio.abc import SocketAttribute, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hface.common import AddressType, HeadersType, HTTPErrorCodes
from hface.errors import LocalProtocolError, TransportError
from hface.events import ConnectionTerminated, DataReceived, Event
from hface.networking import ByteStream, DatagramStream, QUICStream
from hface.protocols import HTTPOverQUICProtocol, HTTPOverTCPProtocol, HTTPProtocol

#: Bytes read from a TCP stream at once.
_READ_SIZE = 65536

_TRANSPORT_ERRORS = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    OSError,
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
        # Made by open(), so that a connection never opened holds no resources.
        self._event_sender: MemoryObjectSendStream[Event]
        self._event_receiver: MemoryObjectReceiveStream[Event]
        self._buffered_data = 0
        self._room = anyio.Event()
        self._progress = anyio.Event()
        self._send_lock = anyio.Lock()
        self._terminated: ConnectionTerminated | None = None
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
        events = anyio.create_memory_object_stream[Event](math.inf)
        self._event_sender, self._event_receiver = events
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            await task_group.start(self._run_transport)
            await self._opened()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Close the connection the way its version does, and end its tasks.

        HTTP/2 and HTTP/3 send GOAWAY (and HTTP/3 CONNECTION_CLOSE); every
        version then closes the transport. Streams still open are abandoned.
        """
        if self._closed:
            return
        self._closed = True
        if self._task_group is None:  # never opened
            await self._close_transport()
            return
        with anyio.CancelScope(shield=True):
            if self._terminated is None:
                try:
                    no_error = self._protocol.error_codes.no_error
                    if not self._protocol.has_expired():
                        self._protocol.submit_close(no_error)  # GOAWAY first
                    if self._protocol.multiplexed:
                        self._protocol.submit_close(no_error)  # then at once
                    await self._flush()
                except (TransportError, LocalProtocolError):
                    pass
            await self._close_transport()
        self._wake_all()
        task_group, self._task_group = self._task_group, None
        try:
            if task_group is not None:
                # Exited here, outside any scope of ours: anyio wants scopes closed in order.
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)
        finally:
            self._event_sender.close()
            self._event_receiver.close()

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
        self, stream_id: int, headers: HeadersType, end_stream: bool = False
    ) -> None:
        """Send a request, a response or trailers (HTTP/2-style headers).

        :raises LocalProtocolError: if the stream cannot take headers now.
        :raises TransportError: if the connection is gone.
        """
        self._check_open()
        self._protocol.submit_headers(stream_id, headers, end_stream)
        await self._flush()

    async def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Send body data; waits while the peer's flow-control window is full.

        :raises LocalProtocolError: if the stream is not open for sending.
        :raises TransportError: if the connection is gone.
        """
        self._check_open()
        self._protocol.submit_data(stream_id, data, end_stream)
        await self._flush()
        protocol = self._protocol
        while protocol.get_pending_data_size(stream_id) > self._max_pending_data:
            self._check_open()
            await self._progress.wait()

    async def send_goaway(self) -> None:
        """Begin a graceful close: the peer opens no new stream; streams in flight go on.

        HTTP/2 and HTTP/3 send GOAWAY; HTTP/1.1 ends after the exchange in
        progress (``Connection: close``). Call :meth:`aclose` once the
        streams in flight are done, or when a grace period runs out.
        """
        if self._terminated is not None or self._protocol.has_expired():
            return
        self._protocol.submit_close(self._protocol.error_codes.no_error)
        await self._flush_quietly()

    async def send_stream_reset(self, stream_id: int, error_code: int = 0) -> None:
        """Cancel a stream (HTTP/1.1: close the connection)."""
        if self._terminated is not None:
            return
        self._protocol.submit_stream_reset(stream_id, error_code)
        await self._flush()

    async def receive_event(self) -> Event:
        """Return the next event of any stream; waits until there is one.

        After ``ConnectionTerminated`` every call returns that same event.
        """
        if self._task_group is None and not self._closed:
            raise LocalProtocolError("open the connection first (async with connection: ...)")
        try:
            event = await self._event_receiver.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return self._terminated or ConnectionTerminated()
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
        if self._terminated is not None:
            message = self._terminated.message or "the connection was closed"
            raise TransportError(message)
        if self._closed:
            raise TransportError("the connection was closed")

    def _process_events(self) -> None:
        """Move the protocol's events to the queue; note termination."""
        protocol = self._protocol
        send = self._event_sender.send_nowait
        while (event := protocol.next_event()) is not None:
            if isinstance(event, DataReceived):
                self._buffered_data += len(event.data)
            elif isinstance(event, ConnectionTerminated):
                self._terminate(event)
                continue
            send(event)
        self._wake_all()

    def _terminate(self, event: ConnectionTerminated) -> None:
        """Queue the last event: later ``receive_event`` calls return it again."""
        if self._terminated is None:
            self._terminated = event
            self._event_sender.send_nowait(event)
            self._event_sender.close()

    def _wake_all(self) -> None:
        self._progress.set()
        self._progress = anyio.Event()
        if self._terminated is not None or self._closed:
            self._room.set()

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
        self._terminate(ConnectionTerminated(error_code=error_code, message=message))
        self._wake_all()

    @abstractmethod
    def _protocol_connection_lost(self) -> None: ...

    @abstractmethod
    async def _run_transport(self, *, task_status: TaskStatus[None]) -> None: ...

    @abstractmethod
    async def _flush(self) -> None:
        """Write what the protocol has to send. Raises TransportError if it cannot."""

    async def _close_transport(self) -> None:
        with anyio.CancelScope(shield=True), contextlib.suppress(*_TRANSPORT_ERRORS):
            await self._stream.aclose()

    async def _opened(self) -> None:
        """Called once the transport task runs; HTTP/3 clients wait for the handshake."""


class HTTPOverTCPConnection(HTTPConnection):
    """:class:`HTTPConnection` for HTTP/1.1 and HTTP/2 over a TCP or TLS byte stream."""

    _stream: ByteStream

    def __init__(self, protocol: HTTPOverTCPProtocol, stream: ByteStream, **options: Any) -> None:
        super().__init__(protocol, **options)
        self._tcp_protocol = protocol
        self._stream = stream

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The stream's typed attributes (``anyio.abc.SocketAttribute``, ``TLSAttribute``)."""
        return self._stream.extra_attributes

    def _protocol_connection_lost(self) -> None:
        self._tcp_protocol.connection_lost()

    async def _run_transport(self, *, task_status: TaskStatus[None]) -> None:
        protocol = self._tcp_protocol
        stream = self._stream
        multiplexed = protocol.multiplexed
        await self._flush_quietly()  # an HTTP/2 preface and SETTINGS
        task_status.started()
        while self._terminated is None:
            if not multiplexed and self._buffered_data > self._max_buffered_data:
                await self._wait_for_room()
                continue
            try:
                data = await stream.receive(_READ_SIZE)
            except anyio.EndOfStream:
                protocol.eof_received()
            except _TRANSPORT_ERRORS as error:
                self._fail(f"connection lost: {error!r}")
                break
            else:
                protocol.bytes_received(data)
            self._process_events()
            await self._flush_quietly()
        await self._close_transport()

    async def _flush(self) -> None:
        async with self._send_lock:
            data = self._tcp_protocol.bytes_to_send()
            if not data:
                return
            try:
                await self._stream.send(data)
            except _TRANSPORT_ERRORS as error:
                if self._terminated is None:
                    self._fail(f"cannot send: {error!r}")
                raise TransportError(f"cannot send: {error!r}") from error


class HTTPOverQUICConnection(HTTPConnection):
    """:class:`HTTPConnection` for HTTP/3 over a datagram stream (QUIC inside)."""

    _stream: DatagramStream

    def __init__(
        self, protocol: HTTPOverQUICProtocol, stream: DatagramStream, **options: Any
    ) -> None:
        super().__init__(protocol, **options)
        self._quic_protocol = protocol
        self._stream = stream
        self._connection_ids: frozenset[bytes] = frozenset()
        self._handshake_done = anyio.Event()

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
            if self._terminated is not None:
                message = self._terminated.message or "the QUIC handshake failed"
                raise TransportError(message)
            await self._progress.wait()

    def _route(self) -> None:
        if isinstance(self._stream, QUICStream):
            connection_ids = frozenset(self._quic_protocol.connection_ids)
            if connection_ids != self._connection_ids:
                self._connection_ids = connection_ids
                self._stream.update_connection_ids(list(connection_ids))

    async def _run_transport(self, *, task_status: TaskStatus[None]) -> None:
        protocol = self._quic_protocol
        stream = self._stream
        protocol.clock(anyio.current_time())
        self._route()
        await self._flush_quietly()  # a client's Initial
        task_status.started()
        while self._terminated is None:
            timer = protocol.get_timer()
            delay = math.inf if timer is None else timer - anyio.current_time()
            datagram = None
            if delay > 0:
                with anyio.move_on_after(delay):
                    try:
                        datagram = await stream.receive()
                    except _TRANSPORT_ERRORS as error:
                        self._fail(f"connection lost: {error!r}")
                        break
            protocol.clock(anyio.current_time())
            if datagram is not None:
                protocol.datagram_received(datagram)
            self._route()
            self._process_events()
            await self._flush_quietly()
        await self._close_transport()

    async def _flush(self) -> None:
        async with self._send_lock:
            datagrams = self._quic_protocol.datagrams_to_send()
            try:
                for datagram in datagrams:
                    await self._stream.send(datagram)
            except _TRANSPORT_ERRORS as error:
                if self._terminated is None:
                    self._fail(f"cannot send: {error!r}")
                raise TransportError(f"cannot send: {error!r}") from error
