"""``hface client -w FORMAT``: curl's ``--write-out`` variables, written after each transfer.

The format is curl's: ``%{name}`` is a variable, ``%header{name}`` a field
of the last response, ``%%`` a percent sign; ``\\n``, ``\\r`` and ``\\t``
are a newline, a carriage return and a tab, and any other character is
itself. ``%{stdout}`` and ``%{stderr}`` switch where the rest goes;
``%{onerror}`` drops the rest unless the transfer failed. ``@FILE`` reads
the format from a file (``@-``: stdin).

A :class:`TransferInfo` collects what one transfer (one URL, its
redirects and retries included) did; :func:`write_out` renders a parsed
:class:`WriteOutFormat` with it. Times are in seconds from the start of
the transfer, as curl's: the name lookup, the TCP connect and the TLS (or
QUIC) handshake of the last connection the transfer opened (0 if it opened
none: it reused one), the moment the last request was ready to go
(``time_pretransfer``) and its response began (``time_starttransfer``),
and the end.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, TextIO

#: ``%{name}``, ``%header{name}``, ``%%`` and the escapes, in a format.
_TOKENS: Final = re.compile(r"%\{([^}]*)\}|%header\{([^}]*)\}|%%|\\[nrt]")
_ESCAPES: Final = {"\\n": "\n", "\\r": "\r", "\\t": "\t"}


@dataclass(kw_only=True)
class TransferInfo:
    """What one transfer did, for ``-w`` (see the module docstring for the times)."""

    #: The URL as given (``%{url}``), and its position among them (``%{urlnum}``).
    url: str
    urlnum: int = 0
    #: The last URL fetched.
    url_effective: str = ""
    method: str = "GET"
    #: The last response's status and HTTP version; 0 and "0" before any response.
    http_code: int = 0
    http_version: str = "0"
    #: Header fields of the last response (names lower-case).
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: Bytes of the status lines and header blocks received, as curl counts them.
    size_header: int = 0
    #: Bytes of body received (before any decoding) and sent.
    size_download: int = 0
    size_upload: int = 0
    #: Bytes of the request heads sent (as HTTP/1.1 text).
    size_request: int = 0
    num_redirects: int = 0
    num_connects: int = 0
    #: Where a redirect not followed points to.
    redirect_url: str = ""
    remote_ip: str = ""
    remote_port: int = 0
    local_ip: str = ""
    local_port: int = 0
    #: The exit code and the error message, once known.
    exitcode: int = 0
    errormsg: str = ""
    #: The file the body went to (``-o``, ``-O``), if any.
    filename_effective: str = ""
    #: ``time.perf_counter()`` at the start, and seconds from it to each moment.
    started: float = field(default_factory=time.perf_counter)
    time_namelookup: float = 0.0
    time_connect: float = 0.0
    time_appconnect: float = 0.0
    time_pretransfer: float = 0.0
    time_starttransfer: float = 0.0
    time_redirect: float = 0.0
    time_total: float = 0.0

    def elapsed(self) -> float:
        """Seconds since the start of the transfer."""
        return time.perf_counter() - self.started

    def mark(self, moment: str) -> None:
        """Set ``time_<moment>`` to now."""
        setattr(self, f"time_{moment}", self.elapsed())

    @property
    def content_type(self) -> str:
        """The last response's Content-Type, or empty."""
        return self.header("content-type")

    @property
    def scheme(self) -> str:
        """The scheme of the last URL, upper case as curl's."""
        return self.url_effective.partition(":")[0].upper()

    def header(self, name: str) -> str:
        """The values of a field of the last response, joined by ``, ``; empty if absent."""
        wanted = name.strip().lower().encode("latin-1", "replace")
        values = [value.decode("latin-1") for key, value in self.headers if key == wanted]
        return ", ".join(values)

    def speed(self, size: int) -> int:
        """Bytes per second over the whole transfer."""
        return int(size / self.time_total) if self.time_total > 0 else 0


