"""One request of an :class:`ASGIServer`: its scope, ``receive`` and ``send``.

Theory of operation. The connection handler (:mod:`hface.server._asgi`)
reads every event of a connection and hands each stream's events to its
:class:`ASGIStream` (:meth:`ASGIStream.feed_data`, :meth:`~ASGIStream.end_request`,
:meth:`~ASGIStream.disconnect`). The application runs in a worker task of
the connection (:meth:`ASGIStream.run`) and pulls the body with ``receive()``; received
data is acknowledged to the peer only then, so a client can send no more
than the flow-control window ahead of the application. ``send()`` writes
through the connection and so waits while the client is slow.

The response headers are held until the first body message, so that a
one-message body gets a ``content-length`` and an application that fails
before any body still gets a clean 500.

The server may end a request before the application does
(:meth:`ASGIStream.abort`): a body over the size limit (413), or one that
stops arriving (408, from ``receive()``). The client then gets that status
if no response was started, else a reset stream; the application's
``receive()`` returns ``http.disconnect`` and its ``send()`` raises
:class:`ClientDisconnected`, as when the client goes away. A ``send()``
that the client does not let through within the write timeout resets the
stream the same way.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import anyio

from hface.common import HeadersType
from hface.connections import HTTPConnection
from hface.errors import LocalProtocolError, TransportError

if TYPE_CHECKING:
    from ._asgi import ASGIServer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI 3.0 application: ``await app(scope, receive, send)``.
ASGIApp = Callable[..., Awaitable[None]]

logger = logging.getLogger("hface.server")
access_logger = logging.getLogger("hface.server.access")

ASGI_VERSIONS = {"version": "3.0", "spec_version": "2.4"}

_ERROR_BODY = b"Internal Server Error\n"

#: Seconds ``send()`` waits, after the connection refused to send on a stream,
#: to learn whether the client reset that stream.
_RESET_NOTICE = 0.25


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client has gone away (ASGI spec 2.4)."""


