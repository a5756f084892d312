"""``examples/client.py`` and ``examples/proxy_client.py`` run as they are.

Each example runs as a subprocess in a temporary directory holding the
``certs/`` the example servers read (made by ``hface certs certs``, as the
README says), against
``examples/server.py`` (port 5443) and ``examples/proxy_server.py`` (port
6443). The client examples trust ``certs/cacert.pem`` through their
``tls_config.cafile``, as the seed page has them, and run with no
environment variable set. The ports are
fixed: servers run one test at a time and each waits until its port is free.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Final

import pytest
import trustme

from hface.server.examples.hello import GREETING
from tests.helpers.network import wait_until_port_is_free

EXAMPLES: Final = Path(__file__).resolve().parents[2] / "examples"

#: The ports of the example server and the example proxy.
SERVER_PORT: Final = 5443
PROXY_PORT: Final = 6443

#: Seconds a server may take to start (or a previous one to free its port).
STARTUP_TIMEOUT: Final = 15.0
#: OpenSSL's variables, which could make the examples trust the test CA without asking.
_TLS_VARIABLES: Final = frozenset({"SSL_CERT_FILE", "SSL_CERT_DIR"})

#: Seconds a client example may run.
CLIENT_TIMEOUT: Final = 30.0

# A process started with SIGINT ignored passes that on to its children;
# this launcher puts the default handler back and runs the file unchanged.
_RUN_WITH_SIGINT = (
    "import runpy, signal, sys; "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_path(sys.argv[1], run_name='__main__')"
)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory with ``certs/`` made as the README says: ``hface certs certs``."""
    subprocess.run(
        [sys.executable, "-m", "hface", "certs", "certs"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    for name in ("cacert.pem", "cert.pem", "key.pem"):
        assert (tmp_path / "certs" / name).is_file()
    return tmp_path


def _python(script: str) -> list[str]:
    path = str(EXAMPLES / script)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return [sys.executable, "-c", _RUN_WITH_SIGINT, path]
    return [sys.executable, path]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@contextmanager
def example_server(script: str, port: int, workdir: Path) -> Iterator[Path]:
    """Run ``script`` in ``workdir`` until it accepts on ``port``; yield its log; kill it after."""
    if not (EXAMPLES / script).exists():
        pytest.skip(f"examples/{script} does not exist yet")
    wait_until_port_is_free(port, timeout=STARTUP_TIMEOUT)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    log_file = workdir / f"{script}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            _python(script),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            while not _accepts(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    output = log_file.read_text(errors="replace")
                    pytest.fail(f"examples/{script} did not start:\n{output}")
                time.sleep(0.05)
            yield log_file
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
            process.wait()


def run_client(script: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run a client example in ``workdir`` as a user would: no environment variable set.

    The examples trust ``certs/cacert.pem`` themselves (``tls_config.cafile``);
    OpenSSL's variables are removed, so that the system's CAs are all they
    would find without it.
    """
    env = {name: value for name, value in os.environ.items() if name not in _TLS_VARIABLES}
    return subprocess.run(
        _python(script),
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )


def _report(client: subprocess.CompletedProcess[str], *logs: Path) -> str:
    servers = "\n".join(f"{log.name}:\n{log.read_text(errors='replace')}" for log in logs)
    return f"client stdout:\n{client.stdout}\nclient stderr:\n{client.stderr}\n{servers}"


def test_client_example(workdir: Path) -> None:
    with example_server("server.py", SERVER_PORT, workdir) as server_log:
        client = run_client("client.py", workdir)
    report = _report(client, server_log)
    assert client.returncode == 0, report
    lines = client.stdout.splitlines()
    # The default client lets ALPN choose: HTTP/2 with hface's server.
    assert lines[:2] == ["200", f"{GREETING} (HTTP/2)"], report


def test_proxy_client_example(workdir: Path) -> None:
    with ExitStack() as stack:
        server_log = stack.enter_context(example_server("server.py", SERVER_PORT, workdir))
        proxy_log = stack.enter_context(example_server("proxy_server.py", PROXY_PORT, workdir))
        client = run_client("proxy_client.py", workdir)
    report = _report(client, server_log, proxy_log)
    assert client.returncode == 0, report
    # Raw HTTP/1.1 through the tunnel (no ALPN, so the server speaks HTTP/1.1).
    assert client.stdout.startswith("HTTP/1.1 200 "), report
    assert client.stdout.rstrip("\n").endswith(f"{GREETING} (HTTP/1.1)"), report


def test_client_example_without_trusted_ca(workdir: Path) -> None:
    # certs/cacert.pem names another CA than the server's: a clear verification error.
    with example_server("server.py", SERVER_PORT, workdir) as server_log:
        trustme.CA().cert_pem.write_to_path(str(workdir / "certs" / "cacert.pem"))
        client = run_client("client.py", workdir)
    assert client.returncode != 0, _report(client, server_log)
    assert "TLSVerificationError: cannot verify the TLS certificate of https://localhost:5443" in (
        client.stderr
    ), _report(client, server_log)
