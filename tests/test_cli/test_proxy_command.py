"""``hface proxy``, run as a user would: a subprocess on free ports, reached with curl.

The origin behind the proxy is ``hface server`` with the test certificates
(one per module). curl 7.88 speaks HTTP/1.1 to proxies; hface's own client
checks the proxy over HTTP/2 and HTTP/3.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from hface.cli._main import build_parser
from hface.cli._proxy_command import parse_credentials
from hface.client import Client, ClientProtocol, Request
from hface.common import ClientTLSConfig
from tests.helpers.certs import TLSFiles
from tests.helpers.peers import describe, free_port, needs_peer, run_peer
from tests.test_cli.test_server_options import MISTAKES as SERVER_MISTAKES
from tests.test_cli.test_server_options import (
    hface_process,
    make_mistakes_directory,
    one_line_error,
    run_hface,
)

HELLO = b"Hello from hface! (HTTP/2)\n"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose data directory is empty, without proxy credentials."""
    environment = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    environment.pop("HFACE_PROXY_AUTH", None)
    return environment


@pytest.fixture
def mistakes_directory(tmp_path: Path, tls_files: TLSFiles) -> Path:
    """A directory with the files the mistakes name, good and bad."""
    return make_mistakes_directory(tmp_path / "cwd", tls_files)


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory, tls_files: TLSFiles) -> Iterator[int]:
    """The port of an ``hface server`` (HTTP/1.1 and HTTP/2) on https://127.0.0.1."""
    directory = tmp_path_factory.mktemp("origin")
    port = free_port()
    args = ["server", "--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    args += ["--protocol", "tcp", "--no-access-log", f"https://127.0.0.1:{port}"]
    environment = {**os.environ, "XDG_DATA_HOME": str(directory / "data")}
    with hface_process(args, env=environment, port=port, log_file=directory / "log") as server:
        yield port
        assert server.stop() == 0


def proxy_args(tls_files: TLSFiles, port: int, *options: str) -> list[str]:
    """``proxy`` with the test certificate on https://127.0.0.1:``port``, and ``options``."""
    cert = ["--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    return ["proxy", *cert, *options, f"https://127.0.0.1:{port}"]


def curl(
    proxy_port: int, origin_port: int, ca_file: str, *options: str, proxy_ca: str | None = None
) -> tuple[str, str]:
    """GET the origin through the proxy with curl; return (body, CONNECT status)."""
    result = run_peer(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-p",
            "-x",
            f"https://127.0.0.1:{proxy_port}",
            "--proxy-cacert",
            proxy_ca or ca_file,
            "--cacert",
            ca_file,
            "-w",
            "\n%{http_connect}",
            *options,
            f"https://localhost:{origin_port}/",
        ]
    )
    body, _, status = result.stdout.rpartition("\n")
    if status == "200":
        assert result.returncode == 0, describe(result)
    return body, status


@needs_peer("curl")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_curl_reaches_the_origin_through_the_proxy(
    backend: str, origin: int, tmp_path: Path, env: dict[str, str], tls_files: TLSFiles
) -> None:
    port = free_port()
    args = proxy_args(tls_files, port, "--backend", backend)
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as proxy:
        assert curl(port, origin, tls_files.ca_file) == (HELLO.decode(), "200")
        start = time.monotonic()
        assert proxy.stop(timeout=5) == 0
        assert time.monotonic() - start < 3  # nothing in flight: no grace period to wait for
    output = proxy.output()
    assert "Traceback" not in output
    assert f"tunnel to localhost:{origin}" in output
    assert "Credentials: none" in output
    assert not (tmp_path / "data").exists()  # no development certificate was made


@needs_peer("curl")
@pytest.mark.parametrize("source", ["option", "environment"])
def test_auth_requires_the_credentials(
    source: str, origin: int, tmp_path: Path, env: dict[str, str], tls_files: TLSFiles
) -> None:
    port = free_port()
    if source == "option":
        args = proxy_args(tls_files, port, "--auth", "alice:open:sesame")
    else:
        args = proxy_args(tls_files, port)
        env["HFACE_PROXY_AUTH"] = "alice:open:sesame"
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as proxy:
        ca = tls_files.ca_file
        assert curl(port, origin, ca) == ("", "407")
        assert curl(port, origin, ca, "--proxy-user", "alice:wrong") == ("", "407")
        assert curl(port, origin, ca, "--proxy-user", "alice:open:sesame")[1] == "200"
        assert proxy.stop() == 0
    assert "Credentials: required (user 'alice')" in proxy.output()
    assert "sesame" not in proxy.output()


@needs_peer("curl")
def test_deny_private_targets_refuses_loopback(
    origin: int, tmp_path: Path, env: dict[str, str], tls_files: TLSFiles
) -> None:
    port = free_port()
    args = proxy_args(tls_files, port, "--deny-private-targets")
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as proxy:
        assert curl(port, origin, tls_files.ca_file) == ("", "403")
        assert proxy.stop() == 0
    assert "Private targets: refused" in proxy.output()


@needs_peer("curl")
def test_development_certificate_when_none_is_given(
    origin: int, tmp_path: Path, env: dict[str, str], tls_files: TLSFiles
) -> None:
    port = free_port()
    endpoint = f"https://127.0.0.1:{port}"
    with hface_process(["proxy", endpoint], env=env, port=port, log_file=tmp_path / "log") as proxy:
        cafile = str(tmp_path / "data" / "hface" / "dev-certs" / "cacert.pem")
        assert f"Try: curl -p -x {endpoint} --proxy-cacert {cafile} " in proxy.output()
        assert curl(port, origin, tls_files.ca_file, proxy_ca=cafile) == (HELLO.decode(), "200")
        assert proxy.stop() == 0


@pytest.mark.parametrize("protocol", ["http2", "http3"])
def test_protocol_and_hface_client(
    protocol: str, origin: int, tmp_path: Path, env: dict[str, str], tls_files: TLSFiles
) -> None:
    port = free_port()
    args = proxy_args(tls_files, port, "--protocol", protocol, "--auth", "bob:pw")
    http3 = protocol == "http3"
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log", udp=http3) as proxy:

        async def fetch() -> tuple[int, bytes]:
            client = Client(
                tls_config=ClientTLSConfig(cafile=tls_files.ca_file),
                proxy_origin=f"https://bob:pw@127.0.0.1:{port}",
                proxy_protocol=ClientProtocol(protocol),
            )
            with anyio.fail_after(20):
                async with client.session() as session:
                    url = f"https://localhost:{origin}/"
                    response = await session.dispatch(Request("GET", url))
            return response.status, response.content

        assert anyio.run(fetch) == (200, HELLO)
        with socket.socket() as sock:  # only the version asked for is served
            assert (sock.connect_ex(("127.0.0.1", port)) == 0) is not http3
        assert proxy.stop() == 0


def test_sigterm_with_a_tunnel_open_waits_for_graceful_timeout(
    origin: int, tmp_path: Path, env: dict[str, str], tls_files: TLSFiles
) -> None:
    port = free_port()
    args = proxy_args(tls_files, port, "--protocol", "tcp", "--graceful-timeout", "1")
    context = ssl.create_default_context(cafile=tls_files.ca_file)
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as proxy:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tunnel:
                request = f"CONNECT localhost:{origin} HTTP/1.1\r\nHost: localhost:{origin}\r\n\r\n"
                tunnel.sendall(request.encode())
                assert tunnel.recv(1000).startswith(b"HTTP/1.1 200"), proxy.output()
                start = time.monotonic()
                assert proxy.stop(timeout=6) == 0  # the default grace (10 s) would exceed it
                elapsed = time.monotonic() - start
    assert elapsed >= 0.9, elapsed
    assert "closing 1 connections after the grace period" in proxy.output()


def test_port_in_use_is_one_line(env: dict[str, str], tls_files: TLSFiles) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_hface(*proxy_args(tls_files, port, "--protocol", "tcp"), env=env)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(result)


PROXY_MISTAKES: list[tuple[list[str], int, str]] = [
    (["proxy", "ftp://x:1"], 2, "the scheme must be http"),
    (["proxy", "https://localhost"], 2, "a port is required"),
    (["proxy", "--bogus"], 2, "unrecognized arguments: --bogus"),
    (["proxy", "--auth", "alice"], 2, "--auth needs USER:PASSWORD"),
    (["proxy", "--auth", ":pw"], 2, "--auth needs USER:PASSWORD"),
    (["proxy", "--allow-private-targets", "--deny-private-targets"], 2, "not allowed with"),
    (["proxy", "--idle-timeout", "nan"], 2, "invalid number of seconds: 'nan'"),
    (["proxy", "--connect-timeout", "-5"], 2, "invalid number of seconds: '-5'"),
    (["proxy", "--cert", "/nonexistent.pem"], 1, "cannot read /nonexistent.pem"),
] + [
    (["proxy", *args[1:]], code, message)
    for args, code, message in SERVER_MISTAKES
    if args[1] in ("--key", "--graceful-timeout", "--protocol", "--cert")
    or args[1].startswith("http://")
]


@pytest.mark.parametrize(("args", "code", "message"), PROXY_MISTAKES)
def test_proxy_mistakes_get_one_line(
    args: list[str], code: int, message: str, env: dict[str, str], mistakes_directory: Path
) -> None:
    if "--cert" in args:  # to listen, were the files right
        args = [*args, f"https://127.0.0.1:{free_port()}"]
    result = run_hface(*args, env=env, cwd=mistakes_directory)
    assert result.returncode == code, result.stderr
    assert message in one_line_error(result)


def test_bad_credentials_in_the_environment_are_a_usage_error(env: dict[str, str]) -> None:
    env["HFACE_PROXY_AUTH"] = "no-colon"
    result = run_hface("proxy", "http://127.0.0.1:1", env=env)
    assert result.returncode == 2
    assert "HFACE_PROXY_AUTH needs USER:PASSWORD" in one_line_error(result)
    assert "no-colon" not in result.stderr  # the secret is not echoed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice:pw", ("alice", "pw")),
        ("alice:open:sesame", ("alice", "open:sesame")),  # RFC 7617: the user has no colon
        ("alice:", ("alice", "")),
        ("alice", None),
        (":pw", None),
    ],
)
def test_parse_credentials(value: str, expected: tuple[str, str] | None) -> None:
    assert parse_credentials(value) == expected


def _subcommands() -> list[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(actions[0].choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command: str, env: dict[str, str]) -> None:
    result = run_hface(command, "--help", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: hface {command}")
