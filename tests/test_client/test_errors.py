"""Errors, timeouts, GOAWAY, and no task left behind."""

from __future__ import annotations

from contextlib import aclosing

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import SocketAttribute

from hface.client import Client, ClientProtocol, Request
from hface.client.errors import (
    ConnectError,
    RemoteProtocolError,
    StreamResetError,
    TLSVerificationError,
)
from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.errors import RemoteProtocolError as CoreRemoteProtocolError
from hface.errors import StreamError, TransportError
from tests.helpers.certs import TLSFiles
from tests.helpers.peers import free_port

from .conftest import PeerServer, hface_server

pytestmark = pytest.mark.anyio


async def test_connect_refused(client_tls_config: ClientTLSConfig) -> None:
    port = free_port()
    async with Client(tls_config=client_tls_config).session() as session:
        with pytest.raises(
            ConnectError, match=f"cannot connect to https://localhost:{port}"
        ) as info:
            await session.dispatch(Request("GET", f"https://localhost:{port}/"))
    assert isinstance(info.value, TransportError)
    assert info.value.origin == f"https://localhost:{port}"


@pytest.mark.parametrize("protocol", [ClientProtocol.TCP, ClientProtocol.HTTP3])
async def test_tls_verification_failure(
    protocol: ClientProtocol, server_tls_config: ServerTLSConfig
) -> None:
    version = "3" if protocol is ClientProtocol.HTTP3 else "2"
    async with hface_server(version, server_tls_config) as server:
        # The default config trusts the system's CAs, not the test CA.
        async with Client(protocol=protocol, connect_timeout=2).session() as session:
            with pytest.raises(
                TLSVerificationError, match=f"cannot verify the TLS certificate of {server.url}"
            ) as info:
                await session.dispatch(Request("GET", server.url + "/"))
    assert isinstance(info.value, ConnectError)
    assert info.value.origin == server.url
    assert "certificate" in str(info.value)


