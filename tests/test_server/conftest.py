"""Helpers for server tests: run a server on a free port, fetch from it over any version."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest

from hface.common import AddressType, ClientTLSConfig
from hface.connections import HTTPConnection, HTTPOverTCPOpener
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    HeadersReceived,
    StreamReset,
)
from hface.protocols.http1 import HTTP1ClientFactory
from hface.protocols.http2 import HTTP2ClientFactory
from hface.server import ASGIServer, Endpoint
from tests.test_connections.conftest import connect

#: Every HTTP version, as ASGI spells it.
VERSIONS = ("1.1", "2", "3")


@pytest.fixture(params=VERSIONS, ids=lambda v: f"http{v}")
def http_version(request: pytest.FixtureRequest) -> str:
    """Each HTTP version in turn."""
    version: str = request.param
    return version


@asynccontextmanager
async def running(
    server: ASGIServer, endpoints: Sequence[Endpoint] | None = None
) -> AsyncIterator[AddressType]:
    """Run ``server`` while the block runs; yield its first bound address.

    Endpoints default to one ``https`` endpoint on a free port of 127.0.0.1.
    """
    server.handle_signals = False
    if endpoints is None:
        endpoints = [Endpoint("https", "127.0.0.1", 0)]
    async with anyio.create_task_group() as task_group:
        addresses = await task_group.start(server.run, endpoints)
        try:
            yield addresses[0]
        finally:
            task_group.cancel_scope.cancel()


@dataclass
class Response:
    """What a client received on one stream."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    interim: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    reset: StreamReset | None = None
    terminated: bool = False

    def header(self, name: bytes) -> bytes | None:
        """The value of the first header called ``name``."""
        return next((value for key, value in self.headers if key == name), None)


@asynccontextmanager
async def client(
    http_version: str, address: AddressType, tls_config: ClientTLSConfig | None, **options: object
) -> AsyncIterator[HTTPConnection]:
    """An open client connection; ``tls_config=None`` for cleartext (h2: prior knowledge)."""
    if tls_config is None:
        factory = HTTP1ClientFactory() if http_version == "1.1" else HTTP2ClientFactory()
        opener = HTTPOverTCPOpener(factory)
        connection = await opener(address, tls=False)
    else:
        connection = await connect(http_version, address, tls_config, **options)
    async with connection:
        yield connection


async def send_request(
    connection: HTTPConnection,
    *,
    method: bytes = b"GET",
    path: bytes = b"/",
    body: bytes | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
    scheme: bytes = b"https",
) -> int:
    """Send a request; return its stream ID."""
    stream_id = connection.get_available_stream_id()
    request = [
        (b":method", method),
        (b":scheme", scheme),
        (b":authority", b"localhost"),
        (b":path", path),
        *headers,
    ]
    if body is not None and connection.http_version == "1.1":
        request.append((b"content-length", str(len(body)).encode()))
    await connection.send_headers(stream_id, request, end_stream=not body)
    if body:
        await connection.send_data(stream_id, body, end_stream=True)
    return stream_id


async def read_response(connection: HTTPConnection, stream_id: int) -> Response:
    """Read events of ``stream_id`` until its response ends."""
    response = Response()
    while True:
        event = await connection.receive_event()
        if isinstance(event, ConnectionTerminated):
            response.terminated = True
            return response
        if getattr(event, "stream_id", None) != stream_id:
            continue
        if isinstance(event, HeadersReceived):
            headers = list(event.headers)
            status = dict(headers).get(b":status")
            if status is None:
                response.trailers = headers
            elif int(status) < 200:
                response.interim.append(headers)
            else:
                response.status = int(status)
                response.headers = [(k, v) for k, v in headers if not k.startswith(b":")]
        elif isinstance(event, DataReceived):
            response.body += event.data
        elif isinstance(event, StreamReset):
            response.reset = event
            return response
        if getattr(event, "end_stream", False):
            return response


async def fetch(
    http_version: str,
    address: AddressType,
    tls_config: ClientTLSConfig | None,
    **request: object,
) -> Response:
    """One request on a new connection."""
    async with client(http_version, address, tls_config) as connection:
        if tls_config is None:
            request.setdefault("scheme", b"http")
        stream_id = await send_request(connection, **request)  # type: ignore[arg-type]
        return await read_response(connection, stream_id)
