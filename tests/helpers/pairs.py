"""In-memory pairs of a client and a server protocol, for sans-IO tests.

A pair moves what one side sends to the other, with no sockets. Tests on
behaviour shared by every version use :func:`make_pair` with an HTTP
version and see only the shared interface and events.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

from hface.events import Event
from hface.protocols import HTTPOverTCPProtocol, HTTPProtocol

HTTP_VERSIONS = ("1.1", "2", "3")

#: HTTP_VERSIONS, with HTTP/1.1 also served on httptools ("1.1-httptools").
HTTP_IMPLEMENTATIONS = ("1.1", "1.1-httptools", "2", "3")

#: Splits bytes into the pieces one ``bytes_received`` call gets.
Chunker = Callable[[bytes], Iterator[bytes]]


def whole(data: bytes) -> Iterator[bytes]:
    """Deliver bytes as they were sent."""
    if data:
        yield data


def one_byte(data: bytes) -> Iterator[bytes]:
    """Deliver bytes one at a time: the harshest framing test."""
    for index in range(len(data)):
        yield data[index : index + 1]


def random_chunks(seed: int, max_size: int = 4096) -> Chunker:
    """Deliver bytes in random pieces of 1 to ``max_size`` bytes."""
    rng = random.Random(seed)

    def chunker(data: bytes) -> Iterator[bytes]:
        offset = 0
        while offset < len(data):
            size = rng.randint(1, max_size)
            yield data[offset : offset + size]
            offset += size

    return chunker


class ProtocolPair(ABC):
    """A client and a server protocol joined in memory."""

    client: HTTPProtocol
    server: HTTPProtocol

    @abstractmethod
    def transfer(self) -> int:
        """Move everything waiting to be sent, both ways, until nothing moves.

        :return: how many bytes (TCP) or datagrams' bytes (QUIC) moved.
        """

    def client_events(self) -> list[Event]:
        """Return the events the client has ready."""
        return _drain(self.client)

    def server_events(self) -> list[Event]:
        """Return the events the server has ready."""
        return _drain(self.server)


def _drain(protocol: HTTPProtocol) -> list[Event]:
    events = []
    while (event := protocol.next_event()) is not None:
        events.append(event)
    return events


class TCPProtocolPair(ProtocolPair):
    """Two ``HTTPOverTCPProtocol`` objects joined by an in-memory byte pipe."""

    def __init__(
        self,
        client: HTTPOverTCPProtocol,
        server: HTTPOverTCPProtocol,
        *,
        chunker: Chunker = whole,
    ) -> None:
        self.client = client
        self.server = server
        self._client = client
        self._server = server
        self._chunker = chunker

    def transfer(self) -> int:
        moved = 0
        while True:
            step = self._pipe(self._client, self._server) + self._pipe(self._server, self._client)
            if not step:
                return moved
            moved += step

    def _pipe(self, source: HTTPOverTCPProtocol, target: HTTPOverTCPProtocol) -> int:
        data = source.bytes_to_send()
        for chunk in self._chunker(data):
            target.bytes_received(chunk)
        return len(data)


def make_pair(
    http_version: str, *, chunker: Chunker = whole, max_concurrent_streams: int | None = None
) -> ProtocolPair:
    """Return a connected pair of the default implementations of a version.

    HTTP/1.1 and HTTP/2 pairs use ``chunker`` on the byte stream. The
    HTTP/3 pair has completed its QUIC handshake on a controlled clock.
    ``max_concurrent_streams`` raises the streams each side lets the other open.
    ``"1.1-httptools"`` is HTTP/1.1 with the server on httptools.
    """
    limits = (
        {} if max_concurrent_streams is None else {"max_concurrent_streams": max_concurrent_streams}
    )
    streams = max_concurrent_streams  # None: the factories' default
    if http_version == "1.1":
        from hface.protocols.http1 import HTTP1ClientFactory, HTTP1ServerFactory

        return TCPProtocolPair(HTTP1ClientFactory()(), HTTP1ServerFactory()(), chunker=chunker)
    if http_version == "1.1-httptools":
        from hface.protocols.http1 import HTTP1ClientFactory
        from hface.protocols.http1._httptools import HTTPToolsServerFactory

        return TCPProtocolPair(HTTP1ClientFactory()(), HTTPToolsServerFactory()(), chunker=chunker)
    if http_version == "2":
        from hface.protocols.http2 import HTTP2ClientFactory, HTTP2ServerFactory

        pair = TCPProtocolPair(
            HTTP2ClientFactory(max_concurrent_streams=streams)(),
            HTTP2ServerFactory(max_concurrent_streams=streams)(),
            chunker=chunker,
        )
        pair.transfer()  # the connection prefaces and SETTINGS
        pair.client_events()
        pair.server_events()
        return pair
    if http_version == "3":
        from tests.helpers.quic_pair import make_quic_pair

        return make_quic_pair(**limits)
    raise ValueError(f"unknown HTTP version {http_version!r}")


__all__ = (
    "HTTP_IMPLEMENTATIONS",
    "HTTP_VERSIONS",
    "Chunker",
    "ProtocolPair",
    "TCPProtocolPair",
    "make_pair",
    "one_byte",
    "random_chunks",
    "whole",
)
