"""The response side of an ASGI request: ``send()``, and the server's own answers.

Theory of operation. The application's messages are checked in order
(``http.response.start``, then ``http.response.body`` until ``more_body``
is false, then trailers if announced); the response headers are held
until the first body message, so that a one-message body gets a
``content-length`` and an application that fails before any body still
gets a clean 500. Once the response is complete, further messages are
ignored, as the specification says (the pieces of a streamed answer to
``HEAD``, complete at the first). Announced trailers (the
``http.response.trailers`` extension) are gathered until
``more_trailers`` is false, and sent only to a client that asked for them
with ``TE: trailers``; the others get the body's end alone. Everything
is written through the request's :class:`~hface.connections.HTTPStream`,
and so waits while the client is slow; a ``send()`` the client does not
let through within the write timeout resets the stream.

The server may answer for the application (:meth:`ResponseSender.abort`:
413 for a body too large, 408 for one that stopped coming, 500 for an
application that failed): the client then gets that status if no response
was started, else a reset stream. One sender at a time, the application or
the server (:meth:`ResponseSender._acquire_send`).
"""

from __future__ import annotations

import contextlib
import logging

import anyio

from hface.connections import HTTPStream
from hface.errors import LocalProtocolError, TransportError

from ._asgi_heads import check_fields, status_bytes
from ._asgi_settings import DefaultHeaders
from ._asgi_types import ClientDisconnected, Message

logger = logging.getLogger("hface.server")

#: Seconds ``send()`` waits, after the connection refused to send on a stream,
#: to learn whether the client reset that stream.
_RESET_NOTICE = 0.25

#: The response headers and their names before the application gave any.
_NO_HEADERS: list[tuple[bytes, bytes]] = []
_NO_NAMES: set[bytes] = set()


