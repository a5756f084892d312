"""The server side of QUIC: many connections on one UDP socket, routed by connection ID.

Theory of operation
===================

A QUIC server answers on one UDP port, so every connection shares one
socket. A :class:`QUICListener` owns that socket and runs one reader loop
(in :meth:`QUICListener.serve`) that takes each datagram apart just enough
to read its destination connection ID (``hface.protocols.http3.sniff_quic_packet``)
and decides where it goes:

1. **Known connection ID** → the datagram is put on the inbound queue of
   the :class:`~hface.networking.QUICStream` that registered the ID.
   Queues are bounded: when a connection does not keep up, its datagrams
   are dropped, exactly as a full socket buffer would. The reader never
   waits for one slow connection, so the others are not held up.
2. **Unknown ID, Initial packet of a supported version** in a datagram of
   at least 1200 bytes (RFC 9000 §14.1: smaller ones must be discarded,
   which also limits what a spoofed source can make us do) → a new
   connection, if :mod:`._quic_admission` admits it: a new stream, routed
   by the Initial's destination connection ID, is handed to the handler in
   a task of its own. Else a Retry packet (RFC 9000 §8.1.2) with a token
   and a new connection ID, or nothing (past the cap on half-open
   handshakes). An Initial carrying one of our Retry tokens is admitted
   as validated if the token is valid (the stream then has
   :class:`~hface.networking.QUICAttribute` attributes), else answered with
   a close with INVALID_TOKEN (see :mod:`hface.protocols.http3._retry`).
3. **Unknown ID, long header of an unsupported version**, in a datagram
   of at least 1200 bytes → a Version Negotiation packet listing the
   supported versions is sent back (RFC 9000 §6.1). Version 0 is itself
   Version Negotiation and is never answered (RFC 9000 §6.1).
4. **Anything else** (unparsable, short header for an unknown ID, a
   non-Initial long header packet) is dropped. Stateless resets are not sent.

The new connection IDs of Retry packets come from the listener's
``connection_id_generator``: the one the server issues its IDs with, so
that an ID-aware load balancer or the kernel's steering
(:mod:`._quic_steering`) routes the client's next Initial back to this
socket, whose token key alone accepts the token.

Each stream is HALF_OPEN until its owner reports the handshake complete
(:meth:`~hface.networking.QUICStream.mark_handshake_complete`), then
ESTABLISHED, then CLOSED; the half-open ones are what the admission counts.
When a handshake flood ends, the listener gives back the memory the
abandoned connections took (:func:`release_memory`): it collects their
reference cycles, frees what CPython's caches still pin, and returns the
freed heap to the system where the C library can.

After the handshake, the peer addresses the connection by the IDs the
server issued (RFC 9000 §5.1), and issues and retires more over time. The
owner of the stream (the HTTP/3 connection) reports the current set with
:meth:`~hface.networking.QUICStream.update_connection_ids`. The ID of the
client's first Initial stays routed to the stream until it closes, since
the client keeps using it for retransmitted Initials until it hears from
the server.

All connections send through the listener's socket, one datagram at a time
(a lock, because anyio's sockets refuse concurrent senders).

On asyncio, :class:`~hface.networking.SystemNetworking` gives the listener
the event loop's own datagram transport (:mod:`._asyncio_quic`): the
listener installs its routing there once it can read QUIC headers, so
that a datagram for a known connection goes to that connection's queue
as it comes, without a trip through the listener's task; only those that
may open a connection (or need a version negotiated) reach
:meth:`~QUICListener.serve`'s loop. Connections send there at once and
concurrently: a datagram waits only while the kernel's buffer is full.

Closing a stream unregisters all its IDs. Closing the listener closes the
socket, ends every stream's inbound queue (``receive()`` raises
:exc:`~anyio.EndOfStream` once queued datagrams are consumed, ``send()``
raises :exc:`~anyio.BrokenResourceError`), and makes :meth:`~QUICListener.serve`
return once its handlers have returned.
"""

from __future__ import annotations

import enum
import functools
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack, suppress
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import Listener, SocketAttribute, TaskGroup, UDPSocket

