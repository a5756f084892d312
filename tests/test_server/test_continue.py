"""``expect: 100-continue`` (RFC 9110 §10.1.1) on every version and both HTTP/1.1 parsers.

The server sends ``100 Continue`` when the application first waits in
``receive()`` for the body, as hypercorn and uvicorn do, and never when
the application answers without reading it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from hface.common import ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.connections import HTTPConnection
from hface.events import HeadersReceived
from hface.protocols import HTTPOverTCPFactory
from hface.protocols.http1 import HTTP1ServerFactory
from hface.protocols.http1._httptools import HTTPToolsServerFactory
from hface.server import ASGIServer, Endpoint
from tests.helpers.peers import describe, needs_peer, require_peer, run_peer_in_thread
from tests.test_server.conftest import client, read_response, running

pytestmark = pytest.mark.anyio

VARIANTS = [
    pytest.param("1.1", HTTP1ServerFactory, id="http1.1-h11"),
    pytest.param("1.1", HTTPToolsServerFactory, id="http1.1-httptools"),
    pytest.param("2", None, id="http2"),
    pytest.param("3", None, id="http3"),
]
HTTP1_FACTORIES = [
    pytest.param(HTTP1ServerFactory, id="h11"),
    pytest.param(HTTPToolsServerFactory, id="httptools"),
]
BODY = b"x" * 5000


async def reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, then answers with its length."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"%d" % size})


async def refuser(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 413 without reading the body."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 413, "headers": []})
    await send({"type": "http.response.body", "body": b"too large"})


def make_server(app: Any, factory: type[HTTPOverTCPFactory] | None, tls: ServerTLSConfig) -> Any:
    server = ASGIServer(app)
    if factory is not None:
        server.http1_factory = factory()
    server.tls_config = tls
    return server


async def open_expecting(connection: HTTPConnection) -> int:
    """Send the head of a POST with ``expect: 100-continue`` and no body yet."""
    stream_id = connection.get_available_stream_id()
    headers: HeadersType = [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", b"/upload"),
        (b"expect", b"100-continue"),
        (b"content-length", b"%d" % len(BODY)),
    ]
    await connection.send_headers(stream_id, headers)
    return stream_id


async def first_headers(connection: HTTPConnection, stream_id: int) -> HeadersType:
    """The first header block the server sends on ``stream_id``."""
    while True:
        event = await connection.receive_event()
        if isinstance(event, HeadersReceived) and event.stream_id == stream_id:
            return event.headers


@pytest.mark.parametrize(("http_version", "factory"), VARIANTS)
async def test_continue_when_the_application_reads(
    http_version: str,
    factory: type[HTTPOverTCPFactory] | None,
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
) -> None:
    """100 Continue comes before the body is sent; then the upload is answered."""
    server = make_server(reader, factory, server_tls_config)
    async with running(server) as address:
        async with client(http_version, address, client_tls_config) as connection:
            stream_id = await open_expecting(connection)
            with anyio.fail_after(0.8):  # curl waits 1 s before it sends anyway
                interim = await first_headers(connection, stream_id)
            assert dict(interim)[b":status"] == b"100"
            await connection.send_data(stream_id, BODY, end_stream=True)
            response = await read_response(connection, stream_id)
    assert response.status == 200
    assert response.body == b"%d" % len(BODY)


@pytest.mark.parametrize(("http_version", "factory"), VARIANTS)
async def test_no_continue_when_the_application_answers_without_reading(
    http_version: str,
    factory: type[HTTPOverTCPFactory] | None,
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
) -> None:
    """The final status comes instead of 100: the client need not upload."""
    server = make_server(refuser, factory, server_tls_config)
    async with running(server) as address:
        async with client(http_version, address, client_tls_config) as connection:
            stream_id = await open_expecting(connection)
            with anyio.fail_after(5):
                headers = await first_headers(connection, stream_id)
    assert dict(headers)[b":status"] == b"413"


@needs_peer("curl")
@pytest.mark.parametrize("factory", HTTP1_FACTORIES)
async def test_curl_upload_with_expect_is_not_delayed(
    factory: type[HTTPOverTCPFactory], tmp_path: Path
) -> None:
    """curl uploading 1 MiB with ``Expect: 100-continue`` is not held for its 1 s timeout."""
    curl = require_peer("curl")
    upload = tmp_path / "upload"
    upload.write_bytes(b"u" * 1024 * 1024)
    server = ASGIServer(reader)
    server.http1_factory = factory()
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        command = [
            curl,
            "--silent",
            "--show-error",
            "--http1.1",
            "--header",
            "Expect: 100-continue",
            "--data-binary",
            f"@{upload}",
            "--max-time",
            "20",
            "--write-out",
            " %{http_code}",
            f"http://127.0.0.1:{address[1]}/upload",
        ]
        started = time.monotonic()
        result = await run_peer_in_thread(command)
        elapsed = time.monotonic() - started
    assert result.returncode == 0, describe(result)
    assert result.stdout.split() == [str(1024 * 1024), "200"], describe(result)
    assert elapsed < 0.5, elapsed
