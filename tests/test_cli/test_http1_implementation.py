"""``hface server --http1 {h11,httptools}``: which HTTP/1.1 implementation serves."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hface.cli._main import CommandError, build_parser, http1_factory
from hface.protocols import protocol_registry
from hface.protocols.http1 import HTTP1ServerFactory
from hface.protocols.http1._httptools import HTTPToolsServerFactory
from tests.helpers.peers import free_port
from tests.test_cli.test_server_options import env as env  # the fixture
from tests.test_cli.test_server_options import hface_process, run_hface

#: A head with bare LF line ends: h11 takes it, llhttp refuses it with 400
#: (see hface.protocols.http1._httptools), so the answer tells who parsed it.
BARE_LF = b"GET / HTTP/1.1\nHost: localhost\nConnection: close\n\n"


def _status_line(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n" not in data:
            piece = sock.recv(4096)
            if not piece:
                break
            data += piece
    return data.partition(b"\r\n")[0]


def test_the_option_names_registry_implementations() -> None:
    args = build_parser().parse_args(["server", "--http1", "h11"])
    assert args.http1 == "h11"
    assert build_parser().parse_args(["server"]).http1 is None
    assert isinstance(http1_factory("h11"), HTTP1ServerFactory)
    assert isinstance(http1_factory("httptools"), HTTPToolsServerFactory)
    assert protocol_registry.preferred_name("http1_server") == "httptools"


def test_an_implementation_that_is_not_installed_is_one_line() -> None:
    with pytest.raises(CommandError, match=r"--http1 nope: not installed"):
        http1_factory("nope")


def test_an_unknown_implementation_is_a_usage_error(env: dict[str, str]) -> None:
    result = run_hface("server", "--http1", "picohttp", env=env)
    assert result.returncode == 2
    assert "invalid choice: 'picohttp'" in result.stderr


@pytest.mark.parametrize(
    ("option", "status_line"),
    [
        ([], b"HTTP/1.1 400 Bad Request"),  # httptools, installed for the tests
        (["--http1", "httptools"], b"HTTP/1.1 400 Bad Request"),
        (["--http1", "h11"], b"HTTP/1.1 200 OK"),
    ],
    ids=["default", "httptools", "h11"],
)
def test_http1_chooses_the_parser(
    option: list[str], status_line: bytes, tmp_path: Path, env: dict[str, str]
) -> None:
    port = free_port()
    args = ["server", f"http://127.0.0.1:{port}", "--no-access-log", *option]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as server:
        assert _status_line(port, BARE_LF) == status_line
        assert _status_line(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == b"HTTP/1.1 200 OK"
        assert server.stop() == 0


@pytest.mark.parametrize("implementation", ["h11", "httptools"])
def test_the_chosen_parser_keeps_max_header_size(
    implementation: str, tmp_path: Path, env: dict[str, str]
) -> None:
    port = free_port()
    args = ["server", f"http://127.0.0.1:{port}", "--no-access-log", "--max-header-size", "2K"]
    args += ["--http1", implementation]
    large = b"GET / HTTP/1.1\r\nHost: a\r\nX-Large: " + b"a" * 4000 + b"\r\n\r\n"
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log") as server:
        assert _status_line(port, large).startswith(b"HTTP/1.1 431 ")
        assert _status_line(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == b"HTTP/1.1 200 OK"
        assert server.stop() == 0
