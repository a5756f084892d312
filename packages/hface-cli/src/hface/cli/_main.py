"""``hface``: the command line. The only place that reads argv and the environment."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._certs import write_certificates
from ._client_parser import add_client_parser
from ._proxy_command import add_proxy_parser, run_proxy_command

if TYPE_CHECKING:
    from hface.protocols import HTTPOverTCPFactory
    from hface.server import BaseServer, Endpoint

#: What ``hface server`` serves when not told otherwise.
DEFAULT_APP = "hface.server.examples.hello:application"
DEFAULT_ENDPOINTS = ("https://localhost:5443", "http://localhost:5080")

_VERSIONS = {
    "all": "HTTP/1.1, HTTP/2, HTTP/3",
    "tcp": "HTTP/1.1, HTTP/2",
    "http1": "HTTP/1.1",
    "http2": "HTTP/2",
    "http3": "HTTP/3",
}


class CommandError(Exception):
    """A runtime failure to report in one line (exit code 1)."""


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
    "max_concurrent_streams": "100",
    "header_table_size": "4096",
    "header_read": "60",
    "keep_alive": "5",
}

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


def apply_limit_options(server: BaseServer, args: argparse.Namespace) -> None:
    """Set on ``server`` the limits and timeouts given with :func:`add_limit_options` options.

    Options not given leave the server's defaults (they are absent from ``args``).
    """
    for option, (target, field) in _LIMIT_OPTIONS.items():
        if hasattr(args, option):
            setattr(getattr(server, target), field, getattr(args, option))


#: Option (as argparse names it) -> (server attribute, field).
_LIMIT_OPTIONS: Final = {
    "max_connections": ("limits", "max_connections"),
    "max_body_size": ("limits", "max_body_size"),
    "max_header_size": ("limits", "max_header_size"),
    "max_concurrent_streams": ("limits", "max_concurrent_streams"),
    "header_table_size": ("limits", "header_table_size"),
    "header_timeout": ("timeouts", "header_read"),
    "keep_alive_timeout": ("timeouts", "keep_alive"),
}


#: The HTTP/1.1 server implementations ``--http1`` chooses from (registry names).
HTTP1_IMPLEMENTATIONS: Final = ("h11", "httptools")


def http1_factory(name: str, *, max_header_size: int | None = None) -> HTTPOverTCPFactory:
    """The HTTP/1.1 server factory named ``name`` (``--http1``).

    :param max_header_size: its limit on the request head (``--max-header-size``);
        the factory's default if ``None``.
    :raises CommandError: if its extra is not installed.
    """
    from hface.protocols import ProtocolLimits, protocol_registry

    try:
        factory_class = protocol_registry.get_factory_class("http1_server", name)
    except (ImportError, ValueError):
        raise CommandError(
            f"--http1 {name}: not installed (pip install 'hface-core[{name}]')"
        ) from None
    factory: HTTPOverTCPFactory = factory_class()
    if max_header_size is not None:
        try:
            limits = ProtocolLimits(max_header_size=max_header_size)
        except ValueError as error:
            raise CommandError(f"--max-header-size: {error}") from None
        factory = factory.with_limits(limits)
    return factory


def endpoint_versions(endpoint: Endpoint, protocol: str) -> str:
    """The HTTP versions served on ``endpoint`` with ``--protocol protocol``, for people."""
    if endpoint.tls:
        return _VERSIONS[protocol]
    if protocol == "http3":
        return "nothing: HTTP/3 needs https"
    return _VERSIONS["tcp" if protocol == "all" else protocol]


class _VersionAction(argparse.Action):
    """``--version``: the version is looked up only when asked for.

    (``importlib.metadata`` is not imported otherwise: a server spares its memory.)
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from importlib.metadata import version

        print(f"hface {version('hface-cli')}")  # on stdout, as argparse's own action
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``hface`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="hface",
        description="HTTP/1.1, HTTP/2 and HTTP/3 server, client and proxy.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="show the program's version number and exit"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    server = commands.add_parser(
        "server",
        help="serve an ASGI application",
        description=(
            "Serve an ASGI application. With no arguments, serves a greeting on "
            f"{' and '.join(DEFAULT_ENDPOINTS)} with a local development certificate."
        ),
    )
    server.add_argument(
        "app",
        nargs="?",
        default=DEFAULT_APP,
        help="module:attribute, or a module with 'application' or 'app' (default: %(default)s)",
    )
    server.add_argument(
        "endpoints",
        nargs="*",
        metavar="ENDPOINT",
        help=f"https://HOST:PORT or http://HOST:PORT (default: {' '.join(DEFAULT_ENDPOINTS)})",
    )
    add_serving_options(server, in_flight="requests")
    server.add_argument("--no-access-log", action="store_true", help="no line per request")
    server.add_argument(
        "--http1",
        choices=HTTP1_IMPLEMENTATIONS,
        help="HTTP/1.1 implementation (default: httptools if installed, else h11)",
    )
    add_limit_options(server)

    certs = commands.add_parser(
        "certs",
        help="write a development CA and a localhost certificate",
        description="Write cacert.pem, cert.pem and key.pem (localhost) into DIR.",
    )
    certs.add_argument("directory", metavar="DIR")
    add_client_parser(commands)
    add_proxy_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hface``; return the exit code (2 for usage errors, 1 for runtime errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "client":
            from ._client_command import run_client

            return run_client(args)
        if args.command == "certs":
            return _certs(args)
        if args.command == "proxy":
            return run_proxy_command(args, parser)
        return _server(args, parser)
    except CommandError as error:
        print(f"hface: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _certs(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    try:
        files = write_certificates(directory)
    except OSError as error:
        raise CommandError(f"cannot write certificates to {directory}: {error.strerror}") from None
    print(f"Wrote {files.cafile}, {files.certfile} and {files.keyfile}")
    return 0


def _server(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from hface.server import Endpoint, ServerProtocol

    from ._app import AppImportError, import_app
    from ._run import run_server, server_certificate

    if "://" in args.app:  # `hface server https://...`: an endpoint, and the default app
        args.endpoints.insert(0, args.app)
        args.app = DEFAULT_APP
    try:
        endpoints = [Endpoint.parse(value) for value in args.endpoints or DEFAULT_ENDPOINTS]
    except ValueError as error:
        parser.error(str(error))
    if args.key and not args.cert:
        parser.error("--key needs --cert")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = import_app(args.app)
    except AppImportError as error:
        raise CommandError(str(error)) from None

    if args.http1 is not None:
        http1_factory(args.http1)  # a missing implementation is an error before anything starts

    def configure(server: BaseServer) -> None:
        apply_limit_options(server, args)
        if args.http1 is not None:
            server.http1_factory = http1_factory(
                args.http1, max_header_size=server.limits.max_header_size
            )

    certificate = server_certificate(args.cert, args.key, endpoints)
    certfile, keyfile, cafile = certificate.certfile, certificate.keyfile, certificate.cafile
    if certificate.made and cafile is not None:
        print(f"Made a development CA and a localhost certificate in {cafile.parent}")

    protocol = ServerProtocol(args.protocol)
    print(f"hface serving {args.app}")
    for endpoint in endpoints:
        print(f"  {endpoint}  ({endpoint_versions(endpoint, args.protocol)})")
    if cafile is not None:
        https = next(endpoint for endpoint in endpoints if endpoint.tls)
        print(f"Development CA: {cafile}")
        print(f"Try: curl --cacert {cafile} {https}/")
    sys.stdout.flush()
    return run_server(
        app,
        endpoints,
        certfile=certfile,
        keyfile=keyfile,
        protocol=protocol,
        backend=args.backend,
        access_log=not args.no_access_log,
        graceful_timeout=args.graceful_timeout,
        configure=configure,
    )
