"""An HTTP/3 connection closed gracefully delivers what it sent before, even over loss."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute

from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig
from hface.connections import HTTPConnection, HTTPOverQUICOpener
from hface.events import ConnectionTerminated, DataReceived, Event, HeadersReceived
from hface.protocols.http3 import HTTP3ClientFactory
from hface.protocols.http3._protocol import CLOSE_LINGER

from .conftest import REQUEST, serving

pytestmark = pytest.mark.anyio

BODY = b"x" * 1000


@asynccontextmanager
async def lossy_relay(
    target: AddressType, drop: Callable[[bytes], bool]
) -> AsyncIterator[AddressType]:
    """Forward datagrams to ``target`` and back; drop the answers ``drop`` picks."""
    front = await anyio.create_udp_socket(local_host="127.0.0.1")
    back = await anyio.create_connected_udp_socket(target[0], target[1])
    client: list[AddressType] = []

    async def forward() -> None:
        async for data, address in front:
            client[:] = [address]
            await back.send(data)

    async def backward() -> None:
        async for data in back:
            if client and not drop(data):
                await front.sendto(data, *client[0])

    async with front, back, anyio.create_task_group() as task_group:
        task_group.start_soon(forward)
        task_group.start_soon(backward)
        yield ("127.0.0.1", front.extra(SocketAttribute.local_port))
        task_group.cancel_scope.cancel()


async def _events_until_the_end(connection: HTTPConnection) -> list[Event]:
    events: list[Event] = []
    while not isinstance(event := await connection.receive_event(), ConnectionTerminated):
        events.append(event)
    return [*events, event]


async def test_the_last_response_survives_a_lost_datagram(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    answered = anyio.Event()
    dropped: list[int] = []

    def drop_the_response_once(data: bytes) -> bool:
        # The first datagram big enough to carry the body, once it was sent.
        if answered.is_set() and not dropped and len(data) > len(BODY):
            dropped.append(len(data))
            return True
        return False

    async def answer_and_close(connection: HTTPConnection) -> None:
        # Leaving the handler closes the connection (GOAWAY, then QUIC's close).
        while not isinstance(event := await connection.receive_event(), HeadersReceived):
            pass
        answered.set()
        await connection.send_headers(event.stream_id, [(b":status", b"200")], flush=False)
        await connection.send_data(event.stream_id, BODY, end_stream=True)

    async with (
        serving("3", server_tls_config, answer_and_close) as address,
        lossy_relay(address, drop_the_response_once) as relay_address,
    ):
        opener = HTTPOverQUICOpener(HTTP3ClientFactory(), tls_config=client_tls_config)
        async with await opener(relay_address, server_name="localhost") as connection:
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(stream_id, REQUEST, end_stream=True)
            with anyio.fail_after(5):
                events = await _events_until_the_end(connection)
    assert dropped, "the relay dropped nothing: the test proves nothing"
    body = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert body == BODY
    assert events[-1] == ConnectionTerminated(error_code=connection.error_codes.no_error)


async def test_a_cancelled_close_does_not_linger(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    silent = anyio.Event()
    server_saw_the_close = anyio.Event()

    async def wait_for_the_end(connection: HTTPConnection) -> None:
        await _events_until_the_end(connection)
        server_saw_the_close.set()

    async with (
        serving("3", server_tls_config, wait_for_the_end) as address,
        lossy_relay(address, lambda data: silent.is_set()) as relay_address,
    ):
        opener = HTTPOverQUICOpener(HTTP3ClientFactory(), tls_config=client_tls_config)
        with anyio.fail_after(5):
            # Nothing the server sends arrives any more: a graceful close
            # would linger for the request's acknowledgement, but not once
            # the connection's transport task was cancelled.
            with anyio.CancelScope() as scope:
                async with await opener(relay_address, server_name="localhost") as connection:
                    silent.set()
                    stream_id = connection.get_available_stream_id()
                    await connection.send_headers(stream_id, [*REQUEST, (b"x", b"y" * 500)])
                    started = anyio.current_time()
                    scope.cancel()
            closing_time = anyio.current_time() - started
            # The close went out all the same: the server knows at once.
            with anyio.fail_after(CLOSE_LINGER / 2):
                await server_saw_the_close.wait()
    assert closing_time < CLOSE_LINGER / 2
