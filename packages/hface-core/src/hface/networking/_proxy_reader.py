"""Reading a PROXY protocol header off an accepted socket, and not one byte more.

Theory of operation
===================

The PROXY header comes first on a connection, and the client's own bytes
(a TLS ClientHello, an HTTP/1.1 request, the HTTP/2 preface) may follow in
the same segment. Whatever reads the header must leave those bytes to the
TLS or HTTP layer that comes next. Rather than read too much and replay
the rest through a wrapper stream (which asyncio's own TLS, set up on the
accepted socket by ``loop.connect_accepted_socket``, could not take),
:class:`ProxyHeaderReader` works on the accepted socket itself, before
anything wraps it:

1. it *peeks* at what has arrived (``MSG_PEEK``: the bytes stay queued);
2. it gives the bytes it holds plus the peeked ones to
   :func:`~hface.networking._proxy_protocol.parse_proxy_header`;
3. it *consumes* (``recv``) only bytes that belong to the header: all the
   peeked ones while the header is incomplete (they can only be header),
   else exactly up to the header's end.

So when the header is complete, the socket's queue starts with the
client's first byte, and the socket can be handed to anything. The
reader never blocks (the socket is non-blocking): ``None`` means "wait
until the socket is readable and call again", which the caller does with
its event loop, under a time limit of its own::

    reader = ProxyHeaderReader()
    with anyio.fail_after(timeout):
        while (header := reader.read_from(client_socket)) is None:
            await anyio.wait_readable(client_socket)

Each call consumes what it peeked or returns ``None`` with nothing
waiting, so a slow sender cannot make the loop spin.
"""

from __future__ import annotations

import socket

from ._proxy_protocol import (
    MAX_V1_LENGTH,
    MAX_V2_LENGTH,
    ProxyHeader,
    ProxyProtocolError,
    parse_proxy_header,
)

#: The fixed part of a version 2 header.
_V2_FIXED_LENGTH = 16


class ProxyHeaderReader:
    """Reads one PROXY protocol header off a non-blocking socket (see the module's docstring).

    :param max_v2_length: the largest length field accepted in a version 2 header.
    """

    def __init__(self, *, max_v2_length: int = MAX_V2_LENGTH) -> None:
        self._max_v2_length = max_v2_length
        self._limit = max(MAX_V1_LENGTH, _V2_FIXED_LENGTH + max_v2_length)
        self._received = b""
        self._header: ProxyHeader | None = None

    def read_from(self, sock: socket.socket) -> ProxyHeader | None:
        """Take what has arrived of the header off ``sock``; the header once it is complete.

        Once it has returned the header, it returns it again and reads nothing.

        :returns: the header, or None if more must arrive first (wait until
            ``sock`` is readable, then call again).
        :raises ProxyProtocolError: if the bytes are not a valid header, or
            the peer closed the connection before the header's end.
        :raises OSError: if the socket fails.
        """
        if self._header is not None:
            return self._header
        try:
            peeked = sock.recv(self._limit - len(self._received), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return None
        if not peeked:
            raise ProxyProtocolError("the connection ended before its PROXY protocol header did")
        header = parse_proxy_header(self._received + peeked, max_v2_length=self._max_v2_length)
        wanted = len(peeked) if header is None else header.length - len(self._received)
        while wanted > 0:
            # The peeked bytes are queued: recv() returns at once, at most
            # what was asked (less only if a signal interrupts it).
            chunk = sock.recv(wanted)
            if not chunk:  # cannot be, after a peek; but never loop on it
                raise ProxyProtocolError("the connection ended in its PROXY protocol header")
            self._received += chunk
            wanted -= len(chunk)
        self._header = header
        return header