class ResponseSender:
    """The response of one request and the state :class:`ASGIStream` shares with it."""

    # Thousands may be in flight at once: slots, not a dict each.
    __slots__ = (
        "_body_done",
        "_bytes_sent",
        "_changed",
        "_connection",
        "_defaults",
        "_head",
        "_headers_sent",
        "_request_complete",
        "_response_complete",
        "_send_done",
        "_sending",
        "_start",
        "_start_headers",
        "_start_names",
        "_status",
        "_stream",
        "_trailers",
        "_trailers_expected",
        "_write_timeout",
        "disconnected",
        "stream_id",
    )

    def __init__(
        self,
        stream: HTTPStream,
        *,
        defaults: DefaultHeaders,
        head: bool,
        write_timeout: float | None,
    ) -> None:
        self._stream = stream
        # The hot path (_on_body) sends through the connection itself: one call less.
        self._connection = stream.connection
        #: The request's stream ID.
        self.stream_id = stream.stream_id
        self._defaults = defaults
        self._head = head
        self._write_timeout = write_timeout
        # Set once the client is gone (reset, connection lost) or the server answered.
        self.disconnected = False
        self._request_complete = False
        # Made by _wait() only: most requests never wait, and _wake() is per event.
        self._changed: anyio.Event | None = None
        self._start: Message | None = None
        self._start_headers: list[tuple[bytes, bytes]] = _NO_HEADERS  # replaced, never changed
        self._start_names: set[bytes] = _NO_NAMES  # replaced, never changed
        self._headers_sent = False
        self._body_done = False
        self._trailers_expected = False
        self._trailers: list[tuple[bytes, bytes]] = _NO_HEADERS  # replaced, never changed
        self._response_complete = False
        self._status = 0
        self._bytes_sent = 0
        # One sender at a time: the application, or abort() (see _acquire_send();
        # lighter than an anyio.Lock per request, which would rarely be contended).
        self._sending = False
        self._send_done: anyio.Event | None = None

    @property
    def finished(self) -> bool:
        """True once nothing more will be read: response done or client gone."""
        return self.disconnected or self._response_complete

    def _wake(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    async def _wait(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    # -- the server's own answers -------------------------------------------------

    async def abort(self, status: int, message: str) -> None:
        """End the request on the server's behalf (body too large or too slow).

        The client gets ``status`` with ``message`` if no response was
        started, else the stream is reset; on HTTP/2 and HTTP/3 a request
        whose body was still coming is reset after the response (RFC 9113
        §8.1), and on HTTP/1.1 the connection closes after it. From here on
        the application is treated as if the client had gone away.
        """
        if self.finished:
            return
        self.disconnected = True
        self._wake()
        stream = self._stream
        multiplexed = stream.connection.multiplexed
        # Shielded, as it may run in the application's task, but bounded.
        with anyio.move_on_after(self._write_timeout, shield=True):
            await self._acquire_send()  # let a send() in progress finish first
            try:
                if self._response_complete:
                    return
                with contextlib.suppress(TransportError, LocalProtocolError):
                    if self._headers_sent:
                        await stream.send_reset(stream.connection.error_codes.internal_error)
                        return
                    extra = [] if multiplexed else [(b"connection", b"close")]
                    await self._send_error(status, (message + "\n").encode(), extra)
                    if multiplexed and not self._request_complete:
                        await stream.send_reset(stream.connection.error_codes.no_error)
            finally:
                self._release_send()

    async def _finish(self, failed: bool) -> None:
        """Answer for an application that returned (or failed) with its response unfinished."""
        if not failed:
            if self._start is None:
                logger.error("the ASGI application returned without starting a response")
            else:
                logger.error("the ASGI application returned without completing its response")
        stream = self._stream
        try:
            if not self._headers_sent:
                await self._send_error(500, b"Internal Server Error\n")
            else:
                await stream.send_reset(stream.connection.error_codes.internal_error)
        except (TransportError, LocalProtocolError):
            pass

    async def _acquire_send(self) -> None:
        """Take the right to send: one sender at a time, the application or abort()."""
        while self._sending:
            if self._send_done is None:
                self._send_done = anyio.Event()
            await self._send_done.wait()
        self._sending = True

    def _release_send(self) -> None:
        self._sending = False
        done, self._send_done = self._send_done, None
        if done is not None:
            done.set()

    async def _send_error(
        self, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Send a whole text response (no response may have been started)."""
        self._status = status
        headers: list[tuple[bytes, bytes]] = [
            (b":status", status_bytes(status)),
            *(extra or ()),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        self._defaults.add_to(headers, {name for name, _ in headers})
        if self._head:
            body = b""
        self._headers_sent = True
        await self._stream.send_headers(headers, end_stream=not body)
        if body:
            await self._stream.send_data(body, end_stream=True)
        self._bytes_sent = len(body)
        self._response_complete = True

    # -- send -----------------------------------------------------------------------

    def _raise_if_disconnected(self) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client has disconnected")

    async def send(self, message: Message) -> None:
        """The ASGI ``send``; waits while the client is slow.

        :raises ClientDisconnected: once the client has gone away.
        :raises RuntimeError: for messages out of order.
        """
        kind = message["type"]
        self._raise_if_disconnected()
        if kind == "http.response.start":
            self._on_start(message)  # no I/O: no lock, no deadline
            return
        if self._sending:
            await self._acquire_send()  # abort() is sending
        else:
            self._sending = True  # free: no trip through the event loop
        timed_out = False
        try:
            self._raise_if_disconnected()  # abort() may have answered meanwhile
            if kind == "http.response.body":
                # The connection applies the write timeout itself, only
                # where it has to wait: most bodies go out at once.
                try:
                    await self._send(kind, message)
                except TimeoutError:
                    timed_out = True
            else:
                with anyio.move_on_after(self._write_timeout) as scope:  # None: no deadline
                    await self._send(kind, message)
                timed_out = scope.cancelled_caught
        finally:
            self._release_send()
        if timed_out:
            await self._write_timed_out()

    async def _write_timed_out(self) -> None:
        logger.info(
            "the client of stream %d read nothing for %gs: resetting it",
            self.stream_id,
            self._write_timeout,
        )
        self.disconnected = True
        self._wake()
        with (
            anyio.CancelScope(shield=True),
            contextlib.suppress(TransportError, LocalProtocolError),
        ):
            await self._stream.send_reset()
        raise ClientDisconnected(f"the client read nothing for {self._write_timeout:g}s")

    async def _send(self, kind: str, message: Message) -> None:
        try:
            if kind == "http.response.start":
                self._on_start(message)
            elif kind == "http.response.body":
                await self._on_body(message)
            elif kind == "http.response.trailers":
                await self._on_trailers(message)
            elif kind == "http.response.early_hint":
                await self._on_early_hint(message)
            else:
                raise RuntimeError(f"unexpected ASGI message {kind!r}")
        except TransportError as error:
            self.disconnected = True
            raise ClientDisconnected(str(error)) from error
        except LocalProtocolError as error:
            # The stream may be closed because the client reset it a moment
            # ago, and the connection has yet to say so: give it that
            # moment before taking the error for the application's own.
            with anyio.move_on_after(_RESET_NOTICE):
                while not self.disconnected:
                    await self._wait()
            if self.disconnected:
                raise ClientDisconnected(str(error)) from error
            raise

    def _on_start(self, message: Message) -> None:
        if self._start is not None:
            raise RuntimeError("http.response.start was sent twice")
        status = int(message["status"])
        if not 200 <= status <= 999:
            raise RuntimeError(f"invalid response status {status}")
        self._start_headers = check_fields(message.get("headers", ()), "response header")
        self._start_names = {name for name, _ in self._start_headers}
        self._start = message
        self._status = status
        self._trailers_expected = bool(message.get("trailers", False))

    async def _on_body(self, message: Message) -> None:
        if self._start is None:
            raise RuntimeError("http.response.body before http.response.start")
        if self._response_complete:
            return  # ASGI: "any further messages on the channel will be ignored"
        if self._headers_sent and self._body_done:
            raise RuntimeError("http.response.body after the body ended, before its trailers")
        body = bytes(message.get("body", b""))
        more_body = bool(message.get("more_body", False))
        if self._head:
            body = b""
        stream_id = self.stream_id
        connection = self._connection
        timeout = self._write_timeout
        if not self._headers_sent:
            headers = self._response_headers(body, more_body)
            if self._head or (not body and not more_body and not self._trailers_expected):
                await connection.send_headers(stream_id, headers, end_stream=True, max_wait=timeout)
                self._headers_sent = self._body_done = self._response_complete = True
                self._wake()
                return
            # With send_data() right after (below), both leave in one write.
            data_follows = bool(body) or (not more_body and not self._trailers_expected)
            await connection.send_headers(
                stream_id, headers, flush=not data_follows, max_wait=timeout
            )
            self._headers_sent = True
        if self._head:
            if not more_body:
                self._response_complete = True
                self._wake()
            return
        end_stream = not more_body and not self._trailers_expected
        if body or end_stream:
            await connection.send_data(stream_id, body, end_stream=end_stream, max_wait=timeout)
            self._bytes_sent += len(body)
        if not more_body:
            self._body_done = True
            if end_stream:
                self._response_complete = True
                self._wake()

    async def _on_trailers(self, message: Message) -> None:
        if self._response_complete:  # HEAD, or after the last trailers: ignored
            return
        if not self._trailers_expected or not self._body_done:
            raise RuntimeError("http.response.trailers not announced or before the body ended")
        trailers = check_fields(message.get("headers", ()), "trailer")
        if self._trailers:
            trailers = self._trailers + trailers
        if message.get("more_trailers", False):
            self._trailers = trailers
            return
        self._trailers = _NO_HEADERS
        sent = False
        if trailers and self._client_takes_trailers():
            try:
                await self._stream.send_headers(trailers, end_stream=True)
                sent = True
            except LocalProtocolError:
                pass  # HTTP/1.1 with a content-length cannot carry trailers: just end
        if not sent:
            await self._stream.send_data(b"", end_stream=True)
        self._response_complete = True
        self._wake()

    def _client_takes_trailers(self) -> bool:
        """Whether the request said ``TE: trailers`` (the trailers extension asks for it)."""
        return True

    async def _on_early_hint(self, message: Message) -> None:
        if self._headers_sent:
            return  # too late for hints; ignore, as the extension allows
        links = [(b"link", link) for link in message.get("links", ())]
        headers = [(b":status", b"103"), *check_fields(links, "early hint link")]
        await self._stream.send_headers(headers)

    def _response_headers(self, body: bytes, more_body: bool) -> list[tuple[bytes, bytes]]:
        assert self._start is not None
        headers: list[tuple[bytes, bytes]] = [(b":status", status_bytes(self._status))]
        headers.extend(self._start_headers)
        names = self._start_names
        bodyless = self._head or self._status in (204, 304)
        if (
            b"content-length" not in names
            and not more_body
            and not bodyless
            and not self._trailers_expected
        ):
            headers.append((b"content-length", str(len(body)).encode()))
        self._defaults.add_to(headers, names)
        return headers