class ASGIStream:
    """One request: the scope, the body queue and the response state.

    :param max_buffered_data: on HTTP/1.1 (no flow control) the handler
        stops reading while more than this many body bytes wait here.
    :param body_timeout: seconds ``receive()`` waits for the next piece of
        the body before the request fails with 408 (None: forever).
    :param write_timeout: seconds one ``send()`` may wait on the client
        before the stream is reset (None: forever).
    :param addresses: the connection's ``(client, server)`` addresses for
        the scope, if the caller has them already (they cost a lookup each).
    """

    # Thousands may be in flight at once: slots, not a dict each.
    __slots__ = (
        "_abandoned",
        "_addresses",
        "_body_done",
        "_body_timeout",
        "_buffered",
        "_bytes_sent",
        "_cancel_requested",
        "_cancel_scope",
        "_changed",
        "_chunks",
        "_connection",
        "_defaults",
        "_head",
        "_headers_sent",
        "_http_version",
        "_max_buffered_data",
        "_request_complete",
        "_request_delivered",
        "_response_complete",
        "_send_done",
        "_sending",
        "_server",
        "_start",
        "_start_headers",
        "_start_names",
        "_status",
        "_trailers_expected",
        "_write_timeout",
        "body_received",
        "content_length",
        "disconnected",
        "extended_connect",
        "field_count",
        "raw_method",
        "raw_target",
        "scope",
        "stream_id",
    )

    def __init__(
        self,
        server: ASGIServer,
        connection: HTTPConnection,
        stream_id: int,
        headers: HeadersType,
        *,
        state: dict[str, Any],
        max_buffered_data: int = 1024 * 1024,
        body_timeout: float | None = None,
        write_timeout: float | None = None,
        addresses: tuple[tuple[str, int] | None, tuple[str, int] | None] | None = None,
        defaults: DefaultHeaders | None = None,
    ) -> None:
        self._server = server
        self._addresses = addresses or connection_addresses(connection)
        self._defaults = defaults or DefaultHeaders(server, connection)
        self._connection = connection
        self._http_version = self._defaults.http_version
        self.stream_id = stream_id
        self._max_buffered_data = max_buffered_data
        self._body_timeout = body_timeout
        self._write_timeout = write_timeout
        #: The request's ``:method`` and ``:path``, as received.
        self.raw_method = b"GET"
        self.raw_target = b"/"
        #: The ``content-length`` field of the request, as received (None if absent).
        self.content_length: bytes | None = None
        #: True for extended CONNECT (a ``:protocol`` pseudo-header).
        self.extended_connect = False
        #: How many fields the request had (pseudo-headers included).
        self.field_count = len(headers)
        self.scope = self._make_scope(headers, state)
        self._head = self.raw_method == b"HEAD"
        # The request body, not yet taken by the application (taken whole:
        # a list, lighter than a deque).
        self._chunks: list[bytes] = []
        self._buffered = 0
        #: Request body bytes received so far.
        self.body_received = 0
        self._request_complete = False
        self._request_delivered = False
        # Made by _wait() only: most requests never wait, and _wake() is per event.
        self._changed: anyio.Event | None = None
        # Set once the client is gone (reset, connection lost).
        self.disconnected = False
        # The response.
        self._start: Message | None = None
        self._start_headers: list[tuple[bytes, bytes]] = _NO_HEADERS  # replaced, never changed
        self._start_names: set[bytes] = _NO_NAMES  # replaced, never changed
        self._headers_sent = False
        self._body_done = False
        self._trailers_expected = False
        self._response_complete = False
        self._status = 0
        self._bytes_sent = 0
        # One sender at a time: the application, or abort() (see _acquire_send();
        # lighter than an anyio.Lock per request, which would rarely be contended).
        self._sending = False
        self._send_done: anyio.Event | None = None
        # The scope the application runs in: its worker task's, shared by the
        # requests the worker runs one after another (see bind_cancel_scope()).
        self._cancel_scope: anyio.CancelScope | None = None
        self._cancel_requested = False  # see cancel()
        self._abandoned = False  # see abandon()

    # -- fed by the connection handler ----------------------------------------

    def feed_data(self, data: bytes, end_stream: bool) -> int:
        """Queue request body data; returns how much to acknowledge at once."""
        self.body_received += len(data)
        if self._request_complete or self.disconnected or self._response_complete:
            return len(data)  # nobody will read it
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
        if end_stream:
            self._request_complete = True
        self._wake()
        return 0

    def end_request(self) -> None:
        """The request has ended (trailers, or headers with ``end_stream``)."""
        self._request_complete = True
        self._wake()

    def disconnect(self) -> None:
        """The client has gone away: ``receive()`` returns ``http.disconnect``."""
        self.disconnected = True
        self._wake()

    def has_room(self) -> bool:
        """True unless too much body data waits for the application."""
        return self._buffered <= self._max_buffered_data or self.finished

    async def wait_for_room(self) -> None:
        """Wait until the application has taken enough of the body (HTTP/1.1)."""
        while not self.has_room():
            await self._wait()

    @property
    def finished(self) -> bool:
        """True once nothing more will be read: response done or client gone."""
        return self.disconnected or self._response_complete

    def take_unconsumed(self) -> int:
        """Forget the queued body; return its size (to acknowledge it)."""
        size = self._buffered
        self._chunks.clear()
        self._buffered = 0
        return size

    def bind_cancel_scope(self, scope: anyio.CancelScope) -> None:
        """Have :meth:`cancel` cancel ``scope``, in which :meth:`run` is about to run.

        The scope of the worker task that runs the request: one scope per
        worker, not per request (a scope costs some 700 bytes). Cancelling it
        ends the worker after this request.
        """
        self._cancel_scope = scope
        if self._cancel_requested:
            scope.cancel()

    def cancel(self) -> None:
        """Cancel the application (its client is gone); nothing once :meth:`run` has returned."""
        if self._cancel_requested:
            return
        self._cancel_requested = True
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    def abandon(self) -> None:
        """Cancel the application, and send nothing more: the connection is being torn down.

        As when the task running the request is cancelled: :meth:`run`
        returns (or raises the cancellation) without answering for the
        application (no 500, no reset).
        """
        self._abandoned = True
        self.cancel()

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
        connection = self._connection
        # Shielded, as it may run in the application's task, but bounded.
        with anyio.move_on_after(self._write_timeout, shield=True):
            await self._acquire_send()  # let a send() in progress finish first
            try:
                if self._response_complete:
                    return
                with contextlib.suppress(TransportError, LocalProtocolError):
                    if self._headers_sent:
                        code = connection.error_codes.internal_error
                        await connection.send_stream_reset(self.stream_id, code)
                        return
                    extra = [] if connection.multiplexed else [(b"connection", b"close")]
                    await self._send_error(status, (message + "\n").encode(), extra)
                    if connection.multiplexed and not self._request_complete:
                        code = connection.error_codes.no_error
                        await connection.send_stream_reset(self.stream_id, code)
            finally:
                self._release_send()

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
            (b":status", _status_bytes(status)),
            *(extra or ()),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        self._add_default_headers(headers)
        if self._head:
            body = b""
        self._headers_sent = True
        await self._connection.send_headers(self.stream_id, headers, end_stream=not body)
        if body:
            await self._connection.send_data(self.stream_id, body, end_stream=True)
        self._bytes_sent = len(body)
        self._response_complete = True

    def _wake(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    async def _wait(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    # -- the scope -------------------------------------------------------------------

    def _make_scope(self, headers: HeadersType, state: dict[str, Any]) -> Scope:
        # One pass over the fields, which come lowercase with the
        # pseudo-headers first (hface.events.HeadersReceived): no lower().
        method = b"GET"
        scheme = b"http"
        target = b"/"
        authority: bytes | None = None
        fields: list[list[bytes]] = []
        has_host = False
        for name, value in headers:
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    target = value
                elif name == b":scheme":
                    scheme = value
                elif name == b":authority":
                    authority = value
                elif name == b":protocol":
                    self.extended_connect = True
            else:
                if name == b"host":
                    has_host = True
                elif name == b"content-length":
                    self.content_length = value
                fields.append([name, value])
        if authority is not None and not has_host:
            fields.insert(0, [b"host", authority])
        self.raw_method = method
        self.raw_target = target
        raw_path, _, query_string = target.partition(b"?")
        root_path = self._server.root_path
        if b"%" in raw_path:
            path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        else:
            path = raw_path.decode("utf-8", "replace")
        if root_path:
            path = root_path + path
            raw_path = root_path.encode("utf-8") + raw_path
        client, server = self._addresses
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": self._http_version,
            "method": _ascii(method),
            "scheme": _ascii(scheme),
            "path": path,
            "raw_path": raw_path,
            "query_string": query_string,
            "root_path": root_path,
            "headers": fields,
            "client": client,
            "server": server,
            "state": state.copy(),
            "extensions": {"http.response.trailers": {}, "http.response.early_hint": {}},
        }

    # -- the application ------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        """Run the application on this request; never raises (but cancellation).

        Cancelled through :meth:`cancel`, it raises the cancellation of the
        scope given to :meth:`bind_cancel_scope` (the caller's to catch),
        having logged the request.
        """
        failed = False
        try:
            if self._abandoned:
                return
            await app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            logger.debug("the client went away from stream %d", self.stream_id)
        except Exception:
            failed = True
            if not self.disconnected:
                logger.exception("exception in the ASGI application")
            else:
                logger.debug("exception after the client went away", exc_info=True)
        except BaseException:
            # Cancelled: by cancel() (the client went away before the
            # application returned), or with the worker's whole task.
            if self._cancel_requested and not self._abandoned:
                self._log_access()
            raise
        finally:
            self._cancel_scope = None  # cancel() does nothing from here on
        if self._abandoned:
            return  # torn down with its connection: as if its task had been cancelled
        if self._response_complete or self.disconnected:
            self._log_access()  # the common case: nothing left to send
            return
        with anyio.CancelScope(shield=True):
            await self._finish(failed)

    async def _finish(self, failed: bool) -> None:
        if not failed:
            if self._start is None:
                logger.error("the ASGI application returned without starting a response")
            else:
                logger.error("the ASGI application returned without completing its response")
        try:
            if not self._headers_sent:
                await self._send_error(500, _ERROR_BODY)
            else:
                error_code = self._connection.error_codes.internal_error
                await self._connection.send_stream_reset(self.stream_id, error_code)
        except (TransportError, LocalProtocolError):
            pass
        self._log_access()

    def _log_access(self) -> None:
        if not self._server.access_log or not access_logger.isEnabledFor(logging.INFO):
            return
        scope = self.scope
        client = scope["client"]
        access_logger.info(
            '%s - "%s %s HTTP/%s" %s %d',
            f"{client[0]}:{client[1]}" if client else "-",
            scope["method"],
            self.raw_target.decode("latin-1"),  # as received
            scope["http_version"],
            self._status or "-",
            self._bytes_sent,
        )

    # -- receive ------------------------------------------------------------------

    async def receive(self) -> Message:
        """The ASGI ``receive``: body chunks, then ``http.disconnect`` when it is over."""
        while True:
            if self.disconnected or self._response_complete:
                return {"type": "http.disconnect"}
            if self._chunks:
                body = b"".join(self._chunks)
                self._chunks.clear()
                self._buffered = 0
                self._wake()
                await self._connection.acknowledge_received_data(self.stream_id, len(body))
                more_body = not self._request_complete or bool(self._chunks)
                return {"type": "http.request", "body": body, "more_body": more_body}
            if self._request_complete and not self._request_delivered:
                self._request_delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self._request_complete:
                await self._wait()  # for the response to end, or the client to go
                continue
            with anyio.move_on_after(self._body_timeout) as scope:  # None: no deadline
                await self._wait()
            if scope.cancelled_caught:
                logger.info(
                    "request body on stream %d stalled for %gs: 408",
                    self.stream_id,
                    self._body_timeout,
                )
                await self.abort(408, "the request body stopped arriving")

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
            await self._connection.send_stream_reset(
                self.stream_id, self._connection.error_codes.cancel
            )
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
            # ago, and the connection handler is about to say so: give it that
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
        self._start_headers = _fields(message.get("headers", ()), "response header")
        self._start_names = {name for name, _ in self._start_headers}
        self._start = message
        self._status = status
        self._trailers_expected = bool(message.get("trailers", False))

    async def _on_body(self, message: Message) -> None:
        if self._start is None:
            raise RuntimeError("http.response.body before http.response.start")
        if self._response_complete or (self._headers_sent and self._body_done):
            raise RuntimeError("http.response.body after the response body ended")
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
        if not self._trailers_expected or not self._body_done:
            raise RuntimeError("http.response.trailers not announced or before the body ended")
        if message.get("more_trailers", False):
            raise RuntimeError("more_trailers is not supported")
        if self._response_complete:  # HEAD
            return
        trailers = _fields(message.get("headers", ()), "trailer")
        try:
            await self._connection.send_headers(self.stream_id, trailers, end_stream=True)
        except LocalProtocolError:
            # HTTP/1.1 with a content-length cannot carry trailers: just end.
            await self._connection.send_data(self.stream_id, b"", end_stream=True)
        self._response_complete = True
        self._wake()

    async def _on_early_hint(self, message: Message) -> None:
        if self._headers_sent:
            return  # too late for hints; ignore, as the extension allows
        links = [(b"link", link) for link in message.get("links", ())]
        headers = [(b":status", b"103"), *_fields(links, "early hint link")]
        await self._connection.send_headers(self.stream_id, headers)

    def _response_headers(self, body: bytes, more_body: bool) -> list[tuple[bytes, bytes]]:
        assert self._start is not None
        headers: list[tuple[bytes, bytes]] = [(b":status", _status_bytes(self._status))]
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

    def _add_default_headers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self._defaults.add_to(headers, {name for name, _ in headers})


#: The response headers and their names before the application gave any.
_NO_HEADERS: list[tuple[bytes, bytes]] = []
_NO_NAMES: set[bytes] = set()

#: A field name (RFC 9110 §5.1: a token), lowercase as HTTP/2 and HTTP/3 want it.
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
#: A field value (RFC 9110 §5.5): no control characters but HTAB, so no CR or LF.
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")


#: Field names as applications spell them, mapped to their checked lowercase
#: form: applications send the same few names on every response.
_CHECKED_NAMES: dict[bytes, bytes] = {}
#: At most this many names are remembered (an application that makes names
#: up must not grow the cache without bound).
_MAX_CHECKED_NAMES = 512


def _fields(fields: Any, what: str) -> list[tuple[bytes, bytes]]:
    """The application's ``(name, value)`` pairs as lowercase bytes, checked.

    :raises RuntimeError: for a name or value that could not go on the wire
        as it is (which on HTTP/1.1 could inject other fields).
    """
    checked: list[tuple[bytes, bytes]] = []
    names = _CHECKED_NAMES
    try:
        for raw_name, value in fields:
            is_bytes = type(raw_name) is bytes
            name = names.get(raw_name) if is_bytes else None
            if name is None:
                name = bytes(raw_name).lower()
                if not _FIELD_NAME.fullmatch(name):
                    raise RuntimeError(f"invalid {what} name {name!r}")
                if is_bytes and len(names) < _MAX_CHECKED_NAMES:
                    names[raw_name] = name
            if type(value) is not bytes:
                value = bytes(value)
            if not _FIELD_VALUE.fullmatch(value):
                raise RuntimeError(f"invalid {what} value {value!r} for {name!r}")
            checked.append((name, value))
    except (TypeError, ValueError) as error:
        raise RuntimeError(f"invalid {what}s {fields!r}: {error}") from None
    return checked


class DefaultHeaders:
    """The fields every response of one connection gets unless the application sets them.

    Made once per connection: ``server``, ``date`` (formatted once a
    second) and ``alt-svc``, as bytes.
    """

    __slots__ = ("alt_svc", "date", "http_version", "server")

    def __init__(self, server: ASGIServer, connection: HTTPConnection) -> None:
        #: The connection's HTTP version (``"1.1"``, ``"2"``, ``"3"``).
        self.http_version = connection.http_version
        #: The ``server`` value, or None for none.
        self.server = server.server_header.encode() if server.server_header else None
        #: Whether to add ``date``.
        self.date = server.date_header
        alt_svc = server.alt_svc_value(connection)
        #: The ``alt-svc`` value, or None for none.
        self.alt_svc = alt_svc.encode() if alt_svc else None

    def add_to(self, headers: list[tuple[bytes, bytes]], names: set[bytes]) -> None:
        """Append the defaults to ``headers`` whose names are not in ``names``."""
        if self.server is not None and b"server" not in names:
            headers.append((b"server", self.server))
        if self.date and b"date" not in names:
            headers.append((b"date", _date_header()))
        if self.alt_svc is not None and b"alt-svc" not in names:
            headers.append((b"alt-svc", self.alt_svc))


def _status_bytes(status: int) -> bytes:
    """``status`` as the bytes of a ``:status`` field."""
    return _STATUS_BYTES.get(status) or str(status).encode()


def _ascii(value: bytes) -> str:
    """A method or scheme as a string; the common ones without decoding."""
    text = _COMMON_TOKENS.get(value)
    return text if text is not None else value.decode("ascii", "replace")


_COMMON_TOKENS = {
    token.encode(): token
    for token in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "http", "https")
}

#: ``:status`` values, encoded once.
_STATUS_BYTES = {status: str(status).encode() for status in range(100, 1000)}

_date_cache: tuple[int, bytes] = (0, b"")


def _date_header() -> bytes:
    """The ``date`` header value for now, formatted once a second."""
    global _date_cache
    now = int(time.time())
    second, value = _date_cache
    if second != now:
        value = formatdate(now, usegmt=True).encode()
        _date_cache = (now, value)
    return value


def connection_addresses(
    connection: HTTPConnection,
) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    """The ``(client, server)`` addresses of ``connection`` for a scope (None if unknown)."""
    return _address(connection, remote=True), _address(connection, remote=False)


def _address(connection: HTTPConnection, *, remote: bool) -> tuple[str, int] | None:
    try:
        return connection.remote_address if remote else connection.local_address
    except Exception:  # no such attribute on this transport
        return None
