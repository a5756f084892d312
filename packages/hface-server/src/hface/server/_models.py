from __future__ import annotations

import enum
from typing import Final, NamedTuple
from urllib.parse import urlsplit

from hface.common import AddressType

#: The schemes of endpoints on an inherited socket (whose number is the port).
_FD_SCHEMES: Final = ("fd", "fd+tls")


class Endpoint(NamedTuple):
    """Where a server listens: ``Endpoint("https", "localhost", 5443)``.

    ``https`` endpoints serve HTTP/1.1 and HTTP/2 over TLS (ALPN chooses) and
    HTTP/3 over QUIC on the same port; ``http`` endpoints serve HTTP/1.1 and
    HTTP/2 with prior knowledge, in cleartext.

    ``fd://3`` and ``fd+tls://3`` (``Endpoint("fd", "", 3)``,
    ``Endpoint("fd+tls", "", 3)``) serve a socket inherited as file
    descriptor 3 (systemd's socket activation, a supervisor): a listening
    TCP socket as ``http`` or ``https`` endpoints do, a bound UDP socket
    (``fd+tls`` only) with HTTP/3. The server serves a duplicate of the
    descriptor and leaves the original open.
    """

    #: ``"http"`` or ``"https"``.
    scheme: str
    #: A host name or an IP address (IPv6 without brackets).
    host: str
    #: A port number; 0 picks a free one.
    port: int

    def __str__(self) -> str:
        if self.fd is not None:
            return f"{self.scheme}://{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @classmethod
    def parse(cls, value: str) -> Endpoint:
        """Parse ``https://localhost:5443``, ``http://[::1]:8080`` or ``fd://3``.

        :raises ValueError: saying what is wrong with ``value``.
        """
        scheme, separator, rest = value.partition("://")
        if separator and scheme in _FD_SCHEMES:
            if not rest.isdigit() or rest.startswith("+"):
                raise ValueError(
                    f"invalid endpoint {value!r}: {scheme}:// takes a file descriptor number"
                )
            return cls(scheme, "", int(rest))
        parsed = urlsplit(value)
        if parsed.scheme not in ("http", "https"):
            raise ValueError(
                f"invalid endpoint {value!r}: the scheme must be http://, https://, fd:// or fd+tls://"
            )
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
        """True for ``https`` and ``fd+tls`` endpoints."""
        return self.scheme in ("https", "fd+tls")

    @property
    def fd(self) -> int | None:
        """The inherited socket's file descriptor, for ``fd`` endpoints; else None."""
        return self.port if self.scheme in _FD_SCHEMES else None

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
