"""``hface server``: serve an ASGI application from the command line.

The parser is built without importing :mod:`hface.server`; running the
command imports it, the application and ``_run`` (certificates, the
event loop, one-line errors). An HTTP/1.1 implementation named with
``--http1`` is looked up in the protocol registry, and httptools is
imported only if it is the one named.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, Final

from ._deploy_options import add_deployment_options, apply_deployment_options, configure_logging
from ._errors import CommandError
from ._options import (
    add_limit_options,
    add_serving_options,
    apply_limit_options,
    endpoint_versions,
    limit_seconds,
    limit_size,
    systemd_endpoint,
)
from ._worker import add_worker_options, worker_options

if TYPE_CHECKING:
    from hface.protocols import HTTPOverTCPFactory
    from hface.server import BaseServer

#: What ``hface server`` serves when not told otherwise.
DEFAULT_APP = "hface.server.examples.hello:application"
DEFAULT_ENDPOINTS = ("https://localhost:5443", "http://localhost:5080")

#: The HTTP/1.1 server implementations ``--http1`` chooses from (registry names).
HTTP1_IMPLEMENTATIONS: Final = ("h11", "httptools")


def add_server_parser(commands: Any, summary: str) -> None:
    """Add ``hface server`` to the subparsers ``commands`` (``add_subparsers()``).

    :param summary: what ``hface --help`` says of it.
    """
    server: argparse.ArgumentParser = commands.add_parser(
        "server",
        help=summary,
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
        help="https://HOST:PORT, http://HOST:PORT, a Unix socket: unix:PATH (cleartext) "
        "or https+unix:PATH (TLS), or fd://N, fd+tls://N (a socket inherited as file "
        f"descriptor N, or named N by systemd) (default: {' '.join(DEFAULT_ENDPOINTS)})",
    )
    add_serving_options(server, in_flight="requests")
    server.add_argument(
        "--reload",
        action="store_true",
        help="restart when a .py file changes under the current directory or --reload-dir "
        "(development; needs watchfiles: pip install 'hface-cli[reload]')",
    )
    server.add_argument(
        "--reload-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory --reload watches (repeatable; default: the current one)",
    )
    add_deployment_options(server, asgi=True)
    server.add_argument("--no-access-log", action="store_true", help="no line per request")
    server.add_argument(
        "--http1",
        choices=HTTP1_IMPLEMENTATIONS,
        help="HTTP/1.1 implementation (default: httptools if installed, else h11)",
    )
    add_limit_options(server)
    add_websocket_options(server)
    add_worker_options(server)


def add_websocket_options(parser: argparse.ArgumentParser) -> None:
    """Add the WebSocket options (``ASGIServer.ws_*``; not given: the server's default)."""
    group = parser.add_argument_group("WebSockets ('none' for no limit)")
    group.add_argument(
        "--ws-max-size",
        type=limit_size,
        default=argparse.SUPPRESS,
        metavar="BYTES",
        help="largest WebSocket message received, e.g. 1M; larger ones close with 1009 "
        "(default: 16M)",
    )
    group.add_argument(
        "--ws-ping-interval",
        type=limit_seconds,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="seconds between keep-alive pings (default: 20)",
    )
    group.add_argument(
        "--ws-ping-timeout",
        type=limit_seconds,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="seconds a client has to answer a ping, else 1011 (default: 20)",
    )
    group.add_argument(
        "--ws-per-message-deflate",
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help="negotiate permessage-deflate with clients that offer it (default: on)",
    )


def apply_websocket_options(server: BaseServer, args: argparse.Namespace) -> None:
    """Set the ``ws_*`` attributes of an ``ASGIServer`` from the options given."""
    for name in ("ws_max_size", "ws_ping_interval", "ws_ping_timeout", "ws_per_message_deflate"):
        if hasattr(args, name) and hasattr(server, name):
            setattr(server, name, getattr(args, name))


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


def _is_endpoint(value: str) -> bool:
    """Whether the first argument is an endpoint (``https://...``, ``unix:/...``), not an app."""
    return "://" in value or value.startswith(("unix:/", "http+unix:", "https+unix:"))


def run_server_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``hface server`` with parsed ``args`` until SIGINT or SIGTERM; return the exit code.

    Usage errors go through ``parser.error`` (exit code 2).

    :raises CommandError: for runtime failures to report in one line.
    """
    from hface.server import Endpoint, ServerProtocol

    from ._app import AppImportError, import_app
    from ._run import run_server, server_certificate

    if _is_endpoint(args.app):  # `hface server https://...`: an endpoint, and the default app
        args.endpoints.insert(0, args.app)
        args.app = DEFAULT_APP
    try:
        endpoints = [
            Endpoint.parse(systemd_endpoint(value, os.environ))
            for value in args.endpoints or DEFAULT_ENDPOINTS
        ]
    except ValueError as error:
        parser.error(str(error))
    if args.key and not args.cert:
        parser.error("--key needs --cert")
    if args.reload_dir and not args.reload:
        parser.error("--reload-dir needs --reload")
    if args.reload:
        from ._reload import run_reloading

        return run_reloading(args.argv, args.reload_dir)
    configure_logging(args)
    try:
        app = import_app(args.app)
    except AppImportError as error:
        raise CommandError(str(error)) from None

    if args.http1 is not None:
        http1_factory(args.http1)  # a missing implementation is an error before anything starts

    def configure(server: BaseServer) -> None:
        apply_limit_options(server, args)
        apply_websocket_options(server, args)
        apply_deployment_options(server, args)
        if args.http1 is not None:
            server.http1_factory = http1_factory(
                args.http1, max_header_size=server.limits.max_header_size
            )

    certificate = server_certificate(args.cert, args.key, endpoints)
    certfile, keyfile, cafile = certificate.certfile, certificate.keyfile, certificate.cafile
    if certificate.made and cafile is not None:
        print(f"Made a development CA and a localhost certificate in {cafile.parent}")

    protocol = ServerProtocol(args.protocol)

    def banner() -> None:  # once every endpoint is bound
        print(f"hface serving {args.app}")
        for endpoint in endpoints:
            print(f"  {endpoint}  ({endpoint_versions(endpoint, args.protocol)})")
        if cafile is not None:
            https = next(endpoint for endpoint in endpoints if endpoint.tls)
            print(f"Development CA: {cafile}")
            if https.unix_path is None:
                print(f"Try: curl --cacert {cafile} {https}/")
            else:
                print(
                    f"Try: curl --cacert {cafile} --unix-socket {https.unix_path} https://localhost/"
                )
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
        on_ready=banner,
        workers=worker_options(args),
    )
