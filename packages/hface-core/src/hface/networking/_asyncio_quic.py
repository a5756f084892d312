"""A server's UDP socket on asyncio's own datagram transport: the QUIC listener's on asyncio.

Theory of operation. A :class:`~hface.networking.QUICListener` reads one
unconnected UDP socket for every connection of a server. Through anyio's
socket each datagram took a trip through the listener's task (a
checkpoint, an event, a cancel scope) before it reached its connection,
and each datagram sent another (a lock, two checkpoints). On asyncio
(and uvloop) :class:`AsyncioUDPSocket` is the socket instead: both the
:class:`asyncio.DatagramProtocol` of the event loop's datagram transport
and an :class:`anyio.abc.UDPSocket`, so the listener uses it as it uses
anyio's.

- **Datagrams for known connections never wait for the listener's task.**
  The listener installs a *router* (:meth:`AsyncioUDPSocket.route_with`)
  once it can read QUIC headers: ``datagram_received`` calls it with each
  datagram, and it hands the datagram straight to the connection that
  owns the destination connection ID, or drops it, and says so. The
  others (a new connection's Initial, a version to negotiate; every
  datagram before the router is installed) wait in a queue for
  :meth:`~AsyncioUDPSocket.receive`, in order; above
  :data:`UDP_QUEUE_SIZE` the newest are dropped, as a full socket buffer
  drops them (reading does not pause: the known connections' datagrams
  must keep flowing).
- **Sending does not wait** unless the transport holds more than its
  high-water mark (the kernel's buffer was full): ``send()`` hands the
  datagram to ``transport.sendto`` and returns; senders wait only while
  writing is paused. Any number of tasks may send at once.
- **Errors.** An error the kernel reports for one datagram sent or
  received (``error_received``) concerns one peer, not the socket, and is
  ignored, as anyio's socket ignores it. If the transport is lost
  (``connection_lost``), ``receive()`` raises
  :exc:`~anyio.BrokenResourceError` once the queue is empty, and
  ``send()`` at once. After :meth:`~AsyncioUDPSocket.aclose` both raise
  :exc:`~anyio.ClosedResourceError`.

Addresses are anyio's: ``(host, port)``, an IPv6 scope as ``host%scope``.
"""

from __future__ import annotations

import asyncio
import enum
import socket
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

import anyio
import anyio.lowlevel
from anyio.abc import SocketAttribute, UDPSocket

from hface.common import AddressType, DatagramType

from ._asyncio_datagrams import _convert_address
from ._loop import Pulse

#: Datagrams queued at most for :meth:`AsyncioUDPSocket.receive`; newer ones are dropped.
UDP_QUEUE_SIZE: Final = 1024

#: Takes a datagram and its sender; True if it dealt with it (delivered or dropped).
Router = Callable[[bytes, AddressType], bool]


class _SocketState(enum.Enum):
    """Where an :class:`AsyncioUDPSocket` is in its life."""

    OPENING = "opening"  # the transport has not been made yet
    OPEN = "open"
    LOST = "lost"  # the transport was lost (not by aclose)
    CLOSED = "closed"  # aclose() was called


_OPENING: Final = _SocketState.OPENING
_OPEN: Final = _SocketState.OPEN
_LOST: Final = _SocketState.LOST
_CLOSED: Final = _SocketState.CLOSED


def _no_router(data: bytes, address: AddressType) -> bool:
    """The router until the listener installs one: every datagram waits in the queue."""
    return False


