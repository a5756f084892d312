"""Each failure raises its documented exception, whose message names the origin."""

from __future__ import annotations

import re
import time

import anyio
import anyio.abc
import pytest

from hface.client import Client, ClientProtocol, Request
from hface.client.errors import (
    ClientError,
    ConnectError,
    ConnectionLostError,
    RemoteProtocolError,
    StreamResetError,
    TLSVerificationError,
)
from hface.common import ClientTLSConfig, ServerTLSConfig
from tests.helpers.peers import free_port

from .conftest import hface_server

pytestmark = pytest.mark.anyio

PROTOCOLS = {"1.1": ClientProtocol.HTTP1, "2": ClientProtocol.HTTP2, "3": ClientProtocol.HTTP3}
VERSIONS = list(PROTOCOLS)


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (b"garbage\r\n\r\n", RemoteProtocolError, "sent an invalid HTTP/1.1 response"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            ConnectionLostError,
            "ended before the response was complete: peer closed",
        ),
        (b"", ConnectionLostError, "the server closed the connection"),
    ],
    ids=["garbage", "truncated", "no-response"],
)
async def test_broken_http1_server(reply: bytes, error: type[ClientError], message: str) -> None:
    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            if reply:
                await stream.send(reply)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    origin = f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}"
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handle)
        client = Client(protocol=ClientProtocol.HTTP1, read_timeout=5)
        async with client.session() as session:
            with pytest.raises(error, match=f"{origin}.*{message}|{message}.*{origin}") as info:
                await session.dispatch(Request("GET", origin + "/"))
        task_group.cancel_scope.cancel()
    assert info.value.origin == origin
    assert origin in str(info.value)


@pytest.mark.parametrize("version", ["2", "3"])
async def test_stream_reset_by_the_server(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with hface_server(version, server_tls_config) as server:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        async with client.session() as session:
            with pytest.raises(StreamResetError, match=f"{server.url} reset stream") as info:
                await session.dispatch(Request("GET", server.url + "/reset"))
            assert info.value.origin == server.url
            assert info.value.error_code != 0
            # Only the stream failed: the connection goes on.
            response = await session.dispatch(Request("GET", server.url + "/"))
            assert response.status == 200
            assert session.connections_opened == 1


@pytest.mark.parametrize("version", VERSIONS)
async def test_read_timeout_names_origin(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with hface_server(version, server_tls_config) as server:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version], read_timeout=0.6)
        async with client.session() as session:
            with pytest.raises(
                TimeoutError, match=f"after 0.6 s waiting for the response of {server.url}$"
            ):
                await session.dispatch(Request("GET", server.url + "/slow"))
            # Each read of a trickled body is quick (0.1 s) though the whole
            # (1 s) is not: the read timeout does not fire.
            response = await session.dispatch(Request("GET", server.url + "/trickle/10"))
            assert response.content == b"t" * 10


@pytest.mark.parametrize("version", VERSIONS)
async def test_whole_request_timeout(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with hface_server(version, server_tls_config) as server:
        client = Client(
            tls_config=client_tls_config, protocol=PROTOCOLS[version], read_timeout=1, timeout=0.6
        )
        async with client.session() as session:
            url = server.url + "/trickle/30"
            started = time.monotonic()
            with pytest.raises(TimeoutError, match=f"after 0.6 s waiting for GET {url}$"):
                await session.dispatch(Request("GET", url))
            # The body (3 s, every read within the read timeout) was cut at 0.6 s.
            assert time.monotonic() - started < 2
            response = await session.dispatch(Request("GET", server.url + "/"))
            assert response.status == 200


@pytest.mark.parametrize("version", VERSIONS)
async def test_connection_lost_names_origin(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    failures: list[BaseException] = []
    client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version], read_timeout=10)
    async with client.session() as session:

        async def fetch(url: str) -> None:
            try:
                await session.dispatch(Request("GET", url))
            except ClientError as exc:
                failures.append(exc)

        with anyio.fail_after(8):
            async with anyio.create_task_group() as task_group:
                async with hface_server(version, server_tls_config) as server:
                    task_group.start_soon(fetch, server.url + "/slow")
                    await server.wait_until(lambda: "/slow" in server.paths)
                # The server is gone with the request unanswered.
    [failure] = failures
    assert isinstance(failure, ConnectionLostError)
    assert failure.origin == server.url
    assert f"the connection to {server.url} ended" in str(failure)


async def test_http3_needs_https() -> None:
    async with Client(protocol=ClientProtocol.HTTP3).session() as session:
        with pytest.raises(ValueError, match="HTTP/3 needs an https origin, not http://h:80"):
            await session.dispatch(Request("GET", "http://h/"))


@pytest.mark.parametrize(
    "protocol", [ClientProtocol.TCP, ClientProtocol.HTTP1, ClientProtocol.HTTP2]
)
async def test_tls_handshake_connect_timeout(protocol: ClientProtocol) -> None:
    # A TCP server that accepts and then says nothing: the TLS handshake hangs.
    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep(5)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    origin = f"https://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}"
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handle)
        client = Client(protocol=protocol, connect_timeout=0.3)
        async with client.session() as session:
            started = time.monotonic()
            with pytest.raises(TimeoutError, match=f"after 0.3 s connecting to {origin}$"):
                await session.dispatch(Request("GET", origin + "/"))
            assert time.monotonic() - started < 2
        task_group.cancel_scope.cancel()


@pytest.mark.parametrize("proxy_protocol", [ClientProtocol.HTTP1, ClientProtocol.HTTP2])
async def test_unreachable_proxy(proxy_protocol: ClientProtocol) -> None:
    proxy = f"https://127.0.0.1:{free_port()}"
    client = Client(proxy_origin=proxy, proxy_protocol=proxy_protocol)
    async with client.session() as session:
        with pytest.raises(ConnectError) as info:
            await session.dispatch(Request("GET", "https://localhost:1/"))
    assert info.value.origin == proxy
    # Once what happened, naming the proxy and where the tunnel was to go.
    assert re.fullmatch(
        f"cannot connect to the proxy {re.escape(proxy)} \\(tunnel to localhost:1\\): "
        "[^:]*(refused|failed)[^:]*",
        str(info.value),
    ), str(info.value)


async def test_connect_refused_says_it_once() -> None:
    origin = f"http://127.0.0.1:{free_port()}"
    async with Client(protocol=ClientProtocol.HTTP1).session() as session:
        with pytest.raises(ConnectError) as info:
            await session.dispatch(Request("GET", origin + "/"))
    message = str(info.value)
    assert re.fullmatch(f"cannot connect to {re.escape(origin)}: [^:]*", message), message
    assert message.count("127.0.0.1") == 1


@pytest.mark.parametrize("version", ["2", "3"])
async def test_untrusted_certificate_says_it_once(
    version: str, server_tls_config: ServerTLSConfig
) -> None:
    async with hface_server(version, server_tls_config) as server:
        # The default config trusts the system's CAs, not the test CA.
        client = Client(protocol=PROTOCOLS[version], connect_timeout=2)
        async with client.session() as session:
            with pytest.raises(TLSVerificationError) as info:
                await session.dispatch(Request("GET", server.url + "/"))
    message = str(info.value)
    quic = " \\(QUIC\\)" if version == "3" else ""
    assert re.fullmatch(
        f"cannot verify the TLS certificate of {re.escape(server.url)}{quic}: .*certificate.*",
        message,
    ), message
    assert message.count("cannot verify") == 1
    assert message.count("localhost") == 1
