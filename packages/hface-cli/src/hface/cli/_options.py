"""The options ``hface server`` and ``hface proxy`` share, and their ``argparse`` types.

Building the parser imports neither :mod:`hface.server` nor
:mod:`hface.client`: the defaults shown in the help are written here
(:data:`LIMIT_DEFAULTS`, which a test keeps equal to the server's), and
:func:`apply_limit_options` sets them on a server once one is made.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from hface.server import BaseServer, Endpoint

#: What ``--protocol`` serves, for people.
_VERSIONS = {
    "all": "HTTP/1.1, HTTP/2, HTTP/3",
    "tcp": "HTTP/1.1, HTTP/2",
    "http1": "HTTP/1.1",
    "http2": "HTTP/2",
    "http3": "HTTP/3",
}


def seconds(text: str) -> float:
    """An ``argparse`` type: a number of seconds, zero or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}")
    return value


#: What the limit and timeout options say when they are not given: the
#: defaults of ServerLimits and ServerTimeouts (a test keeps them equal;
#: hface.server is not imported to build the parser).
LIMIT_DEFAULTS: Final[dict[str, str]] = {
    "max_connections": "1000",
    "max_body_size": "none",
    "max_header_size": "16384",
    "max_header_count": "100",
    "max_concurrent_streams": "100",
    "header_table_size": "4096",
    "header_read": "60",
    "keep_alive": "5",
}

#: ``--quic-retry``'s choices and default: QUICRetry's values and the default
#: of QUICHandshakeLimits (a test keeps them equal).
QUIC_RETRY_CHOICES: Final = ("auto", "always", "never")
QUIC_RETRY_DEFAULT: Final = "auto"

_OFF: Final = ("none", "off")
_SIZE_UNITS: Final = {"k": 1024, "m": 1024**2, "g": 1024**3}


def limit_seconds(text: str) -> float | None:
    """An ``argparse`` type: a positive number of seconds, or ``none`` for no limit."""
    if text.lower() in _OFF:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"invalid timeout: {text!r} (a positive number of seconds, or 'none')"
        )
    return value


def limit_count(text: str) -> int | None:
    """An ``argparse`` type: a positive integer, or ``none`` for no limit."""
    if text.lower() in _OFF:
        return None
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"invalid limit: {text!r} (a positive integer, or 'none')")
    return int(text)


def limit_size(text: str) -> int | None:
    """An ``argparse`` type: bytes, optionally with a K, M or G (1024-based) suffix, or ``none``."""
    if text.lower() in _OFF:
        return None
    number, unit = text, 1
    if text[-1:].lower() in _SIZE_UNITS:
        number, unit = text[:-1], _SIZE_UNITS[text[-1].lower()]
    if not number.isascii() or not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(
            f"invalid size: {text!r} (bytes, e.g. 1048576 or 1M, or 'none')"
        )
    return int(number) * unit


def protocol_count(text: str) -> int:
    """An ``argparse`` type: a positive integer (a protocol limit; ``none`` is refused)."""
    value = None if text.lower() in _OFF else limit_count(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"invalid limit: {text!r} (a positive integer)")
    return value


def protocol_size(text: str) -> int:
    """An ``argparse`` type: bytes with an optional K, M or G suffix (``none`` is refused)."""
    value = None if text.lower() in _OFF else limit_size(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"invalid size: {text!r} (bytes, e.g. 16384 or 16K)")
    return value


def add_serving_options(parser: argparse.ArgumentParser, *, in_flight: str) -> None:
    """Add the options ``hface server`` and ``hface proxy`` share.

    Certificate and key, ``--protocol``, ``--backend``, ``--log-level`` and
    ``--graceful-timeout``; ``in_flight`` names what that timeout lets finish.
    """
    parser.add_argument("--cert", metavar="FILE", help="certificate chain (PEM)")
    parser.add_argument("--key", metavar="FILE", help="key of the certificate (PEM)")
    parser.add_argument(
        "--protocol", choices=list(_VERSIONS), default="all", help="HTTP versions to serve"
    )
    parser.add_argument(
        "--backend",
        choices=["asyncio", "trio", "uvloop"],
        default="asyncio",
        help="event loop (uvloop: asyncio on uvloop, from the hface-cli[uvloop] extra)",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="log level (default: %(default)s)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help=f"how long {in_flight} in flight get at shutdown (default: %(default)s)",
    )