class AsyncioUDPSocket(UDPSocket, asyncio.DatagramProtocol):
    """An unconnected UDP socket; see the module docstring. Made by :func:`bind_udp`."""

    def __init__(self) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._socket: socket.socket | None = None
        self._state = _OPENING
        self._error: BaseException | None = None
        self._router: Router = _no_router
        self._datagrams: deque[DatagramType] = deque()
        self._read_waiter: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._writable = Pulse()
        self._attributes: Mapping[Any, Callable[[], Any]] = {}

    def route_with(self, router: Router) -> None:
        """Have ``router`` take every datagram as it comes, from now on (module docstring).

        The router runs in the event loop's callback: it must neither block
        nor raise. Datagrams it declines go to :meth:`receive`.
        """
        self._router = router

    # -- asyncio.DatagramProtocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._socket = raw_socket = transport.get_extra_info("socket")
        self._state = _OPEN
        local = _convert_address(raw_socket.getsockname())
        self._attributes = {
            SocketAttribute.raw_socket: lambda: raw_socket,
            SocketAttribute.family: lambda: raw_socket.family,
            SocketAttribute.local_address: lambda: local,
            SocketAttribute.local_port: lambda: local[1],
        }

    def datagram_received(self, data: bytes, addr: Any) -> None:
        address: AddressType = addr if len(addr) == 2 else _convert_address(addr)
        if self._router(data, address):
            return
        datagrams = self._datagrams
        if len(datagrams) < UDP_QUEUE_SIZE:  # else dropped, as by a full socket buffer
            datagrams.append((data, address))
            waiter = self._read_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def error_received(self, exc: Exception) -> None:
        pass  # about one datagram, to or from one peer: not the socket's (module docstring)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state is not _CLOSED:
            self._state = _LOST
            self._error = exc
        self._wake_all()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._writable.set()

    # -- anyio's UDPSocket ------------------------------------------------------------------

    @property
    def _raw_socket(self) -> socket.socket:
        assert self._socket is not None
        return self._socket

    async def receive(self) -> DatagramType:
        """The next datagram the router declined, and its sender; wait if none has come.

        :raises anyio.BrokenResourceError: once the queue is empty, if the transport was lost.
        :raises anyio.ClosedResourceError: after :meth:`aclose`.
        :raises anyio.BusyResourceError: if another task is receiving.
        """
        datagrams = self._datagrams
        while not datagrams:
            state = self._state
            if state is _CLOSED:
                raise anyio.ClosedResourceError
            if state is _LOST:
                raise anyio.BrokenResourceError("the UDP socket was lost") from self._error
            if self._read_waiter is not None:
                raise anyio.BusyResourceError("reading from")
            self._read_waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._read_waiter = None
        if self._state is _CLOSED:
            raise anyio.ClosedResourceError
        return datagrams.popleft()

    async def send(self, item: DatagramType) -> None:
        """Send the payload of ``item`` to its address; wait only while writing is paused.

        :raises anyio.BrokenResourceError: if the transport was lost.
        :raises anyio.ClosedResourceError: after :meth:`aclose`, also while waiting.
        """
        state = self._state
        if state is not _OPEN:
            if state is _CLOSED:
                raise anyio.ClosedResourceError
            raise anyio.BrokenResourceError("the UDP socket was lost") from self._error
        transport = self._transport
        assert transport is not None
        transport.sendto(item[0], item[1])
        while self._writing_paused and self._state is _OPEN:
            await self._writable.wait()
        if self._state is _CLOSED:
            raise anyio.ClosedResourceError  # aclose() aborted it, discarding what was unsent

    async def aclose(self) -> None:
        if self._state is not _CLOSED:
            self._state = _CLOSED
            if self._transport is not None:
                self._transport.abort()
            self._wake_all()
        await anyio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """anyio's attributes of an unconnected socket: its address and port, family, raw socket."""
        return self._attributes

    # -- internals ------------------------------------------------------------------------

    def _wake_all(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._writable.set()


async def bind_udp(host: str, port: int) -> AsyncioUDPSocket:
    """Bind a UDP socket to ``host`` and ``port`` on the running asyncio loop, as anyio would.

    The family is that of the first address ``host`` resolves to.

    :raises OSError: if the name does not resolve or the address cannot be bound.
    """
    results = await anyio.getaddrinfo(
        host,
        port,
        type=socket.SOCK_DGRAM,
        flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG,
    )
    family, *_, local_address = results[0]
    udp_socket = AsyncioUDPSocket()
    await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: udp_socket, local_addr=local_address, family=family
    )
    return udp_socket


async def wrap_udp_socket(sock: socket.socket) -> AsyncioUDPSocket:
    """Serve the bound UDP socket ``sock`` (the socket is then ours).

    :raises ValueError: if ``sock`` is not bound, as anyio's ``UDPSocket.from_socket``.
    """
    bound = sock.getsockname()
    if not bound or (sock.family in (socket.AF_INET, socket.AF_INET6) and bound[1] == 0):
        raise ValueError("the socket must be bound to a local address")
    udp_socket = AsyncioUDPSocket()
    await asyncio.get_running_loop().create_datagram_endpoint(lambda: udp_socket, sock=sock)
    return udp_socket
