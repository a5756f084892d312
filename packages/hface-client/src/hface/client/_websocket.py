"""``ClientSession.websocket``: WebSockets over HTTP/1.1, HTTP/2 and HTTP/3.

Theory of operation. A WebSocket is an extended CONNECT (``:method
CONNECT``, ``:protocol websocket``; RFC 8441 §4 on HTTP/2, RFC 9220 on
HTTP/3) on a stream of a pooled connection, as a proxy tunnel is a plain
CONNECT. HTTP/1.1 says the same thing in the words of RFC 6455 §4 (a
``GET`` with ``Upgrade: websocket``, answered ``101``): its client
protocol translates both ways (:mod:`hface.protocols.http1`), so this
module writes one handshake for three versions: a ``200`` opens the
WebSocket, and the stream's DATA carries the frames each way. On HTTP/2
and HTTP/3 many WebSockets and requests share a connection; on HTTP/1.1 a
WebSocket takes its connection, which closes with it.

wsproto frames and parses the messages (RFC 6455 §5), and a task of the
WebSocket's own writes the frames, a burst of sends at once
(:mod:`hface.client._websocket_writer`); the states of
:class:`WebSocket` are explicit (:class:`WebSocketState`): ``OPEN``; then
``CLOSING`` once we sent a Close and wait for the server's; ``CLOSED``
once both Closes crossed, or the stream ended. Pings are answered as they
are read. A message over ``max_message_size`` closes with 1009 (RFC 6455
§7.4.1). Once the Closes crossed, the stream is released as an exchange
is: reset unless both sides ended it (on HTTP/1.1, the connection
closes). A reset rather than our END_STREAM: hypercorn's HTTP/3 server
forgets the stream when it closes, and takes a later FIN (or a Close and
FIN together) for a crash of its whole QUIC endpoint.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final

import anyio
import anyio.lowlevel
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError

from hface.common import HeaderType
from hface.errors import HTTPError
from hface.events import ConnectionTerminated, DataReceived, StreamReset

from . import errors
from ._exchange import Exchange, RetryableError
from ._headers import HeadersInput, header_pairs
from ._models import URL
from ._pool import ConnectionPool
from ._websocket_writer import FrameSender, SenderState

#: The largest message taken by default (bytes, or UTF-8 bytes of a text).
DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
#: Seconds :meth:`WebSocket.close` waits for the server's Close.
CLOSE_TIMEOUT: Final = 5.0
#: Bytes of a refusal's body kept in :exc:`~.errors.WebSocketRejected`.
_REFUSAL_BODY_KEPT: Final = 64 * 1024
#: RFC 6455 §7.4.1: the close code of a connection that ended without a Close.
ABNORMAL_CLOSURE: Final = 1006
#: RFC 6455 §7.4.1: a message too big to process.
MESSAGE_TOO_BIG: Final = 1009


class WebSocketState(enum.Enum):
    """Where a :class:`WebSocket` is in its life (RFC 6455 §7)."""

    #: Messages go both ways.
    OPEN = "open"
    #: We sent a Close; messages may still come until the server's Close.
    CLOSING = "closing"
    #: Both sides closed, or the stream ended.
    CLOSED = "closed"


def websocket_url(url: URL | str) -> URL:
    """The ``http(s)`` URL of a ``ws(s)`` one (RFC 6455 §3; ``http(s)`` taken as is).

    :raises ValueError: if it is not a WebSocket or HTTP URL.
    """
    if isinstance(url, URL):
        return url
    text = url.strip()
    scheme, separator, rest = text.partition("://")
    if separator and scheme.lower() in ("ws", "wss"):
        text = ("https" if scheme.lower() == "wss" else "http") + "://" + rest
    return URL.parse(text)


class WebSocket:
    """An open WebSocket; :meth:`ClientSession.websocket` gives it.

    Send with :meth:`send_text`, :meth:`send_bytes` (or :meth:`send`) and
    :meth:`ping`; receive with :meth:`receive` or ``async for message in
    websocket``; :meth:`close` ends it politely (leaving the ``async with``
    block does too). Sending may happen from one task while another
    receives; receive from one task at a time.

    A send queues the frame and returns: a task of the WebSocket writes
    what is queued, a burst of sends in one write, in order
    (:mod:`hface.client._websocket_writer`); a send waits while more than
    64 KiB are queued, the server not reading them. A write that fails
    closes the WebSocket (1006): the sends after it raise.

    Messages are read only as :meth:`receive` asks for them: a task that
    sends many large messages to a server that answers each (an echo)
    should receive from another task meanwhile, or HTTP/2 and HTTP/3 flow
    control stalls both sides once the windows are full.
    """

    def __init__(
        self,
        exchange: Exchange,
        *,
        url: URL,
        headers: list[HeaderType],
        subprotocol: str | None,
        max_message_size: int,
    ) -> None:
        self._exchange = exchange
        #: The URL connected to (``http`` or ``https``, as sent).
        self.url = url
        #: The response's header fields (the handshake's answer).
        self.response_headers = headers
        #: The subprotocol the server chose among those offered, if any.
        self.subprotocol = subprotocol
        self._max_message_size = max_message_size
        self._ws = Connection(ConnectionType.CLIENT)
        # Writes the frames, from a task of its own (open_websocket starts it).
        self._sender = FrameSender(exchange.stream, self._lost)
        #: Where the WebSocket is in its life.
        self.state = WebSocketState.OPEN
        #: The close code (RFC 6455 §7.4), once closed: the server's, or 1006.
        self.close_code: int | None = None
        #: The close reason, once closed.
        self.close_reason: str = ""
        self._parts: list[str | bytes] = []
        self._size = 0
        # True while a task waits in receive() (close() then leaves the reading to it).
        self._receiving = False

    @property
    def http_version(self) -> str:
        """The HTTP version the WebSocket runs over: ``"1.1"``, ``"2"`` or ``"3"``."""
        return self._exchange.http_version

    # -- sending -------------------------------------------------------------------

    async def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary (``bytes``) message.

        Returns once the message is queued for the WebSocket's writer task
        (which writes the messages of one turn of the event loop at once);
        waits while more than 64 KiB are queued.

        :raises hface.client.errors.WebSocketClosed: if the WebSocket is closing or closed.
        """
        if isinstance(message, str):
            await self._send_event(TextMessage(data=message))
        else:
            await self._send_event(BytesMessage(data=bytes(message)))

    async def send_text(self, text: str) -> None:
        """Send a text message (see :meth:`send`)."""
        await self._send_event(TextMessage(data=text))

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message (see :meth:`send`)."""
        await self._send_event(BytesMessage(data=bytes(data)))

    async def ping(self, payload: bytes = b"") -> None:
        """Send a Ping (up to 125 bytes); the server's Pong is read (and dropped) by receive."""
        await self._send_event(Ping(payload=payload))

    async def _send_event(self, event: Event) -> None:
        if self.state is not WebSocketState.OPEN:
            raise self._closed_error()
        await self._write(event)

    async def _write(self, event: Event) -> None:
        try:
            data = self._ws.send(event)
        except WSLocalProtocolError as exc:
            raise self._closed_error() from exc
        sender = self._sender
        if sender.state is SenderState.ENDED:
            raise self._closed_error()
        # Queued: the sender's task writes a burst of frames at once.
        if sender.send(data):
            await sender.wait_for_room()
        else:
            await anyio.lowlevel.checkpoint_if_cancelled()

    # -- receiving -----------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for a text message, ``bytes`` for a binary one.

        :raises hface.client.errors.WebSocketClosed: once the server closed
            (with its code and reason), or the connection ended (1006).
        """
        self._receiving = True
        try:
            while True:
                for event in self._ws.events():
                    message = await self._on_event(event)
                    if message is not None:
                        return message
                if self.state is WebSocketState.CLOSED:
                    raise self._closed_error()
                await self._read()
        finally:
            self._receiving = False

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str | bytes]:
        """Messages until the server closes normally (1000 or 1001; others raise)."""
        while True:
            try:
                yield await self.receive()
            except errors.WebSocketClosed as exc:
                if exc.code in (1000, 1001, 1005):
                    return
                raise

    async def _on_event(self, event: object) -> str | bytes | None:
        """Take one wsproto event; return a message once whole."""
        if isinstance(event, TextMessage | BytesMessage):
            self._size += len(event.data)
            if self._size > self._max_message_size:
                await self._close_for(MESSAGE_TOO_BIG, "message too big")
                return None
            data = event.data
            self._parts.append(data if isinstance(data, str) else bytes(data))
            if not event.message_finished:
                return None
            parts, self._parts, self._size = self._parts, [], 0
            if isinstance(event, TextMessage):
                return "".join(part for part in parts if isinstance(part, str))
            return b"".join(part for part in parts if isinstance(part, bytes))
        if isinstance(event, Ping):
            if self.state is WebSocketState.OPEN:
                await self._write(event.response())
            return None
        if isinstance(event, CloseConnection):
            self.close_code, self.close_reason = event.code, event.reason or ""
            if self.state is WebSocketState.OPEN:
                # RFC 6455 §5.5.1: answer a Close with a Close.
                with contextlib.suppress(errors.WebSocketClosed):
                    await self._write(event.response())
            self._finish()
        return None  # a Pong

    async def _read(self) -> None:
        """Feed wsproto the next DATA of the stream (or its end)."""
        exchange = self._exchange
        try:
            event = await exchange.next_event(None, "WebSocket data")
        except HTTPError as exc:
            self._lost(str(exc))
            return
        if isinstance(event, DataReceived):
            if event.data:
                self._ws.receive_data(event.data)
                with contextlib.suppress(HTTPError):
                    await exchange.stream.acknowledge(len(event.data))
            if event.end_stream:
                exchange.response_complete = True
                self._ws.receive_data(None)
                if not event.data:
                    self._lost("the server ended the stream without a Close")
        elif isinstance(event, StreamReset):
            exchange.response_complete = True
            self._lost(f"the server reset the stream (error code {event.error_code:#x})")
        elif isinstance(event, ConnectionTerminated):
            self._lost(event.message or "the connection ended")

    def _lost(self, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = ABNORMAL_CLOSURE, reason
        self.state = WebSocketState.CLOSED

    def _finish(self) -> None:
        """Both Closes crossed: end our half of the stream (the server ends its own)."""
        self.state = WebSocketState.CLOSED

    def _closed_error(self) -> errors.WebSocketClosed:
        code = ABNORMAL_CLOSURE if self.close_code is None else self.close_code
        reason = self.close_reason
        if self.state is WebSocketState.OPEN or (self.close_code is None):
            text = "the WebSocket is closing"
        else:
            text = f"the WebSocket is closed (code {code}{': ' + reason if reason else ''})"
        return errors.WebSocketClosed(
            f"{text}: {self.url}", origin=str(self.url.origin), code=code, reason=reason
        )

    # -- closing -------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a Close and wait (up to 5 s) for the server's; messages until then are dropped.

        While another task waits in :meth:`receive`, only send the Close:
        that task reads the rest, and ends with the server's Close.
        """
        if self.state is WebSocketState.OPEN:
            self.state = WebSocketState.CLOSING
            try:
                await self._write(CloseConnection(code=code, reason=reason))
            except errors.WebSocketClosed:
                return
        if self._receiving:
            return
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await self._close_for(None, "")

    async def _close_for(self, code: int | None, reason: str) -> None:
        """Close with ``code`` (unless None: already sent), then read to the server's Close."""
        if code is not None and self.state is WebSocketState.OPEN:
            self.state = WebSocketState.CLOSING
            with contextlib.suppress(errors.WebSocketClosed):
                await self._write(CloseConnection(code=code, reason=reason))
        while not self._closed():
            for event in self._ws.events():
                if isinstance(event, CloseConnection):
                    self.close_code, self.close_reason = event.code, event.reason or ""
                    self._finish()
            if not self._closed():
                await self._read()

    def _closed(self) -> bool:
        return self.state is WebSocketState.CLOSED


