"""Where a connection's received events go: one queue, or a queue per stream.

Theory of operation. A connection's transport task feeds the protocol and
hands each event the protocol produces to the :class:`StreamRouter`
(``HTTPConnection._process_events``); nothing else reads the protocol's
events, so routing costs no task of its own. The router is in one of the
:class:`RoutingMode` states, chosen by the first call that reads events
and kept for the connection's life:

- ``EVENTS`` (:meth:`HTTPConnection.receive_event
  <hface.connections.HTTPConnection.receive_event>`): every event goes to
  the connection's one queue, as it came.
- ``ACCEPTING`` (servers, :meth:`~hface.connections.HTTPConnection.accept_stream`):
  a request's ``HeadersReceived`` (pseudo-headers first: not trailers) on
  a stream nobody holds makes an :class:`~hface.connections.HTTPStream`
  whose first event it is, queued for acceptance; later events go to
  their stream's queue. (Not "an ID above every one seen": HTTP/3 requests
  may arrive out of order.)
- ``OPENING`` (clients, :meth:`~hface.connections.HTTPConnection.open_stream`):
  streams are registered before their request goes out; events go to
  their stream's queue.

Until the first such call (``UNDECIDED``) events wait in the connection's
queue, and are routed to streams if the connection turns to them.

Credit for unread data. An event for a stream nobody holds (closed, or
never opened) is dropped, and its data acknowledged at once; so is what a
stream's observer (:meth:`StreamRouter.observe`) turns away. A stream closed
with data still queued acknowledges that data. Received data otherwise is
acknowledged as it is taken (``auto_acknowledge``), or by the consumer.
HTTP/1.1, which has no windows, stops reading while more than
``max_buffered_data`` bytes wait in all the queues together
(:attr:`StreamRouter.buffered`). HTTP Datagrams (``DatagramReceived``)
are neither acknowledged nor flow controlled: a stream's queue holds
``max_buffered_datagrams`` bytes of them, and drops what comes beyond.

In flight and idle. A stream is in flight from its creation until it is
closed. :meth:`StreamRouter.accept` returns the next stream, or None once
the connection has ended, or has expired with no stream in flight, and
raises ``TimeoutError`` after ``idle_timeout`` seconds with none in flight
(from the open, or from the end of the last stream). One *idle clock* task
per connection, started at the first such wait, wakes the acceptors when
that time comes: it sleeps until the earliest moment the connection could
have been idle for long enough, and looks again, so that streams coming
and going cost it nothing.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

from hface.errors import LocalProtocolError
from hface.events import (
    ConnectionTerminated,
    DatagramReceived,
    DataReceived,
    Event,
    HeadersReceived,
    StreamEvent,
)
from hface.networking import Signal, current_loop_tools
from hface.protocols import HTTPProtocol

from ._options import ConnectionOptions

#: What an observer of a stream says of each event: True to queue it.
Observer = Callable[[Event], bool]


class RoutingMode(enum.Enum):
    """How a connection hands out its events (see the module docstring)."""

    #: No reader yet: events wait in the connection's queue.
    UNDECIDED = "undecided"
    #: :meth:`HTTPConnection.receive_event`: every event in the connection's queue.
    EVENTS = "events"
    #: :meth:`HTTPConnection.accept_stream`: the peer's streams, each with its queue.
    ACCEPTING = "accepting"
    #: :meth:`HTTPConnection.open_stream`: our streams, each with its queue.
    OPENING = "opening"


#: The call each mode serves, for the error that refuses another.
_CALLS = {
    RoutingMode.EVENTS: "receive_event()",
    RoutingMode.ACCEPTING: "accept_stream()",
    RoutingMode.OPENING: "open_stream()",
}


class EventQueue:
    """Received events waiting to be taken: the connection's, or one stream's.

    A list and a read index, not a deque (some 600 bytes each, and there
    is one per stream in flight); the waiter is made only when a reader waits.
    """

    __slots__ = (
        "_buffered",
        "_datagrams",
        "_events",
        "_head",
        "_observer",
        "_released",
        "_waiter",
    )

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._head = 0
        self._waiter: Signal | None = None
        self._buffered = 0  # bytes of the queued DataReceived events
        self._datagrams = 0  # bytes of the queued DatagramReceived events
        self._observer: Observer | None = None
        self._released = False  # a stream closed by its holder: nothing comes any more

    @property
    def buffered_data(self) -> int:
        """Bytes of received data queued here, not yet taken."""
        return self._buffered

    def _queued(self) -> bool:
        return self._head < len(self._events)

    def _put(self, event: Event) -> None:
        self._events.append(event)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def _pop(self) -> Event:
        events = self._events
        head = self._head
        event = events[head]
        head += 1
        if head == len(events):
            events.clear()
            head = 0
        elif head > 32 and head * 2 > len(events):
            del events[:head]  # taken ones, kept from growing without bound
            head = 0
        self._head = head
        return event

    def _take_all(self) -> list[Event]:
        events = self._events[self._head :]
        self._events = []
        self._head = 0
        self._datagrams = 0
        return events

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    async def _wait(self, new_signal: Callable[[], Signal]) -> None:
        if self._waiter is None:
            self._waiter = new_signal()
        await self._waiter.wait()


S = TypeVar("S", bound="RoutedStream")


class RoutedStream(EventQueue):
    """The part of a stream the router sees: its ID and its queue."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        super().__init__()
        self.stream_id = stream_id


