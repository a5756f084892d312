"""ASGIServer end to end: Starlette unchanged, graceful shutdown, backpressure, the example."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from anyio.streams.tls import TLSStream
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame
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
from tests.test_server.test_protocol_limits import raw_h2, server_settings

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


@pytest.mark.parametrize("version", ["1.1", "2"])
async def test_graceful_shutdown_serves_the_request_on_its_way(
    version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    """A request sent as the shutdown begins is served, not refused (RFC 9113 §6.8's two steps).

    The connection is open with no request yet when the server begins to
    drain; the client sends its request before it reads what the server
    said. A one-step GOAWAY names no stream there (HTTP/2: the request is
    refused), and closing an HTTP/1.1 connection with no request yet loses
    it. (HTTP/3 is covered by the SIGHUP test of ``test_server_workers``.)
    """

    async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"served while draining"})

    server = ASGIServer(hello)
    server.tls_config = server_tls_config
    server.handle_signals = False
    stop = anyio.CancelScope()
    stopped = anyio.Event()

    async def serve(*, task_status: Any) -> None:
        with stop:
            await server.run([Endpoint("https", "127.0.0.1", 0)], task_status=task_status)
        stopped.set()

    async with anyio.create_task_group() as task_group:
        address = (await task_group.start(serve))[0]
        if version == "2":
            async with raw_h2(address, client_tls_config) as h2:
                await server_settings(h2)  # open
                stop.cancel()
                await anyio.sleep(0.3)  # what the server says meanwhile waits, unread
                await h2.send(h2.headers(1))
                frames = []
                with anyio.fail_after(5):
                    while (received := await h2.next_frame()) is not None:
                        frames.append(received)
            goaways = [f.last_stream_id for f in frames if isinstance(f, GoAwayFrame)]
            assert goaways == [2**31 - 1, 1]  # the notice, then the real one
            assert not [f for f in frames if isinstance(f, RstStreamFrame)]
            [answer] = [f for f in frames if isinstance(f, HeadersFrame)]
            assert answer.stream_id == 1
            body = b"".join(f.data for f in frames if isinstance(f, DataFrame))
        else:
            context = ssl.create_default_context(cafile=client_tls_config.cafile)
            tcp = await anyio.connect_tcp(*address)
            async with await TLSStream.wrap(
                tcp, ssl_context=context, hostname="localhost", standard_compatible=False
            ) as stream:
                await anyio.sleep(0.2)  # open
                stop.cancel()
                await anyio.sleep(0.3)
                await stream.send(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
                received_bytes = b""
                with anyio.fail_after(5), contextlib.suppress(anyio.EndOfStream):
                    while True:
                        received_bytes += await stream.receive()
            head, _, body = received_bytes.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            assert b"connection: close" in head.lower()  # the last exchange
        with anyio.fail_after(5):
            await stopped.wait()
    assert body == b"served while draining"


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