from hface.common import AddressType, DatagramType
from hface.errors import TransportError

from ._asyncio_quic import AsyncioUDPSocket
from ._loop import Pulse
from ._memory import release_memory
from ._quic_admission import Admission, HandshakeAdmission, QUICHandshakeLimits
from ._streams import QUICAttribute, QUICStream

if TYPE_CHECKING:
    from hface.protocols.http3 import QUICPacketInfo, RetryTokens

#: How many datagrams may wait for one connection before newer ones are dropped.
QUIC_RECEIVE_QUEUE_SIZE: Final = 256

#: RFC 9000 §14.1: servers discard Initial packets in smaller UDP datagrams.
MIN_INITIAL_DATAGRAM_SIZE: Final = 1200

#: Seconds between two looks at whether a handshake flood has ended.
_TICK: Final = 1.0


class _StreamState(enum.Enum):
    """Where a listener's stream is in its life."""

    HALF_OPEN = "half-open"  # the handshake has not completed
    ESTABLISHED = "established"
    CLOSED = "closed"


_HALF_OPEN: Final = _StreamState.HALF_OPEN
_ESTABLISHED: Final = _StreamState.ESTABLISHED
_CLOSED: Final = _StreamState.CLOSED


class _QUICListenerStream(QUICStream):
    """One connection's view of a :class:`QUICListener`'s socket."""

    def __init__(
        self,
        *,
        listener: QUICListener,
        remote_address: AddressType,
        original_connection_id: bytes,
        queue_size: int,
        retry: tuple[bytes, bytes] | None,
    ) -> None:
        self._listener = listener
        self._remote_address = remote_address
        self._original_connection_id = original_connection_id
        self._retry = retry  # (original destination ID, Retry's source ID) after a Retry
        # Datagrams routed here and not received yet, at most queue_size;
        # the receiver waits on the pulse for more.
        self._datagrams: deque[DatagramType] = deque()
        self._queue_size = queue_size
        self._arrived = Pulse()
        self._connection_ids: frozenset[bytes] = frozenset()
        self._state = _HALF_OPEN
        self._handled = False  # set once a handler task has taken the stream

    def update_connection_ids(self, connection_ids: Sequence[bytes]) -> None:
        if self._state is _CLOSED:
            return
        new_ids = frozenset(connection_ids)
        self._listener._unroute(self, self._connection_ids - new_ids)
        self._listener._route(self, new_ids - self._connection_ids)
        self._connection_ids = new_ids

    def _deliver(self, datagram: DatagramType) -> None:
        datagrams = self._datagrams
        # Full (a slow reader) or closed: dropped, as UDP would.
        if len(datagrams) < self._queue_size and self._state is not _CLOSED:
            datagrams.append(datagram)
            self._arrived.set()

    def _end(self) -> None:
        """The listener is closing: no more datagrams will come."""
        self._arrived.set()

    async def receive(self) -> DatagramType:
        """Return the next datagram routed to this connection.

        Returns at once, without a checkpoint, if one is queued.

        :raises anyio.EndOfStream: if the listener was closed and the queue is empty.
        :raises anyio.ClosedResourceError: if this stream was closed.
        """
        datagrams = self._datagrams
        while not datagrams:
            if self._state is _CLOSED:
                raise anyio.ClosedResourceError
            if self._listener._closed:
                raise anyio.EndOfStream
            await self._arrived.wait()
        if self._state is _CLOSED:
            raise anyio.ClosedResourceError
        return datagrams.popleft()

    def receive_nowait(self) -> DatagramType | None:
        """The next datagram routed here if one is queued, else None (see :meth:`receive`)."""
        datagrams = self._datagrams
        if datagrams and self._state is not _CLOSED:
            return datagrams.popleft()
        return None

    async def send(self, item: DatagramType) -> None:
        """Send one datagram from the listener's socket.

        :raises anyio.ClosedResourceError: if this stream was closed.
        :raises anyio.BrokenResourceError: if the listener was closed.
        """
        if self._state is _CLOSED:
            raise anyio.ClosedResourceError
        await self._listener._send(item)

    def mark_handshake_complete(self) -> None:
        if self._state is _HALF_OPEN:
            self._state = _ESTABLISHED
            self._listener._settled(completed=True)

    async def aclose(self) -> None:
        self._close_now()
        await anyio.lowlevel.checkpoint()

    def _close_now(self) -> None:
        state = self._state
        if state is not _CLOSED:
            self._state = _CLOSED
            self._datagrams.clear()
            self._arrived.set()
            self._listener._forget(self, self._connection_ids | {self._original_connection_id})
            self._connection_ids = frozenset()
            if state is _HALF_OPEN:
                self._listener._settled(completed=False)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        attributes = {
            **self._listener.extra_attributes,
            SocketAttribute.remote_address: lambda: self._remote_address,
            SocketAttribute.remote_port: lambda: self._remote_address[1],
        }
        retry = self._retry
        if retry is not None:
            original, source = retry
            attributes[QUICAttribute.original_destination_connection_id] = lambda: original
            attributes[QUICAttribute.retry_source_connection_id] = lambda: source
        return attributes