def _request_headers(
    url: URL, headers: HeadersInput | None, subprotocols: Sequence[str]
) -> list[HeaderType]:
    """The extended CONNECT of RFC 8441 §4 (and RFC 9220), with RFC 6455's fields."""
    result: list[HeaderType] = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", url.scheme.encode()),
        (b":authority", url.authority.encode("ascii")),
        (b":path", url.path.encode("ascii")),
        (b"sec-websocket-version", b"13"),
    ]
    if subprotocols:
        result.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode("ascii")))
    for name, value in header_pairs(headers or []):
        raw_name = name.encode("ascii") if isinstance(name, str) else name
        raw_value = value.encode("utf-8") if isinstance(value, str) else value
        result.append((raw_name.lower(), raw_value))
    if all(name != b"user-agent" for name, _ in result):
        result.append((b"user-agent", b"hface"))
    return result


async def _refusal(
    exchange: Exchange, status: int, url: URL, complete: bool
) -> errors.WebSocketRejected:
    """The error for a handshake answered with ``status``, with some of its body."""
    body = bytearray()
    if not complete:
        with contextlib.suppress(HTTPError, TimeoutError), anyio.move_on_after(CLOSE_TIMEOUT):
            async for chunk in exchange.iter_body(CLOSE_TIMEOUT):
                body += chunk
                if len(body) >= _REFUSAL_BODY_KEPT:
                    break
    return errors.WebSocketRejected(
        f"{url.origin} refused the WebSocket to {url} with status {status}",
        origin=str(url.origin),
        status=status,
        body=bytes(body[:_REFUSAL_BODY_KEPT]),
    )


