"""``unix:`` endpoints: curl --unix-socket over HTTP/1.1 and HTTP/2, cleartext and TLS.

The server runs in the test (asyncio and Trio) and serves
:mod:`tests.helpers.scope_app`, which answers with its scope; curl, the
real peer, connects with ``--unix-socket``. The scope must say what the
ASGI specification says for Unix sockets: ``server`` is ``[path, None]``,
``client`` None. A stale socket file is replaced, a live one is an error,
and the file is gone once the server stops.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from hface.errors import TransportError
from hface.server import ASGIServer, Endpoint
from tests.helpers.certs import TLSFiles
from tests.helpers.peers import needs_peer, require_peer
from tests.helpers.scope_app import app
from tests.test_server.conftest import running

pytestmark = pytest.mark.anyio

#: curl's options for each way of speaking to the socket: (tls, options, http_version).
WAYS = {
    "http1": (False, ["--http1.1"], "1.1"),
    "http2-prior-knowledge": (False, ["--http2-prior-knowledge"], "2"),
    "https-http1": (True, ["--http1.1"], "1.1"),
    "https-http2": (True, ["--http2"], "2"),
}


def test_parse_and_str() -> None:
    assert Endpoint.parse("unix:/run/app.sock") == Endpoint("http+unix", "/run/app.sock", 0)
    assert Endpoint.parse("http+unix:/run/app.sock") == Endpoint.unix("/run/app.sock")
    assert Endpoint.parse("https+unix:/run/a.sock") == Endpoint.unix("/run/a.sock", tls=True)
    assert Endpoint.parse("unix:relative.sock").unix_path == "relative.sock"
    for value in ("unix:/run/app.sock", "https+unix:/run/a.sock"):
        assert str(Endpoint.parse(value)) == value
    assert Endpoint.unix("/a", tls=True).tls
    assert not Endpoint.unix("/a").tls
    assert Endpoint("https", "localhost", 1).unix_path is None
    for bad in ("unix:", "unix://host/path"):
        with pytest.raises(ValueError, match="unix:PATH"):
            Endpoint.parse(bad)


def curl_unix(path: Path, url: str, *options: str) -> dict[str, Any]:
    result = subprocess.run(
        [require_peer("curl"), "-sS", "-m", "10", "--unix-socket", str(path), *options, url],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


@needs_peer("curl")
@pytest.mark.parametrize("way", list(WAYS))
async def test_curl_over_a_unix_socket(way: str, tmp_path: Path, tls_files: TLSFiles) -> None:
    tls, options, http_version = WAYS[way]
    path = tmp_path / "app.sock"
    server = ASGIServer(app)
    server.tls_config = tls_files.server_config()
    async with running(server, [Endpoint.unix(str(path), tls=tls)]) as address:
        assert address == (str(path), 0)
        assert path.is_socket()
        url = f"{'https' if tls else 'http'}://localhost/some/where"
        if tls:
            options = [*options, "--cacert", tls_files.ca_file]
        answer = await anyio.to_thread.run_sync(lambda: curl_unix(path, url, *options))
    assert answer["http_version"] == http_version
    assert answer["server"] == [str(path), None]
    assert answer["client"] is None
    assert answer["scheme"] == ("https" if tls else "http")
    assert answer["path"] == "/some/where"
    assert not path.exists()  # removed at shutdown


def bound_then_abandoned(path: Path) -> None:
    """Leave a socket file at ``path`` with no server behind it (a killed server's)."""
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    bound_then_abandoned(path)
    async with running(ASGIServer(app), [Endpoint.unix(str(path))]):
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # it is the server's now
    assert not path.exists()


async def test_a_live_socket_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(str(path))
        other.listen()
        server = ASGIServer(app)
        server.handle_signals = False
        with pytest.raises(TransportError, match="listening there already") as info:
            await server.run([Endpoint.unix(str(path))])
        assert str(path) in str(info.value)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # still the other server's
    assert path.exists()


async def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    path.write_text("precious")
    server = ASGIServer(app)
    server.handle_signals = False
    with pytest.raises(TransportError, match="not a socket"):
        await server.run([Endpoint.unix(str(path))])
    assert path.read_text() == "precious"