def _import_http3() -> None:
    """Import what the listener and the first connection need of aioquic (see ``_serve``)."""
    from hface.protocols import http3

    for name in ("sniff_quic_packet", "RetryTokens", "HTTP3ServerProtocol"):
        getattr(http3, name)


class QUICListener(Listener[QUICStream]):
    """Accepts QUIC connections on one UDP socket (see the module docstring).

    Extra attributes are those of the socket (``local_address``,
    ``local_port``, ``family``); each stream adds ``remote_address`` and
    ``remote_port``: the address of the client's first datagram.

    :param socket: an unconnected, bound UDP socket; the listener owns it.
    :param connection_id_length: the length of the connection IDs this
        server issues, needed to parse short header packets.
    :param supported_versions: the QUIC versions accepted for new connections.
    :param receive_queue_size: how many datagrams may wait for one
        connection before newer ones are dropped.
    :param handshake_limits: when to answer new clients with Retry, and
        how many handshakes may be half-open (:class:`QUICHandshakeLimits`'
        defaults if not given).
    :param connection_id_generator: makes the connection IDs of Retry
        packets; the server's own scheme, so that the client's next Initial
        is routed back here. Random IDs of ``connection_id_length`` bytes
        by default.
    """

    def __init__(
        self,
        socket: UDPSocket,
        *,
        connection_id_length: int,
        supported_versions: Sequence[int],
        receive_queue_size: int = QUIC_RECEIVE_QUEUE_SIZE,
        handshake_limits: QUICHandshakeLimits | None = None,
        connection_id_generator: Callable[[], bytes] | None = None,
    ) -> None:
        self._socket = socket
        self._connection_id_length = connection_id_length
        self._supported_versions = tuple(supported_versions)
        self._receive_queue_size = receive_queue_size
        self._routes: dict[bytes, _QUICListenerStream] = {}
        self._streams: set[_QUICListenerStream] = set()
        self._send_lock = anyio.Lock()
        # asyncio's transport takes concurrent senders; anyio's sockets take turns.
        self._send_datagram: Callable[[DatagramType], Awaitable[None]] = (
            socket.send if isinstance(socket, AsyncioUDPSocket) else self._send_in_turn
        )
        self._closed = False
        self._new_connection_id = connection_id_generator or functools.partial(
            os.urandom, connection_id_length
        )
        limits = handshake_limits or QUICHandshakeLimits()
        local = socket.extra(SocketAttribute.local_address)
        host, port = (local[0], local[1]) if isinstance(local, tuple) else (local, 0)
        name = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        self._admission = HandshakeAdmission(limits, name=name, now=time.monotonic())
        self._tokens: RetryTokens | None = None  # made at the first datagram: it imports aioquic

    @property
    def half_open_handshakes(self) -> int:
        """Handshakes begun and not complete yet (see :class:`QUICHandshakeLimits`)."""
        return self._admission.half_open

    async def serve(
        self,
        handler: Callable[[QUICStream], Coroutine[Any, Any, Any]],
        task_group: TaskGroup | None = None,
    ) -> None:
        """Route datagrams and call ``handler`` with a stream for each new connection.

        Each handler runs in its own task of ``task_group`` (of a task group
        of its own if not given, which :meth:`serve` waits for before
        returning). The stream is closed when the handler returns.

        Returns once the listener is closed (with :meth:`aclose`).

        :raises TransportError: if the socket fails.
        """
        try:
            await self._serve(handler, task_group)
        finally:
            # A handler task cancelled before its first step (asyncio does
            # that) never closed its stream: close those here.
            for stream in list(self._streams):
                if not stream._handled:
                    stream._close_now()

    async def _serve(
        self,
        handler: Callable[[QUICStream], Coroutine[Any, Any, Any]],
        task_group: TaskGroup | None,
    ) -> None:
        async with AsyncExitStack() as stack:
            if task_group is None:
                task_group = await stack.enter_async_context(anyio.create_task_group())
            ticker = await stack.enter_async_context(anyio.create_task_group())
            ticker.start_soon(self._tick, name="QUIC listener's flood watch")
            stack.callback(ticker.cancel_scope.cancel)
            datagram = await self._receive()
            if datagram is None:
                return
            # Imported at the first datagram, not before: the sniffer lives in
            # the layer below and pulls in aioquic (and cryptography, megabytes
            # resident), which a server HTTP/3 never reaches does without. In
            # a thread: the 0.1-0.3 s it takes does not hold up the event loop.
            await anyio.to_thread.run_sync(_import_http3)
            from hface.protocols.http3 import (
                InvalidQUICPacket,
                RetryTokens,
                build_version_negotiation_packet,
                sniff_quic_packet,
            )

            if self._tokens is None:
                self._tokens = RetryTokens(lifetime=self._admission.limits.retry_token_lifetime)
            route = self._router(sniff_quic_packet, InvalidQUICPacket)
            if isinstance(self._socket, AsyncioUDPSocket):
                self._socket.route_with(route)  # from now on, as datagrams come
            while datagram is not None:
                data, address = datagram
                if route(data, address):
                    datagram = await self._receive()
                    continue
                # A long header of a size that may open a connection, for no connection of ours.
                info = sniff_quic_packet(data, connection_id_length=self._connection_id_length)
                if info.version not in self._supported_versions:
                    if info.version != 0:
                        packet = build_version_negotiation_packet(info, self._supported_versions)
                        await self._send_quietly((packet, address))
                elif info.is_initial:
                    stream = await self._admit(info, address)
                    if stream is not None:
                        stream._deliver(datagram)
                        task_group.start_soon(
                            self._handle, handler, stream, name=f"QUIC connection from {address}"
                        )
                datagram = await self._receive()

    def _router(
        self,
        sniff_quic_packet: Callable[..., QUICPacketInfo],
        invalid_packet: type[Exception],
    ) -> Callable[[bytes, AddressType], bool]:
        """What routes a datagram: True if it went to its connection or was dropped.

        False for a long header packet, in a datagram large enough to open a
        connection, whose destination connection ID no connection has: the
        serve loop decides what to do with it. Raises nothing.
        """
        routes = self._routes
        connection_id_length = self._connection_id_length

        def route(data: bytes, address: AddressType) -> bool:
            try:
                info = sniff_quic_packet(data, connection_id_length=connection_id_length)
            except invalid_packet:
                return True  # not QUIC: dropped
            stream = routes.get(info.destination_connection_id)
            if stream is not None:
                stream._deliver((data, address))
                return True
            # A short header for no connection of ours, or too short to open
            # a connection (RFC 9000 §14.1): dropped.
            return not info.is_long_header or len(data) < MIN_INITIAL_DATAGRAM_SIZE

        return route

    async def _receive(self) -> DatagramType | None:
        """The next datagram on the socket; None once the listener is closed.

        :raises TransportError: if the socket fails.
        """
        try:
            datagram = await self._socket.receive()
        except (anyio.ClosedResourceError, anyio.EndOfStream):
            return None
        except anyio.BrokenResourceError as exc:
            if self._closed:
                return None
            raise TransportError(f"the QUIC listener's socket failed: {exc!r}") from exc
        return None if self._closed else datagram

    async def aclose(self) -> None:
        """Close the socket and end every connection's inbound queue; :meth:`serve` returns."""
        if not self._closed:
            self._closed = True
            self._routes.clear()
            for stream in self._streams:
                stream._end()
        await self._socket.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._socket.extra_attributes

    @staticmethod
    async def _handle(
        handler: Callable[[QUICStream], Coroutine[Any, Any, Any]], stream: _QUICListenerStream
    ) -> None:
        stream._handled = True
        async with stream:
            await handler(stream)

    async def _admit(
        self, info: QUICPacketInfo, address: AddressType
    ) -> _QUICListenerStream | None:
        """A stream for the connection the Initial ``info`` opens, if admitted (else None)."""
        from hface.protocols.http3 import build_invalid_token_close, build_retry_packet

        tokens = self._tokens
        assert tokens is not None
        admission = self._admission
        destination = info.destination_connection_id
        retry = None
        if info.token and tokens.is_retry_token(info.token):
            original = tokens.validate(
                info.token, address=address, destination_connection_id=destination, now=time.time()
            )
            if original is None:
                # RFC 9000 §8.1.2: the client will not take another Retry.
                admission.token_refused()
                await self._send_quietly((build_invalid_token_close(info), address))
                return None
            retry = (original, destination)
        decision = admission.decide(validated=retry is not None, now=time.monotonic())
        if decision is Admission.RETRY:
            source = self._new_connection_id()
            while source == destination:  # RFC 9000 §17.2.5.1
                source = self._new_connection_id()
            token = tokens.issue(
                address=address,
                original_destination_connection_id=destination,
                retry_source_connection_id=source,
                now=time.time(),
            )
            packet = build_retry_packet(info, source_connection_id=source, token=token)
            await self._send_quietly((packet, address))
            return None
        if decision is Admission.DROP:
            return None
        stream = _QUICListenerStream(
            listener=self,
            remote_address=address,
            original_connection_id=destination,
            queue_size=self._receive_queue_size,
            retry=retry,
        )
        admission.opened()
        self._streams.add(stream)
        self._routes[destination] = stream
        return stream

    async def _tick(self) -> None:
        """Have the admission judge its windows, and give memory back after a flood."""
        admission = self._admission
        while True:
            await anyio.sleep(_TICK)
            admission.tick(time.monotonic())
            if admission.flood_ended:
                admission.flood_ended = False
                release_memory()

    # The methods below are the listener's side of _QUICListenerStream.

    def _route(self, stream: _QUICListenerStream, connection_ids: frozenset[bytes]) -> None:
        if self._closed:
            return
        for connection_id in connection_ids:
            # An ID already taken by another connection stays with it: the
            # newcomer cannot hijack an established connection's packets.
            self._routes.setdefault(connection_id, stream)

    def _unroute(self, stream: _QUICListenerStream, connection_ids: frozenset[bytes]) -> None:
        for connection_id in connection_ids:
            # The original ID stays routed until the stream closes (see the module docstring).
            if connection_id != stream._original_connection_id and (
                self._routes.get(connection_id) is stream
            ):
                del self._routes[connection_id]

    def _settled(self, *, completed: bool) -> None:
        self._admission.settled(completed=completed)

    def _forget(self, stream: _QUICListenerStream, connection_ids: frozenset[bytes]) -> None:
        self._streams.discard(stream)
        for connection_id in connection_ids:
            if self._routes.get(connection_id) is stream:
                del self._routes[connection_id]

    async def _send(self, datagram: DatagramType) -> None:
        if self._closed:
            raise anyio.BrokenResourceError("the QUIC listener is closed")
        try:
            await self._send_datagram(datagram)
        except anyio.ClosedResourceError as exc:
            raise anyio.BrokenResourceError("the QUIC listener is closed") from exc

    async def _send_in_turn(self, datagram: DatagramType) -> None:
        async with self._send_lock:
            await self._socket.send(datagram)

    async def _send_quietly(self, datagram: DatagramType) -> None:
        with suppress(anyio.BrokenResourceError):
            await self._send(datagram)
