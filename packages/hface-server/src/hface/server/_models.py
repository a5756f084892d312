from __future__ import annotations

import enum
from typing import Final, NamedTuple
from urllib.parse import urlsplit

from hface.common import AddressType

HTTP_UNIX: Final = "http+unix"
HTTPS_UNIX: Final = "https+unix"
#: The prefixes of a Unix socket endpoint, and whether each means TLS.
_UNIX_SCHEMES: Final = {"unix": False, HTTP_UNIX: False, HTTPS_UNIX: True}
#: The schemes of endpoints on an inherited socket (whose number is the port).
_FD_SCHEMES: Final = ("fd", "fd+tls")


class Endpoint(NamedTuple):
    """Where a server listens: ``Endpoint("https", "localhost", 5443)``.

    ``https`` endpoints serve HTTP/1.1 and HTTP/2 over TLS (ALPN chooses) and
    HTTP/3 over QUIC on the same port; ``http`` endpoints serve HTTP/1.1 and
    HTTP/2 with prior knowledge, in cleartext.

    Unix socket endpoints (:meth:`unix`) have the scheme ``http+unix``
    (cleartext) or ``https+unix`` (TLS), the socket's path as :attr:`host`
    and port 0; they serve HTTP/1.1 and HTTP/2 (no HTTP/3: QUIC is UDP).

    ``fd://3`` and ``fd+tls://3`` (``Endpoint("fd", "", 3)``,
    ``Endpoint("fd+tls", "", 3)``) serve a socket inherited as file
    descriptor 3 (systemd's socket activation, a supervisor): a listening
    TCP socket as ``http`` or ``https`` endpoints do, a bound UDP socket
    (``fd+tls`` only) with HTTP/3. The server serves a duplicate of the
    descriptor and leaves the original open.
    """

    #: ``"http"`` or ``"https"``; ``"http+unix"`` or ``"https+unix"`` for a Unix socket.
    scheme: str
    #: A host name or an IP address (IPv6 without brackets); a Unix socket's path.
    host: str
    #: A port number; 0 picks a free one (always 0 for a Unix socket).
    port: int

    def __str__(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.host}" if self.scheme == HTTP_UNIX else f"{self.scheme}:{self.host}"
        if self.fd is not None:
            return f"{self.scheme}://{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @classmethod
    def unix(cls, path: str, *, tls: bool = False) -> Endpoint:
        """A Unix socket endpoint: ``Endpoint.unix("/run/app.sock")``.

        A stale socket file at ``path`` (its server gone) is replaced, one a
        server listens on is an error, and the file is removed at shutdown.
        The ASGI scope's ``server`` is then ``(path, None)`` and its
        ``client`` None, as the ASGI specification says for Unix sockets
        (unless a PROXY protocol header names the client).

        :param tls: serve TLS over the socket (``https+unix``).
        """
        return cls(HTTPS_UNIX if tls else HTTP_UNIX, path, 0)

    @classmethod
    def parse(cls, value: str) -> Endpoint:
        """Parse ``https://localhost:5443``, ``http://[::1]:8080``, ``unix:/run/app.sock`` or ``fd://3``.

        A Unix socket is ``unix:PATH`` (or ``http+unix:PATH``) in cleartext,
        ``https+unix:PATH`` over TLS.

        :raises ValueError: saying what is wrong with ``value``.
        """
        scheme, separator, rest = value.partition("://")
        if separator and scheme in _FD_SCHEMES:
            if not rest.isdigit() or rest.startswith("+"):
                raise ValueError(
                    f"invalid endpoint {value!r}: {scheme}:// takes a file descriptor number"
                )
            return cls(scheme, "", int(rest))
        scheme, colon, path = value.partition(":")
        if colon and scheme in _UNIX_SCHEMES:
            if not path or path.startswith("//"):
                raise ValueError(
                    f"invalid endpoint {value!r}: a Unix socket is {scheme}:PATH, "
                    "e.g. unix:/run/app.sock"
                )
            return cls.unix(path, tls=_UNIX_SCHEMES[scheme])
        parsed = urlsplit(value)
        if parsed.scheme not in ("http", "https"):
            raise ValueError(
                f"invalid endpoint {value!r}: the scheme must be http://, https://, "
                "unix:, https+unix:, fd:// or fd+tls://"
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
        """True for ``https``, ``https+unix`` and ``fd+tls`` endpoints."""
        return self.scheme in ("https", HTTPS_UNIX, "fd+tls")

    @property
    def unix_path(self) -> str | None:
        """The path of a Unix socket endpoint; None for TCP."""
        return self.host if self.scheme in (HTTP_UNIX, HTTPS_UNIX) else None

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
