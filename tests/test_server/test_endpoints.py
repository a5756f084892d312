"""Endpoint parsing, which versions each ServerProtocol serves, and what a listening
address means for the proxy's default target policy."""

from __future__ import annotations

import contextlib

import anyio
import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.errors import TransportError
from hface.server import ASGIServer, Endpoint, ServerProtocol
from hface.server._proxy_target import is_loopback_host
from hface.server.examples import hello
from tests.test_server.conftest import Response, fetch, running


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://localhost:5443", Endpoint("https", "localhost", 5443)),
        ("http://[::1]:8080", Endpoint("http", "::1", 8080)),
        ("http://127.0.0.1:0", Endpoint("http", "127.0.0.1", 0)),
        ("https://example.com:443/", Endpoint("https", "example.com", 443)),
    ],
)
def test_parse(value: str, expected: Endpoint) -> None:
    assert Endpoint.parse(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("localhost:5443", "scheme"),
        ("ftp://localhost:21", "scheme"),
        ("https://localhost", "port is required"),
        ("https://:5443", "host is required"),
        ("https://localhost:99999", "out of range"),
        ("https://localhost:port", "invalid endpoint"),
        ("https://localhost:5443/path", "no path"),
        ("https://localhost:5443?query", "no path or query"),
        ("https://user:secret@localhost:5443", "no credentials"),
        ("", "scheme"),
    ],
)
def test_parse_rejects(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        Endpoint.parse(value)
    assert repr(value) in str(info.value)


def test_str_round_trips() -> None:
    for value in ("https://localhost:5443", "http://[::1]:8080"):
        endpoint = Endpoint.parse(value)
        assert str(endpoint) == value
        assert Endpoint.parse(str(endpoint)) == endpoint
    assert Endpoint("https", "::1", 1).address == ("::1", 1)
    assert Endpoint("https", "::1", 1).tls
    assert not Endpoint("http", "::1", 1).tls


#: Which versions each protocol choice serves on an https endpoint.
SERVED = {
    ServerProtocol.ALL: {"1.1", "2", "3"},
    ServerProtocol.TCP: {"1.1", "2"},
    ServerProtocol.HTTP1: {"1.1"},
    ServerProtocol.HTTP2: {"2"},
    ServerProtocol.HTTP3: {"3"},
}


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", list(ServerProtocol), ids=lambda p: p.value)
async def test_server_protocol_narrows_the_versions(
    protocol: ServerProtocol,
    http_version: str,
    client_tls_config: ClientTLSConfig,
    server_tls_config: ServerTLSConfig,
) -> None:
    server = ASGIServer(hello.application)
    server.tls_config = server_tls_config
    server.protocol = protocol
    async with running(server) as address:
        if http_version in SERVED[protocol]:
            response = await fetch(http_version, address, client_tls_config)
            assert response.status == 200
            alt_svc = response.header(b"alt-svc")
            if "3" in SERVED[protocol] and http_version != "3":
                assert alt_svc == f'h3=":{address[1]}"; ma=86400'.encode()
            else:  # no HTTP/3 served, or already on it
                assert alt_svc is None
        else:
            # Refused, cut off, garbled, or no answer at all (QUIC to a port
            # nobody listens on): anything but a response.
            response = Response()
            with anyio.move_on_after(1.5), contextlib.suppress(TransportError, OSError):
                response = await fetch(http_version, address, client_tls_config)
            assert response.status == 0, response


@pytest.mark.anyio
async def test_an_http_endpoint_serves_no_http3() -> None:
    server = ASGIServer(hello.application)
    server.protocol = ServerProtocol.HTTP3
    server.handle_signals = False
    with pytest.raises(ValueError, match="no endpoint to listen on"):
        await server.run([Endpoint("http", "127.0.0.1", 0)])


@pytest.mark.anyio
async def test_an_https_endpoint_needs_a_certificate() -> None:
    server = ASGIServer(hello.application)
    server.handle_signals = False
    with pytest.raises(ValueError, match="needs a certificate"):
        await server.run([Endpoint("https", "127.0.0.1", 0)])


@pytest.mark.anyio
async def test_several_endpoints_are_served_at_once(
    client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    server = ASGIServer(hello.application)
    server.tls_config = server_tls_config
    server.handle_signals = False
    endpoints = [Endpoint("https", "127.0.0.1", 0), Endpoint("http", "::1", 0)]
    async with anyio.create_task_group() as task_group:
        addresses = await task_group.start(server.run, endpoints)
        # TCP and QUIC on the https endpoint's port, then TCP on the http one.
        https_port, http_address = addresses[0][1], addresses[-1]
        assert len(addresses) == 3
        assert http_address[0] == "::1"
        for version in ("1.1", "2", "3"):
            response = await fetch(version, ("127.0.0.1", https_port), client_tls_config)
            assert response.body == f"Hello from hface! (HTTP/{version})\n".encode()
        for version in ("1.1", "2"):
            response = await fetch(version, http_address, None)
            assert response.body == f"Hello from hface! (HTTP/{version})\n".encode()
        task_group.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.1", False),
        ("10.1.2.3", False),
    ],
)
async def test_the_proxy_target_policy_follows_the_listening_address(
    host: str, loopback: bool
) -> None:
    """By default a proxy may reach private targets only when it listens on loopback alone."""
    assert await is_loopback_host(host) is loopback
