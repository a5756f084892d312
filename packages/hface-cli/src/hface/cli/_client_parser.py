"""The options of ``hface client``: curl's spelling, apart from the command itself.

Apart so that building the parser of ``hface`` (for any command, ``hface
server`` too) does not import :mod:`hface.client`, which a server would keep
in memory for nothing: versions are stored as :class:`hface.client.ClientProtocol`
values (``"http1"``), URLs as text, checked when the command runs.

Of an option it does not know, ``hface client`` says what curl says
(``option --foo: is unknown``, exit 2: :func:`unknown_option`), whatever
follows it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any, Final, NoReturn

from ._errors import EXIT_CODES, CommandParser, curl_usage_error

#: What each ``ClientProtocol`` value speaks (the parser stores the values).
_PROTOCOL_NAMES: Final = {
    "tcp": "HTTP/2 or HTTP/1.1 as ALPN chooses",
    "http1": "HTTP/1.1",
    "http2": "HTTP/2",
    "http3": "HTTP/3",
}

#: ``-o`` and ``-O`` share one list, in the order given; this stands for ``-O``.
REMOTE_NAME: Final = "\0remote-name"


#: The name ``hface client``'s errors begin with (argparse's ``prog``).
_PROG: Final = "hface client"


def unknown_option(extras: Sequence[str]) -> NoReturn:
    """Say of the first unknown option what curl says (``option --foo: is unknown``), exit 2.

    ``hface client`` takes every other word for a URL, so whatever follows
    an unknown option (its value, say) is not what is wrong.
    """
    options = [extra for extra in extras if extra.startswith("-") and extra != "-"]
    curl_usage_error(_PROG, f"option {(options or list(extras))[0]}: is unknown")


def seconds(text: str) -> float:
    """An ``argparse`` type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}")
    return value


def _seconds_or_zero(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}")
    return value


def _count(text: str) -> int:
    if not text.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}")
    return int(text)


