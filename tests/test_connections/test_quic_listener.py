"""HTTPOverQUICListener: connections share its socket, so closing it is graceful."""

from __future__ import annotations

import logging
import time

import anyio
import anyio.abc
import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from hface.common import ClientTLSConfig, DatagramType, ServerTLSConfig
from hface.connections import (
    ConnectionOptions,
    HTTPConnection,
    HTTPOverQUICConnection,
    HTTPOverQUICListener,
)
from hface.events import ConnectionTerminated, HeadersReceived
from hface.networking import DatagramStream, QUICAttribute, QUICHandshakeLimits, QUICRetry
from hface.protocols.http3 import HTTP3ServerFactory

from .conftest import REQUEST, connect, create_listener, request_headers

pytestmark = pytest.mark.anyio


async def test_aclose_lets_connections_in_progress_finish(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    listener = await create_listener("3", server_tls_config)
    address = listener.local_addresses[0]
    received = anyio.Event()
    answer = anyio.Event()
    handled: list[str] = []

    async def handler(connection: HTTPConnection) -> None:
        while not isinstance(event := await connection.receive_event(), HeadersReceived):
            pass
        received.set()
        await answer.wait()
        await connection.send_headers(event.stream_id, [(b":status", b"200")], end_stream=True)
        while not isinstance(await connection.receive_event(), ConnectionTerminated):
            pass
        handled.append("done")

    with anyio.fail_after(20):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(listener.serve, handler)
            async with await connect("3", address, client_tls_config) as connection:
                stream_id = connection.get_available_stream_id()
                await connection.send_headers(stream_id, REQUEST, end_stream=True)
                await received.wait()
                await listener.aclose()
                # No new connection is accepted...
                late = await connect("3", address, client_tls_config)
                with pytest.raises(TimeoutError), anyio.fail_after(0.5):
                    await late.open()
                # ...but the one in progress still gets its response.
                answer.set()
                while not isinstance(event := await connection.receive_event(), HeadersReceived):
                    pass
                assert event.headers == [(b":status", b"200")]
                assert event.end_stream
            # The client closed; the handler returned; the socket closed: serve returns.
    assert handled == ["done"]


async def test_a_client_silent_after_its_initial_is_dropped(
    server_tls_config: ServerTLSConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """The server gives up on a handshake after ``handshake_timeout``, not QUIC's idle 60 s.

    One line at DEBUG says so: a flood of half-open handshakes must not
    write a line each at INFO.
    """
    listener = await HTTPOverQUICListener.create(
        HTTP3ServerFactory(),
        local_address=("127.0.0.1", 0),
        tls_config=server_tls_config,
        options=ConnectionOptions(handshake_timeout=0.5),
    )
    host, port = listener.local_addresses[0]
    handled: list[HTTPConnection] = []

    async def handler(connection: HTTPConnection) -> None:
        handled.append(connection)  # pragma: no cover - never opened

    # A QUIC client that sends its Initial, then never says another word.
    quic = QuicConnection(
        configuration=QuicConfiguration(
            is_client=True, alpn_protocols=["h3"], server_name="localhost"
        )
    )
    quic.connect((host, port), now=time.monotonic())
    initials = quic.datagrams_to_send(now=time.monotonic())
    assert initials
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(listener.serve, handler)
            async with await anyio.create_connected_udp_socket(host, port) as udp:
                started = anyio.current_time()
                for datagram, _address in initials:
                    await udp.send(datagram)
                assert await udp.receive()  # the server's Initial: it did hear us
                # serve() returns once the connection in progress has ended.
                await listener.aclose()
        elapsed = anyio.current_time() - started
    assert 0.4 < elapsed < 3, elapsed
    assert not handled
    [record] = [r for r in caplog.records if "failed to open" in r.getMessage()]
    assert record.getMessage().endswith(": the QUIC handshake did not complete within 0.5 s")
    assert record.levelno == logging.DEBUG
    assert record.exc_info is None  # a line, not a traceback
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []


@pytest.mark.parametrize("retry", list(QUICRetry), ids=lambda retry: retry.value)
async def test_hface_client_served_with_and_without_retry(
    retry: QUICRetry, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """RFC 9000 §8.1.2: hface's client follows a Retry; the server echoes both IDs (§7.3)."""
    listener = await HTTPOverQUICListener.create(
        HTTP3ServerFactory(),
        local_address=("127.0.0.1", 0),
        tls_config=server_tls_config,
        handshake_limits=QUICHandshakeLimits(retry=retry),
    )
    validated: list[bool] = []

    async def handler(connection: HTTPConnection) -> None:
        original = connection.extra(QUICAttribute.original_destination_connection_id, None)
        source = connection.extra(QUICAttribute.retry_source_connection_id, None)
        validated.append(original is not None and source is not None)
        stream_id = await request_headers(connection)
        await connection.send_headers(stream_id, [(b":status", b"204")], end_stream=True)
        while not isinstance(await connection.receive_event(), ConnectionTerminated):
            pass

    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(listener.serve, handler)
            address = listener.local_addresses[0]
            async with await connect("3", address, client_tls_config) as connection:
                stream_id = connection.get_available_stream_id()
                await connection.send_headers(stream_id, REQUEST, end_stream=True)
                while not isinstance(event := await connection.receive_event(), HeadersReceived):
                    pass
                assert event.headers == [(b":status", b"204")]
            await listener.aclose()
    assert validated == [retry is QUICRetry.ALWAYS]


async def test_handshake_timeout_must_be_positive(server_tls_config: ServerTLSConfig) -> None:
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as udp:
        stream = _UDPStream(udp)
        protocol = HTTP3ServerFactory()(tls_config=server_tls_config)
        with pytest.raises(ValueError, match="handshake_timeout must be positive, not 0"):
            HTTPOverQUICConnection(protocol, stream, options=ConnectionOptions(handshake_timeout=0))


class _UDPStream(DatagramStream):
    """Never used for I/O: the connection is refused at construction."""

    def __init__(self, udp: anyio.abc.UDPSocket) -> None:
        self._udp = udp

    async def receive(self) -> DatagramType:
        raise AssertionError("not used")  # pragma: no cover

    async def send(self, item: DatagramType) -> None:
        raise AssertionError("not used")  # pragma: no cover

    async def aclose(self) -> None:
        await self._udp.aclose()  # pragma: no cover
