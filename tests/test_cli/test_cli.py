"""The ``hface`` command, run as a user would: a subprocess, its output, its exit code."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from hface.common import ClientTLSConfig
from hface.connections import HTTPConnection, HTTPOverQUICOpener, HTTPOverTCPOpener
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived
from hface.protocols.http1 import HTTP1ClientFactory
from hface.protocols.http2 import HTTP2ClientFactory
from tests.helpers.peers import free_port

STARTUP_TIMEOUT = 20.0


def hface(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hface ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "hface", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose data directory is empty."""
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}


@dataclass(kw_only=True)
class Server:
    """A running ``hface server`` and its output."""

    process: subprocess.Popen[bytes]
    log_file: Path

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log_file.read_text(errors="replace")


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def hface_server(*args: str, env: dict[str, str], port: int, log_file: Path) -> Iterator[Server]:
    """Run ``hface server ARGS`` until ``port`` accepts; kill it afterwards."""
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hface", "server", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = Server(process=process, log_file=log_file)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            # The banner comes once every endpoint is bound, at once (one flush).
            while not (_accepts(port) and "hface serving" in server.output()):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"hface server did not start:\n{server.output()}")
                time.sleep(0.05)
            yield server
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


async def _fetch(connection: HTTPConnection) -> bytes:
    async with connection:
        stream_id = connection.get_available_stream_id()
        await connection.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", b"/"),
            ],
            end_stream=True,
        )
        body = b""
        while True:
            event = await connection.receive_event()
            if isinstance(event, DataReceived):
                body += event.data
                if event.end_stream:
                    return body
            elif isinstance(event, HeadersReceived) and event.end_stream:
                return body
            elif isinstance(event, ConnectionTerminated):
                raise AssertionError(event)


async def _fetch_every_version(port: int, cafile: str) -> dict[str, bytes]:
    tls = ClientTLSConfig(cafile=cafile)
    address = ("127.0.0.1", port)
    bodies = {}
    with anyio.fail_after(20):
        for name, factory in (("1.1", HTTP1ClientFactory()), ("2", HTTP2ClientFactory())):
            opener = HTTPOverTCPOpener(factory, tls_config=tls)
            bodies[name] = await _fetch(await opener(address, tls=True, server_name="localhost"))
        quic = HTTPOverQUICOpener(tls_config=tls)
        bodies["3"] = await _fetch(await quic(address, server_name="localhost"))
    return bodies


def test_version(env: dict[str, str]) -> None:
    from importlib.metadata import version

    result = hface("--version", env=env)
    assert result.returncode == 0
    assert result.stdout.strip() == f"hface {version('hface-cli')}"


@pytest.mark.parametrize("command", [[], ["server"], ["certs"]])
def test_help(command: list[str], env: dict[str, str]) -> None:
    result = hface(*command, "--help", env=env)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: hface")


def test_certs_writes_what_the_examples_expect(tmp_path: Path, env: dict[str, str]) -> None:
    result = hface("certs", str(tmp_path / "certs"), env=env)
    assert result.returncode == 0, result.stderr
    context = ssl.create_default_context(cafile=str(tmp_path / "certs" / "cacert.pem"))
    context.load_cert_chain(tmp_path / "certs" / "cert.pem", tmp_path / "certs" / "key.pem")


def test_server_serves_every_version_with_a_development_ca(
    tmp_path: Path, env: dict[str, str]
) -> None:
    port = free_port()
    endpoint = f"https://127.0.0.1:{port}"
    with hface_server(endpoint, env=env, port=port, log_file=tmp_path / "log") as server:
        match = re.search(r"Try: curl --cacert (\S+) (\S+)", server.output())
        assert match, server.output()
        cafile = match.group(1)
        assert cafile.startswith(env["XDG_DATA_HOME"])
        assert match.group(2) == f"{endpoint}/"
        bodies = anyio.run(_fetch_every_version, port, cafile)
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=15) == 0
    for http_version, body in bodies.items():
        assert body == f"Hello from hface! (HTTP/{http_version})\n".encode(), body
    output = server.output()
    assert "Traceback" not in output
    assert '"GET / HTTP/3" 200' in output  # the access log


def test_server_reuses_its_development_ca(tmp_path: Path, env: dict[str, str]) -> None:
    first = free_port()
    with hface_server(f"https://127.0.0.1:{first}", env=env, port=first, log_file=tmp_path / "1"):
        pass
    second = free_port()
    with hface_server(
        f"https://127.0.0.1:{second}", env=env, port=second, log_file=tmp_path / "2"
    ) as server:
        assert "Made a development CA" not in server.output()


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("hface")]
    assert len(lines) == 1, result.stderr
    return lines[0]


MISTAKES: list[tuple[list[str], int, str]] = [
    (["server", "hface.server.examples.hello", "ftp://x:1"], 2, "the scheme must be http"),
    (["server", "hface.server.examples.hello", "https://localhost"], 2, "a port is required"),
    (["server", "no_such_module_xyz"], 1, "cannot import 'no_such_module_xyz'"),
    (["server", "hface.server:NoSuchApp"], 1, "has no attribute 'NoSuchApp'"),
    (["server", "--cert", "/nonexistent.pem", "hface.server.examples.hello"], 1, "cannot read"),
    (["server", "--bogus"], 2, "unrecognized arguments: --bogus"),
    (["nonsense"], 2, "invalid choice: 'nonsense'"),
]


@pytest.mark.parametrize(("args", "code", "message"), MISTAKES)
def test_mistakes_get_one_line(
    args: list[str], code: int, message: str, env: dict[str, str]
) -> None:
    result = hface(*args, env=env)
    assert result.returncode == code, result.stderr
    assert message in _one_line_error(result)


def test_port_in_use_is_one_line(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = hface("server", "hface.server.examples.hello", f"http://127.0.0.1:{port}", env=env)
    assert result.returncode == 1
    line = _one_line_error(result)
    assert str(port) in line
