"""Servers and clients on loopback, for every HTTP version."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import anyio

from hface.common import AddressType, ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.connections import (
    ConnectionOptions,
    HTTPConnection,
    HTTPListener,
    HTTPOverQUICListener,
    HTTPOverQUICOpener,
    HTTPOverTCPListener,
    HTTPOverTCPOpener,
    HTTPStream,
)
from hface.events import ConnectionTerminated, DataReceived, Event, HeadersReceived
from hface.protocols.http1 import HTTP1ClientFactory, HTTP1ServerFactory
from hface.protocols.http2 import HTTP2ClientFactory, HTTP2ServerFactory
from hface.protocols.http3 import HTTP3ClientFactory, HTTP3ServerFactory

Handler = Callable[[HTTPConnection], Awaitable[None]]

#: A GET request for ``/``, as a client sends it in the tests.
REQUEST: HeadersType = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]


def request(path: bytes = b"/", method: bytes = b"GET", size: int | None = None) -> HeadersType:
    """A request's headers, with a ``content-length`` if ``size`` is given."""
    headers = [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", path),
    ]
    if size is not None:
        headers.append((b"content-length", str(size).encode()))
    return headers


async def read_response(stream: HTTPStream) -> tuple[HeadersType, bytes]:
    """The response of ``stream``: its headers and body, read from its own events."""
    headers: HeadersType = []
    body = bytearray()
    while True:
        event = await stream.receive_event()
        assert isinstance(event, HeadersReceived | DataReceived), event
        assert event.stream_id == stream.stream_id  # nobody else's
        if isinstance(event, HeadersReceived):
            headers = headers or event.headers
        else:
            body += event.data
        if event.end_stream:
            return headers, bytes(body)


async def next_event(connection: HTTPConnection) -> Event:
    """The connection's next event, which must not be its end."""
    event = await connection.receive_event()
    assert not isinstance(event, ConnectionTerminated), event
    return event


async def request_headers(connection: HTTPConnection) -> int:
    """Wait for a request's headers on a server connection; return its stream ID."""
    while True:
        event = await next_event(connection)
        if isinstance(event, HeadersReceived):
            return event.stream_id


async def create_listener(
    http_version: str,
    tls_config: ServerTLSConfig,
    *,
    connection_options: ConnectionOptions | None = None,
    factory_options: Mapping[str, object] | None = None,
) -> HTTPListener:
    """A TLS listener of one HTTP version on a free port of 127.0.0.1.

    ``factory_options`` go to the protocol factory, ``connection_options`` to the listener.
    """
    address = ("127.0.0.1", 0)
    options = dict(factory_options or {})
    if http_version == "1.1":
        return await HTTPOverTCPListener.create(
            HTTP1ServerFactory(),
            local_address=address,
            tls_config=tls_config,
            options=connection_options,
        )
    if http_version == "2":
        return await HTTPOverTCPListener.create(
            HTTP2ServerFactory(**options),  # type: ignore[arg-type]  # factory options
            local_address=address,
            tls_config=tls_config,
            options=connection_options,
        )
    return await HTTPOverQUICListener.create(
        HTTP3ServerFactory(**options),  # type: ignore[arg-type]  # factory options
        local_address=address,
        tls_config=tls_config,
        options=connection_options,
    )


@asynccontextmanager
async def serving(
    http_version: str, tls_config: ServerTLSConfig, handler: Handler, **options: object
) -> AsyncIterator[AddressType]:
    """Serve ``handler`` on a free port while the block runs; yield the address."""
    listener = await create_listener(http_version, tls_config, factory_options=options)
    async with serving_on(listener, handler) as address:
        yield address


@asynccontextmanager
async def serving_on(listener: HTTPListener, handler: Handler) -> AsyncIterator[AddressType]:
    """Serve ``handler`` with ``listener`` while the block runs; yield its address."""
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handler)
        try:
            yield listener.local_addresses[0]
        finally:
            await listener.aclose()
            task_group.cancel_scope.cancel()


async def connect(
    http_version: str, address: AddressType, tls_config: ClientTLSConfig, **options: object
) -> HTTPConnection:
    """An unopened client connection of one HTTP version to ``address``."""
    if http_version == "3":
        opener3 = HTTPOverQUICOpener(
            HTTP3ClientFactory(**options),  # type: ignore[arg-type]  # factory options
            tls_config=tls_config,
        )
        return await opener3(address, tls=True, server_name="localhost")
    factory = HTTP1ClientFactory() if http_version == "1.1" else HTTP2ClientFactory()
    opener = HTTPOverTCPOpener(factory, tls_config=tls_config)
    return await opener(address, tls=True, server_name="localhost")
