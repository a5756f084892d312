"""The networking of the operating system, through anyio (asyncio or Trio)."""

from __future__ import annotations

import socket as _socket
import ssl
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Final

import anyio
from anyio.abc import (
    ConnectedUDPSocket,
    Listener,
    SocketAttribute,
    SocketListener,
    UDPSocket,
)
from anyio.streams.stapled import MultiListener

from hface.common import AddressType, ClientTLSConfig, DatagramType, ServerTLSConfig
from hface.errors import TransportError, TransportErrorKind

from ._asyncio_datagrams import connect_udp as _asyncio_connect_udp
from ._asyncio_listener import AsyncioListener
from ._asyncio_quic import bind_udp as _asyncio_bind_udp
from ._asyncio_quic import wrap_udp_socket as _asyncio_wrap_udp_socket
from ._asyncio_streams import AsyncioByteStream, on_asyncio
from ._asyncio_streams import connect_tcp as _asyncio_connect_tcp
from ._base import ClientNetworking, ServerNetworking
from ._proxy_listener import PROXY_HEADER_TIMEOUT, ProxyProtocolListener
from ._quic import QUICListener
from ._quic_admission import QUICHandshakeLimits
from ._streams import ByteStream, DatagramStream, QUICStream
from ._tcp import TCPListener
from ._tls import (
    TLS_HANDSHAKE_TIMEOUT,
    TLSListener,
    handshake_error,
    make_client_ssl_context,
    make_server_ssl_context,
    wrap_client_tls,
)
from ._unix import UnixListener, create_unix_listener

#: Kernel buffer sizes asked for UDP sockets. The defaults (about 200 KiB)
#: hold a fraction of a QUIC congestion window of large loopback datagrams,
#: and every datagram the kernel drops is a loss that halves the window.
#: Best effort: Linux caps the request at ``net.core.rmem_max``/``wmem_max``.
UDP_BUFFER_SIZE: Final = 4 * 1024 * 1024


def _enlarge_udp_buffers(socket: UDPSocket | ConnectedUDPSocket | DatagramStream) -> None:
    raw_socket = socket.extra(SocketAttribute.raw_socket)
    for option in (_socket.SO_RCVBUF, _socket.SO_SNDBUF):
        with suppress(OSError):
            raw_socket.setsockopt(_socket.SOL_SOCKET, option, UDP_BUFFER_SIZE)


def format_address(address: AddressType) -> str:
    """Format an address as ``host:port`` (``[host]:port`` for IPv6)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


#: How the message of a failed listen or connect begins, by kind.
_FAILED: Final = {
    TransportErrorKind.LISTEN: "cannot listen on",
    TransportErrorKind.CONNECT: "cannot connect to",
}


@contextmanager
def _map_errors(kind: TransportErrorKind, address: AddressType) -> Generator[None, None, None]:
    """Raise an ``OSError`` as a :exc:`TransportError` of ``kind`` (its cause)."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)  # without "[Errno 111]"
        message = f"{_FAILED[kind]} {format_address(address)}: {reason}"
        raise TransportError(message, kind=kind, address=address, reason=reason) from exc


