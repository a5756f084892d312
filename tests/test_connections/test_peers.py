"""hface against independent implementations: curl, nghttp, ngtcp2 and h2o.

Server side: a listener running the example handler (``examples/custom_server.py``)
on one port, HTTP/1.1 and HTTP/2 over TLS and HTTP/3 over QUIC, answers
``curl --http1.1``, ``curl --http2``, ``nghttp`` and ngtcp2's ``gtlsclient``.
Client side: openers fetch a 1 MiB file from h2o (HTTP/1.1 and HTTP/2) and
from ngtcp2's ``gtlsserver`` (HTTP/3), and its sha256 must match.

The peers are Debian packages; a test whose peer is missing is skipped.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from examples.custom_server import handler as example_handler
from hface.common import ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.connections import (
    HTTPConnection,
    HTTPListener,
    HTTPMultiListener,
    HTTPOpener,
    HTTPOverQUICListener,
    HTTPOverQUICOpener,
    HTTPOverTCPListener,
    HTTPOverTCPOpener,
)
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived, StreamResetReceived
from hface.networking import QUICHandshakeLimits, QUICRetry
from hface.protocols import ALPNHTTPFactory
from hface.protocols.http1 import HTTP1ClientFactory, HTTP1ServerFactory
from hface.protocols.http2 import HTTP2ClientFactory, HTTP2ServerFactory
from hface.protocols.http3 import HTTP3ServerFactory
from tests.helpers.certs import TLSFiles
from tests.helpers.peers import (
    describe,
    free_port,
    needs_peer,
    require_peer,
    run_peer_in_thread,
    spawn,
    wait_until_listening,
    write_h2o_config,
)

pytestmark = pytest.mark.anyio

#: What the example handler answers to every request.
EXAMPLE_BODY = b"It works!\n"

#: The file the peer servers serve: 1 MiB of reproducible pseudo-random bytes.
FILE_NAME = "blob.bin"
FILE_SIZE = 1024 * 1024


# -- hface serves, the peers fetch ------------------------------------------------


async def _create_example_listener(
    tls_config: ServerTLSConfig, quic_limits: QUICHandshakeLimits | None = None
) -> HTTPListener:
    """TLS (HTTP/2 or HTTP/1.1 by ALPN) and QUIC (HTTP/3) on one free port of 127.0.0.1."""
    for _ in range(10):
        tcp = await HTTPOverTCPListener.create(
            ALPNHTTPFactory([HTTP2ServerFactory(), HTTP1ServerFactory()]),
            local_address=("127.0.0.1", 0),
            tls_config=tls_config,
        )
        port = tcp.local_addresses[0][1]
        try:
            quic = await HTTPOverQUICListener.create(
                HTTP3ServerFactory(),
                local_address=("127.0.0.1", port),
                tls_config=tls_config,
                handshake_limits=quic_limits,
            )
        except OSError:  # the UDP port is taken: try another
            await tcp.aclose()
            continue
        return HTTPMultiListener([tcp, quic])
    raise AssertionError("found no port free for both TCP and UDP")


@asynccontextmanager
async def _serving_example(
    tls_config: ServerTLSConfig, quic_limits: QUICHandshakeLimits | None = None
) -> AsyncIterator[int]:
    """Serve the example handler while the block runs; yield the port."""
    listener = await _create_example_listener(tls_config, quic_limits)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, example_handler)
        try:
            yield listener.local_addresses[0][1]
        finally:
            await listener.aclose()
            task_group.cancel_scope.cancel()


@needs_peer("curl")
@pytest.mark.parametrize(
    ("option", "expected_version"),
    [pytest.param("--http1.1", "1.1", id="http1.1"), pytest.param("--http2", "2", id="http2")],
)
async def test_curl_fetches_from_listener(
    option: str, expected_version: str, tls_files: TLSFiles, tmp_path: Path
) -> None:
    curl = require_peer("curl")
    body_file = tmp_path / "body"
    async with _serving_example(tls_files.server_config()) as port:
        result = await run_peer_in_thread(
            [
                curl,
                "--silent",
                "--show-error",
                option,
                "--cacert",
                tls_files.ca_file,
                "--resolve",
                f"localhost:{port}:127.0.0.1",
                "--max-time",
                "20",
                "--output",
                str(body_file),
                "--write-out",
                "%{http_version}",
                f"https://localhost:{port}/",
            ]
        )
    assert result.returncode == 0, describe(result)
    assert result.stdout == expected_version, describe(result)
    assert body_file.read_bytes() == EXAMPLE_BODY


@needs_peer("nghttp")
async def test_nghttp_fetches_from_listener(tls_files: TLSFiles) -> None:
    nghttp = require_peer("nghttp")
    async with _serving_example(tls_files.server_config()) as port:
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
    assert EXAMPLE_BODY.decode() in result.stdout, describe(result)


@needs_peer("gtlsclient")
@pytest.mark.parametrize("retry", [QUICRetry.AUTO, QUICRetry.ALWAYS], ids=lambda r: r.value)
async def test_gtlsclient_fetches_from_listener_over_http3(
    retry: QUICRetry, tls_files: TLSFiles, tmp_path: Path
) -> None:
    """ngtcp2 follows a Retry too (RFC 9000 §8.1.2), and checks what the server echoes."""
    gtlsclient = require_peer("gtlsclient")
    download = tmp_path / "download"
    download.mkdir()
    limits = QUICHandshakeLimits(retry=retry)
    async with _serving_example(tls_files.server_config(), quic_limits=limits) as port:
        # ngtcp2's example client has no CA option and does not verify the
        # server certificate; --download saves the body of "/" as index.html.
        # Not --quiet: its trace says whether a Retry came.
        result = await run_peer_in_thread(
            [
                gtlsclient,
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
    assert body_file.read_bytes() == EXAMPLE_BODY, describe(result)
    retried = "type=Retry" in result.stdout + result.stderr
    assert retried == (retry is QUICRetry.ALWAYS), describe(result)


# -- the peers serve, hface fetches -----------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PeerServer:
    """A peer server serving :data:`FILE_NAME` on 127.0.0.1."""

    #: The port it listens on.
    port: int
    #: The sha256 of the file it serves.
    sha256: str
    #: Where its output goes, for assertion messages.
    log_file: Path


@pytest.fixture(scope="module")
def document_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding :data:`FILE_NAME`."""
    root = tmp_path_factory.mktemp("htdocs")
    (root / FILE_NAME).write_bytes(random.Random(3).randbytes(FILE_SIZE))
    return root