#: The variables, and how each is written.
_VARIABLES: Final[dict[str, Callable[[TransferInfo], str | int | float | None]]] = {
    "content_type": lambda info: info.content_type or None,
    "errormsg": lambda info: info.errormsg or None,
    "exitcode": lambda info: info.exitcode,
    "filename_effective": lambda info: info.filename_effective or None,
    "http_code": lambda info: info.http_code,
    "http_version": lambda info: info.http_version,
    "local_ip": lambda info: info.local_ip,
    "local_port": lambda info: info.local_port,
    "method": lambda info: info.method,
    "num_connects": lambda info: info.num_connects,
    "num_headers": lambda info: len(info.headers),
    "num_redirects": lambda info: info.num_redirects,
    "redirect_url": lambda info: info.redirect_url or None,
    "remote_ip": lambda info: info.remote_ip,
    "remote_port": lambda info: info.remote_port,
    "response_code": lambda info: info.http_code,
    "scheme": lambda info: info.scheme,
    "size_download": lambda info: info.size_download,
    "size_header": lambda info: info.size_header,
    "size_request": lambda info: info.size_request,
    "size_upload": lambda info: info.size_upload,
    "speed_download": lambda info: info.speed(info.size_download),
    "speed_upload": lambda info: info.speed(info.size_upload),
    "time_appconnect": lambda info: info.time_appconnect,
    "time_connect": lambda info: info.time_connect,
    "time_namelookup": lambda info: info.time_namelookup,
    "time_pretransfer": lambda info: info.time_pretransfer,
    "time_redirect": lambda info: info.time_redirect,
    "time_starttransfer": lambda info: info.time_starttransfer,
    "time_total": lambda info: info.time_total,
    "url": lambda info: info.url,
    "url_effective": lambda info: info.url_effective,
    "urlnum": lambda info: info.urlnum,
}

#: What switches the output or filters it, rather than writing something.
_DIRECTIVES: Final = frozenset({"stdout", "stderr", "onerror", "json"})

#: The names ``-w`` knows, for the help and the docs.
VARIABLE_NAMES: Final = tuple(sorted({*_VARIABLES, *_DIRECTIVES}))


def _text(value: str | int | float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


#: Variables written other than as their JSON value: the status in three digits ("000").
_AS_TEXT: Final[dict[str, Callable[[TransferInfo], str]]] = {
    "http_code": lambda info: f"{info.http_code:03d}",
    "response_code": lambda info: f"{info.http_code:03d}",
}


def _json(info: TransferInfo) -> str:
    values = {name: render(info) for name, render in sorted(_VARIABLES.items())}
    return json.dumps(values, separators=(",", ":"))


@dataclass(frozen=True)
class WriteOutFormat:
    """A parsed ``-w`` format: text, variables and directives in order.

    :param pieces: ``("text", s)``, ``("var", name)``, ``("header", name)``
        and ``("directive", name)`` items.
    """

    pieces: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str, *, warn: Callable[[str], None]) -> WriteOutFormat:
        """Parse ``text``; unknown variables are warned about (as curl does) and write nothing."""
        pieces: list[tuple[str, str]] = []
        position = 0
        for match in _TOKENS.finditer(text):
            if match.start() > position:
                pieces.append(("text", text[position : match.start()]))
            position = match.end()
            token = match.group(0)
            if token == "%%":
                pieces.append(("text", "%"))
            elif token in _ESCAPES:
                pieces.append(("text", _ESCAPES[token]))
            elif match.group(2) is not None:
                pieces.append(("header", match.group(2)))
            else:
                name = match.group(1)
                if name in _DIRECTIVES:
                    pieces.append(("directive", name))
                elif name in _VARIABLES:
                    pieces.append(("var", name))
                else:
                    warn(f"unknown --write-out variable: '{name}'")
        if position < len(text):
            pieces.append(("text", text[position:]))
        return cls(tuple(pieces))

    def render(self, info: TransferInfo) -> Iterator[tuple[str, str]]:
        """Yield ``(stream, text)`` pieces: stream is ``"stdout"`` or ``"stderr"``."""
        stream = "stdout"
        for kind, value in self.pieces:
            if kind == "text":
                yield stream, value
            elif kind == "header":
                yield stream, info.header(value)
            elif kind == "var":
                as_text = _AS_TEXT.get(value)
                yield stream, as_text(info) if as_text else _text(_VARIABLES[value](info))
            elif value in ("stdout", "stderr"):
                stream = value
            elif value == "onerror":
                if not info.exitcode:
                    return
            elif value == "json":
                yield stream, _json(info)


def write_out(
    format: WriteOutFormat,
    info: TransferInfo,
    *,
    stdout: Callable[[str], None],
    stderr: TextIO = sys.stderr,
) -> None:
    """Write ``format`` rendered for ``info``: stdout's pieces through ``stdout``."""
    for stream, text in format.render(info):
        if stream == "stdout":
            stdout(text)
        else:
            stderr.write(text)
    stderr.flush()
