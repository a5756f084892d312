"""``examples/custom_server.py`` and ``examples/custom_client.py`` run as they are.

Each runs as a subprocess in a temporary directory holding the ``certs/``
they expect (made with trustme). Both use port 5443 of localhost, so the
tests run one server at a time and wait for it to say "Serving on".
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
import trustme

from tests.helpers.network import wait_until_port_is_free

EXAMPLES: Final = Path(__file__).resolve().parents[1] / "examples"

#: The port both examples use.
PORT: Final = 5443

#: Seconds the server may take to start, and to exit after SIGINT.
STARTUP_TIMEOUT: Final = 15.0
SHUTDOWN_TIMEOUT: Final = 10.0

# A process started with SIGINT ignored (a background job of a
# non-interactive shell, for instance) passes that on to its children, and
# Python then never raises KeyboardInterrupt. This launcher puts the default
# handler back and runs the example file unchanged.
_RUN_WITH_SIGINT = (
    "import runpy, signal, sys; "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_path(sys.argv[1], run_name='__main__')"
)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory with the ``certs/`` the examples read: CA, certificate and key."""
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1", "::1")
    certs = tmp_path / "certs"
    certs.mkdir()
    ca.cert_pem.write_to_path(str(certs / "cacert.pem"))
    for index, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(certs / "cert.pem"), append=index > 0)
    server.private_key_pem.write_to_path(str(certs / "key.pem"))
    return tmp_path


def _python(script: str) -> list[str]:
    path = str(EXAMPLES / script)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return [sys.executable, "-c", _RUN_WITH_SIGINT, path]
    return [sys.executable, path]


@dataclass(kw_only=True)
class Server:
    """The example server process and where its output goes."""

    #: The running process.
    process: subprocess.Popen[bytes]
    #: Its stdout and stderr.
    log_file: Path

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log_file.read_text(errors="replace")

    def interrupt(self) -> int:
        """Send SIGINT (Ctrl-C) and return its exit status.

        :raises AssertionError: if it is still running :data:`SHUTDOWN_TIMEOUT` later.
        """
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the server did not exit within {SHUTDOWN_TIMEOUT}s of SIGINT:\n{self.output()}"
            ) from None


@contextmanager
def example_server(workdir: Path) -> Iterator[Server]:
    """Run ``custom_server.py`` in ``workdir`` until it says "Serving on"; kill it afterwards."""
    wait_until_port_is_free(PORT, timeout=STARTUP_TIMEOUT)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    log_file = workdir / "server.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            _python("custom_server.py"),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = Server(process=process, log_file=log_file)
        try:
            while "Serving on" not in server.output():
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the server did not start:\n{server.output()}")
                time.sleep(0.05)
            yield server
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def test_client_fetches_from_server(workdir: Path) -> None:
    with example_server(workdir) as server:
        client = subprocess.run(
            _python("custom_client.py"),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        status = server.interrupt()
    report = f"client stdout:\n{client.stdout}\nclient stderr:\n{client.stderr}"
    assert client.returncode == 0, report
    assert client.stdout.splitlines() == ["HTTP/2: It works!", "HTTP/3: It works!"], report
    assert status in (0, -signal.SIGINT), server.output()
    output = server.output()
    assert "HTTP/2 connection from" in output
    assert "HTTP/3 connection from" in output


def test_server_stops_quietly_on_ctrl_c(workdir: Path) -> None:
    with example_server(workdir) as server:
        server.interrupt()
    assert "Traceback" not in server.output()