@contextmanager
def _map_unix_errors(path: str) -> Generator[None, None, None]:
    """Raise an ``OSError`` of binding ``path`` as a LISTEN :exc:`TransportError`."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise TransportError(
            f"cannot listen on unix:{path}: {reason}", kind=TransportErrorKind.LISTEN, reason=reason
        ) from exc


class _ConnectedDatagramStream(DatagramStream):
    """A connected UDP socket speaking in ``(payload, address)`` items."""

    def __init__(self, socket: ConnectedUDPSocket) -> None:
        self._socket = socket
        self._remote_address: AddressType = socket.extra(SocketAttribute.remote_address)  # type: ignore[assignment]  # IP sockets only: (host, port)

    async def receive(self) -> DatagramType:
        return await self._socket.receive(), self._remote_address

    async def send(self, item: DatagramType) -> None:
        await self._socket.send(item[0])

    async def aclose(self) -> None:
        await self._socket.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._socket.extra_attributes


class SystemNetworking(ServerNetworking, ClientNetworking):
    """Real sockets, on whichever event loop anyio runs on (asyncio or Trio).

    IPv4 and IPv6 alike; host names are resolved by the system. Errors
    while connecting or binding are raised as :exc:`~hface.errors.TransportError`
    with the address in the message, chained from the original.

    On asyncio (and uvloop) TCP and TLS streams are built on the event
    loop's own transports and TLS, which cost less CPU per byte and per
    call than anyio's generic streams; on Trio they are anyio's. Both kinds
    behave the same (anyio's stream exceptions and extra attributes). A
    client's connected UDP socket on asyncio is always the event loop's
    own datagram transport, which reports ICMP errors (port unreachable)
    as anyio's Trio socket does: ``receive()`` raises
    :exc:`~anyio.BrokenResourceError` from the :exc:`OSError`. A QUIC
    listener's socket on asyncio is the event loop's datagram transport
    too, which routes each datagram to its connection as it comes (see
    :class:`QUICListener`).

    A subclass may choose where a client connects, or watch it, by
    overriding :meth:`connect_tcp` and :meth:`connect_udp`:
    :meth:`connect_tcp_tls` opens its TCP connection with :meth:`connect_tcp`
    (``hface client --resolve`` and its connect times rely on this).

    :param tls_handshake_timeout: seconds a TLS server waits for a client
        to finish its handshake before it disconnects the client; ``None``
        waits forever.
    :param asyncio_transports: ``False`` uses anyio's TCP and TLS streams,
        and anyio's UDP socket for a QUIC listener, on asyncio too (for
        comparison, or to rule the fast path out).
    :param proxy_protocol: listeners (TCP and Unix) want a PROXY protocol
        header (v1 or v2) first on every connection, and report the client
        it names as the streams' ``remote_address``; connections without
        a valid one are closed (see :mod:`hface.networking._proxy_listener`).
    :param proxy_header_timeout: seconds a connection gets to send it.
    """

    def __init__(
        self,
        *,
        tls_handshake_timeout: float | None = TLS_HANDSHAKE_TIMEOUT,
        asyncio_transports: bool = True,
        proxy_protocol: bool = False,
        proxy_header_timeout: float = PROXY_HEADER_TIMEOUT,
    ) -> None:
        if tls_handshake_timeout is not None and not tls_handshake_timeout > 0:
            raise ValueError("tls_handshake_timeout must be None or positive")
        if not proxy_header_timeout > 0:
            raise ValueError("proxy_header_timeout must be positive")
        self._proxy_protocol = proxy_protocol
        self._proxy_header_timeout = proxy_header_timeout
        self._tls_handshake_timeout = tls_handshake_timeout
        self._asyncio_transports = asyncio_transports

    def _native(self) -> bool:
        return self._asyncio_transports and on_asyncio()

    async def listen_tcp(self, local_address: AddressType) -> Listener[ByteStream]:
        return await self._listen_tcp(local_address, ssl_context=None)

    async def _listen_tcp(
        self, local_address: AddressType, *, ssl_context: ssl.SSLContext | None
    ) -> Listener[ByteStream]:
        host, port = local_address
        with _map_errors(TransportErrorKind.LISTEN, local_address):
            listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        return self._serving(listener, ssl_context=ssl_context, outer=TCPListener)

    def _serving(
        self,
        listener: MultiListener[Any] | SocketListener,
        *,
        ssl_context: ssl.SSLContext | None,
        outer: Callable[[Listener[ByteStream]], TCPListener],
    ) -> Listener[ByteStream]:
        """The listener that serves the bound ``listener``: fast path, PROXY header, TLS."""
        proxy_timeout = self._proxy_header_timeout if self._proxy_protocol else None
        if self._native():
            if isinstance(listener, SocketListener):
                listener = MultiListener([listener])
            return outer(
                AsyncioListener(
                    listener,
                    ssl_context=ssl_context,
                    handshake_timeout=self._tls_handshake_timeout,
                    proxy_header_timeout=proxy_timeout,
                )
            )
        inner: Listener[ByteStream] = listener
        if proxy_timeout is not None:
            inner = ProxyProtocolListener(inner, timeout=proxy_timeout)
        tcp_listener = outer(inner)
        if ssl_context is None:
            return tcp_listener
        return TLSListener(
            tcp_listener, ssl_context=ssl_context, handshake_timeout=self._tls_handshake_timeout
        )

    async def listen_unix(
        self,
        path: str,
        *,
        tls_config: ServerTLSConfig | None = None,
        alpn_protocols: Sequence[str] = (),
    ) -> Listener[ByteStream]:
        """Listen on the Unix socket ``path``; with ``tls_config``, TLS over it.

        A stale socket file at ``path`` is replaced, one a server listens
        on is an error; the file is removed when the listener is closed
        (see :mod:`hface.networking._unix`). The streams' ``remote_address``
        and ``local_address`` are paths (the client's is usually ``""``).

        :raises TransportError: if the path cannot be bound.
        """
        ssl_context = (
            None if tls_config is None else make_server_ssl_context(tls_config, alpn_protocols)
        )
        with _map_unix_errors(path):
            listener = await create_unix_listener(path)
        return self._serving(
            listener,
            ssl_context=ssl_context,
            outer=lambda inner: UnixListener(inner, path=path),
        )

    async def listen_tcp_socket(
        self,
        sock: _socket.socket,
        *,
        tls_config: ServerTLSConfig | None = None,
        alpn_protocols: Sequence[str] = (),
    ) -> Listener[ByteStream]:
        _check_socket(sock, _socket.SOCK_STREAM)
        ssl_context = None
        if tls_config is not None:
            ssl_context = make_server_ssl_context(tls_config, alpn_protocols)
        listener = await SocketListener.from_socket(sock)
        return self._serving(listener, ssl_context=ssl_context, outer=TCPListener)

    async def listen_tcp_tls(
        self,
        local_address: AddressType,
        *,
        tls_config: ServerTLSConfig,
        alpn_protocols: Sequence[str],
    ) -> Listener[ByteStream]:
        ssl_context = make_server_ssl_context(tls_config, alpn_protocols)
        return await self._listen_tcp(local_address, ssl_context=ssl_context)

    async def listen_quic(
        self,
        local_address: AddressType,
        *,
        quic_connection_id_length: int,
        quic_supported_versions: Sequence[int],
        quic_handshake_limits: QUICHandshakeLimits | None = None,
        quic_connection_id_generator: Callable[[], bytes] | None = None,
    ) -> Listener[QUICStream]:
        host, port = local_address
        socket: UDPSocket
        with _map_errors(TransportErrorKind.LISTEN, local_address):
            if self._native():
                socket = await _asyncio_bind_udp(host, port)
            else:
                socket = await anyio.create_udp_socket(local_host=host, local_port=port)
        return _quic_listener(
            socket,
            connection_id_length=quic_connection_id_length,
            supported_versions=quic_supported_versions,
            handshake_limits=quic_handshake_limits,
            connection_id_generator=quic_connection_id_generator,
        )

    async def listen_quic_socket(
        self,
        sock: _socket.socket,
        *,
        quic_connection_id_length: int,
        quic_supported_versions: Sequence[int],
        quic_handshake_limits: QUICHandshakeLimits | None = None,
        quic_connection_id_generator: Callable[[], bytes] | None = None,
    ) -> Listener[QUICStream]:
        _check_socket(sock, _socket.SOCK_DGRAM)
        if self._native():
            socket: UDPSocket = await _asyncio_wrap_udp_socket(sock)
        else:
            socket = await UDPSocket.from_socket(sock)
        return _quic_listener(
            socket,
            connection_id_length=quic_connection_id_length,
            supported_versions=quic_supported_versions,
            handshake_limits=quic_handshake_limits,
            connection_id_generator=quic_connection_id_generator,
        )

    async def connect_tcp(self, remote_address: AddressType) -> ByteStream:
        host, port = remote_address
        with _map_errors(TransportErrorKind.CONNECT, remote_address):
            if self._native():
                return await _asyncio_connect_tcp(remote_address)
            return await anyio.connect_tcp(host, port)

    async def connect_tcp_tls(
        self,
        remote_address: AddressType,
        *,
        server_name: str | None = None,
        tls_config: ClientTLSConfig,
        alpn_protocols: Sequence[str],
    ) -> ByteStream:
        ssl_context = make_client_ssl_context(tls_config, alpn_protocols)
        stream = await self.connect_tcp(remote_address)
        if isinstance(stream, AsyncioByteStream):
            return await _start_client_tls(
                stream,
                ssl_context=ssl_context,
                server_name=server_name or remote_address[0],
                address=remote_address,
            )
        return await wrap_client_tls(
            stream,
            ssl_context=ssl_context,
            server_name=server_name or remote_address[0],
            description=format_address(remote_address),
            address=remote_address,
        )

    async def connect_udp(self, remote_address: AddressType) -> DatagramStream:
        host, port = remote_address
        with _map_errors(TransportErrorKind.CONNECT, remote_address):
            if on_asyncio():
                # Not anyio's socket on asyncio, whatever asyncio_transports
                # says: anyio's never reports an ICMP error (see the module).
                stream = await _asyncio_connect_udp(remote_address)
                _enlarge_udp_buffers(stream)
                return stream
            socket = await anyio.create_connected_udp_socket(host, port)
        _enlarge_udp_buffers(socket)
        return _ConnectedDatagramStream(socket)


def _check_socket(sock: _socket.socket, kind: _socket.SocketKind) -> None:
    """Raise ``ValueError`` unless ``sock`` is of ``kind`` (anyio checks that it is bound)."""
    names = {_socket.SOCK_STREAM: "a TCP (SOCK_STREAM)", _socket.SOCK_DGRAM: "a UDP (SOCK_DGRAM)"}
    if sock.type != kind:
        raise ValueError(f"socket {sock.fileno()} is not {names[kind]} socket")


def _quic_listener(
    socket: UDPSocket,
    *,
    connection_id_length: int,
    supported_versions: Sequence[int],
    handshake_limits: QUICHandshakeLimits | None,
    connection_id_generator: Callable[[], bytes] | None,
) -> QUICListener:
    _enlarge_udp_buffers(socket)
    return QUICListener(
        socket,
        connection_id_length=connection_id_length,
        supported_versions=supported_versions,
        handshake_limits=handshake_limits,
        connection_id_generator=connection_id_generator,
    )


async def _start_client_tls(
    stream: AsyncioByteStream,
    *,
    ssl_context: ssl.SSLContext,
    server_name: str,
    address: AddressType,
) -> ByteStream:
    """:func:`wrap_client_tls` for the asyncio streams: the same errors."""
    try:
        await stream.start_client_tls(ssl_context=ssl_context, server_name=server_name)
    except OSError as exc:  # ssl.SSLError included
        raise handshake_error(exc, description=format_address(address), address=address) from exc
    return stream
