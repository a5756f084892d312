"""One CONNECT-UDP stream (RFC 9298): check the request, open a UDP socket, relay datagrams.

Theory of operation. :func:`~._proxy_tunnel.serve_stream` hands over a
request whose ``:protocol`` is ``connect-udp`` (an extended CONNECT on
HTTP/2 and HTTP/3; on HTTP/1.1 the ``Upgrade: connect-udp`` request, which
the protocol presents the same way). It is checked as a TCP tunnel is,
before any socket exists: the feature is on (else 501), the credentials
(407), the target in the path (RFC 9298 §3:
``/.well-known/masque/udp/{target_host}/{target_port}/``; 400), then the
target is resolved once and every address it resolves to judged by the
policy (403, or 502 if it does not resolve). Only then is a connected UDP
socket opened, and ``200`` with ``capsule-protocol: ?1`` answered; every
refusal carries a ``proxy-status`` field (RFC 9209) naming the error.

The tunnel then moves HTTP Datagrams (RFC 9297: QUIC DATAGRAM frames on
HTTP/3, DATAGRAM capsules on HTTP/2 and HTTP/1.1, see
:mod:`hface.protocols._capsules`) whose payload is a context ID and, for
context 0, a UDP payload (RFC 9298 §5):

- *upstream*, client → target: each ``DatagramReceived`` of context 0 is
  sent on the socket; other contexts and payloads that do not parse are
  dropped (§5). The stream's queue holds at most the budget
  (:attr:`~hface.server.ProxyServer.max_datagram_buffer`) of datagrams
  not relayed yet, and drops what comes beyond it
  (``ConnectionOptions.max_buffered_datagrams``); a UDP send never waits.
- *downstream*, target → client: each datagram read from the socket goes
  out with ``send_datagram``, which drops it rather than wait when the
  connection cannot take it (the QUIC queue full, or more than the
  connection's ``max_pending_data`` held by HTTP/2 flow control); so a
  client that stops reading costs the proxy no memory beyond those bounds.

Datagrams are unreliable: dropping is always allowed, and buffering is
never grown. The tunnel ends when the client ends or resets the stream,
the connection goes, or no datagram passed either way for the idle timeout
(then the proxy ends the stream).
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from typing import TYPE_CHECKING, Final

import anyio
import anyio.lowlevel

from hface.common import AddressType
from hface.connections import HTTPStream
from hface.errors import LocalProtocolError, TransportError
from hface.events import (
    ConnectionTerminated,
    DatagramReceived,
    DataReceived,
    HeadersReceived,
    StreamReset,
)
from hface.networking import ClientNetworking, DatagramStream

from ._proxy_target import (
    TargetRefused,
    TunnelPolicy,
    check_credentials,
    header_value,
    parse_target,
    resolve_target,
)

logger = logging.getLogger("hface.server")

#: RFC 9298 §3: the default URI template's path, up to its variables.
UDP_PATH_PREFIX: Final = "/.well-known/masque/udp/"
#: RFC 9298 §5: the context ID of UDP payloads, as it starts a datagram.
_UDP_CONTEXT: Final = b"\x00"
#: The largest UDP payload read from a target (RFC 768: 65,535 minus the headers).
_MAX_UDP_PAYLOAD: Final = 65527


def parse_udp_target(path: bytes | None) -> AddressType:
    """Parse ``/.well-known/masque/udp/{target_host}/{target_port}/`` (RFC 9298 §3).

    The host may be a DNS name, an IPv4 address or an IPv6 address with its
    colons percent-encoded (§3: ``2001%3Adb8%3A%3A42``).

    :raises TargetRefused: 400 if the path does not match the template or
        names no valid target.
    """
    try:
        text = (path or b"").decode("ascii")
    except UnicodeDecodeError:
        raise TargetRefused(400, "the path must be ASCII") from None
    if not text.startswith(UDP_PATH_PREFIX) or "?" in text or "#" in text:
        raise TargetRefused(
            400, f"CONNECT-UDP needs the path {UDP_PATH_PREFIX}{{target_host}}/{{target_port}}/"
        )
    parts = text[len(UDP_PATH_PREFIX) :].split("/")
    if len(parts) != 3 or parts[2] != "" or not parts[0] or not parts[1]:
        raise TargetRefused(400, f"malformed CONNECT-UDP path {text!r}")
    host = urllib.parse.unquote(parts[0])
    port = urllib.parse.unquote(parts[1])
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return parse_target(authority.encode("ascii", "replace"))


async def open_udp(
    networking: ClientNetworking, addresses: list[AddressType], *, description: str
) -> tuple[DatagramStream, AddressType]:
    """Open a connected UDP socket to the first of ``addresses`` that takes one.

    :raises TargetRefused: 502 if none does.
    """
    reason = "no address"
    for address in addresses:
        try:
            return await networking.connect_udp(address), address
        except TransportError as error:
            reason = str(error)
    raise TargetRefused(502, f"cannot reach {description}: {reason}")


async def serve_udp(
    stream: HTTPStream,
    request: HeadersReceived,
    policy: TunnelPolicy,
    refuse: _Refuse,
) -> None:
    """Answer a CONNECT-UDP request; if granted, relay datagrams until the tunnel ends.

    :param refuse: answers a refusal (the TCP tunnels' own, with ``proxy-status``).
    """
    headers = request.headers
    try:
        if not policy.connect_udp:
            raise TargetRefused(501, "this proxy does not serve CONNECT-UDP")
        if policy.credentials is not None and not check_credentials(headers, policy.credentials):
            raise TargetRefused(407, "proxy authentication required")
        target = parse_udp_target(header_value(headers, b":path"))
        description = _describe(target)
        with anyio.fail_after(policy.connect_timeout):
            addresses = await resolve_target(target, allow_private=policy.allow_private)
            socket, address = await open_udp(policy.networking, addresses, description=description)
    except TimeoutError:
        message = f"cannot reach the target: timed out after {policy.connect_timeout:g}s"
        await refuse(stream, request, 502, message, "dns_timeout")
        return
    except TargetRefused as refusal:
        await refuse(stream, request, refusal.status, refusal.message, refusal.proxy_error)
        return
    async with socket:
        await stream.send_headers([(b":status", b"200"), (b"capsule-protocol", b"?1")])
        logger.info("UDP tunnel to %s (%s)", description, _describe(address))
        await _relay(stream, socket, address, policy.idle_timeout)
        logger.debug("UDP tunnel to %s closed", description)


async def _relay(
    stream: HTTPStream, socket: DatagramStream, address: AddressType, idle_timeout: float | None
) -> None:
    last_activity = anyio.current_time()

    async def upstream() -> None:
        nonlocal last_activity
        while True:
            event = await stream.receive_event()
            if isinstance(event, ConnectionTerminated | StreamReset):
                return  # the client or the connection gave up
            if isinstance(event, DatagramReceived):
                data = event.data
                start = _context_zero(data)
                if start is None:
                    # RFC 9298 §4-5: another context ID (none was registered)
                    # or none that parses: dropped.
                    continue
                last_activity = anyio.current_time()
                try:
                    await socket.send((data[start:], address))
                except OSError as error:  # ICMP errors surface here: UDP goes on
                    logger.debug("UDP send to %s failed: %r", _describe(address), error)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
            elif isinstance(event, DataReceived | HeadersReceived) and event.end_stream:
                await stream.send_data(b"", end_stream=True)  # the client is done: so are we
                return

    async def downstream() -> None:
        nonlocal last_activity
        while True:
            try:
                data, _ = await socket.receive()
            except OSError as error:  # an ICMP error of an earlier send
                logger.debug("UDP receive from %s failed: %r", _describe(address), error)
                await anyio.lowlevel.checkpoint()
                continue
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
                return
            last_activity = anyio.current_time()
            # Dropped (False) when the connection cannot take it now.
            await stream.send_datagram(_UDP_CONTEXT + data[:_MAX_UDP_PAYLOAD])

    async def watch_idle(limit: float) -> None:
        deadline = last_activity + limit
        while True:
            await anyio.sleep_until(deadline)
            deadline = last_activity + limit
            if anyio.current_time() >= deadline:
                break
        logger.info("UDP tunnel on stream %d idle for %gs: closing it", stream.stream_id, limit)
        await stream.send_data(b"", end_stream=True)

    async def one(direction: _Direction) -> None:
        with contextlib.suppress(TransportError, LocalProtocolError):
            await direction()  # either may find the connection or the stream gone
        task_group.cancel_scope.cancel()  # either end ends the tunnel

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(one, upstream)
        task_group.start_soon(one, downstream)
        if idle_timeout is not None:
            limit = idle_timeout
            task_group.start_soon(one, lambda: watch_idle(limit))


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    _Direction = Callable[[], Awaitable[None]]
    _Refuse = Callable[[HTTPStream, HeadersReceived, int, str, str], Awaitable[None]]


def _context_zero(data: bytes) -> int | None:
    """Where the UDP payload starts if ``data`` opens with context ID 0 (a varint), else None."""
    if not data:
        return None
    size = 1 << (data[0] >> 6)  # RFC 9000 §16: the length is in the first two bits
    if len(data) < size or data[0] & 0x3F or any(data[1:size]):
        return None
    return size


def _describe(target: AddressType) -> str:
    host, port = target
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