class StreamRouter(Generic[S]):
    """The events, queues, streams in flight and idle clock of one connection.

    :param make_stream: makes the stream object of a stream ID.
    :param flush: writes what the protocol has to send, never raising.
    """

    def __init__(
        self,
        protocol: HTTPProtocol,
        options: ConnectionOptions,
        *,
        make_stream: Callable[[int], S],
        flush: Callable[[], Awaitable[None]],
    ) -> None:
        self._protocol = protocol
        self._auto_acknowledge = options.auto_acknowledge
        self._max_buffered = options.max_buffered_data
        self._max_datagrams = options.max_buffered_datagrams
        self._make_stream = make_stream
        self._flush = flush
        self.mode = RoutingMode.UNDECIDED
        #: The connection's own queue (``EVENTS`` and ``UNDECIDED``).
        self.queue = EventQueue()
        #: The streams in flight, by ID.
        self.streams: dict[int, S] = {}
        #: Received data bytes in every queue, not yet taken.
        self.buffered = 0
        self._room: Signal | None = None
        self._accepted: deque[S] = deque()
        self._acceptors: list[Signal] = []
        #: The event that ended the connection; None while it runs.
        self.end_event: ConnectionTerminated | None = None
        self._ended: Signal | None = None  # made by wait_ended()
        self._closed = False  # queues dropped: the connection was closed by us
        #: When the last stream in flight ended (or the connection opened).
        self.idle_since = 0.0
        self._task_group: anyio.abc.TaskGroup | None = None
        self._idle_timeout = 0.0  # the idle clock's: the latest asked
        self._clock_running = False
        self._clock_scope: anyio.CancelScope | None = None
        # The event loop's, once the connection opens (see hface.networking.LoopTools).
        self.new_signal: Callable[[], Signal] = anyio.Event
        self._time: Callable[[], float] = anyio.current_time

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """The connection opened: the idle clock runs from now, in ``task_group``."""
        tools = current_loop_tools()
        self.new_signal = tools.new_signal
        self._time = tools.time
        self._task_group = task_group
        self.idle_since = self._time()

    # -- the mode ----------------------------------------------------------------

    def claim(self, mode: RoutingMode) -> None:
        """Read events the way ``mode`` does from now on (the first call decides).

        :raises LocalProtocolError: if the connection reads events another way.
        """
        current = self.mode
        if current is mode:
            return
        if current is not RoutingMode.UNDECIDED:
            raise LocalProtocolError(
                f"this connection's events are read with {_CALLS[current]}: "
                f"{_CALLS[mode]} cannot be mixed with it"
            )
        self.mode = mode
        if mode is not RoutingMode.EVENTS:
            # What came before goes to the streams (the end too came before:
            # the streams it made see it with their events, as in EVENTS).
            for event in self.queue._take_all():
                if isinstance(event, DataReceived):
                    self.buffered -= len(event.data)
                if not isinstance(event, ConnectionTerminated):
                    self._route(event)
            self.queue._buffered = 0

    # -- routing (the transport task, as the protocol produces events) ----------------

    def route(self, event: Event) -> None:
        """Queue one event (not ``ConnectionTerminated``: see :meth:`end`)."""
        if self.end_event is None:  # after the end: nobody may see it
            self._route(event)

    def _route(self, event: Event) -> None:
        mode = self.mode
        if mode is RoutingMode.EVENTS or mode is RoutingMode.UNDECIDED:
            if type(event) is DataReceived:
                size = len(event.data)
                self.queue._buffered += size
                self.buffered += size
            self.queue._put(event)
            return
        if not isinstance(event, StreamEvent):
            # GOAWAY: no stream event, and has_expired() says it; the
            # acceptors look again (no stream left: the connection is done).
            if not self.streams:
                self.wake_acceptors()
            return
        stream_id = event.stream_id
        stream = self.streams.get(stream_id)
        if stream is None:
            if (
                mode is RoutingMode.ACCEPTING
                and type(event) is HeadersReceived
                and event.headers
                and event.headers[0][0][:1] == b":"  # a request, not trailers
            ):
                stream = self._make_stream(stream_id)
                self.streams[stream_id] = stream
                stream._put(event)
                self._accepted.append(stream)
                if self._acceptors:
                    self._acceptors.pop(0).set()
                return
            if type(event) is DataReceived and event.data:
                # Nobody will read it: free the window at once.
                self._protocol.acknowledge_received_data(stream_id, len(event.data))
            return
        observer = stream._observer
        if observer is not None and not observer(event):
            if type(event) is DataReceived and event.data:
                self._protocol.acknowledge_received_data(stream_id, len(event.data))
            return
        if type(event) is DataReceived:
            size = len(event.data)
            stream._buffered += size
            self.buffered += size
        elif type(event) is DatagramReceived:
            size = len(event.data)
            if stream._datagrams + size > self._max_datagrams:
                return  # unreliable and not flow controlled: dropped past the bound
            stream._datagrams += size
        stream._put(event)

    def end(self, event: ConnectionTerminated | None) -> None:
        """The connection ended with ``event``, or (None) was closed by us: no event follows.

        Queued events are still taken before the end, unless it was closed
        by us. Every stream's observer sees the end; every waiter wakes.
        """
        if event is not None and self.end_event is None:
            self.end_event = event
            if self.mode is RoutingMode.EVENTS or self.mode is RoutingMode.UNDECIDED:
                self.queue._put(event)
            for stream in list(self.streams.values()):
                observer = stream._observer
                if observer is not None:
                    observer(event)
                stream._wake()
        if event is None:
            self._closed = True
            if self.end_event is None:
                self.end_event = ConnectionTerminated()
            queues: list[EventQueue] = [self.queue, *self.streams.values()]
            for queue in queues:
                queue._take_all()
                queue._buffered = 0
                queue._wake()
            self.buffered = 0
        self.queue._wake()
        self.wake_room()
        self.wake_acceptors()
        if self._ended is not None:
            self._ended.set()

    # -- taking events ------------------------------------------------------------

    async def receive(self, queue: EventQueue) -> Event:
        """Take the next event of ``queue``; after the end, the end (every call)."""
        if queue._queued() or self.end_event is not None:
            # An event already queued (or the end) is taken without a trip
            # through the event loop; otherwise the wait is the cancellation point.
            await anyio.lowlevel.checkpoint_if_cancelled()
        while not queue._queued():
            if self.end_event is not None:
                return self.end_event
            if queue._released:
                raise LocalProtocolError("the stream was closed: no event comes any more")
            await queue._wait(self.new_signal)
        event = self._taken(queue, queue._pop())
        if self._auto_acknowledge and type(event) is DataReceived and self._acknowledge(event):
            await self._flush()
        return event

    def receive_nowait(self, queue: EventQueue) -> Event | None:
        """Take the next event of ``queue`` if there is one (or the end), else None.

        Data is acknowledged to the protocol with ``auto_acknowledge``; the
        bytes go out with the connection's next write.
        """
        if not queue._queued():
            return self.end_event
        event = self._taken(queue, queue._pop())
        if self._auto_acknowledge and type(event) is DataReceived:
            self._acknowledge(event)
        return event

    def _acknowledge(self, event: DataReceived) -> bool:
        """Credit the data of ``event`` to the peer; return whether there was any."""
        if not event.data or self.end_event is not None:
            return False
        self._protocol.acknowledge_received_data(event.stream_id, len(event.data))
        return True

    def _taken(self, queue: EventQueue, event: Event) -> Event:
        if type(event) is DataReceived:
            size = len(event.data)
            queue._buffered -= size
            self.buffered -= size
            if self._room is not None and self.buffered <= self._max_buffered:
                self.wake_room()
        elif type(event) is DatagramReceived:
            queue._datagrams -= len(event.data)
        return event

    def observe(self, stream: S, observer: Observer | None) -> None:
        """Have ``observer`` judge the events of ``stream``: those queued, then each to come.

        An observer set after the connection ended sees the end too, after
        the queued events.
        """
        stream._observer = observer
        if observer is None:
            return
        if not stream._queued() and self.end_event is None:
            return  # the common case: nothing to show it yet
        kept: list[Event] = []
        for event in stream._take_all():
            if observer(event):
                kept.append(event)
                continue
            if type(event) is DataReceived and event.data:
                stream._buffered -= len(event.data)
                self.buffered -= len(event.data)
                if self.end_event is None:
                    self._protocol.acknowledge_received_data(stream.stream_id, len(event.data))
        stream._events = kept
        if self.end_event is not None and not self._closed:
            observer(self.end_event)

    async def wait_for_room(self) -> None:
        """HTTP/1.1 backpressure: wait until the readers have taken enough data."""
        while self.buffered > self._max_buffered and self.end_event is None:
            if self._room is None:
                self._room = self.new_signal()
            await self._room.wait()

    def wake_room(self) -> None:
        room = self._room
        if room is not None:
            self._room = None
            room.set()

    async def wait_ended(self) -> ConnectionTerminated:
        """Wait for the end of the connection; return the event that ended it."""
        while self.end_event is None:
            if self._ended is None:
                self._ended = self.new_signal()
            await self._ended.wait()
        return self.end_event

    # -- streams in flight ------------------------------------------------------------

    def open(self) -> S:
        """Register the stream of the next stream ID (clients).

        :raises LocalProtocolError: if no stream can be opened now, or the
            last one opened has not sent its request yet.
        """
        self.claim(RoutingMode.OPENING)
        stream_id = self._protocol.get_available_stream_id()
        if stream_id in self.streams:
            raise LocalProtocolError(
                f"stream {stream_id} was opened and has not sent its headers yet"
            )
        stream = self._make_stream(stream_id)
        self.streams[stream_id] = stream
        return stream

    def release(self, stream: S) -> int:
        """Take ``stream`` out of flight; credit its unread data; return how much."""
        if self.streams.get(stream.stream_id) is not stream:
            return 0
        del self.streams[stream.stream_id]
        stream._released = True
        stream._observer = None
        stream._wake()  # a reader still waiting learns it
        unread = stream._buffered
        if stream._queued():
            stream._take_all()
        stream._buffered = 0
        if unread:
            self.buffered -= unread
            if self._room is not None and self.buffered <= self._max_buffered:
                self.wake_room()
            if self.end_event is None:
                self._protocol.acknowledge_received_data(stream.stream_id, unread)
        if not self.streams and self.mode is RoutingMode.ACCEPTING:
            # Only acceptors time idleness: a client's streams end unread by the clock.
            self.idle_since = self._time()
            if self._protocol.has_expired():
                self.wake_acceptors()  # no stream left: the connection is done
        return unread

    def ready(self) -> bool:
        """True if :meth:`accept` would return a stream at once."""
        return bool(self._accepted) and not self._closed

    def take_accepted(self) -> S:
        """The next stream waiting to be accepted (:meth:`ready` must be true)."""
        return self._accepted.popleft()

    async def accept(self, idle_timeout: float | None) -> S | None:
        """The next stream the peer opened; see :meth:`HTTPConnection.accept_stream`."""
        self.claim(RoutingMode.ACCEPTING)
        accepted = self._accepted
        woken = False  # by a wake-up: the wait was this call's checkpoint
        while True:
            if accepted or self.end_event is not None:
                # Streams that came before the end are still accepted (their
                # readers see the end), but not once we closed the connection.
                if not woken:
                    await anyio.lowlevel.checkpoint_if_cancelled()
                return accepted.popleft() if accepted and not self._closed else None
            if not self.streams:
                if self._protocol.has_expired():
                    await anyio.lowlevel.checkpoint_if_cancelled()
                    return None
                # While the clock runs with this timeout or a shorter one, the
                # time has not come (the clock would have woken us and ended):
                # no need to read the time on every call.
                if (
                    idle_timeout is not None
                    and (not self._clock_running or idle_timeout < self._idle_timeout)
                    and self._time() >= self.idle_since + idle_timeout
                ):
                    raise TimeoutError(f"no stream for {idle_timeout:g} s")
            if idle_timeout is not None:
                self._run_idle_clock(idle_timeout)
            waiter = self.new_signal()
            self._acceptors.append(waiter)
            try:
                await waiter.wait()
                woken = True
            except BaseException:
                if waiter in self._acceptors:
                    self._acceptors.remove(waiter)
                elif accepted and self._acceptors:
                    self._acceptors.pop(0).set()  # woken for a stream: another takes it
                raise

    def wake_acceptors(self) -> None:
        """Have every task waiting in :meth:`accept` look again (the end, expiry, idle)."""
        acceptors, self._acceptors = self._acceptors, []
        for waiter in acceptors:
            waiter.set()

    # -- the idle clock ---------------------------------------------------------------

    def _run_idle_clock(self, timeout: float) -> None:
        """Make sure the idle clock wakes the acceptors once ``timeout`` s passed idle."""
        if self._clock_running:
            if timeout < self._idle_timeout:
                self._idle_timeout = timeout
                scope = self._clock_scope
                if scope is not None:
                    scope.deadline = min(scope.deadline, self._due(timeout))
            return
        if self._task_group is None:
            return  # not open: nothing to wait for
        self._idle_timeout = timeout
        self._clock_running = True
        self._task_group.start_soon(self._idle_clock)

    def _due(self, timeout: float) -> float:
        """The earliest time the connection can have been idle for ``timeout`` s."""
        if self.streams:
            return self._time() + timeout
        return self.idle_since + timeout

    async def _idle_clock(self) -> None:
        try:
            while self.end_event is None:
                due = self._due(self._idle_timeout)
                if not self.streams and self._time() >= due:
                    self.wake_acceptors()  # they raise TimeoutError (and may call again)
                    return
                with anyio.CancelScope(deadline=due) as self._clock_scope:
                    await anyio.sleep_forever()
        finally:
            self._clock_running = False
            self._clock_scope = None
