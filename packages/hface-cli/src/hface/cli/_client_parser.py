"""The arguments of ``hface client``, apart from the command itself.

Apart so that building the parser of ``hface`` (for any command, ``hface
server`` too) does not import :mod:`hface.client`, which a server would keep
in memory for nothing: versions are stored as :class:`hface.client.ClientProtocol`
values (``"http1"``), the URL type imports the client when it parses one.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any, Final

from ._errors import EXIT_CODES

if TYPE_CHECKING:
    from hface.client import URL

#: What each ``ClientProtocol`` value speaks (the parser stores the values).
_PROTOCOL_NAMES: Final = {
    "tcp": "HTTP/2 or HTTP/1.1 as ALPN chooses",
    "http1": "HTTP/1.1",
    "http2": "HTTP/2",
    "http3": "HTTP/3",
}


def _url(text: str) -> URL:
    from hface.client import URL

    try:
        return URL.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}")
    return value


def _epilog() -> str:
    codes = "\n".join(f"  {code:3}  {meaning}" for code, meaning in EXIT_CODES.items())
    return f"exit codes (as curl's):\n{codes}"


def add_client_parser(commands: Any) -> None:
    """Add ``hface client`` to the subparsers ``commands`` (``add_subparsers()``)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "client",
        help="make an HTTP request (like curl)",
        description=(
            "Make one HTTP request and write the response body to stdout, as bytes\n"
            "and as it arrives. Errors are one line on stderr, with curl's exit codes."
        ),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", type=_url, metavar="URL", help="http:// or https:// URL")
    versions = parser.add_mutually_exclusive_group()
    for flag, protocol in (
        ("--http1", "http1"),
        ("--http2", "http2"),
        ("--http3", "http3"),
    ):
        versions.add_argument(
            flag,
            dest="protocol",
            action="store_const",
            const=protocol,
            help=f"speak {_PROTOCOL_NAMES[protocol]} only",
        )
    parser.set_defaults(protocol="tcp")
    parser.add_argument(
        "-X",
        "--request",
        dest="method",
        metavar="METHOD",
        help="the method (default: GET, or POST with -d)",
    )
    parser.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="add a request header field (repeatable)",
    )
    parser.add_argument(
        "-d",
        "--data",
        action="append",
        default=[],
        metavar="DATA",
        help=(
            "send DATA as the body (POST unless -X says otherwise); @FILE sends "
            "the file's bytes as they are, @- reads stdin; repeated -d are joined by '&'"
        ),
    )
    parser.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in FILE (PEM)")
    parser.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify the server's certificate"
    )
    parser.add_argument(
        "-x", "--proxy", metavar="URL", help="tunnel through the HTTP proxy at URL (CONNECT)"
    )
    proxy_versions = parser.add_mutually_exclusive_group()
    for flag, protocol in (
        ("--proxy-http1", "http1"),
        ("--proxy-http2", "http2"),
        ("--proxy-http3", "http3"),
    ):
        proxy_versions.add_argument(
            flag,
            dest="proxy_protocol",
            action="store_const",
            const=protocol,
            help=f"speak {_PROTOCOL_NAMES[protocol]} to the proxy",
        )
    parser.set_defaults(proxy_protocol=None)
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help=(
            "write the body to FILE ('-': stdout), with a progress bar when stderr "
            "is a terminal (and no -v)"
        ),
    )
    parser.add_argument(
        "-i", "--include", action="store_true", help="write the status line and headers first"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="write every hface event to stderr as it happens, timed from the start",
    )
    parser.add_argument(
        "-f", "--fail", action="store_true", help="exit 22, writing no body, on a status >= 400"
    )
    parser.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="time to connect, TLS included (default: %(default)s)",
    )
    parser.add_argument(
        "-m",
        "--max-time",
        type=_seconds,
        metavar="SECONDS",
        help="time for the whole request (default: no limit)",
    )
    parser.add_argument(
        "--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop"
    )
