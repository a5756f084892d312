"""One CONNECT stream: check the request, open the tunnel, relay bytes both ways.

Theory of operation. The connection's handler (``_proxy.py``) accepts
each request stream (an :class:`~hface.connections.HTTPStream`, which the
connection's transport task fills with the stream's events) and runs
:func:`serve_stream` on it in a task. A request that is not granted gets
a short text response, with a ``proxy-status`` field (RFC 9209) naming
the error. A CONNECT-UDP request (``:protocol connect-udp``, RFC 9298)
goes to :func:`~._proxy_udp.serve_udp` instead. A granted one gets ``200`` once the target's TCP
connection is open; then two tasks relay:

- *upstream*, client → target: each ``DataReceived`` is written to the
  target, and only then acknowledged to the HTTP connection, so HTTP/2 and
  HTTP/3 flow control holds the client back while the target is slow
  (HTTP/1.1: the connection stops reading while the stream holds too
  much). The client's ``end_stream`` half-closes the target (``send_eof``).
- *downstream*, target → client: what the target sends goes out with
  ``send_data``, which waits on the client's flow control; the target's EOF
  becomes ``end_stream``.

The tunnel ends when both directions have ended. On HTTP/1.1 the
target's EOF also ends it: the connection cannot carry a half-close to
the client (TLS has none, and the connection layer closes only whole
connections), so the proxy closes the connection, as HTTP/1.1 proxies do.
The client's EOF (TCP FIN or TLS close_notify) still half-closes the
target. A reset by the client closes the target; a failure of the
target resets the stream with ``connect_error`` (RFC 9113 §8.5, RFC 9114
§4.4), which on HTTP/1.1 closes the connection. Tasks are never cancelled
in the middle of a write to the connection (see :func:`_relay`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import anyio

from hface.common import HeadersType
from hface.connections import HTTPConnection, HTTPStream
from hface.errors import LocalProtocolError, TransportError
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived, StreamReset
from hface.networking import ByteStream

from ._proxy_target import (
    _READ_SIZE,
    TargetRefused,
    TunnelPolicy,
    check_credentials,
    connect_target,
    header_value,
    parse_target,
    proxy_status,
    resolve_target,
)
from ._proxy_udp import serve_udp

logger = logging.getLogger("hface.server")


#: What a target's stream raises when it fails.
_TARGET_ERRORS = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)


async def respond(stream: HTTPStream, status: int, message: str, extra: HeadersType = ()) -> None:
    """Send a complete text response."""
    body = (message + "\n").encode()
    headers = [
        (b":status", str(status).encode()),
        *extra,
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await stream.send_headers(headers)
    await stream.send_data(body, end_stream=True)


def _check_request(headers: HeadersType, policy: TunnelPolicy) -> None:
    """Raise :class:`TargetRefused` unless this is a CONNECT we may serve."""
    method = header_value(headers, b":method")
    if method != b"CONNECT":
        raise TargetRefused(405, "this proxy only serves CONNECT")
    if header_value(headers, b":protocol") is not None:
        raise TargetRefused(400, "extended CONNECT is not supported but for connect-udp")
    if policy.credentials is not None and not check_credentials(headers, policy.credentials):
        raise TargetRefused(407, "proxy authentication required")


async def serve_stream(stream: HTTPStream, policy: TunnelPolicy) -> None:
    """Answer one request stream; for a granted CONNECT, relay until the tunnel ends.

    :param stream: the request's stream, its first event (the request) not yet taken.
    """
    request = stream.receive_event_nowait()
    assert isinstance(request, HeadersReceived)  # a stream's first event
    if (b":protocol", b"connect-udp") in request.headers and (
        b":method",
        b"CONNECT",
    ) in request.headers:
        await serve_udp(stream, request, policy, _refuse)  # RFC 9298: see _proxy_udp
        return
    try:
        _check_request(request.headers, policy)
        target = parse_target(header_value(request.headers, b":authority"))
        description = _describe(target)
        with anyio.fail_after(policy.connect_timeout):
            addresses = await resolve_target(target, allow_private=policy.allow_private)
            target_stream = await connect_target(
                policy.networking, addresses, description=description
            )
    except TimeoutError:
        message = f"cannot reach the target: timed out after {policy.connect_timeout:g}s"
        await _refuse(stream, request, 502, message, "connection_timeout")
        return
    except TargetRefused as refusal:
        await _refuse(stream, request, refusal.status, refusal.message, refusal.proxy_error)
        return
    async with target_stream:
        await stream.send_headers([(b":status", b"200")])
        logger.info("tunnel to %s for %s", description, _peer(stream.connection))
        await _relay(stream, target_stream, policy.idle_timeout, policy.read_size)
        logger.debug("tunnel to %s closed", description)


async def _refuse(
    stream: HTTPStream, request: HeadersReceived, status: int, message: str, proxy_error: str
) -> None:
    extra: list[tuple[bytes, bytes]] = [(b"proxy-status", proxy_status(proxy_error, message))]
    if status == 405:
        extra.append((b"allow", b"CONNECT"))
    elif status == 407:
        extra.append((b"proxy-authenticate", b'Basic realm="hface"'))
    logger.info("refused %s for %s: %s", status, _peer(stream.connection), message)
    await respond(stream, status, message, extra)
    connection = stream.connection
    if connection.multiplexed and not request.end_stream:
        # RFC 9113 §8.1: the response is complete; the client need not send more.
        await stream.send_reset(connection.error_codes.no_error)


async def _relay(
    stream: HTTPStream,
    target: ByteStream,
    idle_timeout: float | None,
    read_size: int = _READ_SIZE,
) -> None:
    # Cancelling a task in the middle of a connection write could cut a TLS
    # record in two and break every stream of the connection. So the tunnel
    # cancels its tasks only where they cannot be writing to the connection:
    # acknowledgements are shielded, and downstream (the task that calls
    # send_data) is stopped by closing the target under it, or cancelled
    # only by itself or with the connection.
    connection = stream.connection
    stream_id = stream.stream_id
    stopping = False
    last_activity = anyio.current_time()
    upstream_scope = anyio.CancelScope()

    async def reset() -> None:
        with (
            anyio.CancelScope(shield=True),
            contextlib.suppress(TransportError, LocalProtocolError),
        ):
            await stream.send_reset(connection.error_codes.connect_error)

    async def stop_downstream() -> None:
        nonlocal stopping
        stopping = True
        with anyio.CancelScope(shield=True):
            await target.aclose()  # downstream's receive ends with ClosedResourceError

    async with anyio.create_task_group() as task_group:

        async def upstream() -> None:
            with upstream_scope:
                await _upstream()

        async def _upstream() -> None:
            nonlocal last_activity
            while not isinstance(event := await stream.receive_event(), ConnectionTerminated):
                if isinstance(event, StreamReset):
                    await stop_downstream()  # the client gave up
                    return
                if isinstance(event, DataReceived) and event.data:
                    try:
                        await target.send(event.data)
                    except _TARGET_ERRORS as error:
                        logger.info("tunnel on stream %d failed: %r", stream_id, error)
                        await reset()
                        await stop_downstream()
                        return
                    last_activity = anyio.current_time()
                    with anyio.CancelScope(shield=True):
                        await stream.acknowledge(len(event.data))
                if isinstance(event, DataReceived | HeadersReceived) and event.end_stream:
                    # If the target closed already, downstream sees it.
                    with contextlib.suppress(*_TARGET_ERRORS):
                        await target.send_eof()
                    return
            task_group.cancel_scope.cancel()  # the connection is gone

        async def downstream() -> None:
            nonlocal last_activity
            while True:
                try:
                    data = await target.receive(read_size)
                    last_activity = anyio.current_time()
                except anyio.EndOfStream:
                    if stopping:
                        return
                    await stream.send_data(b"", end_stream=True)
                    if not connection.multiplexed:
                        # An HTTP/1.1 connection cannot pass on a half-close
                        # (TLS has no half-close): the target is done, so is the tunnel.
                        await stream.send_reset(connection.error_codes.no_error)
                        task_group.cancel_scope.cancel()
                    return
                except _TARGET_ERRORS as error:
                    if stopping:
                        return
                    logger.info("tunnel on stream %d failed: %r", stream_id, error)
                    await reset()
                    task_group.cancel_scope.cancel()  # upstream: shielded where it writes
                    return
                await stream.send_data(data)

        running = 2
        watch_scope = anyio.CancelScope()

        async def guarded(direction: Callable[[], Awaitable[None]]) -> None:
            nonlocal running
            try:
                await direction()
            except (TransportError, LocalProtocolError):
                task_group.cancel_scope.cancel()  # the connection or the stream is gone
            finally:
                running -= 1
                if not running:
                    watch_scope.cancel()

        async def watch_idle(limit: float) -> None:
            deadline = last_activity + limit
            while True:
                await anyio.sleep_until(deadline)
                deadline = last_activity + limit
                if anyio.current_time() >= deadline:
                    break
            logger.info("tunnel on stream %d idle for %gs: closing it", stream_id, limit)
            await reset()
            await stop_downstream()
            upstream_scope.cancel()  # it may wait on the target; its writes are shielded

        async def watch(limit: float) -> None:
            with watch_scope:
                await watch_idle(limit)

        task_group.start_soon(guarded, upstream)
        task_group.start_soon(guarded, downstream)
        if idle_timeout is not None:
            task_group.start_soon(watch, idle_timeout)


def _describe(target: tuple[str, int]) -> str:
    host, port = target
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _peer(connection: HTTPConnection) -> str:
    try:
        return _describe(connection.remote_address)
    except Exception:
        return "an unknown peer"
