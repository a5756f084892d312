"""``hface``: the command line. The only place that reads argv and the environment."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from ._certs import default_directory, ensure_certificates, write_certificates

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``hface`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="hface",
        description="HTTP/1.1, HTTP/2 and HTTP/3 server, client and proxy.",
    )
    parser.add_argument("--version", action="version", version=f"hface {version('hface-cli')}")
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
    server.add_argument("--cert", metavar="FILE", help="certificate chain (PEM)")
    server.add_argument("--key", metavar="FILE", help="key of the certificate (PEM)")
    server.add_argument(
        "--protocol", choices=list(_VERSIONS), default="all", help="HTTP versions to serve"
    )
    server.add_argument(
        "--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop"
    )
    server.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="log level (default: %(default)s)",
    )
    server.add_argument("--no-access-log", action="store_true", help="no line per request")
    server.add_argument(
        "--graceful-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long requests in flight get at shutdown (default: %(default)s)",
    )

    certs = commands.add_parser(
        "certs",
        help="write a development CA and a localhost certificate",
        description="Write cacert.pem, cert.pem and key.pem (localhost) into DIR.",
    )
    certs.add_argument("directory", metavar="DIR")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hface``; return the exit code (2 for usage errors, 1 for runtime errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "certs":
            return _certs(args)
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
    from ._run import run_server

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

    cafile: Path | None = None
    certfile, keyfile = args.cert, args.key
    if certfile:
        for path in (certfile, keyfile or certfile):
            if not Path(path).is_file():
                raise CommandError(f"cannot read {path}: no such file")
    elif any(endpoint.tls for endpoint in endpoints):
        directory = default_directory()
        try:
            files, made = ensure_certificates(directory)
        except OSError as error:
            raise CommandError(f"cannot write certificates to {directory}: {error}") from None
        if made:
            print(f"Made a development CA and a localhost certificate in {directory}")
        certfile, keyfile, cafile = str(files.certfile), str(files.keyfile), files.cafile

    protocol = ServerProtocol(args.protocol)
    print(f"hface serving {args.app}")
    for endpoint in endpoints:
        versions = _VERSIONS[args.protocol] if endpoint.tls else _VERSIONS["tcp"]
        print(f"  {endpoint}  ({versions})")
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
    )
