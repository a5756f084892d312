"""A connected UDP socket on asyncio's own datagram transport: SystemNetworking's on asyncio.

Theory of operation. A client's QUIC connection reads its one connected
UDP socket through :class:`AsyncioDatagramStream`, which is both the
:class:`asyncio.DatagramProtocol` of the event loop's datagram transport
and the :data:`~hface.networking.DatagramStream` the connection layer
uses. It exists for what anyio's asyncio UDP socket does not do:

- **Errors the kernel reports end the stream.** A connected UDP socket
  learns of ICMP errors about what it sent (port unreachable: nothing
  listens there; host or network unreachable) as a pending socket error,
  which asyncio hands to ``error_received``. anyio records it there and
  never wakes a waiting ``receive()``, so a QUIC client waited for its
  handshake timeout. Here ``receive()`` raises
  :exc:`~anyio.BrokenResourceError` chained from the :exc:`OSError`
  (``ConnectionRefusedError`` for port unreachable) once the datagrams
  that came before it are taken: what anyio's Trio backend does, where
  ``recv()`` raises the error itself.
- **No datagram is dropped to make room.** Received datagrams wait in a
  queue; above :data:`DATAGRAM_QUEUE_SIZE` the transport stops reading
  (where it can: uvloop's cannot, and there the newest are dropped, as a
  full socket buffer drops them), and the kernel's socket buffer holds the
  rest until ``receive()`` catches up. anyio's queue drops the oldest.

``send()`` hands each datagram to the transport, which sends it at once or
buffers it when the kernel's buffer is full; it then waits while the
transport is above its high-water mark (``pause_writing``). Errors of
``send()`` are reported the same way, by the next ``receive()``. After
:meth:`~AsyncioDatagramStream.aclose` both raise
:exc:`~anyio.ClosedResourceError`.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

import anyio
import anyio.lowlevel
from anyio.abc import SocketAttribute

from hface.common import AddressType, DatagramType

from ._streams import DatagramStream

#: Received datagrams queued at most before the transport stops reading.
DATAGRAM_QUEUE_SIZE: Final = 1024


def _convert_address(address: Any) -> AddressType:
    """An IP socket address as ``(host, port)``, IPv6 scope as ``host%scope`` (as anyio)."""
    if len(address) == 4 and address[3]:
        host, port, _flowinfo, scope_id = address
        return f"{host.split('%')[0]}%{scope_id}", port
    return address[0], address[1]


class AsyncioDatagramStream(DatagramStream, asyncio.DatagramProtocol):
    """A connected UDP socket; see the module docstring. Made by :func:`connect_udp`."""

    def __init__(self) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._datagrams: deque[bytes] = deque()
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._error: OSError | None = None
        self._lost = False
        self._closed = False
        self._remote_address: AddressType = ("", 0)
        self._attributes: Mapping[Any, Callable[[], Any]] = {}

    # -- asyncio.DatagramProtocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        raw_socket: socket.socket = transport.get_extra_info("socket")
        local = _convert_address(transport.get_extra_info("sockname"))
        self._remote_address = remote = _convert_address(transport.get_extra_info("peername"))
        self._attributes = {
            SocketAttribute.raw_socket: lambda: raw_socket,
            SocketAttribute.family: lambda: raw_socket.family,
            SocketAttribute.local_address: lambda: local,
            SocketAttribute.local_port: lambda: local[1],
            SocketAttribute.remote_address: lambda: remote,
            SocketAttribute.remote_port: lambda: remote[1],
        }

    def datagram_received(self, data: bytes, addr: Any) -> None:
        datagrams = self._datagrams
        if len(datagrams) >= DATAGRAM_QUEUE_SIZE:
            return  # a transport that cannot pause: dropped, as the kernel would
        datagrams.append(data)
        if len(datagrams) >= DATAGRAM_QUEUE_SIZE:
            self._pause_reading()
        self._wake_reader()

    def error_received(self, exc: Exception) -> None:
        # The first error is the one to report (a refusal, then its echoes).
        if self._error is None and isinstance(exc, OSError):
            self._error = exc
        self._wake_reader()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._error is None and isinstance(exc, OSError):
            self._error = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_writer()

    # -- anyio's UnreliableObjectStream ------------------------------------------------

    async def receive(self) -> DatagramType:
        """Return the next datagram and the peer's address; wait if none has come.

        :raises anyio.BrokenResourceError: once the datagrams queued before
            it are taken, if the kernel reported an error (chained from the
            :exc:`OSError`), or if the transport was lost.
        :raises anyio.ClosedResourceError: after :meth:`aclose`.
        :raises anyio.BusyResourceError: if another task is receiving.
        """
        datagrams = self._datagrams
        while not datagrams:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._error is not None:
                raise anyio.BrokenResourceError(f"{self._error!r}") from self._error
            if self._lost:
                raise anyio.BrokenResourceError("the UDP socket was closed")
            if self._read_waiter is not None:
                raise anyio.BusyResourceError("reading from")
            self._read_waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._read_waiter = None
        if self._closed:
            raise anyio.ClosedResourceError
        return self._take()

    def receive_nowait(self) -> DatagramType | None:
        """The next datagram if one is queued, else None (see :meth:`receive`)."""
        if self._datagrams and not self._closed:
            return self._take()
        return None

    async def send(self, item: DatagramType) -> None:
        """Send the payload of ``item`` to the peer (its address is ignored).

        :raises anyio.BrokenResourceError: if the transport was lost.
        :raises anyio.ClosedResourceError: after :meth:`aclose`.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        transport = self._transport
        if self._lost or transport is None or transport.is_closing():
            raise anyio.BrokenResourceError("the UDP socket was closed") from self._error
        transport.sendto(item[0])
        while self._writing_paused and not self._lost:
            self._write_waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._write_waiter = None

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._transport is not None:
                self._transport.abort()
            self._wake_reader()
            self._wake_writer()
        await anyio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """anyio's socket attributes: addresses, ports, family and the raw socket."""
        return self._attributes

    # -- internals ------------------------------------------------------------------------

    def _take(self) -> DatagramType:
        datagrams = self._datagrams
        data = datagrams.popleft()
        if self._reading_paused and len(datagrams) <= DATAGRAM_QUEUE_SIZE // 2:
            self._resume_reading()
        return data, self._remote_address

    def _pause_reading(self) -> None:
        # asyncio's own datagram transport can pause reading (not in its
        # declared interface); uvloop's cannot.
        pause = getattr(self._transport, "pause_reading", None)
        if pause is not None and not self._reading_paused:
            self._reading_paused = True
            pause()

    def _resume_reading(self) -> None:
        self._reading_paused = False
        resume = getattr(self._transport, "resume_reading", None)
        if resume is not None and not self._lost:
            resume()

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


async def connect_udp(remote_address: AddressType) -> AsyncioDatagramStream:
    """Open a UDP socket connected to ``remote_address`` on the running asyncio loop.

    :raises OSError: if the name does not resolve (:exc:`socket.gaierror`)
        or no socket can be connected.
    """
    loop = asyncio.get_running_loop()
    stream = AsyncioDatagramStream()
    await loop.create_datagram_endpoint(lambda: stream, remote_addr=remote_address)
    return stream
