"""ASGIServer against independent clients: curl, nghttp and ngtcp2's ``gtlsclient``.

``ASGIServer(hello)`` on one ``https`` endpoint answers ``curl --http1.1``,
``curl --http2``, ``nghttp`` (HTTP/2) and ``gtlsclient`` (HTTP/3); on an
``http`` endpoint it answers ``curl --http1.1`` and
``curl --http2-prior-knowledge``. A test whose peer is missing is skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hface.server import ASGIServer, Endpoint
from hface.server.examples import hello
from tests.helpers.certs import TLSFiles
from tests.helpers.peers import describe, needs_peer, require_peer, run_peer_in_thread
from tests.test_server.conftest import running

pytestmark = pytest.mark.anyio


def greeting(http_version: str) -> bytes:
    """What the hello example answers over ``http_version``."""
    return f"Hello from hface! (HTTP/{http_version})\n".encode()


def _https_server(tls_files: TLSFiles) -> ASGIServer:
    server = ASGIServer(hello.application)
    server.tls_config = tls_files.server_config()
    return server


async def _curl(option: str, url: str, body_file: Path, *extra: str) -> str:
    """Fetch ``url`` with curl; return the HTTP version curl reports."""
    curl = require_peer("curl")
    result = await run_peer_in_thread(
        [
            curl,
            "--silent",
            "--show-error",
            option,
            *extra,
            "--max-time",
            "20",
            "--output",
            str(body_file),
            "--write-out",
            "%{http_code} %{http_version}",
            url,
        ]
    )
    assert result.returncode == 0, describe(result)
    status, version = result.stdout.split()
    assert status == "200", describe(result)
    return version


@needs_peer("curl")
@pytest.mark.parametrize(
    ("option", "http_version"),
    [pytest.param("--http1.1", "1.1", id="http1.1"), pytest.param("--http2", "2", id="http2")],
)
async def test_curl_on_https(
    option: str, http_version: str, tls_files: TLSFiles, tmp_path: Path
) -> None:
    body_file = tmp_path / "body"
    async with running(_https_server(tls_files)) as (_, port):
        version = await _curl(
            option,
            f"https://localhost:{port}/",
            body_file,
            "--cacert",
            tls_files.ca_file,
            "--resolve",
            f"localhost:{port}:127.0.0.1",
        )
    assert version == http_version
    assert body_file.read_bytes() == greeting(http_version)


@needs_peer("curl")
@pytest.mark.parametrize(
    ("option", "http_version"),
    [
        pytest.param("--http1.1", "1.1", id="http1.1"),
        pytest.param("--http2-prior-knowledge", "2", id="http2-prior-knowledge"),
    ],
)
async def test_curl_on_http(option: str, http_version: str, tmp_path: Path) -> None:
    body_file = tmp_path / "body"
    server = ASGIServer(hello.application)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as (_, port):
        version = await _curl(option, f"http://127.0.0.1:{port}/", body_file)
    assert version == http_version
    assert body_file.read_bytes() == greeting(http_version)


@needs_peer("nghttp")
async def test_nghttp(tls_files: TLSFiles) -> None:
    nghttp = require_peer("nghttp")
    async with running(_https_server(tls_files)) as (_, port):
        # nghttp has no CA option, but OpenSSL's default verify paths honour
        # SSL_CERT_FILE; a failed verification is only a warning, checked below.
        result = await run_peer_in_thread(
            [nghttp, "--verbose", "--timeout=20", f"https://localhost:{port}/"],
            env={"SSL_CERT_FILE": tls_files.ca_file},
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, describe(result)
    assert "The negotiated protocol: h2" in output, describe(result)
    assert "Certificate verification failed" not in output, describe(result)
    assert ":status: 200" in output, describe(result)
    assert greeting("2").decode() in result.stdout, describe(result)


@needs_peer("gtlsclient")
async def test_gtlsclient_over_http3(tls_files: TLSFiles, tmp_path: Path) -> None:
    gtlsclient = require_peer("gtlsclient")
    download = tmp_path / "download"
    download.mkdir()
    async with running(_https_server(tls_files)) as (_, port):
        # ngtcp2's example client has no CA option and does not verify the
        # server certificate; --download saves the body of "/" as index.html.
        result = await run_peer_in_thread(
            [
                gtlsclient,
                "--quiet",
                "--exit-on-first-stream-close",
                "--timeout=20s",
                "--sni=localhost",
                f"--download={download}",
                "127.0.0.1",
                str(port),
                f"https://localhost:{port}/",
            ]
        )
    assert result.returncode == 0, describe(result)
    body_file = download / "index.html"
    assert body_file.exists(), describe(result)
    assert body_file.read_bytes() == greeting("3"), describe(result)
