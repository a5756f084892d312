"""ASGIServer end to end: Starlette unchanged, graceful shutdown, backpressure, the example."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.connections import HTTPOverTCPOpener
from hface.errors import TransportError
from hface.events import HeadersReceived
from hface.protocols.http2 import HTTP2ClientFactory
from hface.server import ASGIServer, Endpoint
from tests.helpers.network import port_is_free
from tests.test_server.conftest import client, read_response, running, send_request

pytestmark = pytest.mark.anyio

REPOSITORY = Path(__file__).resolve().parents[2]


def starlette_app(events: list[str]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        events.append("startup")
        yield {"greeting": "hi"}
        events.append("shutdown")

    async def stream(request: Request) -> StreamingResponse:
        async def numbers() -> Any:
            for number in range(5):
                yield f"{number}\n"
                await anyio.sleep(0.01)

        return StreamingResponse(numbers(), media_type="text/plain")

    async def echo(request: Request) -> Response:
        body = await request.body()
        digest = hashlib.sha256(body).hexdigest()
        return Response(body, headers={"x-sha256": digest})

    async def state(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.state.greeting)

    routes = [
        Route("/stream", stream),
        Route("/echo", echo, methods=["POST"]),
        Route("/state", state),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def test_starlette(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    events: list[str] = []
    server = ASGIServer(starlette_app(events))
    server.tls_config = server_tls_config
    body = os.urandom(10 * 1024 * 1024)
    async with running(server) as address:
        assert events == ["startup"]
        async with client(http_version, address, client_tls_config) as connection:
            stream_id = await send_request(connection, path=b"/stream")
            response = await read_response(connection, stream_id)
            assert response.status == 200
            assert response.body == b"0\n1\n2\n3\n4\n"
            stream_id = await send_request(connection, path=b"/state")
            response = await read_response(connection, stream_id)
            assert response.body == b"hi"
            with anyio.fail_after(60):
                stream_id = await send_request(connection, method=b"POST", path=b"/echo", body=body)
                response = await read_response(connection, stream_id)
            assert response.status == 200
            digest = hashlib.sha256(body).hexdigest().encode()
            assert response.header(b"x-sha256") == digest
            assert hashlib.sha256(response.body).hexdigest().encode() == digest
    assert events == ["startup", "shutdown"]


async def test_graceful_shutdown_completes_a_response(
    http_version: str,
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
) -> None:
    started = anyio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        started.set()
        for _ in range(4):
            await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
            await anyio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"done\n"})

    server = ASGIServer(slow)
    server.tls_config = server_tls_config
    server.handle_signals = False
    stop = anyio.CancelScope()

    async def serve(*, task_status: Any) -> None:
        with stop:
            await server.run([Endpoint("https", "127.0.0.1", 0)], task_status=task_status)

    async with anyio.create_task_group() as task_group:
        address = (await task_group.start(serve))[0]
        async with client(http_version, address, client_tls_config) as connection:
            stream_id = await send_request(connection)
            with anyio.fail_after(5):
                await started.wait()
            stop.cancel()  # graceful shutdown begins mid-response
            with anyio.fail_after(6):
                response = await read_response(connection, stream_id)
    assert response.status == 200
    assert (response.reset, response.terminated) == (None, False)
    assert response.body == b"tick\n" * 4 + b"done\n"


async def test_send_blocks_while_the_client_does_not_read(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    sent = 0
    chunk = b"x" * 65536

    async def endless(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal sent
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)

    server = ASGIServer(endless)
    server.tls_config = server_tls_config
    async with running(server) as address:
        async with client(http_version, address, client_tls_config) as connection:
            stream_id = await send_request(connection)
            with anyio.fail_after(5):
                while not isinstance(event := await connection.receive_event(), HeadersReceived):
                    pass
            assert event.stream_id == stream_id
            await anyio.sleep(1.5)  # the client reads nothing more meanwhile
            stalled_at = sent
            await anyio.sleep(0.5)
            assert sent == stalled_at  # send() is blocked, not buffering
            # Bounded: the kernel's autotuned socket buffers (tcp_rmem's max is
            # often 32 MiB) hold most of it; unbounded buffering would be far more.
            assert sent < 64 * 1024 * 1024


async def test_example_server_runs_as_it_is(tmp_path: Path, anyio_backend: str) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("the example runs its own asyncio loop; once is enough")
    if not port_is_free(5443):
        pytest.skip("port 5443 is in use")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    (tmp_path / "certs").mkdir()
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "certs" / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "certs" / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    process = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
        [sys.executable, str(REPOSITORY / "examples" / "server.py")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        opener = HTTPOverTCPOpener(
            HTTP2ClientFactory(), tls_config=ClientTLSConfig(cafile=str(tmp_path / "ca.pem"))
        )
        with anyio.fail_after(15):
            while True:
                try:
                    connection = await opener(("localhost", 5443), tls=True)
                    break
                except (OSError, TransportError):
                    assert process.poll() is None, process.communicate()
                    await anyio.sleep(0.1)
            async with connection:
                stream_id = await send_request(connection)
                response = await read_response(connection, stream_id)
        assert response.status == 200
        assert response.body == b"Hello from hface! (HTTP/2)\n"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
