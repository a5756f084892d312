"""One request of an :class:`ASGIServer`: its scope, ``receive``, and the application's run.

Theory of operation. A worker of the connection handler
(:mod:`hface.server._asgi`) accepts the request's
:class:`~hface.connections.HTTPStream`, makes an :class:`ASGIStream` of it
and runs the application (:meth:`ASGIStream.run`) in its own task. The
connection's transport task queues the request's body in the stream and
shows every event of the stream to :meth:`ASGIStream.on_event` as it
arrives, so that the request learns at once, even while the application
does not read, that the client reset it or went away (``receive()``
returns ``http.disconnect``, ``send()`` raises :class:`ClientDisconnected`,
and the application is cancelled :attr:`~ASGISettings.disconnect_grace`
seconds later), and that its body grew over the size limit (413). The
application pulls the body with ``receive()``, which takes everything
queued at once; it is acknowledged to the peer only then, so a client can
send no more than the flow-control window ahead of the application (on
HTTP/1.1, the connection stops reading instead). A request with ``expect:
100-continue`` (RFC 9110 §10.1.1) gets ``100 Continue`` when the
application first waits in ``receive()`` for a body that has not begun to
arrive (as hypercorn and uvicorn send it), on every version: never when
it answers without reading, so that a client may spare the upload.

The response side (``send()``, the server's own answers) is
:class:`~hface.server._asgi_send.ResponseSender`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import anyio

from hface.common import HeadersType
from hface.connections import HTTPStream
from hface.errors import LocalProtocolError, TransportError
from hface.events import DataReceived, Event, HeadersReceived

from ._access_log import header_value
from ._asgi_heads import Addresses, make_scope
from ._asgi_send import ResponseSender
from ._asgi_settings import ASGISettings
from ._asgi_types import ASGIApp, ClientDisconnected, Message

logger = logging.getLogger("hface.server")
access_logger = logging.getLogger("hface.server.access")

#: Starts a task in the connection handler's task group (``TaskGroup.start_soon``).
Spawn = Callable[..., Any]

#: The interim response to ``expect: 100-continue`` (RFC 9110 §15.2.1).
_CONTINUE: Final = [(b":status", b"100")]


class ASGIStream(ResponseSender):
    """One request: the scope, the body and the response state.

    :param settings: the server's, as it runs.
    :param stream: the request's stream; its first event, the request's
        headers, already taken (``headers``).
    :param addresses: the connection's ``(client, server)`` addresses.
    :param spawn: starts the tasks of the request's timers (cancelling an
        application whose client left, a 413 for a body over the limit).
    """

    __slots__ = (
        "_abandoned",
        "_body_timeout",
        "_cancel_requested",
        "_cancel_scope",
        "_continue_checked",
        "_request_delivered",
        "_settings",
        "_spawn",
        "_started",
        "body_received",
        "content_length",
        "extended_connect",
        "field_count",
        "raw_method",
        "raw_target",
        "scope",
    )

    def __init__(
        self,
        settings: ASGISettings,
        stream: HTTPStream,
        headers: HeadersType,
        *,
        addresses: Addresses,
        spawn: Spawn,
    ) -> None:
        defaults = settings.default_headers[stream.connection.http_version]
        scope, method, target, content_length, extended_connect = make_scope(
            headers,
            http_version=defaults.http_version,
            root_path=settings.root_path,
            addresses=addresses,
            state=settings.state,
            trusted_proxies=settings.trusted_proxies,
            forwarded_style=settings.forwarded_style,
        )
        super().__init__(
            stream, defaults=defaults, head=method == b"HEAD", write_timeout=settings.write_timeout
        )
        self._settings = settings
        self._spawn = spawn
        # For a duration in the access log: read only if its format may say it.
        self._started = 0.0 if settings.access_log_format is None else time.perf_counter()
        self._body_timeout = settings.body_timeout
        #: The ASGI scope.
        self.scope = scope
        #: The request's ``:method`` and ``:path``, as received.
        self.raw_method = method
        self.raw_target = target
        #: The ``content-length`` field of the request, as received (None if absent).
        self.content_length = content_length
        #: The ``:protocol`` of an extended CONNECT (e.g. ``b"websocket"``), else None.
        self.extended_connect = extended_connect
        #: How many fields the client sent (pseudo-headers, which come first, not counted).
        pseudo = 0
        for name, _ in headers:
            if name[:1] != b":":
                break
            pseudo += 1
        self.field_count = len(headers) - pseudo
        #: Request body bytes received so far.
        self.body_received = 0
        self._request_delivered = False
        self._continue_checked = False  # see _send_continue()
        # The scope the application runs in: its worker task's, shared by the
        # requests the worker runs one after another (see bind_cancel_scope()).
        self._cancel_scope: anyio.CancelScope | None = None
        self._cancel_requested = False  # see cancel()
        self._abandoned = False  # see abandon()

    @property
    def stream(self) -> HTTPStream:
        """The request's stream."""
        return self._stream

    # -- what the connection says (HTTPStream.observe) ----------------------------

    def on_event(self, event: Event) -> bool:
        """See one event of the stream as it arrives; True to queue it for ``receive()``.

        Only body data is queued; data nobody will read (over the size
        limit, or once the response is done or the client gone) is not, and
        the connection credits it back at once.
        """
        if type(event) is DataReceived:
            size = len(event.data)
            limit = self._settings.max_body_size
            if limit is not None and self.body_received + size > limit:
                # Not for the application: the request fails with 413 instead.
                first = self.body_received <= limit
                self.body_received += size
                if first and not self.finished:
                    self._spawn(self._abort_over_limit, limit)
                return False
            self.body_received += size
            if self._request_complete or self.disconnected or self._response_complete:
                return False  # nobody will read it
            if event.end_stream:
                self._request_complete = True
            self._wake()
            return size > 0
        if isinstance(event, HeadersReceived):
            if event.end_stream:
                self.end_request()  # trailers: not passed to ASGI
            return False
        # A reset, or the connection's end: the client is gone.
        if not self.disconnected:
            self.disconnected = True
            self._wake()
            self._spawn(self._cancel_later)
        return False

    #: The request is its stream's observer itself (no bound method per request).
    __call__ = on_event

    def end_request(self) -> None:
        """The request has ended (trailers, or headers with ``end_stream``)."""
        self._request_complete = True
        self._wake()

    async def _cancel_later(self) -> None:
        await anyio.sleep(self._settings.disconnect_grace)
        self.cancel()

    async def _abort_over_limit(self, limit: int) -> None:
        message = f"the request body is over {limit} bytes"
        logger.info("stream %d: %s: %d", self.stream_id, message, 413)
        await self.abort(413, message)
        await self._cancel_later()

    # -- cancellation -------------------------------------------------------------------

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
        self._log_access()

    def _log_access(self) -> None:
        if not self._settings.access_log or not access_logger.isEnabledFor(logging.INFO):
            return
        scope = self.scope
        client = scope["client"]
        log_format = self._settings.access_log_format
        if log_format is not None:
            duration = time.perf_counter() - self._started
            access_logger.info(
                "%s",
                log_format.format(
                    {
                        "client": f"{client[0]}:{client[1]}" if client else "-",
                        "method": scope["method"],
                        "path": self.raw_target.decode("latin-1"),
                        "version": scope["http_version"],
                        "status": self._status or "-",
                        "bytes": self._bytes_sent,
                        "duration": duration,
                        "duration_ms": int(duration * 1000),
                        "user_agent": header_value(scope["headers"], b"user-agent"),
                        "referer": header_value(scope["headers"], b"referer"),
                        "scheme": scope["scheme"],
                    }
                ),
            )
            return
        access_logger.info(
            '%s - "%s %s HTTP/%s" %s %d',
            f"{client[0]}:{client[1]}" if client else "-",
            scope["method"],
            self.raw_target.decode("latin-1"),  # as received
            scope["http_version"],
            self._status or "-",
            self._bytes_sent,
        )

    def _client_takes_trailers(self) -> bool:
        # Read only when an application sends trailers: no cost per request.
        for name, value in self.scope["headers"]:
            if name == b"te" and b"trailers" in value.lower():
                return True
        return False

    # -- receive ------------------------------------------------------------------

    async def receive(self) -> Message:
        """The ASGI ``receive``: body chunks, then ``http.disconnect`` when it is over.

        One ``http.request`` with ``more_body: False`` ends the body (empty
        if the body's end came apart from its last chunk); after it,
        ``receive()`` waits until the response has ended or the client has
        gone, then returns ``http.disconnect`` (every time it is called).
        """
        while True:
            if self.disconnected or self._response_complete:
                return {"type": "http.disconnect"}
            stream = self._stream
            if stream.buffered_data:
                # Every chunk queued at once (only data is queued: on_event()).
                chunks: list[bytes] = []
                while stream.buffered_data:
                    event = stream.receive_event_nowait()
                    if isinstance(event, DataReceived):
                        chunks.append(event.data)
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                more_body = not self._request_complete
                if not more_body:
                    # The last http.request: what follows is http.disconnect
                    # (once the response ended or the client went), never
                    # an empty http.request (Django refuses one).
                    self._request_delivered = True
                await stream.acknowledge(len(body))
                return {"type": "http.request", "body": body, "more_body": more_body}
            if self._request_complete and not self._request_delivered:
                self._request_delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self._request_complete:
                await self._wait()  # for the response to end, or the client to go
                continue
            if not self._continue_checked:
                self._continue_checked = True
                await self._send_continue()
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

    async def _send_continue(self) -> None:
        """Send ``100 Continue`` if the client waits for it (RFC 9110 §10.1.1).

        Only before any body arrived and any response went out, and never
        to an HTTP/1.0 client (§15.2.1).
        """
        if self.body_received or self.scope["http_version"] == "1.0":
            return
        if not any(
            name == b"expect" and value.lower() == b"100-continue"
            for name, value in self.scope["headers"]
        ):
            return
        await self._acquire_send()  # the application may be sending (an early hint)
        try:
            if not self._headers_sent and not self.finished:
                with contextlib.suppress(TransportError, LocalProtocolError):
                    await self._stream.send_headers(_CONTINUE)
        finally:
            self._release_send()