@asynccontextmanager
async def open_websocket(
    pool: ConnectionPool,
    url: URL,
    *,
    headers: HeadersInput | None,
    subprotocols: Sequence[str],
    read_timeout: float | None,
    max_message_size: int,
) -> AsyncIterator[WebSocket]:
    """Open a WebSocket on a stream of ``pool``; close it when the block ends."""
    request_headers = _request_headers(url, headers, subprotocols)
    origin = url.origin
    for attempt in range(2):
        exchange = await pool.open_exchange(origin, request_headers, end_stream=False)
        try:
            status, response_headers, complete = await exchange.receive_response_headers(
                read_timeout
            )
        except RetryableError as exc:
            await exchange.aclose()
            if attempt == 0:
                continue
            raise exc.error from None
        except BaseException:
            await exchange.aclose()
            raise
        break
    else:  # pragma: no cover
        raise AssertionError("unreachable")
    try:
        if status != 200 or complete:
            raise await _refusal(exchange, status, url, complete)
        chosen = next(
            (
                value.decode("latin-1").strip()
                for name, value in response_headers
                if name == b"sec-websocket-protocol"
            ),
            None,
        )
        if chosen is not None and chosen not in subprotocols:
            raise errors.RemoteProtocolError(
                f"{origin} chose the WebSocket subprotocol {chosen!r}, which was not offered",
                origin=str(origin),
            )
        websocket = WebSocket(
            exchange,
            url=url,
            headers=response_headers,
            subprotocol=chosen,
            max_message_size=max_message_size,
        )
        # The sender's task; entered by hand, so that an error of the block
        # is raised as it is, not in an exception group.
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            task_group.start_soon(websocket._sender.run)
            try:
                yield websocket
            except BaseException:
                # An error in the block: the stream is reset, no Close handshake.
                raise
            else:
                with anyio.CancelScope(shield=True):
                    await websocket.close()
                    with anyio.move_on_after(CLOSE_TIMEOUT):
                        await websocket._sender.flush()
        finally:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
    finally:
        with anyio.CancelScope(shield=True):
            await exchange.aclose()
