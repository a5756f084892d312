"""Accepting TCP (and Unix) connections on asyncio's own transports: SystemNetworking's path.

Theory of operation. anyio binds the listening sockets; :class:`AsyncioListener`
accepts on them with the event loop (``loop.sock_accept``), and gives each
connection a task of its own, in which it reads the PROXY protocol header
when one is expected (:mod:`hface.networking._proxy_listener`), then hands
the socket to the event loop (``loop.connect_accepted_socket``, with its
own TLS when there is an SSL context) as an
:class:`~hface.networking._asyncio_streams.AsyncioByteStream`. A client
that fails any of that is logged at debug level and dropped; running out
of file descriptors pauses accepting for a moment instead of ending it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, Final

import anyio
from anyio.abc import Listener, SocketAttribute, TaskGroup
from anyio.streams.stapled import MultiListener

from hface.common import AddressType

from ._asyncio_streams import AsyncioByteStream
from ._proxy_listener import log_refused, receive_proxy_header
from ._proxy_protocol import ProxyProtocolError
from ._streams import ByteStream

_logger = logging.getLogger("hface.networking")

#: asyncio wants a number of seconds for a TLS handshake: "no limit" is this many.
_NO_LIMIT: Final = 10.0 * 365 * 24 * 3600

#: accept() errors that say the process is out of resources, not that the listener is done.
_ACCEPT_RETRY_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED}
)
#: Seconds the accept loop waits after running out of file descriptors.
_ACCEPT_RETRY_DELAY: Final = 0.1


class AsyncioListener(Listener[ByteStream]):
    """Accepts on the sockets of an anyio TCP listener, as :class:`AsyncioByteStream`.

    anyio binds the sockets (both families of a name, one port for all
    with port 0); accepting and the streams are asyncio's. With an
    ``ssl_context`` each connection does the server side of a TLS
    handshake first, in its handler's task: a client that fails it (bad
    certificate, garbage, no handshake within ``handshake_timeout``
    seconds) is logged at debug level on the ``hface.networking`` logger
    and dropped, and the listener keeps serving.

    Meant to be wrapped in :class:`~hface.networking.TCPListener`, which
    makes :meth:`serve` return on :meth:`aclose`. Extra attributes are
    those of the anyio listener.
    """

    def __init__(
        self,
        listener: MultiListener[Any],
        *,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None,
        proxy_header_timeout: float | None = None,
    ) -> None:
        self._listener = listener
        self._proxy_header_timeout = proxy_header_timeout
        self._sockets: list[socket.socket] = [
            inner.extra(SocketAttribute.raw_socket) for inner in listener.listeners
        ]
        self._ssl_context = ssl_context
        self._handshake_timeout = _NO_LIMIT if handshake_timeout is None else handshake_timeout

    async def serve(
        self,
        handler: Callable[[ByteStream], Any],
        task_group: TaskGroup | None = None,
    ) -> None:
        """Accept connections until cancelled; each goes to ``handler`` in a task of its own."""
        async with AsyncExitStack() as stack:
            if task_group is None:
                task_group = await stack.enter_async_context(anyio.create_task_group())
            async with anyio.create_task_group() as accepting:
                for listening_socket in self._sockets:
                    accepting.start_soon(self._accept, listening_socket, handler, task_group)

    async def _accept(
        self,
        listening_socket: socket.socket,
        handler: Callable[[ByteStream], Any],
        task_group: TaskGroup,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client_socket, _ = await loop.sock_accept(listening_socket)
            except OSError as exc:
                if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                    raise
                _logger.warning("cannot accept a connection: %s", exc)
                await anyio.sleep(_ACCEPT_RETRY_DELAY)
                continue
            task_group.start_soon(self._handle, client_socket, handler)

    async def _handle(
        self, client_socket: socket.socket, handler: Callable[[ByteStream], Any]
    ) -> None:
        loop = asyncio.get_running_loop()
        # From here on the transport owns the socket: it closes it on failure too.
        # The stream is made here, not by the loop: with TLS, uvloop returns
        # its own SSL protocol where asyncio returns the application's.
        client: AddressType | None = None
        if self._proxy_header_timeout is not None:
            try:
                client = await receive_proxy_header(client_socket, limit=self._proxy_header_timeout)
            except (ProxyProtocolError, OSError) as exc:
                log_refused(_peer_of(client_socket), exc)
                client_socket.close()
                return
            except BaseException:
                client_socket.close()
                raise
        stream = AsyncioByteStream(remote_address=client)
        try:
            if self._ssl_context is None:
                await loop.connect_accepted_socket(lambda: stream, client_socket)
            else:
                await loop.connect_accepted_socket(
                    lambda: stream,
                    client_socket,
                    ssl=self._ssl_context,
                    ssl_handshake_timeout=self._handshake_timeout,
                )
        except Exception as exc:
            # One bad client must not end serve(): log it and drop it.
            what = "TLS handshake" if self._ssl_context is not None else "accepting a connection"
            _logger.debug("%s failed: %r", what, exc)
            return
        await handler(stream)

    async def aclose(self) -> None:
        """Close the listening sockets (stop :meth:`serve` first: see :class:`TCPListener`)."""
        await self._listener.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The anyio listener's: ``local_address`` and ``local_port``."""
        return self._listener.extra_attributes


def _peer_of(client_socket: socket.socket) -> object:
    try:
        return client_socket.getpeername()
    except OSError:
        return "an unknown peer"
