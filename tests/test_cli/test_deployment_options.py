"""The deployment options of ``hface server``, run as a user would: a subprocess and its output.

``unix:`` endpoints with curl, ``--root-path`` and ``--forwarded-allow-ips``
in the scope, ``--access-log-format``, ``--log-config`` (JSON and TOML),
the banner printed only once bound, no aioquic lines at INFO, one-line
errors for bad values and for missing optional dependencies (trio,
watchfiles), and ``--reload`` restarting the server when a module changes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from hface.cli._deploy_options import PROXY_HEADER_TIMEOUT_DEFAULT
from hface.server import ServerTimeouts
from tests.helpers.peers import free_port, needs_peer, require_peer
from tests.test_cli.test_cli import (
    Server,
    _fetch_every_version,
    _one_line_error,
    hface,
    hface_server,
)

ROOT = Path(__file__).resolve().parents[2]
SCOPE_APP = "tests.helpers.scope_app:app"
STARTUP_TIMEOUT = 20.0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose data directory is empty."""
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}


def fetch_json(port: int, path: str = "/", headers: tuple[str, ...] = ()) -> dict[str, object]:
    arguments = [require_peer("curl"), "-sS", "-m", "10", f"http://127.0.0.1:{port}{path}"]
    for header in headers:
        arguments += ["-H", header]
    result = subprocess.run(arguments, capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def stop(server: Server) -> str:
    """SIGINT, as Ctrl-C: wait for a graceful exit; return everything it printed."""
    server.process.send_signal(signal.SIGINT)
    server.process.wait(timeout=20)
    return server.output()


@needs_peer("curl")
def test_root_path_forwarded_and_access_log_format(
    tmp_path: Path,
    env: dict[str, str],
) -> None:
    port = free_port()
    with hface_server(
        SCOPE_APP,
        f"http://127.0.0.1:{port}",
        "--root-path",
        "/api/",
        "--forwarded-allow-ips",
        "127.0.0.1",
        "--access-log-format",
        "ACCESS %(client)s %(method)s %(path)s %(status)s %(bytes)s %(duration_ms)sms "
        '"%(user_agent)s"',
        env={**env, "PYTHONPATH": str(ROOT)},
        port=port,
        log_file=tmp_path / "server.log",
    ) as server:
        scope = fetch_json(
            port,
            "/items?x=1",
            ("X-Forwarded-For: 198.51.100.4", "X-Forwarded-Proto: https", "User-Agent: probe/1"),
        )
        output = stop(server)
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/items"
    assert scope["client"] == ["198.51.100.4", 0]
    assert scope["scheme"] == "https"
    lines = [line for line in output.splitlines() if "ACCESS" in line]
    assert len(lines) == 1, output
    assert lines[0].split("ACCESS ", 1)[1].startswith("198.51.100.4:0 GET /items?x=1 200 ")
    assert lines[0].endswith('ms "probe/1"')


@contextmanager
def hface_on_unix_socket(
    path: Path, *args: str, environment: dict[str, str], log: Path
) -> Iterator[Server]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "hface", "server", f"unix:{path}", *args],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Server(process=process, log_file=log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while "hface serving" not in server.output():
            assert process.poll() is None, server.output()
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


@needs_peer("curl")
def test_unix_endpoint_answers_curl(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "hface.sock"
    with hface_on_unix_socket(path, environment=env, log=tmp_path / "server.log") as server:
        for option, version in (("--http1.1", "HTTP/1.1"), ("--http2-prior-knowledge", "HTTP/2")):
            result = subprocess.run(
                [require_peer("curl"), "-sS", "--unix-socket", str(path), option, "http://x/"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            assert result.stdout == f"Hello from hface! ({version})\n", result.stderr
        output = stop(server)
    assert f"unix:{path}  (HTTP/1.1, HTTP/2)" in output
    assert not path.exists()


def test_proxy_protocol_timeout_default_is_the_servers() -> None:
    assert float(PROXY_HEADER_TIMEOUT_DEFAULT) == ServerTimeouts().proxy_header


def test_banner_only_once_bound(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = hface("server", f"http://127.0.0.1:{port}", env=env)
    assert result.returncode == 1
    assert str(port) in _one_line_error(result)
    assert "serving" not in result.stdout


def test_no_aioquic_lines_at_info(tmp_path: Path, env: dict[str, str]) -> None:
    port = free_port()
    with hface_server(
        f"https://127.0.0.1:{port}", env=env, port=port, log_file=tmp_path / "server.log"
    ) as server:
        cafile = Path(env["XDG_DATA_HOME"]) / "hface" / "dev-certs" / "cacert.pem"
        bodies = anyio.run(_fetch_every_version, port, str(cafile))
        assert bodies["3"] == b"Hello from hface! (HTTP/3)\n"
        output = stop(server)
    assert " INFO hface.server.access: " in output
    assert " quic: " not in output
    assert " http3: " not in output


LOG_CONFIGS = {
    "json": json.dumps(
        {
            "version": 1,
            "formatters": {"plain": {"format": "CUSTOM %(name)s %(message)s"}},
            "handlers": {"file": {"class": "logging.FileHandler", "filename": "FILE"}},
            "root": {"level": "INFO", "handlers": ["file"]},
        }
    ),
    "toml": """\
version = 1
[formatters.plain]
format = "CUSTOM %(name)s %(message)s"
[handlers.file]
class = "logging.FileHandler"
filename = "FILE"
formatter = "plain"
[root]
level = "INFO"
handlers = ["file"]
""",
}


@pytest.mark.parametrize("kind", list(LOG_CONFIGS))
def test_log_config(kind: str, tmp_path: Path, env: dict[str, str]) -> None:
    log_file = tmp_path / "app.log"
    text = LOG_CONFIGS[kind].replace("FILE", str(log_file))
    if kind == "json":  # the formatter, set the JSON way
        config = json.loads(text)
        config["handlers"]["file"]["formatter"] = "plain"
        text = json.dumps(config)
    config_file = tmp_path / f"logging.{kind}"
    config_file.write_text(text)
    port = free_port()
    with hface_server(
        f"http://127.0.0.1:{port}",
        "--log-config",
        str(config_file),
        env=env,
        port=port,
        log_file=tmp_path / "server.log",
    ) as server:
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GET /logged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while client.recv(65536):
                pass
        stop(server)
    logged = log_file.read_text()
    assert "CUSTOM hface.server.access " in logged
    assert "/logged" in logged


BAD_VALUES = [
    (["--forwarded-allow-ips", "127.0.0.1,proxy.example"], "'proxy.example' is not an IP"),
    (["--access-log-format", "%(nope)s"], "unknown field 'nope'"),
    (["--root-path", "api"], "--root-path"),
    (["--log-config", "/nonexistent/logging.json"], "cannot read"),
    (["--reload-dir", "."], "--reload-dir needs --reload"),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES)
def test_bad_values_get_one_line(
    args: list[str],
    message: str,
    env: dict[str, str],
) -> None:
    result = hface("server", *args, f"http://127.0.0.1:{free_port()}", env=env)
    assert result.returncode in (1, 2), result.stderr
    assert message in _one_line_error(result)


#: Runs hface with an optional module made unimportable, as where it is not installed.
WITHOUT = "import sys; sys.modules[{module!r}] = None; from hface.cli import main; sys.exit(main())"


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        ("trio", ["server", "--backend", "trio"], "--backend trio needs trio: pip install trio"),
        ("trio", ["proxy", "--backend", "trio"], "--backend trio needs trio: pip install trio"),
        ("trio", ["client", "--backend", "trio"], "--backend trio needs trio: pip install trio"),
        ("watchfiles", ["server", "--reload"], "--reload needs watchfiles"),
        ("uvloop", ["server", "--backend", "uvloop"], "--backend uvloop needs uvloop"),
    ],
)
def test_missing_optional_dependency_is_one_line(
    module: str,
    args: list[str],
    message: str,
    env: dict[str, str],
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT.format(module=module), *args, "http://127.0.0.1:1/"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert message in _one_line_error(result)


APP_SOURCE = """\
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"VERSION"})
"""


def get_body(port: int) -> bytes | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
    except OSError:
        return None
    return answer.partition(b"\r\n\r\n")[2]


def wait_for_body(port: int, expected: bytes, server: Server) -> None:
    deadline = time.monotonic() + 30
    while get_body(port) != expected:
        assert server.process.poll() is None, server.output()
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.2)


def test_reload_restarts_on_a_change(tmp_path: Path, env: dict[str, str]) -> None:
    pytest.importorskip("watchfiles")
    project = tmp_path / "project"
    project.mkdir()
    module = project / "reloaded_app.py"
    module.write_text(APP_SOURCE.replace("VERSION", "one"))
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "hface", "server", "reloaded_app:app", address, "--reload"],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the reloader and its child, stopped together below
        )
    server = Server(process=process, log_file=log)
    try:
        wait_for_body(port, b"one", server)
        module.write_text(APP_SOURCE.replace("VERSION", "two"))
        wait_for_body(port, b"two", server)
        (project / "notes.txt").write_text("not python")  # no restart for this
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0, server.output()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    printed = server.output()
    assert "reloaded_app.py changed, restarting" in printed
    assert printed.count("hface serving reloaded_app:app") == 2, printed
    assert get_body(port) is None  # the child is gone too
