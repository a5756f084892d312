"""ProxyServer with real peers: curl through it to an h2o origin, tunnels over
HTTP/2 and HTTP/3 carrying TLS to h2o, and ``examples/proxy_server.py`` as it is.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
import trustme
from anyio.streams.tls import TLSStream

from hface.common import ClientTLSConfig, ServerTLSConfig
from tests.helpers.certs import TLSFiles
from tests.helpers.network import wait_until_port_is_free
from tests.test_server.test_proxy import (
    echo,
    proxy_client,
    running_proxy,
    running_target,
    status,
)

pytestmark = pytest.mark.anyio

REPOSITORY = Path(__file__).resolve().parents[2]
GREETING = b"hello from h2o through the proxy\n"


def _require(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _spawn(argv: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, cwd=cwd
        )


def _not_listening(process: subprocess.Popen[bytes], host: str, port: int, log: Path) -> str:
    return f"{process.args!r} is not listening on {host}:{port}:\n{log.read_text()}"


async def _wait_for_tcp(host: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    with anyio.move_on_after(15):
        while process.poll() is None:
            try:
                stream = await anyio.connect_tcp(host, port)
            except OSError:
                await anyio.sleep(0.05)
            else:
                await stream.aclose()
                return
    raise AssertionError(_not_listening(process, host, port, log))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def running_h2o(tls_files: TLSFiles, directory: Path) -> AsyncIterator[int]:
    """Run h2o serving ``hello.txt`` over TLS on a free port of 127.0.0.1; yield the port."""
    h2o = _require("h2o")
    root = directory / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(GREETING)
    (root / "index.html").write_bytes(GREETING)
    async with running_target(echo) as target:  # for a free port, released for h2o
        port = target.address[1]
    # As root h2o switches to "nobody", who cannot read pytest's temporary directories.
    user = f"user: {pwd.getpwuid(os.geteuid()).pw_name}\n" if os.geteuid() == 0 else ""
    config = directory / "h2o.conf"
    config.write_text(
        f"listen:\n  host: 127.0.0.1\n  port: {port}\n  ssl:\n"
        f'    certificate-file: "{tls_files.server_cert_file}"\n'
        f'    key-file: "{tls_files.server_key_file}"\n'
        f'{user}error-log: "{directory / "h2o-error.log"}"\n'
        f'pid-file: "{directory / "h2o.pid"}"\n'
        f'hosts:\n  default:\n    paths:\n      /:\n        file.dir: "{root}"\n'
    )
    log = directory / "h2o.log"
    process = _spawn([h2o, "-c", str(config)], log)
    try:
        await _wait_for_tcp("127.0.0.1", port, process, log)
        yield port
    finally:
        _stop(process)


@pytest.mark.peer("curl")
@pytest.mark.peer("h2o")
@pytest.mark.parametrize("credentials", [None, ("user", "secret")])
async def test_curl_reaches_h2o_through_the_proxy(
    credentials: tuple[str, str] | None,
    tls_files: TLSFiles,
    server_tls_config: ServerTLSConfig,
    tmp_path: Path,
) -> None:
    curl = _require("curl")
    user = [] if credentials is None else ["--proxy-user", ":".join(credentials)]
    async with (
        running_h2o(tls_files, tmp_path) as origin_port,
        running_proxy(server_tls_config, credentials=credentials) as address,
    ):
        argv = [
            curl, "-sS", "-p", "--max-time", "20", *user,
            "-x", f"https://127.0.0.1:{address[1]}",
            "--proxy-cacert", tls_files.ca_file,
            "--cacert", tls_files.ca_file,
            f"https://localhost:{origin_port}/",
        ]  # fmt: skip
        result = await anyio.to_thread.run_sync(
            lambda: subprocess.run(argv, capture_output=True, timeout=30, check=False)
        )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout == GREETING


@pytest.mark.peer("h2o")
@pytest.mark.parametrize("http_version", ["1.1", "2", "3"])
async def test_tunnels_carry_tls_to_h2o(
    http_version: str,
    tls_files: TLSFiles,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
    tmp_path: Path,
) -> None:
    context = ssl.create_default_context(cafile=tls_files.ca_file)
    context.set_alpn_protocols(["http/1.1"])
    async with (
        running_h2o(tls_files, tmp_path) as origin_port,
        running_proxy(server_tls_config) as address,
        proxy_client(http_version, address, client_tls_config) as client,
    ):
        headers, tunnel = await client.open_tunnel(f"localhost:{origin_port}")
        assert status(headers) == 200
        with anyio.fail_after(20):
            origin = await TLSStream.wrap(
                tunnel, hostname="localhost", ssl_context=context, standard_compatible=False
            )
            request = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            await origin.send(request)
            response = b""
            while True:
                try:
                    response += await origin.receive()
                except anyio.EndOfStream:
                    break
            await origin.aclose()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == GREETING


async def test_the_example_runs_as_it_is(
    tmp_path: Path, client_tls_config: ClientTLSConfig
) -> None:
    ca = trustme.CA()
    (tmp_path / "certs").mkdir()
    certificate = ca.issue_cert("localhost", "127.0.0.1", "::1")
    certificate.cert_chain_pems[0].write_to_path(str(tmp_path / "certs" / "cert.pem"))
    certificate.private_key_pem.write_to_path(str(tmp_path / "certs" / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls_config = ClientTLSConfig(cafile=str(tmp_path / "ca.pem"))
    log = tmp_path / "example.log"
    script = REPOSITORY / "examples" / "proxy_server.py"
    wait_until_port_is_free(6443, udp=False)
    process = _spawn([sys.executable, str(script)], log, cwd=tmp_path)
    try:
        await _wait_for_tcp("localhost", 6443, process, log)
        async with running_target(echo) as target:
            async with proxy_client("1.1", ("localhost", 6443), tls_config) as client:
                headers, tunnel = await client.open_tunnel(target.authority)
                assert status(headers) == 200
                await tunnel.send(b"through the example")
                assert await tunnel.receive() == b"through the example"
        process.send_signal(signal.SIGINT)
        returncode = await anyio.to_thread.run_sync(lambda: process.wait(timeout=20))
    finally:
        _stop(process)
    output = log.read_text(errors="replace")
    assert returncode == 0, output
    assert "Traceback" not in output
