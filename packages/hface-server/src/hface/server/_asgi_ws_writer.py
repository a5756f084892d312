"""What a WebSocket session of an ``ASGIServer`` sends: frames, written in bursts.

Theory of operation. The session (:mod:`hface.server._asgi_websocket`)
hands every frame it sends (the application's messages, pongs, keep-alive
pings, the close) to a :class:`FrameWriter` as bytes. :meth:`FrameWriter.put`
only queues them and wakes the writer task (:meth:`FrameWriter._run`), which
writes everything queued by the time it runs as one ``send_data``: an
application echoing a burst of messages sends each without a turn of the
event loop, and the burst leaves in one write, not one per message.

Held frames. Waking the writer task costs an event and a task switch per
burst, as much as a few small messages do. An application mostly sends
between two calls of ``receive()`` (an echo, the answers to the messages
it received): the application's frames are *held*
(:meth:`FrameWriter.hold`), queued without waking the writer, and the
session writes them from the application's own task
(:meth:`FrameWriter.write_held`) when ``receive()`` is about to wait. In
case the application waits elsewhere first, holding schedules a check
(:func:`hface.networking.current_call_soon`) that runs once the
application's task has yielded, and wakes the writer task if frames are
still held then: no frame waits for the application's next ``receive()``.

Backpressure. The bytes queued or being written count against
:data:`WRITE_BUFFER`; above it, :meth:`FrameWriter.wait_for_room` waits
until the writer has written them, and the writer's ``send_data`` waits
while the client does not read (the flow-control window, or the socket).
So a client that stops reading makes the application's ``send`` wait,
with at most :data:`WRITE_BUFFER` bytes (plus the last message) held.

Framing. :func:`frame_message` builds a whole data frame of an
application's message itself when no extension applies: the server's
frames are not masked, so a frame is a 2, 4 or 10-byte header and the
payload, which is queued as it is (a large message is copied once, into
the write, not as wsproto's ``send`` copies it). With ``permessage-deflate``
negotiated, or once the WebSocket is no longer open, wsproto builds it (or
raises its ``LocalProtocolError``).

Failure and the end. A write that fails marks the writer failed, drops
what is queued, and calls ``on_lost`` (the session's 1006). So does a
write that waits on the client longer than ``write_timeout`` (the server's
``timeouts.write``, as for an HTTP response): the stream is then reset (on
HTTP/1.1 the connection closes), and the application's ``send()`` raises
``ClientDisconnected``. Before the
stream ends, the session waits in :meth:`FrameWriter.flush` for the last
frames (the close) to be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import struct
from collections.abc import Callable
from typing import Final

import anyio
import anyio.abc
from wsproto.connection import ConnectionState

from hface.connections import HTTPStream
from hface.errors import LocalProtocolError, TransportError
from hface.networking import CallSoon, Pulse, current_call_soon

from ._asgi_ws_frames import FrameConnection

logger = logging.getLogger("hface.server")

#: Bytes queued or being written beyond which a sender waits for the writer.
WRITE_BUFFER: Final = 64 * 1024
#: The first header byte of a whole (FIN) text frame and of a binary one.
_FIN_TEXT: Final = 0x81
_FIN_BINARY: Final = 0x82
#: The largest payload a one-byte length, and a two-byte one, describes (RFC 6455 §5.2).
_SHORT: Final = 125
_MEDIUM: Final = 0xFFFF
_HEADER_2: Final = struct.Struct("!BB")
_HEADER_4: Final = struct.Struct("!BBH")
_HEADER_10: Final = struct.Struct("!BBQ")
#: What a failed write raises.
_WRITE_ERRORS: Final = (TransportError, LocalProtocolError)


def frame_message(ws: FrameConnection, data: str | bytes, plain: bool) -> list[bytes]:
    """The bytes of a whole message's frame (text or binary): header and payload, or wsproto's.

    :param plain: no extension was negotiated (the payload goes as it is).
    :raises wsproto.utilities.LocalProtocolError: if the WebSocket is not open.
    """
    if not plain or ws.state is not ConnectionState.OPEN:
        return [ws.message(data)]
    if isinstance(data, str):
        payload = data.encode()
        first = _FIN_TEXT
    else:
        payload = data
        first = _FIN_BINARY
    length = len(payload)
    if length <= _SHORT:
        return [_HEADER_2.pack(first, length) + payload]
    if length <= _MEDIUM:
        header = _HEADER_4.pack(first, 126, length)
    else:
        header = _HEADER_10.pack(first, 127, length)
    if length < WRITE_BUFFER:
        return [header + payload]
    return [header, payload]


class WriterState(enum.Enum):
    """Where a :class:`FrameWriter` is."""

    #: Not started yet: bytes queue (the handshake's response is not sent yet).
    PENDING = "pending"
    #: The writer task runs.
    RUNNING = "running"
    #: A write failed, or the task ended: nothing more goes out.
    ENDED = "ended"


_PENDING: Final = WriterState.PENDING
_RUNNING: Final = WriterState.RUNNING
_ENDED: Final = WriterState.ENDED


class FrameWriter:
    """Writes a WebSocket's frames in bursts, with backpressure (see the module docstring).

    :param stream: the stream the frames go on.
    :param on_lost: called once, if a write fails.
    :param write_timeout: seconds a write may wait on the client (None: no limit).
    """

    __slots__ = (
        "_call_soon",
        "_check_due",
        "_hold_idle",
        "_on_lost",
        "_progress",
        "_queue",
        "_queued",
        "_ready",
        "_state",
        "_stream",
        "_write_timeout",
        "_writes",
    )

    def __init__(
        self, stream: HTTPStream, on_lost: Callable[[], None], write_timeout: float | None
    ) -> None:
        self._stream = stream
        self._on_lost = on_lost
        self._write_timeout = write_timeout
        self._queue: list[bytes] = []
        self._queued = 0  # bytes queued, and being written
        self._writes = 0  # writes in progress: the writer task's, or the application's
        self._state = _PENDING
        self._call_soon: CallSoon | None = None  # set once the writer starts
        self._check_due = False  # a check of held frames is scheduled
        self._hold_idle = False  # set at start: see send_message()
        # Set when there is something to write.
        self._ready = Pulse()
        # Set when a write is done (or failed).
        self._progress = Pulse()

    @property
    def full(self) -> bool:
        """Whether more than :data:`WRITE_BUFFER` bytes are queued or being written."""
        return self._queued > WRITE_BUFFER and self._state is not _ENDED

    @property
    def ended(self) -> bool:
        """Whether a write failed or the writer task ended: nothing more goes out."""
        return self._state is _ENDED

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start the writer task in ``task_group``: what is queued goes out from now on."""
        if self._state is _PENDING:
            self._state = _RUNNING
            self._call_soon = current_call_soon()
            self._hold_idle = _loop_calls_soon_cheaply()
            task_group.start_soon(self._run)

    @property
    def holding(self) -> bool:
        """Whether frames are queued, not being written yet."""
        return bool(self._queue)

    def put(self, chunks: list[bytes]) -> None:
        """Queue bytes for the writer task (dropped once it has ended)."""
        if self._state is _ENDED:
            return
        queue = self._queue
        for chunk in chunks:
            queue.append(chunk)
            self._queued += len(chunk)
        self._wake()

    def send_message(self, chunks: list[bytes], answering: bool) -> None:
        """Queue an application's message: held (see :meth:`hold`) or for the writer task.

        :param answering: messages are queued for the application, or
            frames held: it is answering a burst and will write them from
            ``receive()``. Otherwise its frames are held too where the
            check :meth:`hold` schedules is cheap (asyncio's ``call_soon``);
            under Trio (whose ``run_sync_soon`` writes to its wake-up socket,
            costlier than waking the writer task) they go to the writer task.
        """
        if answering or self._hold_idle:
            self.hold(chunks)
        else:
            self.put(chunks)

    def hold(self, chunks: list[bytes]) -> None:
        """Queue bytes for :meth:`write_held`, the writer task writing them only as a fallback.

        The fallback: once the running task yields, the writer task is
        woken if they are still queued (see the module docstring).
        """
        call_soon = self._call_soon
        if call_soon is None or self._state is not _RUNNING:
            self.put(chunks)
            return
        queue = self._queue
        for chunk in chunks:
            queue.append(chunk)
            self._queued += len(chunk)
        if not self._check_due:
            self._check_due = True
            call_soon(self._check_held)

    def _check_held(self) -> None:
        self._check_due = False
        if self._queue:
            self._wake()

    def _wake(self) -> None:
        self._ready.set()

    async def write_held(self) -> bool:
        """Write what is queued from the calling task; False if the writer task is at it."""
        if not self._queue or self._writes or self._state is not _RUNNING:
            return False
        await self._write_queue()
        return True

    async def wait_for_room(self) -> None:
        """Wait while more than :data:`WRITE_BUFFER` bytes are queued or being written."""
        while self._queued > WRITE_BUFFER and self._state is not _ENDED:
            await self._wait_for_progress()

    async def flush(self) -> None:
        """Wait until everything queued is written (or the writer ended, or never started)."""
        while (self._queue or self._writes) and self._state is _RUNNING:
            await self._wait_for_progress()

    async def _wait_for_progress(self) -> None:
        await self._progress.wait()

    def _progressed(self) -> None:
        self._progress.set()

    async def _run(self) -> None:
        """The writer task: write what is queued, in one ``send_data`` per burst."""
        try:
            await self._write_all()
        finally:
            self._state = _ENDED
            self._queue = []
            self._progressed()

    async def _write_all(self) -> None:
        while self._state is _RUNNING:
            if not self._queue or self._writes:
                # Nothing to write, or the application's task writes (write_held):
                # what it leaves queued wakes us as it ends.
                await self._ready.wait()
                continue
            await self._write_queue()

    async def _write_queue(self) -> None:
        """Write what is queued, in the calling task; a failed write ends the writer."""
        writes = _bursts(self._queue)
        self._queue = []
        self._writes += 1
        stream = self._stream
        written = 0
        timed_out = False
        try:
            for data in writes:
                # No deadline where the client takes the bytes at once, as it mostly
                # does, and no checkpoint: the caller waits next (the writer task
                # for its next burst, receive() for a message).
                await stream.send_data(data, max_wait=self._write_timeout, checkpoint=False)
                self._queued -= len(data)
                written += 1
        except (*_WRITE_ERRORS, TimeoutError) as error:
            self._state = _ENDED
            self._queue = []
            self._on_lost()
            timed_out = isinstance(error, TimeoutError)
        finally:
            self._writes -= 1
            if written < len(writes) and self._state is not _ENDED:
                # Cancelled (the application's task): the rest goes first, with the writer task.
                self._queue[:0] = writes[written:]
            if self._queue:
                self._wake()
            self._progressed()
        if timed_out:
            logger.info(
                "the WebSocket client of stream %d read nothing for %gs: resetting it",
                stream.stream_id,
                self._write_timeout,
            )
            with anyio.CancelScope(shield=True), contextlib.suppress(*_WRITE_ERRORS):
                await stream.send_reset()


def _loop_calls_soon_cheaply() -> bool:
    """Whether the running event loop is asyncio's (its ``call_soon`` costs a list append)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # Trio
        return False
    return True


def _bursts(queue: list[bytes]) -> list[bytes]:
    """The writes of ``queue``: small pieces joined, a large payload on its own."""
    if len(queue) == 1:
        return queue
    writes: list[bytes] = []
    small: list[bytes] = []
    for chunk in queue:
        if len(chunk) < WRITE_BUFFER:
            small.append(chunk)
            continue
        if small:
            writes.append(b"".join(small))
            small = []
        writes.append(chunk)
    if small:
        writes.append(b"".join(small))
    return writes
