"""``hface proxy``: run :class:`hface.server.ProxyServer` from the command line.

Credentials come from ``--auth`` or, to keep the password out of ``ps``,
from the environment variable :data:`AUTH_ENV`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, Final

from ._deploy_options import add_deployment_options, apply_deployment_options, configure_logging
from ._options import (
    add_limit_options,
    add_serving_options,
    apply_limit_options,
    endpoint_versions,
    seconds,
    systemd_endpoint,
)
from ._worker import add_worker_options, worker_options

if TYPE_CHECKING:
    from pathlib import Path

    from hface.server import Endpoint

#: Where ``hface proxy`` listens when not told otherwise (as ``examples/proxy_server.py``).
DEFAULT_PROXY_ENDPOINTS: Final = ("https://localhost:6443",)

#: The environment variable with ``USER:PASSWORD``, read when ``--auth`` is not given.
AUTH_ENV: Final = "HFACE_PROXY_AUTH"


def add_proxy_parser(commands: Any, summary: str) -> argparse.ArgumentParser:
    """Add the ``proxy`` subcommand to ``commands`` and return its parser.

    :param summary: what ``hface --help`` says of it.
    """
    proxy: argparse.ArgumentParser = commands.add_parser(
        "proxy",
        help=summary,
        description=(
            "Run an HTTP proxy in tunnelling mode: CONNECT and CONNECT-UDP (RFC 9298) over "
            "HTTP/1.1, HTTP/2 and HTTP/3. With no arguments, listens on "
            f"{' and '.join(DEFAULT_PROXY_ENDPOINTS)} with a local development certificate."
        ),
        epilog=(
            f"Credentials may come from the environment variable {AUTH_ENV}=USER:PASSWORD "
            "instead of --auth, which other users can see in the process list."
        ),
    )
    proxy.add_argument(
        "endpoints",
        nargs="*",
        metavar="ENDPOINT",
        help=(
            f"https://HOST:PORT or http://HOST:PORT (default: {' '.join(DEFAULT_PROXY_ENDPOINTS)})"
        ),
    )
    add_serving_options(proxy, in_flight="tunnels")
    targets = proxy.add_mutually_exclusive_group()
    targets.add_argument(
        "--allow-private-targets",
        dest="allow_private_targets",
        action="store_const",
        const=True,
        help="let clients reach loopback, private and other non-public addresses",
    )
    targets.add_argument(
        "--deny-private-targets",
        dest="allow_private_targets",
        action="store_const",
        const=False,
        help=(
            "refuse them (default: allowed only when every endpoint is on loopback, "
            "refused otherwise)"
        ),
    )
    proxy.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        help=f"require these Basic proxy credentials (see also {AUTH_ENV})",
    )
    proxy.add_argument(
        "--connect-timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to resolve and connect to a target (default: %(default)s)",
    )
    proxy.add_argument(
        "--idle-timeout",
        type=seconds,
        default=300.0,
        metavar="SECONDS",
        help="close a tunnel idle this long; 0 never does (default: %(default)s)",
    )
    proxy.add_argument(
        "--no-connect-udp",
        dest="connect_udp",
        action="store_false",
        help="refuse CONNECT-UDP (RFC 9298) with 501; it is served by default",
    )
    add_limit_options(proxy, body_size=False)
    add_deployment_options(proxy, asgi=False)
    add_worker_options(proxy)
    return proxy


def parse_credentials(value: str) -> tuple[str, str] | None:
    """Split ``USER:PASSWORD`` at the first colon (RFC 7617 §2); None if malformed."""
    user, colon, password = value.partition(":")
    if not colon or not user:
        return None
    return user, password


def run_proxy_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``hface proxy`` with parsed ``args`` until SIGINT or SIGTERM; return the exit code.

    Usage errors go through ``parser.error`` (exit code 2).

    :raises CommandError: for runtime failures to report in one line.
    """
    from hface.server import Endpoint, ProxyServer, ServerProtocol

    from ._run import run, server_certificate

    try:
        endpoints = [
            Endpoint.parse(systemd_endpoint(value, os.environ))
            for value in args.endpoints or DEFAULT_PROXY_ENDPOINTS
        ]
    except ValueError as error:
        parser.error(str(error))
    if args.key and not args.cert:
        parser.error("--key needs --cert")
    credentials = None
    if args.auth is not None:
        credentials = parse_credentials(args.auth)
        if credentials is None:
            parser.error("--auth needs USER:PASSWORD")
    elif os.environ.get(AUTH_ENV):
        credentials = parse_credentials(os.environ[AUTH_ENV])
        if credentials is None:
            parser.error(f"{AUTH_ENV} needs USER:PASSWORD")
    configure_logging(args)
    certificate = server_certificate(args.cert, args.key, endpoints)
    if certificate.made and certificate.cafile is not None:
        print(f"Made a development CA and a localhost certificate in {certificate.cafile.parent}")

    server = ProxyServer()
    server.tls_config.certfile = certificate.certfile
    server.tls_config.keyfile = certificate.keyfile
    server.protocol = ServerProtocol(args.protocol)
    server.credentials = credentials
    server.allow_private_targets = args.allow_private_targets
    server.connect_timeout = args.connect_timeout
    server.idle_timeout = args.idle_timeout or None
    server.connect_udp = args.connect_udp
    server.graceful_timeout = args.graceful_timeout
    apply_limit_options(server, args)
    apply_deployment_options(server, args)
    return run(
        server,
        endpoints,
        backend=args.backend,
        on_ready=lambda: _print_banner(args, endpoints, certificate.cafile, credentials),
        workers=worker_options(args),
    )


def _print_banner(
    args: argparse.Namespace,
    endpoints: list[Endpoint],
    cafile: Path | None,
    credentials: tuple[str, str] | None,
) -> None:
    kinds = "CONNECT and CONNECT-UDP" if args.connect_udp else "CONNECT"
    print(f"hface proxy ({kinds})")
    for endpoint in endpoints:
        print(f"  {endpoint}  ({endpoint_versions(endpoint, args.protocol)})")
    private = {
        True: "allowed",
        False: "refused",
        None: "allowed only if every endpoint is on loopback",
    }[args.allow_private_targets]
    print(f"Private targets: {private}")
    user = f"required (user {credentials[0]!r})" if credentials else "none"
    print(f"Credentials: {user}")
    tcp = [endpoint for endpoint in endpoints if endpoint.unix_path is None]
    if not tcp:  # curl cannot reach a proxy on a Unix socket
        sys.stdout.flush()
        return
    proxy = next((endpoint for endpoint in tcp if endpoint.tls), tcp[0])
    options = ["-p", "-x", str(proxy)]
    if cafile is not None:
        print(f"Development CA: {cafile}")
        options += ["--proxy-cacert", str(cafile)]
    if credentials:
        options += ["--proxy-user", f"{credentials[0]}:PASSWORD"]
    print(f"Try: curl {' '.join(options)} https://example.com/")
    sys.stdout.flush()
