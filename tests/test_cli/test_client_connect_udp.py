"""``hface client --http3`` through ``hface proxy`` (CONNECT-UDP), as users run them.

The acceptance of issue 17: 10 MiB over HTTP/3 from ngtcp2's
``gtlsserver`` and from hypercorn, through the proxy reached over HTTP/3
and over HTTP/2, with the right SHA-256. Every program is a subprocess on
loopback.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.certs import TLSFiles
from tests.helpers.peers import free_port, require_peer, spawn, udp_port_is_bound
from tests.test_cli.test_server_options import hface_process
from tests.test_client.asgi_app import pattern

SIZE = 10 * 1024 * 1024

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def proxy_port(tls_files: TLSFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``hface proxy`` on https://127.0.0.1 (HTTP/1.1, HTTP/2 and HTTP/3)."""
    directory = tmp_path_factory.mktemp("proxy")
    port = free_port()
    args = ["proxy", "--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    args += ["--log-level", "warning", "--graceful-timeout", "1", f"https://127.0.0.1:{port}"]
    environment = {**os.environ, "XDG_DATA_HOME": str(directory / "data")}
    with hface_process(
        args, env=environment, port=port, log_file=directory / "log", udp=True
    ) as process:
        yield port
        assert process.stop() == 0


@pytest.fixture(scope="module")
def gtlsserver_port(tls_files: TLSFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """ngtcp2's HTTP/3 example server serving ``/file`` (SIZE bytes of the pattern)."""
    gtlsserver = require_peer("gtlsserver")
    directory = tmp_path_factory.mktemp("gtlsserver")
    root = directory / "www"
    root.mkdir()
    (root / "file").write_bytes(pattern(SIZE))
    port = free_port()
    argv = [gtlsserver, "--quiet", f"--htdocs={root}", "127.0.0.1", str(port)]
    argv += [tls_files.server_key_file, tls_files.server_cert_file]
    with spawn(argv, log_file=directory / "log"):
        _wait_udp(port)
        yield port


@pytest.fixture(scope="module")
def hypercorn_port(tls_files: TLSFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """hypercorn serving ``tests.test_client.asgi_app`` on HTTP/3 too."""
    directory = tmp_path_factory.mktemp("hypercorn")
    port = free_port()
    bind = f"127.0.0.1:{port}"
    argv = [sys.executable, "-m", "hypercorn", "--bind", bind, "--quic-bind", bind]
    argv += ["--certfile", tls_files.server_cert_file, "--keyfile", tls_files.server_key_file]
    argv += ["tests.test_client.asgi_app:app"]
    with spawn(argv, log_file=directory / "log", cwd=Path(__file__).parents[2]):
        _wait_udp(port)
        yield port


def _wait_udp(port: int) -> None:
    import time

    deadline = time.monotonic() + 15
    while not udp_port_is_bound("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on UDP port {port}")
        time.sleep(0.05)


def _fetch(
    proxy_port: int, proxy_option: str, url: str, ca_file: str, output: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "hface", "client", "--http3", "--cacert", ca_file]
    argv += ["--proxy", f"https://127.0.0.1:{proxy_port}", proxy_option, *options]
    argv += ["-o", str(output), url]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL
    )


@pytest.mark.peer("gtlsserver")
@pytest.mark.parametrize("proxy_option", ["--proxy-http3", "--proxy-http2"])
@pytest.mark.parametrize("origin", ["gtlsserver", "hypercorn"])
def test_10_mib_over_http3_through_hface_proxy(
    origin: str,
    proxy_option: str,
    proxy_port: int,
    request: pytest.FixtureRequest,
    tls_files: TLSFiles,
    tmp_path: Path,
) -> None:
    port = request.getfixturevalue(f"{origin}_port")
    path = "/file" if origin == "gtlsserver" else f"/bytes/{SIZE}"
    output = tmp_path / "body"
    result = _fetch(
        proxy_port, proxy_option, f"https://localhost:{port}{path}", tls_files.ca_file, output
    )
    assert result.returncode == 0, result.stderr
    expected = hashlib.sha256(pattern(SIZE)).hexdigest()
    assert hashlib.sha256(output.read_bytes()).hexdigest() == expected


def test_verbose_shows_the_datagrams(
    proxy_port: int, hypercorn_port: int, tls_files: TLSFiles, tmp_path: Path
) -> None:
    url = f"https://localhost:{hypercorn_port}/bytes/100000"
    result = _fetch(proxy_port, "--proxy-http3", url, tls_files.ca_file, tmp_path / "body", "-v")
    assert result.returncode == 0, result.stderr
    assert "(proxy) submit_headers stream_id=0 end_stream=False headers=[:method: CONNECT" in (
        result.stderr
    )
    assert "(proxy) submit_datagram stream_id=0 size=" in result.stderr
    assert "(proxy) DatagramReceived stream_id=0 size=" in result.stderr
    assert "(origin) QUIC handshake completed" in result.stderr


def test_verbose_clients_tunnel_quic_in_datagrams_that_fit() -> None:
    """-v wraps the HTTP/3 factory: the tunnel's smaller datagrams must reach the one inside.

    (Before, the wrapper kept the usual size, so QUIC inside a tunnel sent
    datagrams too big for HTTP Datagrams, and they went as capsules.)
    """
    from hface.cli._instruments import ConnectionObserver, instrument
    from hface.client import Client
    from hface.protocols import ProtocolLimits
    from hface.protocols.http3 import HTTP3ClientFactory

    plain = HTTP3ClientFactory().with_max_datagram_size(1200, 8000)
    assert (plain.settings.max_datagram_size, plain.settings.loopback_max_datagram_size) == (
        1200,
        8000,
    )
    client = Client()
    instrument(client, ConnectionObserver())
    observed = client.http3_factory
    assert observed.with_max_datagram_size(1200, 8000) is not observed
    assert observed.with_limits(ProtocolLimits(max_concurrent_streams=7)) is not observed
