"""One WebSocket of an :class:`ASGIServer`: the ASGI ``websocket`` scope on wsproto.

Theory of operation. Every version presents a WebSocket request the same
way, as an extended CONNECT with ``:protocol websocket`` (RFC 8441 on
HTTP/2, RFC 9220 on HTTP/3, and the HTTP/1.1 upgrade of RFC 6455 made to
look like one by :mod:`hface.protocols.http1`). The connection handler
makes an :class:`~hface.server._asgi_stream.ASGIStream` of it as of any
request, then a :class:`WebSocketSession` of that, which runs the
application with the ``websocket`` scope instead of the request.

The handshake. The application's first ``receive()`` is
``websocket.connect``. ``websocket.accept`` answers ``200`` (which
HTTP/1.1 sends as ``101 Switching Protocols``) with the subprotocol, the
negotiated ``permessage-deflate`` (:mod:`._asgi_ws_frames`) and the
application's headers; from then on the stream carries WebSocket frames,
parsed and built by wsproto (its frame layer, with the state of the close
handshake: :class:`~hface.server._asgi_ws_frames.FrameConnection`). A
``websocket.close`` before accept answers 403; ``websocket.http.response.*``
answers with the application's own response (through the request's
:class:`ASGIStream`, as an HTTP response). An application that neither
accepts nor denies within ``ws_handshake_timeout`` is cancelled and the
client gets 500; so does one that fails before accepting.

Reading. The stream's data is fed to wsproto, pings are answered and
whole messages queued for ``receive()``, while fewer than
:data:`_QUEUE_BYTES` wait and no pong waits in a full writer: beyond them
no data is taken, and data is acknowledged (its flow-control credit given back)
only as it is taken, so a client cannot send more than the window ahead
of an application that does not receive (on HTTP/1.1 the connection stops
reading). Once the WebSocket is open, the data is taken as it arrives, in
the task that processes the connection's input (a stream observer,
:meth:`WebSocketSession._observe`), without a trip through a task of the
session's own; a reader task takes what that leaves queued (what came
before the accept, or while the queue was full or pongs waited, in order)
and the stream's end. A message over ``ws_max_size`` (counted as it
arrives, and inflated no further than that) closes the session with 1009;
a protocol error with the code wsproto gives (1002, 1007).

Writing. Every frame goes through a
:class:`~hface.server._asgi_ws_writer.FrameWriter`: ``send()`` holds the
application's messages (on asyncio; under Trio while messages are queued
for it), and ``receive()`` writes what is held, in one
write, when it is about to wait (an echo, or the answers to a burst it
read): no trip through a task of the writer's; should the application wait
elsewhere first, the writer task writes them then (see
:mod:`~hface.server._asgi_ws_writer`). Pongs and the close go to the
writer task at once. ``send()`` waits while more than
:data:`~hface.server._asgi_ws_writer.WRITE_BUFFER` bytes are queued and
the client does not read (the connection's ``send_data`` waits on the
flow-control window or the socket); a ``receive()`` that writes held
frames waits for them the same way. Keep-alive pings go out every
``ws_ping_interval`` seconds; a client that does not answer one within
``ws_ping_timeout`` is closed with 1011.

Closing. The close handshake (RFC 6455 §7) is wsproto's: a close from the
client is echoed and the application receives ``websocket.disconnect``
with its code; a close from the application (or the server's 1001 at
shutdown, :meth:`WebSocketSession.going_away`) waits up to
:data:`_CLOSE_TIMEOUT` seconds for the client's. Once the WebSocket is
over the application has ``disconnect_grace`` seconds to return before it
is cancelled, as after an HTTP client went away. The stream then ends:
HTTP/2 and HTTP/3 end it (and reset it if the client does not end its
side), HTTP/1.1 closes the connection. A reset or a lost connection is
``websocket.disconnect`` with 1006. The access log has one line per
session, at its end.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
from collections import deque
from typing import Final, cast

import anyio
import anyio.abc
from wsproto.connection import ConnectionState
from wsproto.frame_protocol import Opcode
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError

from hface.connections import HTTPStream
from hface.errors import LocalProtocolError, TransportError
from hface.events import DataReceived, Event, HeadersReceived
from hface.networking import Pulse

from ._asgi_settings import ASGISettings
from ._asgi_stream import ASGIStream
from ._asgi_types import ASGIApp, ClientDisconnected, Message
from ._asgi_ws_frames import FrameConnection, MessageAssembler, accept_response, websocket_scope
from ._asgi_ws_speedups import use_compiled_unmask, use_frame_buffer
from ._asgi_ws_writer import FrameWriter, frame_message

logger = logging.getLogger("hface.server")
access_logger = logging.getLogger("hface.server.access")

#: Bytes of received messages queued for ``receive()`` before reading stops.
_QUEUE_BYTES: Final = 1024 * 1024
#: Seconds the close handshake may take once a side has sent its close.
_CLOSE_TIMEOUT: Final = 5.0
#: The close code of a connection that ended without a close frame (RFC 6455 §7.1.5).
_ABNORMAL: Final = 1006
#: What a send after the end raises.
_SEND_ERRORS: Final = (TransportError, LocalProtocolError, WSLocalProtocolError)


class Phase(enum.Enum):
    """Where a WebSocket session is."""

    #: The application has not accepted or denied yet.
    HANDSHAKE = "handshake"
    #: Accepted: frames flow both ways.
    OPEN = "open"
    #: A close was sent or received; the close handshake is finishing.
    CLOSING = "closing"
    #: Over: closed, denied, or the client is gone.
    CLOSED = "closed"


_HANDSHAKE: Final = Phase.HANDSHAKE
_OPEN: Final = Phase.OPEN
_CLOSING: Final = Phase.CLOSING
_CLOSED: Final = Phase.CLOSED
_BINARY: Final = Opcode.BINARY
_TEXT: Final = Opcode.TEXT
_PING: Final = Opcode.PING
_PONG: Final = Opcode.PONG


class WebSocketSession:
    """One WebSocket: the handshake, the frames and the close (see the module docstring).

    :param request: the request the extended CONNECT made; it answers a denial.
    :param settings: the server's, as it runs.
    """

    def __init__(self, request: ASGIStream, settings: ASGISettings) -> None:
        self._request = request
        self._settings = settings
        self._stream: HTTPStream = request.stream
        self.stream_id = request.stream_id
        self.scope = websocket_scope(request.scope)
        self._phase = _HANDSHAKE
        self._connect_delivered = False
        self._denied = False  # a websocket.http.response was started
        self._ws: FrameConnection | None = None
        self._assembler = MessageAssembler(settings.ws_max_size)
        self._queue: deque[tuple[Message, int]] = deque()  # each with its size
        self._queued_bytes = 0
        # Set when the queue or the phase changes.
        self._changed = Pulse()
        self._writer = FrameWriter(self._stream, self._lost, settings.write_timeout)
        self._plain = True  # no extension: frames are built without wsproto
        self._pong: anyio.Event | None = None
        self._close_code: int | None = None  # the code the application is told
        self._status = 0
        self._remote_ended = False
        self._cancel_scope: anyio.CancelScope | None = None
        self._cancel_requested = False
        self._task_group: anyio.abc.TaskGroup | None = None
        self._observing = False  # _observe takes the stream's data as it arrives
        self._pongs_held = False  # a pong went into a full writer: reads stop until it has room
        self._app_scope = anyio.CancelScope()
        self._handshake_expired = False
        # The stream's events come to the reader task now, not to the request.
        self._stream.observe(None)

    # -- what the connection handler calls ------------------------------------------

    def bind_cancel_scope(self, scope: anyio.CancelScope) -> None:
        """Have :meth:`cancel` cancel ``scope``, in which :meth:`run` is about to run."""
        self._cancel_scope = scope
        if self._cancel_requested:
            scope.cancel()

    def cancel(self) -> None:
        """Cancel the application; nothing once :meth:`run` has returned."""
        self._cancel_requested = True
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    def abandon(self) -> None:
        """Cancel the application: the connection is being torn down."""
        self.cancel()

    def going_away(self) -> None:
        """The server shuts down: close with 1001 (going away)."""
        if self._task_group is not None and self._phase is _OPEN:
            self._send_close(1001, "server shutting down", True)

    async def run(self, app: ASGIApp) -> None:
        """Run the application on this WebSocket until it and the close are done."""
        sessions = self._settings.websockets
        sessions.add(self)
        failed = False
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                task_group.start_soon(self._read)
                timeout = self._settings.ws_handshake_timeout
                if timeout is not None:
                    task_group.start_soon(self._handshake_clock, timeout)
                try:
                    with self._app_scope:
                        await app(self.scope, self.receive, self.send)
                except ClientDisconnected:
                    pass
                except Exception:
                    failed = True
                    if self._phase is not _CLOSED:
                        logger.exception("exception in the ASGI application (WebSocket)")
                with anyio.CancelScope(shield=True):
                    await self._after_app(failed)
                task_group.cancel_scope.cancel()
        finally:
            self._task_group = None
            sessions.discard(self)
            self._log_access()

    async def _after_app(self, failed: bool) -> None:
        """Finish what the application left: the handshake, or the close."""
        if self._phase is _HANDSHAKE:
            if failed or self._handshake_expired:
                await self._deny(500)
            elif not self._denied:
                await self._deny(403)  # as a bare close
            else:
                await self._request.abort(500, "Internal Server Error")
            await self._end_stream()
            return
        if self._phase is _OPEN:
            self._send_close(1011 if failed else 1000, "", False)
        with anyio.move_on_after(_CLOSE_TIMEOUT):
            while self._phase is _CLOSING:
                await self._wait()
        await self._end_stream()

    async def _handshake_clock(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            while self._phase is _HANDSHAKE and not self._denied:
                await self._wait()
            return
        logger.warning(
            "the ASGI application did not accept the WebSocket on stream %d within %gs",
            self.stream_id,
            seconds,
        )
        self._handshake_expired = True
        self._app_scope.cancel()

    # -- receive ------------------------------------------------------------------------

    async def receive(self) -> Message:
        """The ASGI ``receive``: ``websocket.connect``, messages, then ``websocket.disconnect``."""
        if not self._connect_delivered:
            self._connect_delivered = True
            return {"type": "websocket.connect"}
        while True:
            queue = self._queue
            if queue:
                message, size = queue.popleft()
                queued = self._queued_bytes
                self._queued_bytes = queued - size
                if queued >= _QUEUE_BYTES:
                    self._wake()  # the reader may be waiting for room
                return message
            if self._close_code is not None:
                return {"type": "websocket.disconnect", "code": self._close_code}
            if self._writer.holding and await self._writer.write_held():
                continue  # what the application sent went in one write, without a task switch
            await self._wait()

    def _wake(self) -> None:
        self._changed.set()

    async def _wait(self) -> None:
        await self._changed.wait()

    def _disconnect(self, code: int) -> None:
        """Tell the application the WebSocket is over, with ``code``.

        It then has ``disconnect_grace`` seconds to return before it is cancelled.
        """
        if self._close_code is None:
            self._close_code = int(code)
            if self._task_group is not None:
                self._task_group.start_soon(self._cancel_later)
        self._wake()

    async def _cancel_later(self) -> None:
        await anyio.sleep(self._settings.disconnect_grace)
        self._app_scope.cancel()

    # -- send ---------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """The ASGI ``send``; waits while the client is slow.

        :raises ClientDisconnected: once the WebSocket is closed.
        :raises RuntimeError: for messages out of order or malformed.
        """
        kind = message["type"]
        phase = self._phase
        if kind == "websocket.send" and phase is _OPEN and self._close_code is None:
            payload: str | bytes | None = message.get("text")
            if payload is None:
                payload = message.get("bytes")
                if payload is None:
                    raise RuntimeError("websocket.send needs 'text' or 'bytes'")
                if type(payload) is not bytes:
                    payload = bytes(payload)  # an application's bytearray or memoryview
            # The message's own path, inline: it runs for every message sent.
            writer = self._writer
            ws = self._ws
            assert ws is not None
            try:
                # Mostly held, and written when receive() next waits: no task switch.
                answering = bool(self._queue) or writer.holding
                writer.send_message(frame_message(ws, payload, self._plain), answering)
            except WSLocalProtocolError as error:
                self._lost()
                raise ClientDisconnected("the client has disconnected") from error
            if writer.full:
                await writer.wait_for_room()
            if writer.ended:
                raise ClientDisconnected("the client has disconnected")
            return
        if phase is _HANDSHAKE:
            if kind == "websocket.accept" and not self._denied:
                await self._accept(message)
            elif kind == "websocket.close" and not self._denied:
                await self._deny(403)
            elif kind == "websocket.http.response.start" and not self._denied:
                self._denied = True
                self._wake()
                await self._forward("http.response.start", message)
            elif kind == "websocket.http.response.body" and self._denied:
                await self._forward("http.response.body", message)
                if not message.get("more_body", False):
                    self._phase = _CLOSED
                    self._disconnect(_ABNORMAL)
            else:
                raise RuntimeError(f"unexpected ASGI message {kind!r} before the handshake ended")
            return
        if phase is not _OPEN or self._close_code is not None:
            raise ClientDisconnected("the WebSocket is closed")
        if kind == "websocket.send":
            raise RuntimeError("websocket.send needs 'text' or 'bytes'")
        if kind == "websocket.close":
            self._send_close(message.get("code") or 1000, message.get("reason") or "", False)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} on an open WebSocket")

    async def _forward(self, kind: str, message: Message) -> None:
        """Send a denial's message as the request's HTTP response."""
        forwarded = dict(message)
        forwarded["type"] = kind
        try:
            await self._request.send(forwarded)
        except _SEND_ERRORS as error:
            raise ClientDisconnected("the client has disconnected") from error
        if kind == "http.response.start":
            self._status = int(message["status"])

    async def _accept(self, message: Message) -> None:
        settings = self._settings
        deflate, max_size = settings.ws_per_message_deflate, settings.ws_max_size
        headers, extensions = accept_response(
            self.scope, message, deflate=deflate, max_size=max_size
        )
        version = self._stream.connection.http_version
        settings.default_headers[version].add_to(headers, {name for name, _ in headers})
        use_compiled_unmask()
        use_frame_buffer()
        self._ws = FrameConnection(extensions)
        self._plain = not extensions
        self._phase = _OPEN
        self._status = 101 if version == "1.1" else 200
        self._wake()
        try:
            await self._stream.send_headers(headers)
        except _SEND_ERRORS as error:
            self._lost()
            raise ClientDisconnected("the client has disconnected") from error
        if self._task_group is not None:
            self._writer.start(self._task_group)
            if settings.ws_ping_interval is not None:
                self._task_group.start_soon(self._keep_alive, settings.ws_ping_interval)

    async def _deny(self, status: int) -> None:
        """Refuse the handshake with an empty ``status`` response (403: a bare close)."""
        self._denied = True
        self._phase = _CLOSED
        self._status = status
        self._disconnect(_ABNORMAL)
        with contextlib.suppress(*_SEND_ERRORS):
            await self._request.send(
                {"type": "http.response.start", "status": status, "headers": []}
            )
            await self._request.send({"type": "http.response.body", "body": b""})

    def _send_close(self, code: int, reason: str, going_away: bool) -> None:
        """Send a close frame (once) and tell the application; the client's answer ends it."""
        ws = self._ws
        if ws is None or ws.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return
        remote_closing = ws.state is ConnectionState.REMOTE_CLOSING
        self._phase = _CLOSED if remote_closing else _CLOSING
        self._disconnect(code)
        self._writer.put([ws.close(code, reason)])
        if going_away:
            logger.debug("closed the WebSocket on stream %d: going away", self.stream_id)
        self._wake()

    def _lost(self) -> None:
        """The client is gone without a close: 1006."""
        self._phase = _CLOSED
        self._disconnect(_ABNORMAL)

    # -- the reader and the keep-alive ------------------------------------------------

    async def _read(self) -> None:
        """Take what :meth:`_observe` leaves of the stream's data, and its end (see above)."""
        stream = self._stream
        # HTTP/1.1 has no window to reopen: its connection reads again as the stream is read.
        credit = stream.connection.multiplexed
        writer = self._writer
        while True:
            while self._queued_bytes >= _QUEUE_BYTES and self._phase is _OPEN:
                await self._wait()  # backpressure: the application does not receive
            if self._pongs_held:  # our pongs are not read: no more pings taken
                await writer.wait_for_room()
                self._pongs_held = False
            if not self._observing and self._ws is not None:
                # Data queued before is taken by this task first (observe() keeps it).
                self._observing = True
                stream.observe(self._observe)
            event = await stream.receive_event()
            if isinstance(event, DataReceived):
                if event.data:
                    while self._ws is None and self._phase is _HANDSHAKE:
                        await self._wait()  # data before the accept: held
                    self._feed(event.data)
                    if credit:
                        await stream.acknowledge(len(event.data))
                if event.end_stream:
                    self._remote_ended = True
                    if self._phase is not _CLOSED:
                        self._lost()
                    return
            elif isinstance(event, HeadersReceived):
                if event.end_stream:
                    self._remote_ended = True
                    self._lost()
                    return
            else:  # a reset, or the connection's end
                self._remote_ended = True
                self._lost()
                return

    def _observe(self, event: Event) -> bool:
        """Take the stream's data as it arrives (see ``HTTPStream.observe``); True: queue it.

        Left to the reader task where it has data queued already (the order
        is kept), where the application's queue is full or pongs wait (on
        HTTP/2 and HTTP/3 data queued is not credited back), and at the end.
        Data taken is credited back at once, as the reader does once it has
        fed it.
        """
        if type(event) is not DataReceived or event.end_stream:
            return True
        if self._phase is _CLOSED:
            return False  # nothing more is read: dropped (and credited back)
        if self._stream.buffered_data or self._queued_bytes >= _QUEUE_BYTES:
            return True
        if self._pongs_held:
            if self._writer.full:
                return True
            self._pongs_held = False
        self._feed(event.data)
        return False

    def _feed(self, data: bytes) -> None:
        """Parse ``data`` and act on its frames: messages queued, pings answered, the close."""
        ws = self._ws
        if ws is None or self._phase is _CLOSED:
            return
        if not ws.receive_data(data):  # closed: nothing more is read
            return
        assembler, queue = self._assembler, self._queue
        queued = len(queue)
        for frame in ws.frames():
            opcode = frame.opcode
            if opcode is _BINARY or opcode is _TEXT:  # a message's piece
                if self._phase is not _OPEN:
                    continue
                message = assembler.add(frame)
                if message is None:
                    continue
                if isinstance(message, tuple):
                    queue.append(message)
                    self._queued_bytes += message[1]
                else:
                    self._send_close(message, "message too big", False)
            elif opcode is _PING:
                if ws.state is ConnectionState.OPEN:
                    # Not waited for: unread pongs (not the application's
                    # messages) stop the reads until the writer has room.
                    self._writer.put([ws.pong(cast(bytes, frame.payload))])
                    self._pongs_held = self._writer.full
            elif opcode is _PONG:
                if self._pong is not None:
                    self._pong.set()
            else:  # the close (or what did not parse)
                code, reason = cast("tuple[int, str]", frame.payload)
                self._on_close(ws, code, reason)
        if len(queue) > queued:
            self._wake()  # once for all the messages this data held

    def _on_close(self, ws: FrameConnection, code: int, reason: str) -> None:
        state = ws.state
        if state is ConnectionState.REMOTE_CLOSING:
            # The client's close: echoed (RFC 6455 §5.5.1), then the application is told.
            self._disconnect(code)
            self._writer.put([ws.close(code, reason)])
            self._phase = _CLOSED
        elif state is ConnectionState.CLOSED:
            self._phase = _CLOSED  # the answer to our close
        else:
            # wsproto failed to parse: close with its code (1002, 1007, 1009).
            logger.info(
                "WebSocket protocol error on stream %d: %s (%d)",
                self.stream_id,
                reason,
                code,
            )
            self._send_close(code, reason or "", False)
        self._wake()

    async def _keep_alive(self, interval: float) -> None:
        timeout = self._settings.ws_ping_timeout
        while True:
            await anyio.sleep(interval)
            if self._phase is not _OPEN:
                return
            self._pong = pong = anyio.Event()
            ws, writer = self._ws, self._writer
            assert ws is not None
            try:
                writer.put([ws.ping(os.urandom(4))])
            except WSLocalProtocolError:
                self._lost()
                return
            await writer.wait_for_room()
            if writer.ended:
                return
            if timeout is None:
                continue
            with anyio.move_on_after(timeout):
                await pong.wait()
                continue
            logger.info("WebSocket on stream %d: no pong within %gs", self.stream_id, timeout)
            self._send_close(1011, "keepalive ping timeout", False)
            return

    # -- the end ------------------------------------------------------------------------

    async def _end_stream(self) -> None:
        """End the stream: HTTP/2 and HTTP/3 end it, HTTP/1.1 closes the connection."""
        stream = self._stream
        connection = stream.connection
        with anyio.move_on_after(_CLOSE_TIMEOUT):
            await self._writer.flush()  # the close, and what the application sent before it
        with contextlib.suppress(TransportError, LocalProtocolError):
            if not connection.multiplexed:
                if self._ws is not None:
                    await stream.send_reset(connection.error_codes.no_error)
                return
            if self._ws is not None:
                await stream.send_data(b"", end_stream=True)
            if not self._remote_ended:
                await stream.send_reset(connection.error_codes.no_error)

    def _log_access(self) -> None:
        if not self._settings.access_log or not access_logger.isEnabledFor(logging.INFO):
            return
        scope, client = self.scope, self.scope["client"]
        access_logger.info(
            '%s - "WEBSOCKET %s HTTP/%s" %s %s',
            f"{client[0]}:{client[1]}" if client else "-",
            self._request.raw_target.decode("latin-1"),
            scope["http_version"],
            self._status or "-",
            self._close_code if self._close_code is not None else "-",
        )
