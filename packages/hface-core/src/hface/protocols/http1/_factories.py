"""Factories of the h11-based HTTP/1.1 protocols."""

from __future__ import annotations

from collections.abc import Sequence

from hface.protocols import HTTPOverTCPFactory, ProtocolLimits

from ._client import HTTP1ClientProtocol
from ._server import HTTP1ServerProtocol


class HTTP1ClientFactory(HTTPOverTCPFactory):
    """Makes :class:`HTTP1ClientProtocol` objects.

    :param max_header_size: the largest status line plus header block
        accepted from a server, in bytes (h11's ``max_incomplete_event_size``).
    """

    def __init__(self, *, max_header_size: int = 16384) -> None:
        self._max_header_size = max_header_size

    @property
    def alpn_protocols(self) -> Sequence[str]:
        """``["http/1.1"]``."""
        return ["http/1.1"]

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTP1ClientProtocol:
        """Make a client protocol for a new connection."""
        return HTTP1ClientProtocol(max_header_size=self._max_header_size)

    def with_limits(self, limits: ProtocolLimits) -> HTTP1ClientFactory:
        """Return a factory whose protocols take ``limits.max_header_size`` (HTTP/1.1's only)."""
        return HTTP1ClientFactory(max_header_size=limits.max_header_size)


class HTTP1ServerFactory(HTTPOverTCPFactory):
    """Makes :class:`HTTP1ServerProtocol` objects.

    :param max_header_size: the largest request line plus header block
        accepted from a client, in bytes (h11's ``max_incomplete_event_size``);
        a larger one is answered with 431.
    """

    def __init__(self, *, max_header_size: int = 16384) -> None:
        self._max_header_size = max_header_size

    @property
    def alpn_protocols(self) -> Sequence[str]:
        """``["http/1.1"]``."""
        return ["http/1.1"]

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTP1ServerProtocol:
        """Make a server protocol for a new connection; TLS makes ``:scheme`` "https"."""
        return HTTP1ServerProtocol(
            tls=tls_version is not None, max_header_size=self._max_header_size
        )

    def with_limits(self, limits: ProtocolLimits) -> HTTP1ServerFactory:
        """Return a factory whose protocols take ``limits.max_header_size`` (HTTP/1.1's only)."""
        return HTTP1ServerFactory(max_header_size=limits.max_header_size)
