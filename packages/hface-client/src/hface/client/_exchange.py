"""One request/response exchange on a pooled connection.

An exchange is made by :meth:`ConnectionPool.open_exchange` once the
request headers are sent on a stream of its own (an
:class:`~hface.connections.HTTPStream`, whose events the connection queues
for it). It then uploads the body (from a task in the session's task
group, so that a server that answers while the upload is in progress never
deadlocks with us), receives the response headers, yields the body as it
arrives, and finally releases its stream: with a reset if either direction
was left unfinished.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterable

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from hface.common import HeaderType
from hface.connections import HTTPStream
from hface.errors import HTTPError, TerminationReason
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HeadersReceived,
    StreamReset,
    StreamResetSent,
)

from . import errors
from ._connection import PooledConnection

#: Bytes per ``send_data`` call when uploading a ``bytes`` body.
_CHUNK_SIZE = 65536


class RetryableError(Exception):
    """The request was not processed and can be sent again (refused or stale)."""

    def __init__(self, error: errors.ClientError) -> None:
        super().__init__(str(error))
        self.error = error


class Exchange:
    """The client side of one stream; see the module docstring."""

    def __init__(
        self,
        pooled: PooledConnection,
        stream: HTTPStream,
        *,
        request_complete: bool,
        reused: bool,
    ) -> None:
        self.pooled = pooled
        #: The exchange's stream, and its ID.
        self.stream = stream
        self.stream_id = stream.stream_id
        self.request_complete = request_complete
        self.response_complete = False
        self.reused = reused
        self.response_started = False
        self._upload_scope: anyio.CancelScope | None = None
        self._upload_done: anyio.Event | None = None
        self._upload_error: BaseException | None = None
        self._wait_scope: anyio.CancelScope | None = None
        self._released = False
        #: Trailer fields, if the server sent any.
        self.trailers: list[HeaderType] | None = None
        self._upload_cancelled = False

    @property
    def origin(self) -> str:
        return str(self.pooled.origin)

    @property
    def http_version(self) -> str:
        return self.pooled.connection.http_version

    # -- upload -------------------------------------------------------------------

    def start_upload(self, task_group: TaskGroup, body: bytes | AsyncIterable[bytes]) -> None:
        """Send ``body`` from a task of ``task_group``; errors end the exchange."""
        self._upload_done = anyio.Event()
        task_group.start_soon(self._upload, body)

    async def _upload(self, body: bytes | AsyncIterable[bytes]) -> None:
        assert self._upload_done is not None
        stream = self.stream
        try:
            with anyio.CancelScope() as self._upload_scope:
                if self._upload_cancelled:
                    return
                if isinstance(body, bytes):
                    for start in range(0, len(body), _CHUNK_SIZE):
                        # send_data may not reach a checkpoint (a write that
                        # never blocks, or one shielded from cancellation).
                        await anyio.lowlevel.checkpoint_if_cancelled()
                        await stream.send_data(body[start : start + _CHUNK_SIZE])
                else:
                    await self._upload_iterable(body)
                await stream.send_data(b"", end_stream=True)
                self.request_complete = True
        except Exception as exc:
            # Reported to whoever waits for the response, never to the task group.
            self._upload_error = exc
            if self._wait_scope is not None:
                self._wait_scope.cancel()
        finally:
            self._upload_done.set()

    async def _upload_iterable(self, body: AsyncIterable[bytes]) -> None:
        stream = self.stream
        iterator = aiter(body)
        try:
            async for chunk in iterator:
                # Neither the body nor send_data need reach a checkpoint:
                # without this, a cancelled upload to a reading peer never ends.
                await anyio.lowlevel.checkpoint_if_cancelled()
                if chunk:
                    await stream.send_data(bytes(chunk))
        finally:
            # A body left unfinished (cancelled, or the send failed) is
            # finished here: nobody else will resume its generator.
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    def _raise_upload_error(self) -> None:
        exc = self._upload_error
        if exc is None:
            return
        if isinstance(exc, errors.ClientError):
            raise exc
        if isinstance(exc, HTTPError) and not self.response_complete:
            raise errors.ConnectionLostError(
                f"cannot send the request body to {self.origin}: {exc}", origin=self.origin
            ) from exc
        if not isinstance(exc, HTTPError):
            raise exc

    # -- receiving ------------------------------------------------------------------

    async def next_event(self, read_timeout: float | None, what: str = "response") -> Event:
        """The next event of this stream; raises TimeoutError after ``timeout`` seconds."""
        self._raise_upload_error()
        event = self.stream.receive_event_nowait()
        if event is not None:
            # Queued already (a body that came with its head): taken with no
            # scope to enter, which costs more than the rest of the call.
            await anyio.lowlevel.checkpoint_if_cancelled()
            return event
        # One scope for both ends of the wait: the deadline, and the upload's
        # failure (which cancels it: see _upload()).
        deadline = math.inf if read_timeout is None else anyio.current_time() + read_timeout
        with anyio.CancelScope(deadline=deadline) as self._wait_scope:
            return await self.stream.receive_event()
        self._wait_scope = None
        self._raise_upload_error()
        raise TimeoutError(
            f"timed out after {read_timeout} s waiting for the {what} of {self.origin}"
        )

    def next_event_nowait(self) -> Event | None:
        """The next event of this stream if it is queued already, else None."""
        event = self.stream.receive_event_nowait()
        if isinstance(event, ConnectionTerminated):
            return None  # next_event() reports the end
        return event

    async def receive_response_headers(
        self, read_timeout: float | None
    ) -> tuple[int, list[HeaderType], bool]:
        """Wait for the final response: ``(status, headers, end_stream)``.

        :raises RetryableError: if the server refused the stream, or a reused
            HTTP/1.1 connection turned out to be closed before any response.
        """
        while True:
            event = await self.next_event(read_timeout)
            if isinstance(event, HeadersReceived):
                self.response_started = True
                status, headers = self._split_status(event.headers)
                if 100 <= status < 200 and status != 101 and not event.end_stream:
                    continue  # interim response (RFC 9110 §15.2)
                if event.end_stream:
                    self.response_complete = True
                return status, headers, event.end_stream
            if isinstance(event, StreamReset):
                self.response_complete = True
                if not self.pooled.multiplexed:
                    http1_error = await self._http1_failure(read_timeout, head_received=False)
                    if self.reused and isinstance(http1_error, errors.ConnectionLostError):
                        raise RetryableError(http1_error)
                    raise http1_error
                if isinstance(event, StreamResetSent):
                    raise self._refused_error(event)
                error = self._reset_error(event)
                if event.error_code == self.pooled.connection.error_codes.refused_stream:
                    raise RetryableError(error)
                raise error
            if isinstance(event, ConnectionTerminated):
                lost = self._lost_error(event.message, event.reason)
                if self.reused and not self.pooled.multiplexed:
                    raise RetryableError(lost)
                raise lost
            if isinstance(event, DataReceived):
                raise errors.RemoteProtocolError(
                    f"{self.origin} sent response data before the headers", origin=self.origin
                )

    def _split_status(self, raw_headers: object) -> tuple[int, list[HeaderType]]:
        status: int | None = None
        headers: list[HeaderType] = []
        for name, value in raw_headers:  # type: ignore[attr-defined]  # HeadersType
            if name == b":status":
                try:
                    status = int(value)
                except ValueError:
                    status = None
            elif not name.startswith(b":"):
                headers.append((name, value))
        if status is None or not 100 <= status <= 999:
            raise errors.RemoteProtocolError(
                f"{self.origin} sent a response without a valid :status", origin=self.origin
            )
        return status, headers

    def _refused_error(self, event: StreamResetSent) -> errors.RemoteProtocolError:
        """The error for a stream the protocol reset itself: the response broke a rule.

        (A response over the header size limit on HTTP/3, a malformed one
        on HTTP/2; the exchange's own resets come after it stopped reading.)
        """
        return errors.RemoteProtocolError(
            f"{self.origin} sent a response that was refused on stream {event.stream_id}"
            f" (reset with error code {event.error_code:#x} over HTTP/{self.http_version};"
            " e.g. its header block exceeds max_response_header_size)",
            origin=self.origin,
            error_code=event.error_code,
        )

    def _reset_error(self, event: StreamReset) -> errors.StreamResetError:
        return errors.StreamResetError(
            f"{self.origin} reset stream {event.stream_id} "
            f"(error code {event.error_code:#x}) over HTTP/{self.http_version}",
            origin=self.origin,
            stream_id=event.stream_id,
            error_code=event.error_code,
        )

    async def _http1_failure(
        self, read_timeout: float | None, *, head_received: bool
    ) -> errors.ConnectionLostError | errors.RemoteProtocolError:
        """The error for a "reset" of an HTTP/1.1 exchange (the peer broke the connection).

        HTTP/1.1 has no stream resets: the protocol reports a connection that
        failed mid-exchange as a reset, then ``ConnectionTerminated`` with the
        reason: the server sent something unparsable (``PEER_PROTOCOL_ERROR``),
        or the connection ended early (closed by the server, or lost).

        :param head_received: whether the final response head had arrived;
            before it, a close by the server is said as such, whatever the
            parser made of the missing head.
        """
        event = await self.next_event(read_timeout)
        if not isinstance(event, ConnectionTerminated):
            event = ConnectionTerminated()
        if event.reason is TerminationReason.PEER_PROTOCOL_ERROR:
            return errors.RemoteProtocolError(
                f"{self.origin} sent an invalid HTTP/1.1 response: {event.message}",
                origin=self.origin,
                error_code=event.error_code,
            )
        detail = event.message
        early = event.reason is TerminationReason.CLOSED_BY_PEER and not head_received
        if detail is None or early:
            detail = "the server closed the connection"
        return self._lost_error(detail, event.reason)

    def _lost_error(
        self, message: str | None, termination: TerminationReason | None
    ) -> errors.ConnectionLostError:
        """The error for a connection that ended mid-exchange; ``message`` says how, if given."""
        detail = f": {message}" if message else ""
        return errors.ConnectionLostError(
            f"the connection to {self.origin} ended before the response was complete{detail}",
            origin=self.origin,
            termination=termination,
        )

    async def iter_body(self, read_timeout: float | None) -> AsyncGenerator[bytes, None]:
        """Yield the response body; acknowledge each chunk as it is taken."""
        while not self.response_complete:
            event = await self.next_event(read_timeout, "response body")
            if isinstance(event, DataReceived):
                if event.end_stream:
                    self.response_complete = True
                if event.data:
                    with contextlib.suppress(HTTPError):
                        await self.stream.acknowledge(len(event.data))
                    yield event.data
            elif isinstance(event, HeadersReceived):
                # Trailers (RFC 9110 §6.5): kept, not interpreted.
                self.trailers = list(event.headers)
                self.response_complete = event.end_stream or self.response_complete
            elif isinstance(event, StreamReset):
                self.response_complete = True
                if not self.pooled.multiplexed:
                    raise await self._http1_failure(read_timeout, head_received=True)
                if isinstance(event, StreamResetSent):
                    raise self._refused_error(event)
                raise self._reset_error(event)
            elif isinstance(event, ConnectionTerminated):
                raise self._lost_error(event.message, event.reason)

    # -- release ------------------------------------------------------------------------

    async def aclose(self) -> None:
        """End the exchange: stop the upload, reset the stream if unfinished, release it."""
        if self._released:
            return
        self._released = True
        with anyio.CancelScope(shield=True):
            if self._upload_done is not None:
                self._upload_cancelled = True
                if self._upload_scope is not None:
                    self._upload_scope.cancel()
            # The reset goes first: a cancelled upload may be blocked in a
            # (shielded) write to a server that never reads, and only the
            # reset (on HTTP/1.1, closing the connection) ends that write.
            if not (self.request_complete and self.response_complete):
                with contextlib.suppress(HTTPError):
                    await self.stream.send_reset()
            if self._upload_done is not None:
                await self._upload_done.wait()
            await self.stream.aclose()  # what is left unread is credited back
            self.pooled.release()
