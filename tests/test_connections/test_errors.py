"""The errors of a connection that ended or never opened say why in their fields.

A ``TransportError`` from :class:`HTTPConnection` carries the
``TerminationReason`` and QUIC code of the ``ConnectionTerminated`` the
protocol gave, so that the client tells a certificate failure from a
refused connection without reading the message.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import SocketAttribute

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.connections import ConnectionOptions, HTTPConnection, HTTPOverQUICOpener
from hface.errors import TerminationReason, TransportError, TransportErrorKind
from hface.events import ConnectionTerminated, HeadersReceived
from hface.protocols.http3 import HTTP3ClientFactory
from tests.helpers.pairs import HTTP_VERSIONS

from .conftest import REQUEST, connect, serving

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_a_send_after_the_end_says_why_it_ended(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async def close_mid_response(connection: HTTPConnection) -> None:
        event = await connection.receive_event()
        assert isinstance(event, HeadersReceived)
        await connection.send_headers(event.stream_id, [(b":status", b"200")])
        await connection.send_data(event.stream_id, b"partial")
        # the handler returns: the listener closes the connection

    async with serving(http_version, server_tls_config, close_mid_response) as address:
        async with await connect(http_version, address, client_tls_config) as connection:
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(stream_id, REQUEST, end_stream=True)
            with anyio.fail_after(10):
                event = await connection.receive_event()
                while not isinstance(event, ConnectionTerminated):
                    event = await connection.receive_event()
            with pytest.raises(TransportError) as info:
                await connection.send_data(stream_id, b"too late")
    assert event.reason is TerminationReason.CLOSED_BY_PEER
    error = info.value
    assert error.kind is TransportErrorKind.CLOSED
    assert error.termination is event.reason
    assert error.transport_error_code is None
    assert str(error) == (event.message or "the connection was closed")


async def test_quic_handshake_with_an_untrusted_server(server_tls_config: ServerTLSConfig) -> None:
    async def handler(connection: HTTPConnection) -> None:
        pytest.fail("connected")  # pragma: no cover

    async with serving("3", server_tls_config, handler) as address:
        # The system's CAs do not include the test CA.
        connection = await connect("3", address, ClientTLSConfig())
        with anyio.fail_after(10), pytest.raises(TransportError) as info:
            async with connection:
                pytest.fail("opened")  # pragma: no cover
    error = info.value
    assert error.kind is TransportErrorKind.TLS_HANDSHAKE
    assert error.termination is TerminationReason.TLS_FAILURE
    # CRYPTO_ERROR + bad_certificate (RFC 9001 §4.8; RFC 8446 §6.2)
    assert error.transport_error_code == 0x100 + 42
    assert str(error).startswith("QUIC transport error 0x12a")


async def test_quic_handshake_that_never_completes() -> None:
    # A UDP socket that never answers.
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as silent:
        address = ("127.0.0.1", silent.extra(SocketAttribute.local_port))
        opener = HTTPOverQUICOpener(
            HTTP3ClientFactory(), options=ConnectionOptions(handshake_timeout=0.3)
        )
        connection = await opener(address, tls=True, server_name="localhost")
        with anyio.fail_after(10), pytest.raises(TransportError) as info:
            async with connection:
                pytest.fail("opened")  # pragma: no cover
    error = info.value
    assert error.kind is TransportErrorKind.TLS_HANDSHAKE
    assert error.termination is TerminationReason.TIMEOUT
    assert error.transport_error_code is None
    assert str(error) == "the QUIC handshake did not complete within 0.3 s"