def _sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
async def h2o_server(
    tls_files: TLSFiles, document_root: Path, tmp_path: Path
) -> AsyncIterator[PeerServer]:
    """h2o serving the document root over TLS (HTTP/1.1 and HTTP/2 by ALPN)."""
    h2o = require_peer("h2o")
    port = free_port()
    config = write_h2o_config(
        tmp_path,
        port=port,
        cert_file=tls_files.server_cert_file,
        key_file=tls_files.server_key_file,
        document_root=document_root,
    )
    log_file = tmp_path / "h2o.log"
    with spawn([h2o, "-c", str(config)], log_file=log_file) as process:
        await wait_until_listening(
            process, host="127.0.0.1", port=port, transport="tcp", log_file=log_file
        )
        yield PeerServer(port=port, sha256=_sha256_of(document_root / FILE_NAME), log_file=log_file)


@pytest.fixture
async def gtlsserver_server(
    tls_files: TLSFiles, document_root: Path, tmp_path: Path
) -> AsyncIterator[PeerServer]:
    """ngtcp2's example HTTP/3 server serving the document root."""
    gtlsserver = require_peer("gtlsserver")
    port = free_port()
    log_file = tmp_path / "gtlsserver.log"
    argv = [
        gtlsserver,
        "--quiet",
        f"--htdocs={document_root}",
        "127.0.0.1",
        str(port),
        tls_files.server_key_file,
        tls_files.server_cert_file,
    ]
    with spawn(argv, log_file=log_file) as process:
        await wait_until_listening(
            process, host="127.0.0.1", port=port, transport="udp", log_file=log_file
        )
        yield PeerServer(port=port, sha256=_sha256_of(document_root / FILE_NAME), log_file=log_file)


async def _fetch(connection: HTTPConnection, path: str) -> tuple[HeadersType, bytes]:
    """GET ``path`` on a new stream; return the response headers and body."""
    stream_id = connection.get_available_stream_id()
    request = [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", path.encode()),
    ]
    await connection.send_headers(stream_id, request, end_stream=True)
    headers: HeadersType = []
    body = bytearray()
    while True:
        event = await connection.receive_event()
        if isinstance(event, ConnectionTerminated):
            raise AssertionError(f"connection ended before the response did: {event}")
        if isinstance(event, StreamResetReceived) and event.stream_id == stream_id:
            raise AssertionError(f"stream reset: {event}")
        if isinstance(event, HeadersReceived) and event.stream_id == stream_id:
            headers = headers or event.headers
            if event.end_stream:
                return headers, bytes(body)
        elif isinstance(event, DataReceived) and event.stream_id == stream_id:
            body += event.data
            if event.end_stream:
                return headers, bytes(body)


async def _fetch_file(
    opener: HTTPOpener, server: PeerServer, expected_version: str
) -> tuple[HeadersType, bytes]:
    with anyio.fail_after(30):
        connection = await opener(("127.0.0.1", server.port), tls=True, server_name="localhost")
        async with connection:
            assert connection.http_version == expected_version
            return await _fetch(connection, f"/{FILE_NAME}")


@needs_peer("h2o")
@pytest.mark.parametrize(
    "http_version", [pytest.param("1.1", id="http1.1"), pytest.param("2", id="http2")]
)
async def test_opener_fetches_file_from_h2o(
    http_version: str, h2o_server: PeerServer, client_tls_config: ClientTLSConfig
) -> None:
    factory = HTTP1ClientFactory() if http_version == "1.1" else HTTP2ClientFactory()
    opener = HTTPOverTCPOpener(factory, tls_config=client_tls_config)
    headers, body = await _fetch_file(opener, h2o_server, http_version)
    log = h2o_server.log_file.read_text(errors="replace")
    assert (b":status", b"200") in headers, log
    assert dict(headers).get(b"server", b"").startswith(b"h2o/"), headers
    assert len(body) == FILE_SIZE
    assert hashlib.sha256(body).hexdigest() == h2o_server.sha256


@needs_peer("gtlsserver")
async def test_opener_fetches_file_from_gtlsserver(
    gtlsserver_server: PeerServer, client_tls_config: ClientTLSConfig
) -> None:
    opener = HTTPOverQUICOpener(tls_config=client_tls_config)
    headers, body = await _fetch_file(opener, gtlsserver_server, "3")
    log = gtlsserver_server.log_file.read_text(errors="replace")
    assert (b":status", b"200") in headers, log
    assert len(body) == FILE_SIZE
    assert hashlib.sha256(body).hexdigest() == gtlsserver_server.sha256
