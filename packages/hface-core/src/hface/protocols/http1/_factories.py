"""Factories of the HTTP/1.1 protocols (requests and responses parsed by h11)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import ClassVar, TypeVar

from hface.protocols import HTTPOverTCPFactory, ProtocolLimits

from ._client import HTTP1ClientProtocol
from ._server import HTTP1ServerProtocol

_Factory = TypeVar("_Factory", bound="_HTTP1Factory")


class _HTTP1Factory(HTTPOverTCPFactory):
    """What the HTTP/1.1 factories share: their one limit, and ALPN."""

    def __init__(self, *, max_header_size: int = 16384) -> None:
        self._max_header_size = max_header_size

    @property
    def alpn_protocols(self) -> Sequence[str]:
        """``["http/1.1"]``."""
        return ["http/1.1"]

    def with_limits(self: _Factory, limits: ProtocolLimits) -> _Factory:
        """Return a factory of the same kind whose protocols take
        ``limits.max_header_size`` (HTTP/1.1's only limit)."""
        factory = copy.copy(self)
        factory._max_header_size = limits.max_header_size
        return factory


class HTTP1ClientFactory(_HTTP1Factory):
    """Makes :class:`HTTP1ClientProtocol` objects.

    :param max_header_size: the largest status line plus header block
        accepted from a server, in bytes (h11's ``max_incomplete_event_size``).
    """

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTP1ClientProtocol:
        """Make a client protocol for a new connection."""
        return HTTP1ClientProtocol(max_header_size=self._max_header_size)


class HTTP1ServerFactory(_HTTP1Factory):
    """Makes :class:`HTTP1ServerProtocol` objects.

    :param max_header_size: the largest request line plus header block
        accepted from a client, in bytes (h11's ``max_incomplete_event_size``);
        a larger one is answered with 431.
    """

    #: The protocol it makes: the server state machine, with h11 reading requests.
    _protocol_type: ClassVar[type[HTTP1ServerProtocol]] = HTTP1ServerProtocol

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTP1ServerProtocol:
        """Make a server protocol for a new connection; TLS makes ``:scheme`` "https"."""
        return self._protocol_type(
            tls=tls_version is not None, max_header_size=self._max_header_size
        )