def add_limit_options(parser: argparse.ArgumentParser, *, body_size: bool = True) -> None:
    """Add the options for the limits and timeouts users tune most to ``parser``.

    Each sets a field of :class:`hface.server.ServerLimits` or
    :class:`hface.server.ServerTimeouts`; see :func:`apply_limit_options`.

    :param body_size: add ``--max-body-size`` (not for a CONNECT proxy,
        whose tunnels carry no request body).
    """
    group = parser.add_argument_group("limits and timeouts ('none' for no limit)")
    # SUPPRESS: an option not given is absent from the namespace, so that
    # None can mean "no limit" (see apply_limit_options).
    group.add_argument(
        "--max-connections",
        type=limit_count,
        default=argparse.SUPPRESS,
        metavar="N",
        help="connections served at once; more get 503 or GOAWAY "
        f"(default: {LIMIT_DEFAULTS['max_connections']})",
    )
    if body_size:
        group.add_argument(
            "--max-body-size",
            type=limit_size,
            default=argparse.SUPPRESS,
            metavar="BYTES",
            help="largest request body, e.g. 10M; larger ones get 413 "
            f"(default: {LIMIT_DEFAULTS['max_body_size']})",
        )
    group.add_argument(
        "--max-header-size",
        type=protocol_size,
        default=argparse.SUPPRESS,
        metavar="BYTES",
        help="largest request header block, e.g. 32K; larger ones get 431 (HTTP/1.1) "
        f"or GOAWAY (HTTP/2) (default: {LIMIT_DEFAULTS['max_header_size']})",
    )
    group.add_argument(
        "--max-header-count",
        type=limit_count,
        default=argparse.SUPPRESS,
        metavar="N",
        help="header fields in a request; more get 431 "
        f"(default: {LIMIT_DEFAULTS['max_header_count']})",
    )
    group.add_argument(
        "--max-concurrent-streams",
        type=protocol_count,
        default=argparse.SUPPRESS,
        metavar="N",
        help="requests in flight on one HTTP/2 or HTTP/3 connection "
        f"(default: {LIMIT_DEFAULTS['max_concurrent_streams']})",
    )
    group.add_argument(
        "--header-table-size",
        type=protocol_size,
        default=argparse.SUPPRESS,
        metavar="BYTES",
        help="HPACK or QPACK dynamic table a client may make the server hold, per "
        f"connection (default: {LIMIT_DEFAULTS['header_table_size']})",
    )
    group.add_argument(
        "--header-timeout",
        type=limit_seconds,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="time a new connection gets to send its first request's headers "
        f"(default: {LIMIT_DEFAULTS['header_read']})",
    )
    group.add_argument(
        "--keep-alive-timeout",
        type=limit_seconds,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="time an idle connection is kept open for another request "
        f"(default: {LIMIT_DEFAULTS['keep_alive']})",
    )
    group.add_argument(
        "--quic-retry",
        choices=QUIC_RETRY_CHOICES,
        default=argparse.SUPPRESS,
        help="when new HTTP/3 clients must prove their address with a QUIC Retry: auto "
        "(during a flood of handshakes), always, never "
        f"(default: {QUIC_RETRY_DEFAULT})",
    )


def apply_limit_options(server: BaseServer, args: argparse.Namespace) -> None:
    """Set on ``server`` the limits and timeouts given with :func:`add_limit_options` options.

    ``--quic-retry`` sets the ``retry`` of ``server.quic_handshake_limits``.

    Options not given leave the server's defaults (they are absent from ``args``).
    """
    for option, (target, field) in _LIMIT_OPTIONS.items():
        if hasattr(args, option):
            setattr(getattr(server, target), field, getattr(args, option))
    if hasattr(args, "quic_retry"):
        from hface.networking import QUICRetry

        limits = server.quic_handshake_limits
        server.quic_handshake_limits = replace(limits, retry=QUICRetry(args.quic_retry))


#: Option (as argparse names it) -> (server attribute, field).
_LIMIT_OPTIONS: Final = {
    "max_connections": ("limits", "max_connections"),
    "max_body_size": ("limits", "max_body_size"),
    "max_header_size": ("limits", "max_header_size"),
    "max_header_count": ("limits", "max_header_count"),
    "max_concurrent_streams": ("limits", "max_concurrent_streams"),
    "header_table_size": ("limits", "header_table_size"),
    "header_timeout": ("timeouts", "header_read"),
    "keep_alive_timeout": ("timeouts", "keep_alive"),
}


def endpoint_versions(endpoint: Endpoint, protocol: str) -> str:
    """The HTTP versions served on ``endpoint`` with ``--protocol protocol``, for people."""
    if endpoint.unix_path is not None and protocol in ("all", "http3"):  # no QUIC on Unix
        return "nothing: HTTP/3 needs UDP" if protocol == "http3" else _VERSIONS["tcp"]
    if endpoint.tls:
        return _VERSIONS[protocol]
    if protocol == "http3":
        return "nothing: HTTP/3 needs https"
    return _VERSIONS["tcp" if protocol == "all" else protocol]


#: The first file descriptor systemd passes (sd_listen_fds(3): SD_LISTEN_FDS_START).
_SYSTEMD_FIRST_FD: Final = 3


def systemd_endpoint(value: str, environ: Mapping[str, str]) -> str:
    """``fd://NAME`` as ``fd://N``: the socket systemd passed under that name.

    systemd's socket activation passes sockets from file descriptor 3 on,
    says how many in ``LISTEN_FDS``, their names (``FileDescriptorName=``)
    in ``LISTEN_FDNAMES`` and for which process in ``LISTEN_PID``. Other
    values are returned as they are.

    :raises ValueError: if no socket of that name was passed to this process.
    """
    scheme, separator, name = value.partition("://")
    if not separator or scheme not in ("fd", "fd+tls") or not name or name.isdigit():
        return value
    if environ.get("LISTEN_PID") != str(os.getpid()):
        raise ValueError(f"{value}: systemd passed no sockets to this process (LISTEN_PID)")
    names = environ.get("LISTEN_FDNAMES", "").split(":")
    count = int(environ.get("LISTEN_FDS", "0") or "0")
    if name not in names[:count]:
        raise ValueError(f"{value}: systemd passed no socket called {name!r} (LISTEN_FDNAMES)")
    return f"{scheme}://{_SYSTEMD_FIRST_FD + names.index(name)}"
