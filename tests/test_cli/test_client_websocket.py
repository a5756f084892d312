"""``hface client ws://...``: a WebSocket between stdin and stdout, on every version."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import anyio.from_thread
import pytest

from hface.server import ASGIServer, Endpoint
from tests.helpers.certs import TLSFiles
from tests.helpers.peers import free_port
from tests.test_client.asgi_app import app

from .test_client_command import BACKENDS, VERSIONS, hface_client, ok, one_line_error


@dataclass(frozen=True)
class WSServer:
    """hface's server of :mod:`tests.test_client.asgi_app`: its ports and CA."""

    wss: str
    ws: str
    cafile: str


@pytest.fixture(scope="module")
def ws_server(tls_files: TLSFiles) -> Iterator[WSServer]:
    server = ASGIServer(app)
    server.tls_config = tls_files.server_config()
    server.handle_signals = False
    server.access_log = False
    https_port, http_port = free_port(), free_port()
    endpoints = [
        Endpoint("https", "127.0.0.1", https_port),
        Endpoint("http", "127.0.0.1", http_port),
    ]
    with anyio.from_thread.start_blocking_portal() as portal:
        future, _ = portal.start_task(server.run, endpoints)
        try:
            yield WSServer(
                wss=f"wss://127.0.0.1:{https_port}",
                ws=f"ws://127.0.0.1:{http_port}",
                cafile=tls_files.ca_file,
            )
        finally:
            future.cancel()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("version", list(VERSIONS))
def test_lines_out_messages_in(version: str, backend: str, ws_server: WSServer) -> None:
    result = hface_client(
        VERSIONS[version],
        "--backend",
        backend,
        "--cacert",
        ws_server.cafile,
        ws_server.wss + "/ws",
        input=b"one\ntw\xc3\xb6\r\nthree",
        stdin=None,
    )
    assert ok(result) == f"version {version}\none\ntwö\nthree\n".encode()


def test_cleartext_and_verbose(ws_server: WSServer) -> None:
    result = hface_client("-v", ws_server.ws + "/ws", input=b"hi\n", stdin=None)
    assert ok(result) == b"version 1.1\nhi\n"
    trace = result.stderr.decode()
    assert ":protocol: websocket" in trace
    assert ":status: 200" in trace


def test_refused(ws_server: WSServer) -> None:
    result = hface_client("--cacert", ws_server.cafile, ws_server.wss + "/deny")
    assert result.returncode == 22
    assert "refused the WebSocket" in one_line_error(result)


def test_server_closes_first(ws_server: WSServer) -> None:
    # stdin stays open (a pipe nobody writes): the server's Close ends the command.
    result = hface_client(
        "--cacert", ws_server.cafile, ws_server.wss + "/close-4000", stdin=-1, timeout=20
    )
    assert ok(result) == b""


def test_one_url_only(ws_server: WSServer) -> None:
    result = hface_client(ws_server.ws + "/ws", ws_server.ws + "/ws")
    assert result.returncode == 2
    assert "goes alone" in one_line_error(result)
