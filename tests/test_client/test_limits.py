"""The client's limits take effect: ``Client.max_response_header_size`` on HTTP/1.1 and HTTP/2.

An hface server on loopback answers with a header field as large as the
request asks; the client accepts a header block up to its limit and fails
the request past it, with a :class:`~hface.client.errors.ClientError`.
"""

from __future__ import annotations

from typing import Any, Final

import anyio
import pytest

from hface.client import Client, ClientProtocol, Request, errors
from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig
from hface.protocols.http1 import HTTP1ClientFactory
from hface.protocols.http2 import HTTP2ClientFactory
from hface.server import ASGIServer
from tests.test_server.conftest import running

pytestmark = pytest.mark.anyio

#: How long any request here may take before it is a failure.
PATIENCE: Final = 10.0

PROTOCOLS: Final = {"1.1": ClientProtocol.HTTP1, "2": ClientProtocol.HTTP2}


async def big_header_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers ``GET /N`` with an ``x-big`` header of N bytes."""
    if scope["type"] != "http":
        return
    size = int(scope["path"].strip("/"))
    headers = [(b"x-big", b"b" * size), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def make_server(tls_config: ServerTLSConfig) -> ASGIServer:
    """A server of :func:`big_header_app`."""
    server = ASGIServer(big_header_app)
    server.tls_config = tls_config
    server.access_log = False
    server.graceful_timeout = 0.5
    return server


async def get(client: Client, address: AddressType, size: int) -> int:
    """The status of ``GET /size``."""
    url = f"https://localhost:{address[1]}/{size}"
    with anyio.fail_after(PATIENCE):
        async with client.session() as session:
            response = await session.dispatch(Request("GET", url))
    assert len(response.get_header("x-big") or b"") == size
    return response.status


@pytest.fixture(params=list(PROTOCOLS), ids=lambda version: f"http{version}")
def http_version(request: pytest.FixtureRequest) -> str:
    """HTTP/1.1 and HTTP/2 (HTTP/3: see test_large_response_headers.py)."""
    version: str = request.param
    return version


async def test_default_accepts_a_20_kb_header_block(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """The default (64 KiB) takes header blocks larger than HTTP/1.1's old 16 KiB."""
    client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[http_version])
    assert client.max_response_header_size == 64 * 1024
    async with running(make_server(server_tls_config)) as address:
        assert await get(client, address, 20_000) == 200


async def test_max_response_header_size_fails_a_larger_header_block(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """Under the limit the response is read; over it the request fails with a ClientError.

    On HTTP/1.1, 300 kB: h11 bounds the head only while it is incomplete,
    so one that arrives whole in one read (up to 256 KiB) may pass a
    smaller limit.
    """
    client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[http_version])
    client.max_response_header_size = 4096
    async with running(make_server(server_tls_config)) as address:
        assert await get(client, address, 3000) == 200
        with pytest.raises(errors.ClientError):
            await get(client, address, 300_000 if http_version == "1.1" else 20_000)


async def test_a_factory_set_in_place_keeps_its_own_limit(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """The limit applies to the client's own factories, not to one the user set."""
    client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[http_version])
    client.max_response_header_size = 4096
    client.http1_factory = HTTP1ClientFactory(max_header_size=100_000)
    client.http2_factory = HTTP2ClientFactory(max_header_list_size=100_000)
    async with running(make_server(server_tls_config)) as address:
        assert await get(client, address, 20_000) == 200


@pytest.mark.parametrize("size", [0, -5, 2.5, None])
async def test_an_invalid_max_response_header_size_is_refused(
    size: object, client_tls_config: ClientTLSConfig
) -> None:
    """The session refuses to start, naming the attribute."""
    client = Client(tls_config=client_tls_config)
    client.max_response_header_size = size  # type: ignore[assignment]
    with pytest.raises(ValueError, match="max_response_header_size must be a positive integer"):
        async with client.session():
            pass
