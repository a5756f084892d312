from __future__ import annotations

import enum
from typing import NamedTuple
from urllib.parse import urlsplit

from hface.common import AddressType


class Endpoint(NamedTuple):
    """Where a server listens: ``Endpoint("https", "localhost", 5443)``.

    ``https`` endpoints serve HTTP/1.1 and HTTP/2 over TLS (ALPN chooses) and
    HTTP/3 over QUIC on the same port; ``http`` endpoints serve HTTP/1.1 and
    HTTP/2 with prior knowledge, in cleartext.
    """

    #: ``"http"`` or ``"https"``.
    scheme: str
    #: A host name or an IP address (IPv6 without brackets).
    host: str
    #: A port number; 0 picks a free one.
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @classmethod
    def parse(cls, value: str) -> Endpoint:
        """Parse ``https://localhost:5443`` or ``http://[::1]:8080``.

        :raises ValueError: saying what is wrong with ``value``.
        """
        parsed = urlsplit(value)
        if parsed.scheme not in ("http", "https"):
            raise ValueError(f"invalid endpoint {value!r}: the scheme must be http:// or https://")
        try:
            port = parsed.port
        except ValueError as error:
            raise ValueError(f"invalid endpoint {value!r}: {error}") from None
        if port is None:
            raise ValueError(f"invalid endpoint {value!r}: a port is required")
        if not parsed.hostname:
            raise ValueError(f"invalid endpoint {value!r}: a host is required")
        if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
            raise ValueError(f"invalid endpoint {value!r}: no path or query allowed")
        if parsed.username is not None or parsed.password is not None:
            raise ValueError(f"invalid endpoint {value!r}: no credentials allowed")
        return cls(parsed.scheme, parsed.hostname, port)

    @property
    def tls(self) -> bool:
        """True for ``https`` endpoints."""
        return self.scheme == "https"

    @property
    def address(self) -> AddressType:
        """``(host, port)``."""
        return self.host, self.port


class ServerProtocol(enum.Enum):
    """Which HTTP versions a server listens for."""

    #: HTTP/1.1 and HTTP/2 on TCP, and HTTP/3 on QUIC for ``https`` endpoints.
    ALL = "all"
    #: HTTP/1.1 and HTTP/2 on TCP only.
    TCP = "tcp"
    #: HTTP/1.1 only.
    HTTP1 = "http1"
    #: HTTP/2 only.
    HTTP2 = "http2"
    #: HTTP/3 only (``https`` endpoints).
    HTTP3 = "http3"