class _DataAction(argparse.Action):
    """``-d`` and its kin: ``(kind, text)`` appended in order to one list."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        kind = self.const
        pieces = list(getattr(namespace, self.dest) or [])
        pieces.append((kind, values))
        setattr(namespace, self.dest, pieces)


def _epilog() -> str:
    codes = "\n".join(f"  {code:3}  {meaning}" for code, meaning in EXIT_CODES.items())
    return f"exit codes (as curl's):\n{codes}"


def add_client_parser(commands: Any, summary: str) -> CommandParser:
    """Add ``hface client`` to the subparsers ``commands`` (``add_subparsers()``); return it.

    :param summary: what ``hface --help`` says of it.
    """
    parser: CommandParser = commands.add_parser(
        "client",
        help=summary,
        description=(
            "Fetch each URL and write the response body to stdout (or -o FILE), as\n"
            "bytes and as it arrives, with curl's options. Errors are one line on\n"
            "stderr, with curl's exit codes."
        ),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.curl_errors = True
    parser.add_argument(
        "urls",
        nargs="*",
        metavar="URL",
        help="http:// or https:// URL; or one ws:// or wss:// URL: a WebSocket on stdin/stdout",
    )
    parser.add_argument(
        "--url", dest="more_urls", action="append", default=[], metavar="URL", help="one more URL"
    )
    _add_request_options(parser)
    _add_body_options(parser.add_argument_group("request body"))
    _add_output_options(parser.add_argument_group("output"))
    _add_connection_options(parser)
    _add_retry_options(parser.add_argument_group("retries and parallel transfers"))
    return parser


def _add_request_options(parser: argparse.ArgumentParser) -> None:
    versions = parser.add_mutually_exclusive_group()
    for flags, protocol, extra in (
        (("--http1.1", "--http1"), "http1", ""),
        (("--http2", "--http2-prior-knowledge"), "http2", " (prior knowledge on http://)"),
        (("--http3", "--http3-only"), "http3", ""),
    ):
        versions.add_argument(
            *flags,
            dest="protocol",
            action="store_const",
            const=protocol,
            help=f"speak {_PROTOCOL_NAMES[protocol]} only{extra}",
        )
    parser.set_defaults(protocol="tcp")
    parser.add_argument(
        "-X",
        "--request",
        dest="method",
        metavar="METHOD",
        help="the method of every request (default: GET, POST with -d/-F, PUT with -T)",
    )
    parser.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="add a header field ('Name:' removes a default one, 'Name;' sends it empty; "
        "'Host: x' sets the authority); @FILE reads fields from a file (repeatable)",
    )
    parser.add_argument("-A", "--user-agent", metavar="NAME", help="the User-Agent field")
    parser.add_argument("-e", "--referer", metavar="URL", help="the Referer field")
    parser.add_argument(
        "-b",
        "--cookie",
        dest="cookies",
        action="append",
        default=[],
        metavar="DATA|FILE",
        help="send 'name=value; ...' as it is, or the cookies of a Netscape cookie FILE "
        "(which turns the cookie engine on: cookies set by responses are sent back)",
    )
    parser.add_argument(
        "-c",
        "--cookie-jar",
        metavar="FILE",
        help="write every cookie to FILE (Netscape format; '-': stdout) at the end",
    )
    parser.add_argument(
        "-u", "--user", metavar="USER:PASSWORD", help="credentials (Basic, or Digest with --digest)"
    )
    parser.add_argument("--basic", action="store_true", help="use Basic for -u (the default)")
    parser.add_argument("--digest", action="store_true", help="use Digest for -u")
    parser.add_argument("--oauth2-bearer", metavar="TOKEN", help="send a Bearer token")
    parser.add_argument(
        "-L",
        "--location",
        dest="follow",
        action="store_true",
        help="follow redirects (the body of the last response is written)",
    )
    parser.add_argument(
        "--max-redirs",
        type=_count,
        default=50,
        metavar="N",
        help="redirects followed at most (-1: no limit; default: %(default)s)",
    )
    parser.add_argument(
        "--location-trusted",
        action="store_true",
        help="send credentials and -H cookies to every host a redirect goes to",
    )
    for status in (301, 302, 303):
        parser.add_argument(
            f"--post{status}",
            dest="keep_post",
            action="append_const",
            const=status,
            default=[],
            help=f"keep a POST a POST after a {status} redirect",
        )
    parser.add_argument(
        "--compressed",
        action="store_true",
        help="ask for a compressed response (gzip, deflate, br, zstd) and decompress it",
    )


def _add_body_options(group: argparse._ArgumentGroup) -> None:
    for flags, kind, text in (
        (
            ("-d", "--data", "--data-ascii"),
            "data",
            "send DATA (POST); @FILE sends the file's bytes as they are, @- stdin; "
            "repeated pieces are joined by '&'",
        ),
        (("--data-binary",), "data-binary", "as -d"),
        (("--data-raw",), "data-raw", "as -d, with no @FILE"),
        (
            ("--data-urlencode",),
            "data-urlencode",
            "as -d, URL-encoded: 'content', 'name=content', '@FILE' or 'name@FILE'",
        ),
        (
            ("--json",),
            "json",
            "send JSON (POST, Content-Type and Accept application/json); pieces are joined",
        ),
    ):
        group.add_argument(
            *flags,
            dest="data",
            action=_DataAction,
            const=kind,
            default=[],
            metavar="DATA",
            help=text,
        )
    group.add_argument(
        "-F",
        "--form",
        dest="form",
        action=_DataAction,
        const="form",
        default=[],
        metavar="NAME=CONTENT",
        help="a multipart/form-data part: name=value, name=@FILE[;type=T][;filename=N], "
        "name=<FILE (the file's content as the value)",
    )
    group.add_argument(
        "--form-string",
        dest="form",
        action=_DataAction,
        const="form-string",
        metavar="NAME=VALUE",
        help="a part whose value is taken as it is",
    )
    group.add_argument(
        "-G", "--get", action="store_true", help="send -d's data in the URL's query, with GET"
    )
    group.add_argument(
        "-T",
        "--upload-file",
        metavar="FILE",
        help="upload FILE with PUT, streamed ('-': stdin); a URL ending in / gets its name",
    )


def _add_output_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "-o",
        "--output",
        dest="outputs",
        action="append",
        default=[],
        metavar="FILE",
        help="write the body to FILE ('-': stdout), one -o per URL; a progress bar shows "
        "when stderr is a terminal (no -s, no -v)",
    )
    group.add_argument(
        "-O",
        "--remote-name",
        dest="outputs",
        action="append_const",
        const=REMOTE_NAME,
        help="write the body to a file named as the URL's last path segment",
    )
    group.add_argument("--remote-name-all", action="store_true", help="-O for every URL without -o")
    group.add_argument("--output-dir", metavar="DIR", help="put -o and -O files in DIR")
    group.add_argument(
        "--create-dirs", action="store_true", help="make the directories -o files need"
    )
    group.add_argument(
        "-i", "--include", action="store_true", help="write the status line and headers first"
    )
    group.add_argument(
        "-I", "--head", action="store_true", help="send HEAD; write the status line and headers"
    )
    group.add_argument(
        "-D", "--dump-header", metavar="FILE", help="write every response's head to FILE"
    )
    group.add_argument(
        "-w",
        "--write-out",
        metavar="FORMAT",
        help="write FORMAT after each transfer: %%{http_code}, %%{time_total}... "
        "(see the docs); @FILE reads it from a file",
    )
    group.add_argument(
        "-s", "--silent", action="store_true", help="no progress bar, no error messages"
    )
    group.add_argument(
        "-S", "--show-error", action="store_true", help="with -s, still write errors"
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="write every hface event to stderr as it happens, timed from the start",
    )
    group.add_argument(
        "-f", "--fail", action="store_true", help="exit 22, writing no body, on a status >= 400"
    )
    group.add_argument(
        "--fail-with-body",
        action="store_true",
        help="exit 22 on a status >= 400, after writing the body",
    )


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connections and TLS")
    group.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST:PORT:ADDR[,ADDR]",
        help="connect to ADDR for HOST and PORT ('*': any port), without a lookup",
    )
    group.add_argument(
        "--connect-to",
        action="append",
        default=[],
        metavar="HOST1:PORT1:HOST2:PORT2",
        help="connect to HOST2:PORT2 for HOST1:PORT1 (an empty part is any, or the same)",
    )
    group.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in FILE (PEM)")
    group.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify the server's certificate"
    )
    group.add_argument(
        "--alt-svc",
        metavar="FILE",
        help="follow Alt-Svc to HTTP/3 (QUIC raced against TCP), cached in FILE as curl's",
    )
    group.add_argument(
        "--qlog-dir",
        metavar="DIR",
        help="write a qlog file of each QUIC connection in DIR (default: $QLOGDIR, as curl)",
    )
    group.add_argument("-E", "--cert", metavar="FILE", help="client certificate (PEM)")
    group.add_argument("--key", metavar="FILE", help="the key of --cert, if not in it")
    group.add_argument(
        "-x", "--proxy", metavar="URL", help="tunnel through the HTTP proxy at URL (CONNECT)"
    )
    proxy_versions = group.add_mutually_exclusive_group()
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
    group.add_argument(
        "--connect-timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="time to connect, TLS included (default: %(default)s)",
    )
    group.add_argument(
        "-m",
        "--max-time",
        type=seconds,
        metavar="SECONDS",
        help="time for each transfer (default: no limit)",
    )
    group.add_argument(
        "--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop"
    )
    group.add_argument("-q", "--disable", action="store_true", help=argparse.SUPPRESS)


def _add_retry_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--retry",
        type=_count,
        default=0,
        metavar="N",
        help="retry N times on a timeout or a status of 408, 429, 500, 502, 503 or 504",
    )
    group.add_argument(
        "--retry-delay",
        type=_seconds_or_zero,
        metavar="SECONDS",
        help="wait this long between retries (default: 1 s, doubling each time)",
    )
    group.add_argument(
        "--retry-max-time",
        type=_seconds_or_zero,
        metavar="SECONDS",
        help="retry only within this time from the first attempt",
    )
    group.add_argument(
        "--retry-connrefused", action="store_true", help="retry a refused connection too"
    )
    group.add_argument("--retry-all-errors", action="store_true", help="retry on any error")
    group.add_argument(
        "-Z",
        "--parallel",
        action="store_true",
        help="make the transfers at once (over one connection where the version multiplexes)",
    )
    group.add_argument(
        "--parallel-max",
        type=_count,
        default=50,
        metavar="N",
        help="transfers at once with -Z (default: %(default)s, at most 300)",
    )
    group.add_argument("--parallel-immediate", action="store_true", help=argparse.SUPPRESS)
