"""The CLI's one-line errors and exit codes, and what building its parser imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from hface.cli._errors import CommandError, exit_code, report
from hface.client.errors import ConnectError, ConnectionLostError
from hface.errors import TerminationReason, TransportError, TransportErrorKind

ORIGIN = "https://example.com:443"


def test_a_failed_handshake_is_35_by_its_kind_not_its_words() -> None:
    handshake = ConnectError("anything", origin=ORIGIN, kind=TransportErrorKind.TLS_HANDSHAKE)
    assert exit_code(handshake) == 35
    # A QUIC handshake that failed, under the pool's ConnectError.
    refused = ConnectError("cannot connect", origin=ORIGIN)
    refused.__cause__ = TransportError(
        "QUIC transport error 0x128: handshake failure",
        kind=TransportErrorKind.TLS_HANDSHAKE,
        termination=TerminationReason.TLS_FAILURE,
        transport_error_code=0x128,
    )
    assert exit_code(refused) == 35
    # Words in a message say nothing.
    assert exit_code(ConnectError("the TLS handshake failed", origin=ORIGIN)) == 7
    closed = TransportError("QUIC transport error 0x128", kind=TransportErrorKind.CLOSED)
    assert exit_code(closed) == 7


def test_a_lost_connection_is_56() -> None:
    lost = ConnectionLostError("ended", origin=ORIGIN, termination=TerminationReason.TRANSPORT_LOST)
    assert lost.kind is TransportErrorKind.CLOSED
    assert exit_code(lost) == 56


@pytest.mark.parametrize(
    ("code", "command", "line"),
    [
        (1, None, "hface: error: it broke\n"),
        (2, "client", "hface client: error: it broke\n"),
        (7, "client", "hface: error: it broke\n"),
    ],
)
def test_report_writes_one_line(
    code: int, command: str | None, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report(CommandError("it broke", code), command=command) == code
    assert capsys.readouterr().err == line


def test_building_the_parser_imports_no_command() -> None:
    """``hface --help`` (and every command's start) imports only what the parser needs."""
    code = textwrap.dedent(
        """
        import sys
        from hface.cli._main import build_parser

        build_parser()
        heavy = ("hface.server", "hface.client", "cryptography", "anyio", "importlib.metadata")
        print(" ".join(name for name in heavy if name in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""