@pytest.mark.parametrize("protocol", [ClientProtocol.TCP, ClientProtocol.HTTP3])
async def test_default_tls_config_honours_ssl_cert_file(
    protocol: ClientProtocol,
    server_tls_config: ServerTLSConfig,
    tls_files: TLSFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The default ClientTLSConfig means "the system's CAs", which users
    # (and the examples' tests) point elsewhere with SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", tls_files.ca_file)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    version = "3" if protocol is ClientProtocol.HTTP3 else "2"
    async with hface_server(version, server_tls_config) as server:
        async with Client(protocol=protocol, connect_timeout=2).session() as session:
            response = await session.dispatch(Request("GET", server.url + "/"))
    assert response.status == 200


@pytest.mark.parametrize("version", ["1.1", "2", "3"])
async def test_read_timeout(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    protocol = {"1.1": ClientProtocol.HTTP1, "2": ClientProtocol.HTTP2}.get(
        version, ClientProtocol.HTTP3
    )
    async with hface_server(version, server_tls_config) as server:
        client = Client(tls_config=client_tls_config, protocol=protocol, read_timeout=0.3)
        async with client.session() as session:
            with pytest.raises(TimeoutError, match="localhost"):
                await session.dispatch(Request("GET", server.url + "/slow"))
            client_total = Client(tls_config=client_tls_config, protocol=protocol, timeout=0.3)
        async with client_total.session() as session:
            with pytest.raises(TimeoutError, match=r"timed out after 0\.3 s"):
                await session.dispatch(Request("GET", server.url + "/slow"))


async def test_connect_timeout() -> None:
    # A UDP socket that never answers: the QUIC handshake cannot complete.
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as silent:
        port = silent.extra(SocketAttribute.local_port)
        client = Client(protocol=ClientProtocol.HTTP3, connect_timeout=0.5)
        async with client.session() as session:
            with pytest.raises(TimeoutError, match=f"connecting to https://127.0.0.1:{port}"):
                await session.dispatch(Request("GET", f"https://127.0.0.1:{port}/"))


# With no pause, the next request often goes out before the GOAWAY arrives:
# the server refuses it (HTTP/2 REFUSED_STREAM, HTTP/3 H3_REQUEST_REJECTED)
# and the client sends it again on a new connection. On HTTP/3 the server's
# GOAWAY and CONNECTION_CLOSE leave in one flush, which the handler's
# cancellation or the connection's close must not cut short.
@pytest.mark.parametrize(
    ("version", "pause"),
    [("2", 0.05), ("3", 0.05), ("2", 0.0), ("3", 0.0)],
    ids=["2", "3", "2-no-pause", "3-no-pause"],
)
async def test_goaway_replaces_connection(
    version: str,
    pause: float,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    protocol = ClientProtocol.HTTP2 if version == "2" else ClientProtocol.HTTP3
    async with hface_server(version, server_tls_config, goaway_after=2) as server:
        async with Client(tls_config=client_tls_config, protocol=protocol).session() as session:
            for index in range(7):
                response = await session.dispatch(Request("GET", f"{server.url}/bytes/{index}"))
                assert response.status == 200
                await anyio.sleep(pause)
    assert server.requests == 7
    assert server.connections == 4


def _tasks() -> int:
    return len(anyio.get_running_tasks())


@pytest.mark.parametrize(
    "protocol", [ClientProtocol.HTTP1, ClientProtocol.HTTP2, ClientProtocol.HTTP3]
)
async def test_no_task_left_after_cancelled_dispatch(
    protocol: ClientProtocol, hypercorn_server: PeerServer, client_tls_config: ClientTLSConfig
) -> None:
    # hypercorn runs in another process: every task here is the client's.
    url = hypercorn_server.url
    before = _tasks()
    async with Client(tls_config=client_tls_config, protocol=protocol).session() as session:
        await session.dispatch(Request("GET", url + "/"))
        with anyio.move_on_after(0.3):
            await session.dispatch(Request("POST", url + "/slow", content=b"x" * 1000))
        with anyio.move_on_after(0.3):
            async with session.stream(Request("GET", url + "/bytes/10000000")) as response:
                async with aclosing(response.aiter_bytes()) as body:
                    async for _chunk in body:
                        await anyio.sleep(1)
        response = await session.dispatch(Request("GET", url + "/"))
        assert response.status == 200
    assert _tasks() == before


@pytest.mark.parametrize("version", ["1.1", "2", "3"])
async def test_no_task_left_after_server_vanished(
    version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    protocol = {"1.1": ClientProtocol.HTTP1, "2": ClientProtocol.HTTP2}.get(
        version, ClientProtocol.HTTP3
    )
    before = _tasks()
    client = Client(tls_config=client_tls_config, protocol=protocol, read_timeout=2)
    async with client.session() as session:
        async with hface_server(version, server_tls_config) as server:
            await session.dispatch(Request("GET", server.url + "/"))
        # The server is gone; its connections are closed.
        with pytest.raises((TransportError, TimeoutError)):
            await session.dispatch(Request("GET", server.url + "/"))
    assert _tasks() == before


def test_error_classes_carry_their_fields() -> None:
    reset = StreamResetError("reset", origin="https://a:1", stream_id=8, error_code=0x10B)
    assert (reset.origin, reset.stream_id, reset.error_code) == ("https://a:1", 8, 0x10B)
    assert isinstance(reset, StreamError)
    assert str(reset) == "reset"
    protocol_error = RemoteProtocolError("bad", origin="https://a:1", error_code=1)
    assert (protocol_error.origin, protocol_error.error_code) == ("https://a:1", 1)
    assert isinstance(protocol_error, CoreRemoteProtocolError)
    assert str(protocol_error) == "bad"


class _SetupFailed(Exception):
    pass


@pytest.mark.parametrize("stage", ["origin pool", "proxy pool"])
async def test_session_setup_failure_leaves_nothing_entered(
    stage: str, monkeypatch: pytest.MonkeyPatch, client_tls_config: ClientTLSConfig
) -> None:
    """A session whose setup fails half-way exits what it entered, in order."""
    import hface.client._client as client_module
    import hface.client._proxy as proxy_module

    module = client_module if stage == "origin pool" else proxy_module
    real_start_pool = module.start_pool

    async def failing_start_pool(*args: object, **kwargs: object) -> object:
        raise _SetupFailed(stage)

    # The proxy's pool is entered first: failing the origin's is half-way.
    monkeypatch.setattr(module, "start_pool", failing_start_pool)
    before = len(anyio.get_running_tasks())
    session = Client(tls_config=client_tls_config, proxy_origin="http://127.0.0.1:9").session()
    with pytest.raises(_SetupFailed):
        async with session:
            pytest.fail("entered")  # pragma: no cover
    with pytest.raises(RuntimeError, match="entered only once"):
        await session.__aenter__()
    assert len(anyio.get_running_tasks()) == before
    # The task's cancel scopes are intact: another session enters and exits.
    monkeypatch.setattr(module, "start_pool", real_start_pool)
    async with Client(tls_config=client_tls_config).session() as other:
        await anyio.lowlevel.checkpoint()
        assert other.connections_opened == 0
