"""Errors of the ``hface`` commands: one line on stderr, and the exit code.

Every command reports a failure as one line, ``hface: error: ...`` (a
usage error of ``hface client``: ``hface client: error: ...``), never with
a traceback. The commands raise :class:`CommandError` with the message and
the exit code; the dispatcher (``hface server``, ``proxy``, ``certs``) or
``hface client`` itself writes it with :func:`report`.

Exit codes: 2 for usage errors (argparse's), 1 for any other failure of
``hface server``, ``hface proxy`` and ``hface certs``; ``hface client``
exits with curl's numbers (:data:`EXIT_CODES`), which :func:`exit_code`
finds from the type and fields of the exception, never from its message.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final, NoReturn

from hface.errors import TerminationReason, TransportError, TransportErrorKind

if TYPE_CHECKING:
    from hface.client import Origin

#: The exit code of a usage error (argparse's).
USAGE: Final = 2

#: The exit codes of ``hface client``: curl's numbers for the same failures.
EXIT_CODES: Final = {
    0: "success (whatever the HTTP status, unless --fail)",
    1: "any other error; a redirect to a scheme other than http and https",
    2: "bad usage: unknown option, bad URL, conflicting options",
    3: "a redirect's Location is not a URL",
    5: "cannot resolve the proxy's host name",
    6: "cannot resolve the host name",
    7: "cannot connect (refused, unreachable) to the server or the proxy",
    8: "the server broke the HTTP protocol (or does not speak the version asked for)",
    22: "the server answered 400 or more (with --fail)",
    23: "cannot write the output (-o FILE, or stdout)",
    26: "cannot read a file to send (-d @FILE, -F name=@FILE, -T FILE)",
    28: "timed out (--connect-timeout, --max-time, or 30 s without data)",
    35: "the TLS (or QUIC) handshake failed, or ALPN found no protocol both sides speak",
    47: "too many redirects (-L, --max-redirs)",
    56: "the connection broke while receiving, or the proxy refused the tunnel",
    58: "cannot use the client certificate (--cert, --key)",
    60: "the server's certificate cannot be verified (see --cacert, --insecure)",
    61: "the response's Content-Encoding cannot be decoded (--compressed)",
    65: "a body read from stdin cannot be sent again (a 307 or 308 redirect)",
    77: "cannot read the CA certificates (--cacert)",
    92: "the server reset the request's stream (HTTP/2, HTTP/3)",
}


class CommandError(Exception):
    """A failure to report in one line, with the exit code to return.

    :param code: the exit code: 1 by default; ``hface client`` uses :data:`EXIT_CODES`.
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        #: The exit code.
        self.code = code


class CommandParser(argparse.ArgumentParser):
    """The parser of each ``hface`` command.

    With ``curl_errors`` (``hface client``), a usage error is two lines, as
    curl's: what is wrong and where to look, without the long usage.
    """

    curl_errors = False

    def error(self, message: str) -> NoReturn:
        """Exit 2 with ``message`` (see the class docstring)."""
        if not self.curl_errors:
            super().error(message)
        curl_usage_error(self.prog, message)


def curl_usage_error(prog: str, message: str) -> NoReturn:
    """Exit 2 after a usage error as curl writes it: ``message``, then where to look."""
    sys.stderr.write(f"{prog}: error: {message}\nTry '{prog} --help' for more information.\n")
    raise SystemExit(USAGE)


#: The error for ``--backend trio`` where trio is not installed.
TRIO_MISSING: Final = "--backend trio needs trio: pip install trio"


def require_module(name: str, message: str) -> None:
    """Check that the optional dependency ``name`` imports, before anything starts.

    :raises CommandError: with ``message`` (saying what to install) if it does not.
    """
    try:
        importlib.import_module(name)
    except ImportError:
        raise CommandError(message) from None


def message_of(error: BaseException) -> str:
    """The message of an exception, or its type's name if it has none."""
    return str(error) or type(error).__name__


def report(error: CommandError, *, command: str | None = None) -> int:
    """Write ``error`` as one line on stderr; return its exit code.

    :param command: the command to name in a usage error (``hface client: error: ...``).
    """
    prefix = f"hface {command}" if command is not None and error.code == USAGE else "hface"
    sys.stderr.write(f"{prefix}: error: {error}\n")
    sys.stderr.flush()
    return error.code


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _handshake_failed(error: BaseException) -> bool:
    """True for a failed TLS (or QUIC) handshake: the TLS library's error, or hface's kind."""
    import ssl

    if isinstance(error, ssl.SSLError):
        return True
    return isinstance(error, TransportError) and error.kind is TransportErrorKind.TLS_HANDSHAKE


def exit_code(error: BaseException, proxy: Origin | None = None) -> int:
    """The exit code of ``hface client`` for ``error`` (see :data:`EXIT_CODES`).

    :param proxy: the proxy in use, to tell its failures from the origin's.
    """
    # Imported here: hface server and proxy, which import this module, use none of them.
    import socket

    import anyio

    from hface.client import errors as client_errors

    if isinstance(error, TimeoutError):
        return 28
    if isinstance(error, client_errors.TLSVerificationError):
        return 60
    if isinstance(error, client_errors.ProxyError):
        return 56
    if isinstance(error, client_errors.StreamResetError):
        return 92
    if isinstance(error, client_errors.RemoteProtocolError):
        return 8
    if isinstance(error, client_errors.ConnectionLostError):
        # The connection ended because the server broke the protocol (an
        # HTTP/1 answer to HTTP/2, say): curl's "weird server reply".
        if error.termination is TerminationReason.PEER_PROTOCOL_ERROR:
            return 8
        return 56
    if isinstance(error, (anyio.BrokenResourceError, anyio.EndOfStream)):
        return 56
    if isinstance(error, (client_errors.ConnectError, TransportError, OSError)):
        causes = list(_causes(error))
        if any(isinstance(cause, socket.gaierror) for cause in causes):
            to_proxy = proxy is not None and getattr(error, "origin", None) == str(proxy)
            return 5 if to_proxy else 6
        if any(_handshake_failed(cause) for cause in causes):
            return 35
        return 7
    return 1
