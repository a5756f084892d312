"""Fewer writes and event-loop trips: ``send_headers(flush=False)`` and queued events.

Real TLS sockets on loopback (QUIC for HTTP/3), every HTTP version, asyncio
and Trio. Each test is bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import anyio
import pytest

from hface.common import ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.connections import HTTPConnection
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived

from .conftest import REQUEST, connect, serving
from .conftest import next_event as _next
from .conftest import request_headers as _request_headers

pytestmark = pytest.mark.anyio

HTTP_VERSIONS = ("1.1", "2", "3")
RESPONSE: HeadersType = [(b":status", b"200"), (b"content-length", b"5")]
#: Long enough for headers written at once to reach a loopback peer.
QUIET = 0.3


# Not HTTP/3: there the transport task's own datagrams (ACKs, timers) may
# carry the headers at any moment, as the parameter allows.
@pytest.mark.parametrize("http_version", ["1.1", "2"])
async def test_unflushed_headers_leave_with_the_data_that_follows(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    headers_submitted = anyio.Event()
    send_body = anyio.Event()

    async def handler(connection: HTTPConnection) -> None:
        stream_id = await _request_headers(connection)
        # Any write flushes held headers: on HTTP/2, let the client's late
        # control frames (SETTINGS ACK, WINDOW_UPDATE) and their answers go first.
        await anyio.sleep(QUIET)
        await connection.send_headers(stream_id, RESPONSE, flush=False)
        headers_submitted.set()
        await send_body.wait()
        await connection.send_data(stream_id, b"hello", end_stream=True)
        while not isinstance(await connection.receive_event(), ConnectionTerminated):
            pass

    with anyio.fail_after(20):
        async with serving(http_version, server_tls_config, handler) as address:
            client = await connect(http_version, address, client_tls_config)
            async with client:
                stream_id = client.get_available_stream_id()
                await client.send_headers(stream_id, REQUEST, end_stream=True)
                await headers_submitted.wait()
                # Held back: nothing of the response reaches the client yet.
                with anyio.move_on_after(QUIET):
                    early = await _next(client)
                    pytest.fail(f"the headers went out before the data: {early}")
                send_body.set()
                response = await _next(client)
                assert isinstance(response, HeadersReceived)
                assert response.headers[0] == (b":status", b"200")
                body = b""
                while True:
                    event = await _next(client)
                    assert isinstance(event, DataReceived)
                    body += event.data
                    if event.end_stream:
                        break
                assert body == b"hello"


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_headers_that_end_the_stream_are_sent_even_unflushed(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async def handler(connection: HTTPConnection) -> None:
        stream_id = await _request_headers(connection)
        # Nothing follows headers that end the stream: they must go out now.
        await connection.send_headers(stream_id, [(b":status", b"204")], True, flush=False)
        while not isinstance(await connection.receive_event(), ConnectionTerminated):
            pass

    with anyio.fail_after(20):
        async with serving(http_version, server_tls_config, handler) as address:
            client = await connect(http_version, address, client_tls_config)
            async with client:
                stream_id = client.get_available_stream_id()
                await client.send_headers(stream_id, REQUEST, end_stream=True)
                response = await _next(client)
                assert isinstance(response, HeadersReceived)
                assert response.headers[0] == (b":status", b"204")
                assert response.end_stream


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_receive_event_honours_cancellation_with_events_queued(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async def handler(connection: HTTPConnection) -> None:
        stream_id = await _request_headers(connection)
        await connection.send_headers(stream_id, RESPONSE)
        await connection.send_data(stream_id, b"hello", end_stream=True)
        while not isinstance(await connection.receive_event(), ConnectionTerminated):
            pass

    with anyio.fail_after(20):
        async with serving(http_version, server_tls_config, handler) as address:
            client = await connect(http_version, address, client_tls_config)
            async with client:
                stream_id = client.get_available_stream_id()
                await client.send_headers(stream_id, REQUEST, end_stream=True)
                response = await _next(client)
                assert isinstance(response, HeadersReceived)
                await anyio.sleep(QUIET)  # for the data to be queued
                # The rest of the response is queued or on its way; a cancelled
                # caller gets cancelled, not an event, and loses no event.
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await client.receive_event()
                    pytest.fail("receive_event returned in a cancelled scope")
                assert scope.cancelled_caught
                body = b""
                while True:
                    event = await _next(client)
                    assert isinstance(event, DataReceived)
                    body += event.data
                    if event.end_stream:
                        break
                assert body == b"hello"


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_receive_event_honours_cancellation_after_the_end(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async def handler(connection: HTTPConnection) -> None:
        await connection.aclose()

    with anyio.fail_after(20):
        async with serving(http_version, server_tls_config, handler) as address:
            client = await connect(http_version, address, client_tls_config)
            async with client:
                while not isinstance(await client.receive_event(), ConnectionTerminated):
                    pass
                # Ended: every call returns at once, but not to a cancelled
                # caller, which would otherwise loop without ever noticing.
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await client.receive_event()
                    pytest.fail("receive_event returned in a cancelled scope")
                assert scope.cancelled_caught
                assert isinstance(await client.receive_event(), ConnectionTerminated)
