"""What a client :class:`~hface.client.WebSocket` sends: frames, written in bursts.

Theory of operation. Every frame the WebSocket sends (the application's
messages, the answers to pings, the Close) is handed to a
:class:`FrameSender` as bytes. :meth:`FrameSender.send` only queues them
and wakes the sender's task (:meth:`FrameSender.run`), which writes what
is queued as one ``send_data``: one DATA frame, one TLS record and one
system call for a burst of messages, not one per message. Writing is most
of what a small message costs (on loopback, a system call also runs the
peer's TCP receive path), and an application sends in bursts: an echo
client answers the messages of one read, a producer sends in a loop.

How long a burst is. Woken, the task yields to the tasks that are ready
(:func:`anyio.lowlevel.checkpoint`), and again as long as the queue grew
meanwhile, up to :data:`WRITE_BUFFER` bytes: a task sending one message
per turn of the event loop (one that waits on a semaphore between
sends) adds its next message while the sender's task yields, and the
burst leaves once a turn passes without a new message. A message that
comes alone waits one turn of the event loop, no timer.

Order and backpressure. One queue, one writer: frames leave in the order
sent. The bytes queued or being written count against
:data:`WRITE_BUFFER`; above it, :meth:`FrameSender.send` waits until the
task has written them, and the task's ``send_data`` waits while the
server does not read (its flow-control window, or the socket). So a
server that stops reading makes ``send`` wait, with at most
:data:`WRITE_BUFFER` bytes (plus the last message) held.

Failure. A write that fails ends the sender (:class:`SenderState`
``ENDED``), drops what is queued and calls ``on_lost`` with the reason
(the WebSocket's 1006); later sends raise. :meth:`FrameSender.flush`
waits until what is queued is written, or the sender ended.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final

import anyio.lowlevel

from hface.connections import HTTPStream
from hface.errors import HTTPError
from hface.networking import Pulse

#: Bytes queued or being written beyond which a sender waits for the writes.
WRITE_BUFFER: Final = 64 * 1024


class SenderState(enum.Enum):
    """Where a :class:`FrameSender` is."""

    #: Frames queue and are written.
    RUNNING = "running"
    #: A write failed, or the task ended: nothing more goes out.
    ENDED = "ended"


_RUNNING: Final = SenderState.RUNNING
_ENDED: Final = SenderState.ENDED


class FrameSender:
    """Writes a WebSocket's frames from a task of its own, in bursts (see the module docstring).

    :param stream: the stream the frames go on.
    :param on_lost: called once with the reason, if a write fails.
    """

    __slots__ = ("_on_lost", "_progress", "_queue", "_queued", "_ready", "_stream", "state")

    def __init__(self, stream: HTTPStream, on_lost: Callable[[str], None]) -> None:
        self._stream = stream
        self._on_lost = on_lost
        self._queue: list[bytes] = []
        self._queued = 0  # bytes queued, and being written
        #: Where the sender is in its life.
        self.state = _RUNNING
        self._ready = Pulse()  # set when there is something to write
        self._progress = Pulse()  # set when a write is done (or failed)

    def send(self, data: bytes) -> bool:
        """Queue ``data``; return True if the caller should wait (:meth:`wait_for_room`).

        Dropped (and False) once the sender has ended: the caller checks :attr:`state`.
        """
        if self.state is _ENDED:
            return False
        queue = self._queue
        queue.append(data)
        self._queued += len(data)
        if len(queue) == 1:
            self._ready.set()  # wakes the task if it waits for frames (not if it writes)
        return self._queued > WRITE_BUFFER

    async def wait_for_room(self) -> None:
        """Wait while more than :data:`WRITE_BUFFER` bytes are queued or being written."""
        while self._queued > WRITE_BUFFER and self.state is _RUNNING:
            await self._progress.wait()

    async def flush(self) -> None:
        """Wait until everything queued is written (or the sender ended)."""
        while self._queued and self.state is _RUNNING:
            await self._progress.wait()

    async def run(self) -> None:
        """The sender's task: write what is queued, in one ``send_data`` per burst."""
        try:
            await self._write_all()
        finally:
            self.state = _ENDED
            self._queue = []
            self._progress.set()

    async def _write_all(self) -> None:
        stream = self._stream
        while True:
            if not self._queue:
                await self._ready.wait()
                continue
            await self._gather()
            queue, self._queue = self._queue, []
            data = queue[0] if len(queue) == 1 else b"".join(queue)
            try:
                # No checkpoint of its own: _gather() has just yielded.
                await stream.send_data(data, checkpoint=False)
            except HTTPError as exc:
                self._on_lost(str(exc))
                return
            self._queued -= len(data)
            self._progress.set()

    async def _gather(self) -> None:
        """Yield to the ready tasks while they add to the queue (up to the buffer's size)."""
        queue = self._queue
        count = len(queue)
        while self._queued <= WRITE_BUFFER:
            await anyio.lowlevel.checkpoint()
            if len(queue) == count:
                return
            count = len(queue)
