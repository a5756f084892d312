"""``hface client URL``: one HTTP request from the command line, curl-style.

The body is written to stdout (or ``-o FILE``) as bytes, chunk by chunk as
it arrives, never held whole in memory. ``-v`` writes every hface event of
the exchange to stderr as it happens (see :mod:`hface.cli._trace`).

Errors are one line on stderr, ``hface: error: ...``, and the exit code
says what went wrong, with curl's numbers (:data:`EXIT_CODES` and
``exit_code()``, in ``_errors``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import BinaryIO, Final

import anyio

from hface.client import URL, Client, ClientProtocol, ClientTLSConfig, Origin, Request, Response
from hface.errors import HTTPError

from ._client_parser import _PROTOCOL_NAMES
from ._errors import EXIT_CODES as EXIT_CODES
from ._errors import USAGE, CommandError, report
from ._errors import exit_code as exit_code
from ._progress import ProgressBar
from ._trace import Tracer

# RFC 9110 §5.1: a field name is a token.
_TOKEN: Final = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: Bytes that may not appear in a field value (RFC 9110 §5.5).
_FORBIDDEN_IN_VALUES: Final = frozenset(b"\r\n\0")


@dataclass(kw_only=True)
class _Options:
    url: URL
    method: str
    headers: list[tuple[bytes, bytes]]
    body: bytes | None
    client: Client
    output: str | None
    include: bool
    fail: bool
    max_time: float | None
    proxy: Origin | None = None
    progress: bool = False


def run_client(args: argparse.Namespace) -> int:
    """Run ``hface client`` with parsed ``args``; return the exit code.

    Errors are printed as one line on stderr (usage errors with exit code 2).
    """
    tracer = Tracer(sys.stderr, proxy=bool(args.proxy)) if args.verbose else None
    handler = _LogHandler(tracer)
    root = logging.getLogger()
    # Libraries' warnings (aioquic's, say) become trace lines with -v and
    # are dropped otherwise: the error line says what went wrong.
    root.addHandler(handler)
    try:
        options = _prepare(args)
        anyio.run(_fetch, options, tracer, backend=args.backend)
    except CommandError as error:
        return report(error, command="client")
    finally:
        root.removeHandler(handler)
    return 0


class _LogHandler(logging.Handler):
    """Writes log records as trace lines (``-v``), or drops them."""

    def __init__(self, tracer: Tracer | None) -> None:
        super().__init__(logging.WARNING)
        self._tracer = tracer

    def emit(self, record: logging.LogRecord) -> None:
        if self._tracer is not None:
            with suppress(Exception):
                self._tracer.log(f"log {record.name}: {record.getMessage()}")


def _usage(message: str) -> CommandError:
    return CommandError(message, USAGE)


def _prepare(args: argparse.Namespace) -> _Options:
    url: URL = args.url
    protocol = ClientProtocol(args.protocol)
    if protocol is ClientProtocol.HTTP3 and url.scheme != "https":
        raise _usage(f"--http3 needs an https URL, not {url}")
    headers = [_parse_header(text) for text in args.headers]
    method = args.method or ("POST" if args.data else "GET")
    try:
        Request(method, url, headers=headers)
    except ValueError as error:
        raise _usage(str(error)) from None
    proxy_protocol = ClientProtocol(args.proxy_protocol or ClientProtocol.TCP.value)
    if args.proxy_protocol is not None and not args.proxy:
        raise _usage("--proxy-http1, --proxy-http2 and --proxy-http3 need --proxy")
    if args.proxy and protocol is ClientProtocol.HTTP3:
        raise _usage(
            "--http3 cannot go through a proxy (CONNECT-UDP is not supported); "
            "--proxy-http3 speaks HTTP/3 to the proxy"
        )
    tls_config = ClientTLSConfig(insecure=args.insecure)
    try:
        client = Client(
            tls_config=tls_config,
            protocol=protocol,
            proxy_origin=args.proxy or None,
            proxy_protocol=proxy_protocol,
            connect_timeout=args.connect_timeout,
        )
    except ValueError as error:
        raise _usage(str(error)) from None
    proxy = client.proxy_origin
    if proxy is not None and proxy_protocol is ClientProtocol.HTTP3 and not proxy.tls:
        raise _usage(f"--proxy-http3 needs an https proxy, not {proxy}")
    if args.cacert:
        _check_cafile(args.cacert)
        tls_config.cafile = args.cacert
    body = _read_body(args.data) if args.data else None
    if body is not None and not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", b"application/x-www-form-urlencoded"))
    return _Options(
        url=url,
        method=method,
        headers=headers,
        body=body,
        client=client,
        output=args.output,
        include=args.include,
        fail=args.fail,
        max_time=args.max_time,
        proxy=proxy,
        progress=args.output not in (None, "-") and not args.verbose and sys.stderr.isatty(),
    )


def _parse_header(text: str) -> tuple[bytes, bytes]:
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not _TOKEN.match(name):
        raise _usage(f"invalid header {text!r}: expected 'Name: value'")
    raw_value = os.fsencode(value.strip())
    if _FORBIDDEN_IN_VALUES & set(raw_value):
        raise _usage(f"invalid header {text!r}: CR, LF and NUL are not allowed in a value")
    return name.lower().encode("ascii"), raw_value


def _read_body(data: list[str]) -> bytes:
    parts: list[bytes] = []
    for item in data:
        if item == "@-":
            parts.append(sys.stdin.buffer.read())
        elif item.startswith("@"):
            path = item[1:]
            try:
                parts.append(Path(path).read_bytes())
            except OSError as error:
                reason = error.strerror or str(error)
                raise CommandError(f"cannot read {path}: {reason}", 26) from None
        else:
            parts.append(os.fsencode(item))
    return b"&".join(parts)


def _check_cafile(path: str) -> None:
    try:
        ssl.create_default_context(cafile=path)
    except OSError as error:
        reason = error.strerror or str(error)
        message = f"cannot read the CA certificates in {path}: {reason}"
        raise CommandError(message, 77) from None
    except ssl.SSLError:
        raise CommandError(f"no CA certificates (PEM) in {path}", 77) from None


# -- the request ------------------------------------------------------------------------


async def _fetch(options: _Options, tracer: Tracer | None) -> None:
    client = options.client
    if tracer is not None:
        tracer.install(client)
        origin = options.url.origin
        versions = _PROTOCOL_NAMES[client.protocol.value]
        if client.protocol is ClientProtocol.TCP and not origin.tls:
            versions = "HTTP/1.1"
        through = ""
        if options.proxy is not None:
            proxy_versions = _PROTOCOL_NAMES[client.proxy_protocol.value]
            through = f" through the proxy {options.proxy} ({proxy_versions})"
        tracer.log(f"connecting to {origin} ({versions}){through}")
    request = Request(options.method, options.url, headers=options.headers, content=options.body)
    timeout = math.inf if options.max_time is None else options.max_time
    try:
        with anyio.move_on_after(timeout) as scope:
            async with client.session() as session:
                async with session.stream(request) as response:
                    await _receive(options, response, tracer)
        if scope.cancelled_caught:
            raise CommandError(
                f"timed out after {options.max_time} s (--max-time) on {request.method} "
                f"{request.url}",
                28,
            )
    except CommandError:
        raise
    except (
        HTTPError,
        TimeoutError,
        OSError,
        ValueError,
        NotImplementedError,
        anyio.BrokenResourceError,
        anyio.EndOfStream,
    ) as error:
        raise CommandError(_message(error), exit_code(error, options.proxy)) from None


async def _receive(options: _Options, response: Response, tracer: Tracer | None) -> None:
    if options.fail and response.status >= 400:
        raise CommandError(f"the server answered {response.status} ({options.url})", 22)
    with _open_output(options.output) as output:
        if options.include:
            _write(output, _head(response))
        progress: ProgressBar | None = None
        if options.progress:
            length = response.get_header("content-length")
            total = int(length) if length is not None and length.isdigit() else None
            progress = ProgressBar(sys.stderr, total)
        received = 0
        try:
            async for chunk in response.aiter_bytes():
                _write(output, chunk)
                received += len(chunk)
                if progress is not None:
                    progress.update(len(chunk))
        finally:
            if progress is not None:
                progress.finish()  # ends the line, also before an error line
        if tracer is not None:
            tracer.log(f"response complete: status {response.status}, {received} bytes of body")


def _head(response: Response) -> bytes:
    status_line = f"HTTP/{response.http_version} {response.status}"
    if response.http_version == "1.1":
        with suppress(ValueError):
            status_line += f" {HTTPStatus(response.status).phrase}"
    lines = [status_line.encode(), *(name + b": " + value for name, value in response.headers)]
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n"


@contextmanager
def _open_output(path: str | None) -> Iterator[BinaryIO]:
    """The output stream: stdout's bytes, or FILE opened for writing."""
    if path is None or path == "-":
        yield sys.stdout.buffer
        _flush_stdout()
        return
    try:
        file = open(path, "wb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}", 23) from None
    try:
        yield file
    finally:
        try:
            file.close()
        except OSError as error:
            message = f"cannot write {path}: {error.strerror or error}"
            raise CommandError(message, 23) from None


def _write(output: BinaryIO, data: bytes) -> None:
    try:
        output.write(data)
        if output is sys.stdout.buffer:
            output.flush()  # streamed: the reader sees each chunk as it arrives
    except BrokenPipeError:
        _silence_stdout()
        raise CommandError("cannot write the output: the reader went away", 23) from None
    except OSError as error:
        reason = error.strerror or str(error)
        raise CommandError(f"cannot write the output: {reason}", 23) from None


def _flush_stdout() -> None:
    try:
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise CommandError("cannot write the output: the reader went away", 23) from None


def _silence_stdout() -> None:
    # Python flushes stdout at exit: point it at /dev/null so that a closed
    # pipe does not print a second error.
    with suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


# -- errors ------------------------------------------------------------------------------


def _message(error: BaseException) -> str:
    return str(error) or type(error).__name__
