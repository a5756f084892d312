"""Each ``hface server`` option, checked from outside: the process, its sockets, its output.

Also the mistakes ``hface server`` must report in one line that
``test_cli.py`` does not cover yet, and the helpers ``test_proxy_command.py``
shares: :func:`hface_process` and :func:`one_line_error`.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
import trustme

from hface.cli._main import LIMIT_DEFAULTS, apply_limit_options, build_parser
from hface.cli._options import QUIC_RETRY_CHOICES, QUIC_RETRY_DEFAULT
from hface.client import Client, ClientProtocol, Request
from hface.common import ClientTLSConfig
from hface.networking import QUICHandshakeLimits, QUICRetry
from hface.server import ASGIServer, ServerLimits, ServerTimeouts
from tests.helpers.certs import TLSFiles
from tests.helpers.peers import free_port, udp_port_is_bound
from tests.helpers.quic_flood import make_initials

#: Seconds ``hface`` may take to start listening.
STARTUP_TIMEOUT = 20.0
#: Seconds ``hface`` may take to exit after SIGTERM with nothing in flight.
EXIT_TIMEOUT = 10.0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose data directory is empty."""
    environment = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    environment.pop("HFACE_PROXY_AUTH", None)
    return environment


def run_hface(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hface ARGS`` to completion (30 seconds at most)."""
    return subprocess.run(
        [sys.executable, "-m", "hface", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``hface...: error:`` line of a failed run; fails on tracebacks or more lines."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("hface")]
    assert len(lines) == 1, result.stderr
    return lines[0]


class Process:
    """A running ``hface`` command and what it printed."""

    def __init__(self, process: subprocess.Popen[bytes], log_file: Path) -> None:
        #: The process.
        self.process = process
        #: Where its stdout and stderr go.
        self.log_file = log_file

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log_file.read_text(errors="replace")

    def stop(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Send SIGTERM and return the exit code; fails if it takes over ``timeout`` seconds."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"hface did not exit {timeout}s after SIGTERM:\n{self.output()}")


def _tcp_accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


#: The first line of the banners of ``hface server`` and ``hface proxy``.
_BANNERS = re.compile(r"^hface (serving|proxy) ", re.MULTILINE)


@contextmanager
def hface_process(
    args: Sequence[str],
    *,
    env: dict[str, str],
    port: int,
    log_file: Path,
    cwd: Path | None = None,
    udp: bool = False,
) -> Iterator[Process]:
    """Run ``hface ARGS`` until 127.0.0.1:``port`` is listening (UDP if ``udp``); kill it after."""
    with log_file.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "hface", *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        process = Process(popen, log_file)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            # The banner comes once every endpoint is bound, at once (one flush).
            while not (
                (udp_port_is_bound("127.0.0.1", port) if udp else _tcp_accepts(port))
                and _BANNERS.search(process.output())
            ):
                if popen.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"hface {' '.join(args)} did not start:\n{process.output()}")
                time.sleep(0.05)
            yield process
        finally:
            if popen.poll() is None:
                popen.kill()
            popen.wait()


def write_module(directory: Path, name: str, source: str) -> None:
    """Write ``name.py`` into ``directory``, for ``hface server name:app`` run there."""
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def get(port: int, *, cafile: str | None = None, path: str = "/") -> tuple[int, bytes]:
    """``GET path`` over HTTP/1.1 (TLS when ``cafile`` is given); return status and body."""
    connection: http.client.HTTPConnection
    if cafile is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        context = ssl.create_default_context(cafile=cafile)
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def alpn(port: int, cafile: str) -> str | None:
    """The protocol the server at 127.0.0.1:``port`` picks from ``h2, http/1.1``."""
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            return tls.selected_alpn_protocol()


def fetch_http3(port: int, cafile: str) -> tuple[int, str, bytes]:
    """``GET /`` over HTTP/3 with hface's client; return status, version and body."""

    async def fetch() -> tuple[int, str, bytes]:
        client = Client(tls_config=ClientTLSConfig(cafile=cafile), protocol=ClientProtocol.HTTP3)
        with anyio.fail_after(20):
            async with client.session() as session:
                response = await session.dispatch(Request("GET", f"https://localhost:{port}/"))
        return response.status, response.http_version, response.content

    return anyio.run(fetch)


def test_cert_and_key_are_served(tmp_path: Path, env: dict[str, str], tls_files: TLSFiles) -> None:
    port = free_port()
    args = ["server", "--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    args += ["--protocol", "tcp", f"https://127.0.0.1:{port}"]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as server:
        # Only a client trusting the test CA gets through: the certificate is the one given.
        assert get(port, cafile=tls_files.ca_file) == (200, b"Hello from hface! (HTTP/1.1)\n")
        assert server.stop() == 0
    assert "Development CA" not in server.output()
    assert not (tmp_path / "data").exists()  # no development certificate was made


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_backend_runs_the_app_on_that_event_loop(
    backend: str, tmp_path: Path, env: dict[str, str]
) -> None:
    write_module(
        tmp_path,
        "loop_app",
        """
        import sniffio

        async def app(scope, receive, send):
            assert scope["type"] == "http"
            body = sniffio.current_async_library().encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
        """,
    )
    port = free_port()
    args = ["server", "loop_app:app", f"http://127.0.0.1:{port}", "--backend", backend]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log", cwd=tmp_path) as server:
        assert get(port) == (200, backend.encode())
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("protocol", "tcp", "udp", "alpn_choice"),
    [
        ("http1", True, False, "http/1.1"),
        ("http2", True, False, "h2"),
        ("tcp", True, False, "h2"),
        ("http3", False, True, None),
    ],
)
def test_protocol_chooses_the_sockets_and_versions(
    protocol: str,
    tcp: bool,
    udp: bool,
    alpn_choice: str | None,
    tmp_path: Path,
    env: dict[str, str],
    tls_files: TLSFiles,
) -> None:
    port = free_port()
    args = ["server", "--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    args += ["--protocol", protocol, f"https://127.0.0.1:{port}"]
    log_file = tmp_path / "log"
    with hface_process(args, env=env, port=port, log_file=log_file, udp=udp) as server:
        assert _tcp_accepts(port) is tcp
        assert udp_port_is_bound("127.0.0.1", port) is udp
        if tcp:
            assert alpn(port, tls_files.ca_file) == alpn_choice
        else:
            status, version, body = fetch_http3(port, tls_files.ca_file)
            assert (status, version, body) == (200, "3", b"Hello from hface! (HTTP/3)\n")
        assert server.stop() == 0


@pytest.mark.parametrize("retry", ["always", "auto"])
def test_quic_retry_reaches_the_quic_listener(
    retry: str, tmp_path: Path, env: dict[str, str], tls_files: TLSFiles
) -> None:
    """``--quic-retry always`` answers a new client's Initial with a Retry; ``auto`` does not.

    (Below the threshold: ``auto`` answers with the server's handshake.)
    The good client follows the Retry.
    """
    port = free_port()
    args = ["server", "--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    args += ["--protocol", "http3", f"https://127.0.0.1:{port}", "--quic-retry", retry]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log", udp=True) as server:
        [initial] = make_initials(1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(10)
            udp.sendto(initial, ("127.0.0.1", port))
            answer = udp.recv(65536)
        kind = ("initial", "0-rtt", "handshake", "retry")[(answer[0] & 0x30) >> 4]
        assert kind == ("retry" if retry == "always" else "initial")
        status, version, _ = fetch_http3(port, tls_files.ca_file)
        assert (status, version) == (200, "3")
        assert server.stop() == 0


@pytest.mark.parametrize("no_access_log", [False, True])
def test_no_access_log_silences_the_access_log(
    no_access_log: bool, tmp_path: Path, env: dict[str, str]
) -> None:
    port = free_port()
    args = ["server", f"http://127.0.0.1:{port}"] + (["--no-access-log"] if no_access_log else [])
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as server:
        assert get(port, path="/logged")[0] == 200
        assert server.stop() == 0
    output = server.output()
    assert ("GET /logged HTTP/1.1" in output) is not no_access_log, output
    assert "received SIGTERM" in output  # the other logs stay


@pytest.mark.parametrize(
    ("level", "debug", "info"),
    [("debug", True, True), ("info", False, True), ("warning", False, False)],
)
def test_log_level(
    level: str, debug: bool, info: bool, tmp_path: Path, env: dict[str, str], tls_files: TLSFiles
) -> None:
    port = free_port()
    args = ["server", "--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    args += ["--protocol", "tcp", "--log-level", level, f"https://127.0.0.1:{port}"]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as server:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # not TLS: the handshake fails (DEBUG)
            sock.recv(100)
        assert get(port, cafile=tls_files.ca_file)[0] == 200  # the access log (INFO)
        assert server.stop() == 0
    output = server.output()
    assert ("TLS handshake failed" in output) is debug, output
    assert ('"GET / HTTP/1.1" 200' in output) is info, output


def test_graceful_timeout_bounds_shutdown(tmp_path: Path, env: dict[str, str]) -> None:
    write_module(
        tmp_path,
        "stuck_app",
        """
        import anyio

        async def app(scope, receive, send):
            assert scope["type"] == "http"
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"started", "more_body": True})
            await anyio.sleep_forever()
        """,
    )
    port = free_port()
    args = ["server", "stuck_app:app", f"http://127.0.0.1:{port}", "--graceful-timeout", "1"]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log", cwd=tmp_path) as server:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            received = b""
            while b"started" not in received:  # the request is in flight
                chunk = sock.recv(1000)
                assert chunk, received
                received += chunk
            start = time.monotonic()
            # The default (10 s) would exceed this bound.
            assert server.stop(timeout=6) == 0
            elapsed = time.monotonic() - start
    assert elapsed >= 0.9, elapsed  # the request got its grace period
    assert "closing 1 connections after the grace period" in server.output()


MISTAKES: list[tuple[list[str], int, str]] = [
    (["server", "--key", "key.pem"], 2, "--key needs --cert"),
    (["server", "--graceful-timeout", "-1"], 2, "invalid number of seconds: '-1'"),
    (["server", "--graceful-timeout", "soon"], 2, "invalid number of seconds: 'soon'"),
    (["server", "--protocol", "http4"], 2, "invalid choice: 'http4'"),
    (["server", "--protocol", "http3", "http://127.0.0.1:1"], 1, "no endpoint to listen on"),
    (["server", "http://host.invalid:8080"], 1, "cannot listen on host.invalid:8080"),
    (["server", "import_error_app"], 1, "cannot import 'import_error_app': needs libfoo"),
    (["server", "broken_app"], 1, "'broken_app' failed: ZeroDivisionError: division by zero"),
    (["server", "--cert", "cert.pem", "--key", "missing.pem"], 1, "cannot read missing.pem"),
    (["server", "--cert", "directory"], 1, "cannot read directory: Is a directory"),
    (["server", "--cert", "garbage.pem"], 1, "cannot use garbage.pem: no PEM certificate"),
    (["server", "--cert", "cert.pem"], 1, "cannot use cert.pem: no PEM private key in it"),
    (["server", "--cert", "cert.pem", "--key", "ca.pem"], 1, "cannot use ca.pem: no PEM private"),
    (["server", "--cert", "cert.pem", "--key", "other.pem"], 1, "other.pem: it is not the key of"),
]


def make_mistakes_directory(directory: Path, tls_files: TLSFiles) -> Path:
    """Make ``directory`` with the files :data:`MISTAKES` name, good and bad."""
    directory.mkdir()
    (directory / "directory").mkdir()
    (directory / "garbage.pem").write_text("not a certificate\n")
    (directory / "cert.pem").write_bytes(Path(tls_files.server_cert_file).read_bytes())
    (directory / "key.pem").write_bytes(Path(tls_files.server_key_file).read_bytes())
    (directory / "ca.pem").write_bytes(Path(tls_files.ca_file).read_bytes())
    other = trustme.CA().issue_cert("localhost")
    other.private_key_pem.write_to_path(str(directory / "other.pem"))
    write_module(directory, "import_error_app", 'raise ImportError("needs libfoo")\n')
    write_module(directory, "broken_app", "1 / 0\n")
    return directory


@pytest.fixture
def mistakes_directory(tmp_path: Path, tls_files: TLSFiles) -> Path:
    """A directory with the files :data:`MISTAKES` name, good and bad."""
    return make_mistakes_directory(tmp_path / "cwd", tls_files)


@pytest.mark.parametrize(("args", "code", "message"), MISTAKES)
def test_server_mistakes_get_one_line(
    args: list[str], code: int, message: str, env: dict[str, str], mistakes_directory: Path
) -> None:
    if args[1:2] == ["--cert"]:  # to listen, were the files right
        args = [*args, f"https://127.0.0.1:{free_port()}"]
    result = run_hface(*args, env=env, cwd=mistakes_directory)
    assert result.returncode == code, result.stderr
    assert message in one_line_error(result)


# -- limits and timeouts ------------------------------------------------------------


def test_limit_option_defaults_are_the_servers() -> None:
    """The defaults ``--help`` names are those of ServerLimits and ServerTimeouts."""
    limits, timeouts = ServerLimits(), ServerTimeouts()
    actual = {
        "max_connections": limits.max_connections,
        "max_body_size": limits.max_body_size,
        "max_header_size": limits.max_header_size,
        "max_header_count": limits.max_header_count,
        "max_concurrent_streams": limits.max_concurrent_streams,
        "header_table_size": limits.header_table_size,
        "header_read": timeouts.header_read,
        "keep_alive": timeouts.keep_alive,
    }
    assert {
        name: "none" if value is None else f"{value:g}" for name, value in actual.items()
    } == LIMIT_DEFAULTS


def test_quic_retry_choices_are_the_networking_layers() -> None:
    """``--quic-retry`` offers QUICRetry's values; its default is QUICHandshakeLimits'."""
    assert tuple(retry.value for retry in QUICRetry) == QUIC_RETRY_CHOICES
    assert QUICHandshakeLimits().retry.value == QUIC_RETRY_DEFAULT
    server = ASGIServer(_no_app)
    apply_limit_options(server, build_parser().parse_args(["server"]))
    assert server.quic_handshake_limits == QUICHandshakeLimits()


@pytest.mark.parametrize("command", ["server", "proxy"])
@pytest.mark.parametrize("retry", list(QUICRetry), ids=lambda retry: retry.value)
def test_quic_retry_option_sets_the_handshake_limits(command: str, retry: QUICRetry) -> None:
    server = ASGIServer(_no_app)
    args = build_parser().parse_args([command, "--quic-retry", retry.value])
    apply_limit_options(server, args)
    assert server.quic_handshake_limits == QUICHandshakeLimits(retry=retry)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", 1), ("10k", 10240), ("2M", 2 * 1024**2), ("1g", 1024**3), ("none", None)],
)
def test_max_body_size_takes_suffixes(text: str, expected: int | None) -> None:
    args = build_parser().parse_args(["server", "--max-body-size", text])
    assert args.max_body_size == expected


async def _no_app(scope: object, receive: object, send: object) -> None:
    """An ASGI application that is never run."""


def test_limit_options_not_given_leave_the_defaults() -> None:
    server = ASGIServer(_no_app)
    apply_limit_options(server, build_parser().parse_args(["server"]))
    assert (server.limits, server.timeouts) == (ServerLimits(), ServerTimeouts())
    args = build_parser().parse_args(["server", "--header-timeout", "none"])
    apply_limit_options(server, args)
    assert server.timeouts.header_read is None  # "none": no limit, not the default


@pytest.mark.parametrize("command", ["server", "proxy"])
def test_protocol_limit_options_set_the_limits(command: str) -> None:
    """--max-header-size, --max-header-count, --max-concurrent-streams, --header-table-size."""
    server = ASGIServer(_no_app)
    options = ["--max-header-size", "8K", "--max-concurrent-streams", "7"]
    options += ["--max-header-count", "20"]
    args = build_parser().parse_args([command, *options, "--header-table-size", "8192"])
    apply_limit_options(server, args)
    assert server.limits.max_header_size == 8192
    assert server.limits.max_header_count == 20
    assert server.limits.max_concurrent_streams == 7
    assert server.limits.header_table_size == 8192


def test_max_header_size_answers_a_larger_header_block_with_431(
    tmp_path: Path, env: dict[str, str]
) -> None:
    port = free_port()
    args = ["server", f"http://127.0.0.1:{port}", "--max-header-size", "2K"]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as server:
        for size, status in [(1000, 200), (3000, 431)]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("GET", "/", headers={"x-field": "a" * size})
                assert connection.getresponse().status == status, size
            finally:
                connection.close()
        assert server.stop() == 0


def test_max_concurrent_streams_is_what_http2_clients_are_told(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The server's first SETTINGS frame carries --max-concurrent-streams (RFC 9113 §6.5.2)."""
    port = free_port()
    args = ["server", f"http://127.0.0.1:{port}", "--max-concurrent-streams", "3"]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as server:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            # Prior knowledge (RFC 9113 §3.3): the preface, then an empty SETTINGS frame.
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
            header = sock.recv(9, socket.MSG_WAITALL)
            payload = sock.recv(int.from_bytes(header[:3], "big"), socket.MSG_WAITALL)
        assert server.stop() == 0
    assert header[3] == 4  # SETTINGS
    settings = {
        int.from_bytes(payload[i : i + 2], "big"): int.from_bytes(payload[i + 2 : i + 6], "big")
        for i in range(0, len(payload), 6)
    }
    assert settings[3] == 3  # SETTINGS_MAX_CONCURRENT_STREAMS


def test_max_connections_makes_idle_ones_give_way(tmp_path: Path, env: dict[str, str]) -> None:
    port = free_port()
    args = ["server", f"http://127.0.0.1:{port}", "--max-connections", "1"]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as server:
        # The connection hface_process probed with may hold the one place
        # for a moment: wait until a connection is served (5 s at most).
        deadline = time.monotonic() + 5
        while True:
            first = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            first.request("GET", "/")
            response = first.getresponse()
            response.read()
            if response.status == 200:
                break
            first.close()
            assert time.monotonic() < deadline, "no connection was served"
            time.sleep(0.05)
        try:
            # The limit reached, the first (idle) connection gives way to the next.
            assert get(port)[0] == 200
            with contextlib.suppress(OSError):  # may fail here already
                first.request("GET", "/")
            with pytest.raises((http.client.HTTPException, OSError)):
                first.getresponse()
        finally:
            first.close()
        assert server.stop() == 0


def test_max_body_size_refuses_larger_bodies(tmp_path: Path, env: dict[str, str]) -> None:
    port = free_port()
    args = ["server", f"http://127.0.0.1:{port}", "--max-body-size", "1k"]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as server:
        for size, status in [(1024, 200), (1025, 413)]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("POST", "/", body=b"x" * size)
                assert connection.getresponse().status == status, size
            finally:
                connection.close()
        assert server.stop() == 0


@pytest.mark.parametrize("command", ["server", "proxy"])
def test_header_timeout_answers_a_slow_request_with_408(
    command: str, tmp_path: Path, env: dict[str, str]
) -> None:
    port = free_port()
    args = [command, f"http://127.0.0.1:{port}", "--header-timeout", "0.5"]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as server:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            start = time.monotonic()
            answer = b""
            while chunk := sock.recv(1000):  # until the server closes (10 s at most)
                answer += chunk
            elapsed = time.monotonic() - start
        assert server.stop() == 0
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert 0.4 <= elapsed < 5, elapsed  # the default would be 60 s


def test_keep_alive_timeout_closes_idle_connections(tmp_path: Path, env: dict[str, str]) -> None:
    port = free_port()
    args = ["server", f"http://127.0.0.1:{port}", "--keep-alive-timeout", "0.5"]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as server:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = sock.recv(1000)
            start = time.monotonic()
            while chunk := sock.recv(1000):  # until the server closes (10 s at most)
                answer += chunk
            elapsed = time.monotonic() - start
        assert server.stop() == 0
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert answer.count(b"HTTP/1.1 ") == 1  # closed without a word
    assert 0.3 <= elapsed < 4, elapsed  # the default would be 5 s


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-connections", "0"], "argument --max-connections: invalid limit: '0'"),
        (["--max-connections", "many"], "argument --max-connections: invalid limit: 'many'"),
        (["--header-timeout", "0"], "argument --header-timeout: invalid timeout: '0'"),
        (["--header-timeout", "inf"], "argument --header-timeout: invalid timeout: 'inf'"),
        (["--keep-alive-timeout", "-1"], "argument --keep-alive-timeout: invalid timeout: '-1'"),
        (["--keep-alive-timeout", "nan"], "argument --keep-alive-timeout: invalid timeout"),
        (
            ["--max-concurrent-streams", "none"],
            "argument --max-concurrent-streams: invalid limit: 'none'",
        ),
        (["--max-header-size", "0"], "argument --max-header-size: invalid size: '0'"),
        (["--header-table-size", "1.5K"], "argument --header-table-size: invalid size: '1.5K'"),
    ],
)
@pytest.mark.parametrize("command", ["server", "proxy"])
def test_invalid_limits_are_usage_errors(
    command: str, args: list[str], message: str, env: dict[str, str]
) -> None:
    result = run_hface(command, *args, env=env)
    assert result.returncode == 2, result.stderr
    assert message in one_line_error(result)


@pytest.mark.parametrize("size", ["0", "1x", "-1k", "k", "1.5M"])
def test_an_invalid_max_body_size_is_a_usage_error(size: str, env: dict[str, str]) -> None:
    result = run_hface("server", f"--max-body-size={size}", env=env)
    assert result.returncode == 2, result.stderr
    assert f"argument --max-body-size: invalid size: {size!r}" in one_line_error(result)


def test_the_proxy_has_no_max_body_size(env: dict[str, str]) -> None:
    """A CONNECT proxy's tunnels carry no request body to bound."""
    result = run_hface("proxy", "--max-body-size", "1M", env=env)
    assert result.returncode == 2
    assert "unrecognized arguments: --max-body-size" in one_line_error(result)


def test_websocket_options_set_the_servers_attributes() -> None:
    from hface.cli._server_command import apply_websocket_options

    server = ASGIServer(_no_app)
    defaults = ASGIServer(_no_app)
    apply_websocket_options(server, build_parser().parse_args(["server"]))
    assert (server.ws_max_size, server.ws_ping_interval, server.ws_per_message_deflate) == (
        defaults.ws_max_size,
        defaults.ws_ping_interval,
        defaults.ws_per_message_deflate,
    )
    args = build_parser().parse_args(
        [
            "server",
            "--ws-max-size",
            "1M",
            "--ws-ping-interval",
            "none",
            "--ws-ping-timeout",
            "5",
            "--no-ws-per-message-deflate",
        ]
    )
    apply_websocket_options(server, args)
    assert server.ws_max_size == 1024 * 1024
    assert server.ws_ping_interval is None
    assert server.ws_ping_timeout == 5.0
    assert server.ws_per_message_deflate is False
