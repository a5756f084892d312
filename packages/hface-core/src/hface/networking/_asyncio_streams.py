"""TCP and TLS streams on asyncio's own transports: SystemNetworking's path on asyncio.

Theory of operation. anyio's socket stream on asyncio stops reading the
socket between two ``receive()`` calls (an epoll registration and removal
per receive) and makes a trip through the event loop on every ``send()``;
its TLS stream pumps :class:`ssl.MemoryBIO` objects in Python. Here one
object, :class:`AsyncioByteStream`, is both the protocol (an
:class:`asyncio.BufferedProtocol`) of a transport and the
:class:`anyio.abc.ByteStream` the connection layer uses, and TLS is the
event loop's own (``ssl=`` / ``loop.start_tls``; on uvloop, uvloop's):

- The transport reads whenever data comes, into the thread's one read
  buffer (:func:`_read_buffer`), from which ``buffer_updated`` copies the
  bytes read, queues them and wakes a waiting ``receive()``; above
  :data:`READ_HIGH_WATER` queued bytes the transport stops reading, and
  resumes once ``receive()`` brings them under :data:`READ_LOW_WATER`, so
  buffering stays bounded. A buffered protocol, because a plain one gets
  each TLS read (uvloop's, and plain asyncio's TCP reads) as a fresh
  256 KiB ``bytes`` shrunk to what was read: beyond glibc's mmap threshold,
  an ``mmap``, ``mremap`` and ``munmap`` per read, and a page fault per
  page written, some 10 µs of system time per small message. The buffer
  is shared: each read is copied out before the loop reads again.
- ``send()`` hands the bytes to the transport, which writes at once what
  the kernel takes and buffers the rest; it waits only while the buffer is
  above the transport's high-water mark (``pause_writing`` until
  ``resume_writing``), so that a slow peer slows the sender.
- ``aclose()`` closes the transport gracefully: what is buffered is still
  written and TLS exchanges ``close_notify``. It waits for that up to
  :data:`CLOSE_WAIT` seconds (one round trip with a live peer), then
  aborts the transport: a peer that never reads cannot keep a closed
  stream alive, and nothing is left running after ``aclose()`` returns.

The semantics are those of the anyio streams they replace (see
:mod:`hface.networking._tls` for the TLS decisions): ``EndOfStream`` at
the end, ``BrokenResourceError`` when the connection is lost with an error
(reset, TLS failure), ``ClosedResourceError`` after :meth:`aclose`; plain
TCP can half-close with ``send_eof()``, TLS cannot. Extra attributes are
anyio's :class:`~anyio.abc.SocketAttribute` and
:class:`~anyio.streams.tls.TLSAttribute`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any, Final, cast

import anyio
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute

from hface.common import AddressType

from ._streams import ByteStream

_logger = logging.getLogger("hface.networking")

#: Queued received bytes above which the transport stops reading: one read of
#: the connection layer and of a proxy's tunnel (256 KiB; the kernel's buffers
#: hold far more). Not less: a socket read brings up to 256 KiB at once, and a
#: lower mark would stop and restart reading (two epoll calls and a pass of
#: Python each) on every read of a fast stream, such as a tunnel's target.
READ_HIGH_WATER: Final = 256 * 1024
#: Queued received bytes at or below which a paused transport reads again.
READ_LOW_WATER: Final = 64 * 1024
#: The limit of the TLS layer's own buffer of received records (asyncio's
#: default is 256 KiB): four full records.
TLS_READ_HIGH_WATER: Final = 64 * 1024
#: Buffered bytes above which ``send()`` waits for the transport to drain
#: (asyncio's default, as uvicorn's; the low-water mark is a quarter of it).
WRITE_HIGH_WATER: Final = 64 * 1024
#: Bytes of TLS records asyncio's TLS layer reads from the socket at once
#: (four full records; asyncio's own default is 256 KiB per connection).
TLS_READ_BUFFER: Final = 64 * 1024
#: Seconds :meth:`AsyncioByteStream.aclose` waits for the transport to write what
#: it buffered and close (as the connection layer's last flush before closing).
CLOSE_WAIT: Final = 1.0

#: asyncio wants a number of seconds for a TLS handshake: "no limit" is this many.
_NO_LIMIT: Final = 10.0 * 365 * 24 * 3600

#: Bytes of the read buffer (as much as uvloop and asyncio read at once).
READ_BUFFER: Final = 256 * 1024

_thread_state = threading.local()


def _read_buffer() -> memoryview:
    """The thread's read buffer, shared by its streams (see the module's docstring).

    A transport asks for it (``get_buffer``) and hands it back filled
    (``buffer_updated``) within one callback of the event loop, and the bytes
    are copied out there: no stream holds it across a pass of the loop.
    """
    buffer: memoryview | None = getattr(_thread_state, "read_buffer", None)
    if buffer is None:
        buffer = _thread_state.read_buffer = memoryview(bytearray(READ_BUFFER))
    return buffer


def on_asyncio() -> bool:
    """True if the running async library is asyncio (False under Trio, guest mode too)."""
    try:
        import sniffio
    except ImportError:  # pragma: no cover - trio needs sniffio: without it, no trio
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True
    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _convert_address(address: Any) -> AddressType:
    """An IP socket address as ``(host, port)``, IPv6 scope as ``host%scope`` (as anyio)."""
    if len(address) == 4 and address[3]:
        host, port, _flowinfo, scope_id = address
        return f"{host.split('%')[0]}%{scope_id}", port
    return address[0], address[1]


def _shrink_tls_read_buffer(transport: asyncio.BaseTransport) -> None:
    """Give asyncio's TLS layer a read buffer of :data:`TLS_READ_BUFFER` bytes, not 256 KiB.

    CPython's ``SSLProtocol`` (3.11+) keeps a zero-filled buffer of its
    ``max_size`` per connection, resident from the first read: 25 MiB for
    100 idle connections. Called once the handshake is done, when no read
    is in progress. Other TLS layers (Python 3.10's, uvloop's) have no such
    attributes and are left alone.
    """
    ssl_protocol: Any = getattr(transport, "_ssl_protocol", None)
    buffer = getattr(ssl_protocol, "_ssl_buffer", None)
    if not isinstance(buffer, bytearray) or len(buffer) <= TLS_READ_BUFFER:
        return
    ssl_protocol.max_size = TLS_READ_BUFFER  # get_buffer() grows the buffer up to max_size
    ssl_protocol._ssl_buffer = buffer = bytearray(TLS_READ_BUFFER)
    ssl_protocol._ssl_buffer_view = memoryview(buffer)


class AsyncioByteStream(ByteStream, asyncio.BufferedProtocol):
    """A TCP or TLS connection as an anyio byte stream, on an asyncio transport.

    The object is the transport's protocol: make it first, then pass
    ``lambda: stream`` to ``loop.create_connection()`` or
    ``loop.connect_accepted_socket()`` (with TLS, uvloop returns its own
    protocol object, not this one); :meth:`start_client_tls` upgrades a
    client connection. See the module's docstring for buffering and closing.

    :param remote_address: reported as the ``remote_address`` in place of
        the socket's peer (the client named by a PROXY protocol header).
    """

    def __init__(self, *, remote_address: AddressType | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        # The client a PROXY protocol header named, in place of the peer's own.
        self._remote_address = remote_address
        self._transport: asyncio.Transport | None = None
        # What buffer_updated() queued, or the rest of a chunk returned in part
        # (a view of it: the part returned is copied, the rest is not).
        self._chunks: deque[bytes | memoryview] = deque()
        self._size = 0  # bytes in _chunks
        self._reading_paused = False
        self._eof = False
        self._lost = False
        self._exception: BaseException | None = None
        self._closed = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._lost_waiter: asyncio.Future[None] | None = None
        self._attributes: Mapping[Any, Callable[[], Any]] | None = None
        self._tls = False

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called by the transport: start reading."""
        self.set_transport(transport)

    def set_transport(self, transport: asyncio.BaseTransport) -> None:
        """Use ``transport`` from now on (the TLS transport after ``loop.start_tls``)."""
        # A cast: uvloop's transports do not derive from asyncio.Transport.
        self._transport = transport = cast(asyncio.Transport, transport)
        self._tls = transport.get_extra_info("ssl_object") is not None
        self._attributes = None
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if self._tls:
            # The TLS layer's own buffer of received records (256 KiB by
            # default on asyncio) counts toward what a slow reader holds.
            set_read_buffer_limits = getattr(transport, "set_read_buffer_limits", None)
            if set_read_buffer_limits is not None:
                set_read_buffer_limits(high=TLS_READ_HIGH_WATER)
            _shrink_tls_read_buffer(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        """Called by the transport before a read: the thread's read buffer."""
        return _read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        """Called by the transport after a read: queue a copy of the data for :meth:`receive`."""
        self._chunks.append(_read_buffer()[:nbytes].tobytes())
        self._size += nbytes
        if self._read_waiter is not None:
            _resolve(self._read_waiter)
        if self._size > READ_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        """Called by the transport at the peer's end: keep TCP open to write (half-close)."""
        self._eof = True
        self._wake_reader()
        # True keeps a TCP transport open for our side to write; TLS cannot
        # half-close (asyncio warns if told to), so there it closes.
        return not self._tls

    def connection_lost(self, exc: Exception | None) -> None:
        """Called by the transport once it is closed: wake every waiter."""
        self._lost = True
        if exc is not None:
            self._exception = exc
        self._wake_reader()
        self._wake_writer()
        if self._lost_waiter is not None:
            _resolve(self._lost_waiter)

    def pause_writing(self) -> None:
        """Called by the transport above its high-water mark: :meth:`send` waits."""
        self._writing_paused = True

    def resume_writing(self) -> None:
        """Called by the transport once drained: :meth:`send` goes on."""
        self._writing_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        if self._read_waiter is not None:
            _resolve(self._read_waiter)

    def _wake_writer(self) -> None:
        if self._drain_waiter is not None:
            _resolve(self._drain_waiter)

    # -- anyio.abc.ByteStream -----------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Return what has arrived, at most ``max_bytes``; wait if nothing has.

        :raises anyio.EndOfStream: once the peer has closed its side.
        :raises anyio.BrokenResourceError: if the connection was lost with an error.
        :raises anyio.ClosedResourceError: after :meth:`aclose`.
        :raises anyio.BusyResourceError: if another task is receiving.
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        chunks = self._chunks
        while not chunks:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._exception is not None:
                raise anyio.BrokenResourceError(
                    f"connection lost: {self._exception!r}"
                ) from self._exception
            if self._eof or self._lost:
                raise anyio.EndOfStream
            if self._read_waiter is not None:
                raise anyio.BusyResourceError("reading from")
            self._read_waiter = waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._read_waiter = None
        if self._closed:
            raise anyio.ClosedResourceError
        first = chunks.popleft()
        size = len(first)
        if size > max_bytes:
            # A large read (uvloop's are up to 256 KiB) returned in parts: slicing
            # bytes would copy the rest again for every part, a view copies nothing.
            view = first if type(first) is memoryview else memoryview(first)
            chunks.appendleft(view[max_bytes:])
            chunk = bytes(view[:max_bytes])
            size = max_bytes
        elif chunks and size + len(chunks[0]) <= max_bytes:
            # Small chunks arrived one after another: one join, fewer calls above.
            parts = [first]
            while chunks and size + len(chunks[0]) <= max_bytes:
                part = chunks.popleft()
                parts.append(part)
                size += len(part)
            chunk = b"".join(parts)
        else:
            chunk = first if type(first) is bytes else bytes(first)
        self._size -= size
        if self._reading_paused and self._size <= READ_LOW_WATER:
            self._reading_paused = False
            if not self._lost:
                assert self._transport is not None
                self._transport.resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        """Write ``item``; wait only while the transport buffers too much.

        A cancelled wait leaves the bytes with the transport.

        :raises anyio.BrokenResourceError: if the connection is lost or closing.
        :raises anyio.ClosedResourceError: after :meth:`aclose`.
        :raises anyio.BusyResourceError: if another task is waiting to send.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        transport = self._transport
        assert transport is not None
        if self._lost or transport.is_closing():
            raise anyio.BrokenResourceError(
                f"connection lost: {self._exception!r}" if self._exception else "connection closed"
            ) from self._exception
        if self._drain_waiter is not None:
            raise anyio.BusyResourceError("writing to")
        transport.write(item)
        if self._writing_paused:
            await self._drain()

    def send_nowait(self, item: bytes) -> bool:
        """Write ``item`` if :meth:`send` would write it without waiting first; return whether.

        That is where the transport's buffer is empty, or stays at or under
        its high-water mark with ``item`` in it. An item over the mark on
        an empty buffer is written too (as :meth:`send` would, before it
        waits for the drain): the caller holds it anyway, and the next
        write finds the writer paused and waits. So a large response body
        costs no wait per chunk, and no more than one chunk is ever
        buffered beyond the mark. Otherwise nothing is written and False
        returned: :meth:`send` then writes, waits or raises as it does.
        """
        transport = self._transport
        if (
            self._writing_paused
            or self._closed
            or self._lost
            or self._drain_waiter is not None
            or transport is None
            or transport.is_closing()
        ):
            return False
        buffered = transport.get_write_buffer_size()
        if buffered and buffered + len(item) > WRITE_HIGH_WATER:
            return False
        transport.write(item)
        return True

    async def _drain(self) -> None:
        """Wait until the transport's buffer is under its low-water mark again."""
        while self._must_drain():
            self._drain_waiter = waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._drain_waiter = None
        if self._closed:
            raise anyio.ClosedResourceError
        if self._exception is not None:
            raise anyio.BrokenResourceError(
                f"connection lost: {self._exception!r}"
            ) from self._exception

    def _must_drain(self) -> bool:
        # A method: mypy would keep what an earlier test found across the awaits.
        return self._writing_paused and not self._lost and not self._closed

    async def send_eof(self) -> None:
        """Close our sending side (TCP half-close); the peer gets an end of stream.

        :raises NotImplementedError: on TLS, which cannot half-close (as
            :class:`anyio.streams.tls.TLSStream`).
        """
        if self._tls:
            raise NotImplementedError("TLS streams do not support half-closing")
        transport = self._transport
        assert transport is not None
        if not self._closed and not transport.is_closing():
            with suppress(OSError):
                transport.write_eof()

    async def aclose(self) -> None:
        """Close the connection: buffered bytes are still written, for a bounded time.

        Waits up to :data:`CLOSE_WAIT` seconds for the transport to finish
        (to write what it buffered and, on TLS, to exchange ``close_notify``),
        then aborts the connection; cancelled, it aborts it at once.
        """
        if self._closed:
            return
        self._closed = True
        self._wake_reader()
        self._wake_writer()
        transport = self._transport
        if transport is None or self._lost:
            return
        transport.close()  # connection_lost() comes later, from the loop
        self._lost_waiter = waiter = self._loop.create_future()
        timer = self._loop.call_later(CLOSE_WAIT, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._lost_waiter = None
            if not self._lost:
                transport.abort()
                # One pass of the loop, in which the aborted transport closes
                # its socket (the loop may end right after a cancellation).
                await asyncio.sleep(0)

    async def start_client_tls(
        self, *, ssl_context: ssl.SSLContext, server_name: str | None
    ) -> None:
        """Do the client side of a TLS handshake (the event loop's TLS) on this stream.

        On failure the connection is aborted and the error raised as is
        (:exc:`ssl.SSLError`, :exc:`OSError`).
        """
        transport = self._transport
        assert transport is not None
        try:
            tls_transport = await self._loop.start_tls(
                transport,
                self,
                ssl_context,
                server_side=False,
                server_hostname=server_name,
                ssl_handshake_timeout=_NO_LIMIT,
            )
        except BaseException:
            transport.abort()
            await asyncio.sleep(0)  # a pass of the loop, in which the socket closes
            raise
        if tls_transport is None:  # pragma: no cover - only if the transport closed meanwhile
            raise ConnectionResetError("the connection closed during the TLS handshake")
        self.set_transport(tls_transport)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """anyio's socket attributes, and TLS attributes on a TLS connection."""
        attributes = self._attributes
        if attributes is None:
            attributes = self._attributes = self._make_attributes()
        return attributes

    def _make_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        transport = self._transport
        if transport is None:
            return {}
        raw_socket = transport.get_extra_info("socket")
        family = transport.get_extra_info("socket").family if raw_socket is not None else None
        sockname = transport.get_extra_info("sockname")
        peername = transport.get_extra_info("peername")
        attributes: dict[Any, Callable[[], Any]] = {}
        if raw_socket is not None:
            attributes[SocketAttribute.raw_socket] = lambda: raw_socket
            attributes[SocketAttribute.family] = lambda: family
        if family == socket.AF_UNIX:
            # Paths, as anyio reports them (the client's is usually "").
            attributes[SocketAttribute.local_address] = lambda: sockname
            if self._remote_address is None:
                attributes[SocketAttribute.remote_address] = lambda: peername
        else:
            if sockname is not None:
                local = _convert_address(sockname)
                attributes[SocketAttribute.local_address] = lambda: local
                attributes[SocketAttribute.local_port] = lambda: local[1]
            if peername is not None and self._remote_address is None:
                remote = _convert_address(peername)
                attributes[SocketAttribute.remote_address] = lambda: remote
                attributes[SocketAttribute.remote_port] = lambda: remote[1]
        if self._remote_address is not None:
            proxied = self._remote_address
            attributes[SocketAttribute.remote_address] = lambda: proxied
            attributes[SocketAttribute.remote_port] = lambda: proxied[1]
        ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            attributes.update(
                {
                    TLSAttribute.alpn_protocol: ssl_object.selected_alpn_protocol,
                    TLSAttribute.channel_binding_tls_unique: ssl_object.get_channel_binding,
                    TLSAttribute.cipher: ssl_object.cipher,
                    TLSAttribute.peer_certificate: lambda: ssl_object.getpeercert(False),
                    TLSAttribute.peer_certificate_binary: lambda: ssl_object.getpeercert(True),
                    TLSAttribute.server_side: lambda: ssl_object.server_side,
                    TLSAttribute.shared_ciphers: lambda: (
                        ssl_object.shared_ciphers() if ssl_object.server_side else None
                    ),
                    TLSAttribute.standard_compatible: lambda: False,
                    TLSAttribute.ssl_object: lambda: ssl_object,
                    TLSAttribute.tls_version: ssl_object.version,
                }
            )
        return attributes


async def connect_tcp(remote_address: AddressType) -> AsyncioByteStream:
    """Open a TCP connection on the running asyncio loop.

    :raises OSError: if no address of the host can be connected to, worded
        without the address (the caller's message has it) as anyio words it.
    """
    loop = asyncio.get_running_loop()
    host, port = remote_address
    options: dict[str, Any] = {}
    if isinstance(loop, asyncio.BaseEventLoop):
        # Happy Eyeballs (RFC 8305) as anyio does; uvloop has no such option.
        options["happy_eyeballs_delay"] = 0.25
    stream = AsyncioByteStream()
    try:
        await loop.create_connection(lambda: stream, host, port, **options)
    except socket.gaierror:
        raise
    except OSError as exc:
        # asyncio says "Connect call failed ('127.0.0.1', 80)", or lists
        # every address tried ("Multiple exceptions: ...").
        if exc.errno is not None:
            raise OSError(exc.errno, os.strerror(exc.errno)) from exc
        raise OSError("All connection attempts failed") from exc
    return stream
