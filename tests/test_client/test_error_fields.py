"""The client's errors say what happened in their fields, and their messages say it once.

The messages are built from the fields of the errors underneath (their
kind, reason and termination), never by editing or parsing another
layer's message; these tests pin the fields and the messages together.
"""

from __future__ import annotations

import anyio
import anyio.abc
import pytest

from hface.client import Client, ClientProtocol, ProxyClient, Request
from hface.client.errors import (
    ConnectError,
    ConnectionLostError,
    RemoteProtocolError,
    TLSVerificationError,
)
from hface.common import ServerTLSConfig
from hface.errors import TerminationReason, TransportError, TransportErrorKind
from hface.server import Endpoint, ProxyServer
from tests.helpers.peers import free_port

from .conftest import hface_server

pytestmark = pytest.mark.anyio


async def test_connect_refused() -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    async with Client(protocol=ClientProtocol.HTTP1).session() as session:
        with pytest.raises(ConnectError) as info:
            await session.dispatch(Request("GET", origin + "/"))
    error = info.value
    cause = error.__cause__
    assert isinstance(cause, TransportError)
    assert (error.kind, cause.kind) == (TransportErrorKind.CONNECT, TransportErrorKind.CONNECT)
    assert cause.address == ("127.0.0.1", port)
    assert error.reason == cause.reason
    assert str(error) == f"cannot connect to {origin}: {cause.reason}"


@pytest.mark.parametrize("protocol", [ClientProtocol.HTTP1, ClientProtocol.HTTP2])
async def test_tls_handshake_with_a_cleartext_server(protocol: ClientProtocol) -> None:
    async def answer_in_cleartext(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    origin = f"https://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}"
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, answer_in_cleartext)
        async with Client(protocol=protocol, connect_timeout=5).session() as session:
            with pytest.raises(ConnectError) as info:
                await session.dispatch(Request("GET", origin + "/"))
        task_group.cancel_scope.cancel()
    error = info.value
    assert error.kind is TransportErrorKind.TLS_HANDSHAKE
    assert error.reason
    assert str(error) == f"cannot connect to {origin}: the TLS handshake failed: {error.reason}"


@pytest.mark.parametrize("version", ["2", "3"])
async def test_untrusted_certificate(version: str, server_tls_config: ServerTLSConfig) -> None:
    protocol = ClientProtocol.HTTP3 if version == "3" else ClientProtocol.HTTP2
    async with hface_server(version, server_tls_config) as server:
        async with Client(protocol=protocol, connect_timeout=5).session() as session:
            with pytest.raises(TLSVerificationError) as info:
                await session.dispatch(Request("GET", server.url + "/"))
    error = info.value
    assert error.kind is TransportErrorKind.TLS_VERIFICATION
    cause = error.__cause__
    assert isinstance(cause, TransportError)
    if version == "3":
        # aioquic refused the certificate: the QUIC handshake failed with its alert.
        assert cause.kind is TransportErrorKind.TLS_HANDSHAKE
        assert cause.termination is TerminationReason.TLS_FAILURE
        assert cause.transport_error_code == 0x100 + 42
    else:
        assert cause.kind is TransportErrorKind.TLS_VERIFICATION
        assert error.reason == cause.reason


@pytest.mark.parametrize(
    ("reply", "error_class", "termination", "detail"),
    [
        (
            b"",
            ConnectionLostError,
            TerminationReason.CLOSED_BY_PEER,
            "the server closed the connection",
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
            ConnectionLostError,
            TerminationReason.CLOSED_BY_PEER,
            "peer closed connection without sending complete message body",
        ),
        (
            # A head the server did not finish: an early close, not a bad response.
            b"HTTP/1.1 200 OK\r\ncontent-le",
            ConnectionLostError,
            TerminationReason.CLOSED_BY_PEER,
            "the server closed the connection",
        ),
        (b"garbage\r\n\r\n", RemoteProtocolError, None, "sent an invalid HTTP/1.1 response"),
    ],
    ids=["no-response", "truncated-body", "truncated-head", "garbage"],
)
async def test_broken_http1_server(
    reply: bytes,
    error_class: type[ConnectionLostError | RemoteProtocolError],
    termination: TerminationReason | None,
    detail: str,
) -> None:
    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            if reply:
                await stream.send(reply)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    origin = f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}"
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handle)
        async with Client(protocol=ClientProtocol.HTTP1, read_timeout=5).session() as session:
            with pytest.raises(error_class) as info:
                await session.dispatch(Request("GET", origin + "/"))
        task_group.cancel_scope.cancel()
    error = info.value
    assert detail in str(error)
    if isinstance(error, ConnectionLostError):
        assert error.kind is TransportErrorKind.CLOSED
        assert error.termination is termination
        assert str(error).startswith(f"the connection to {origin} ended before the response")


async def test_a_proxy_that_does_not_answer_names_the_tunnel_once() -> None:
    # A TCP server that accepts and says nothing: the TLS handshake with the proxy hangs.
    async def silent(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep(5)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    proxy = f"https://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}"
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, silent)
        async with ProxyClient(proxy, connect_timeout=0.3).session() as session:
            with pytest.raises(TimeoutError) as info:
                await session.connect_tcp(("localhost", 1))
        task_group.cancel_scope.cancel()
    assert str(info.value) == (
        f"timed out after 0.3 s connecting to the proxy {proxy} (tunnel to localhost:1)"
    )


async def test_an_untrusted_origin_behind_a_proxy_is_said_once(
    server_tls_config: ServerTLSConfig,
) -> None:
    proxy = ProxyServer()
    proxy.handle_signals = False
    async with hface_server("2", server_tls_config) as server, anyio.create_task_group() as group:
        addresses = await group.start(proxy.run, [Endpoint("http", "127.0.0.1", 0)])
        proxy_url = f"http://127.0.0.1:{addresses[0][1]}"
        # The origin, checked against the system's CAs, is not trusted.
        client = Client(proxy_origin=proxy_url, connect_timeout=5)
        async with client.session() as session:
            with pytest.raises(TLSVerificationError) as info:
                await session.dispatch(Request("GET", server.url + "/"))
        group.cancel_scope.cancel()
    message = str(info.value)
    assert message.startswith(f"cannot verify the TLS certificate of {server.url} (through the ")
    assert message.count("cannot verify") == 1
    assert info.value.kind is TransportErrorKind.TLS_VERIFICATION
