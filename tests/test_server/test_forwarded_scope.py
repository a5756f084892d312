"""``ASGIServer.forwarded_allow_ips``: forwarding headers in the scope, from trusted peers only.

The server (asyncio and Trio, HTTP/1.1, HTTP/2 and HTTP/3) serves
:mod:`tests.helpers.scope_app`; the test client, on 127.0.0.1, sends the
headers a reverse proxy would. Believed when 127.0.0.1 is trusted, they
set the scope's ``client``, ``scheme``, ``host`` and ``server``; not
believed (the default, or another network trusted), the scope keeps the
connection's own. The parsing itself is tested in ``test_forwarded.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from hface.common import ClientTLSConfig
from hface.server import ASGIServer, Endpoint, ForwardedStyle
from tests.helpers.certs import TLSFiles
from tests.helpers.scope_app import app
from tests.helpers.ws_client import websocket
from tests.test_server.conftest import fetch, running

pytestmark = pytest.mark.anyio

X_FORWARDED = [
    (b"x-forwarded-for", b"203.0.113.9, 127.0.0.1"),
    (b"x-forwarded-proto", b"http"),  # the endpoint is https: a change shows
    (b"x-forwarded-host", b"example.com:8443"),
]
FORWARDED = [(b"forwarded", b'for="[2001:db8::7]:4711";proto=http;host=example.org')]


async def scope_of(
    allow: str,
    headers: list[tuple[bytes, bytes]],
    http_version: str,
    tls_files: TLSFiles,
    client_tls_config: ClientTLSConfig,
    *,
    style: ForwardedStyle = ForwardedStyle.X_FORWARDED,
) -> dict[str, Any]:
    server = ASGIServer(app)
    server.tls_config = tls_files.server_config()
    server.forwarded_allow_ips = allow
    server.forwarded_style = style
    async with running(server, [Endpoint("https", "127.0.0.1", 0)]) as address:
        response = await fetch(http_version, address, client_tls_config, headers=headers)
    assert response.status == 200, response
    scope: dict[str, Any] = json.loads(response.body)
    return scope


@pytest.mark.parametrize("allow", ["127.0.0.1", "127.0.0.0/8, ::1", "*"])
async def test_trusted_peer_sets_client_scheme_and_host(
    allow: str, http_version: str, tls_files: TLSFiles, client_tls_config: ClientTLSConfig
) -> None:
    scope = await scope_of(allow, X_FORWARDED, http_version, tls_files, client_tls_config)
    # 127.0.0.1 in the list is a trusted proxy itself: the client is left of it.
    assert scope["client"] == ["203.0.113.9", 0]
    assert scope["scheme"] == "http"
    assert scope["host"] == "example.com:8443"
    assert scope["server"] == ["example.com", 8443]


@pytest.mark.parametrize("allow", ["", "10.0.0.0/8"])
async def test_untrusted_peer_is_not_believed(
    allow: str, http_version: str, tls_files: TLSFiles, client_tls_config: ClientTLSConfig
) -> None:
    scope = await scope_of(allow, X_FORWARDED, http_version, tls_files, client_tls_config)
    assert scope["client"][0] == "127.0.0.1"
    assert scope["client"][1] != 0
    assert scope["scheme"] == "https"
    assert scope["host"] == "localhost"
    assert scope["server"][0] == "127.0.0.1"


async def test_forwarded_style_reads_only_forwarded(
    tls_files: TLSFiles, client_tls_config: ClientTLSConfig
) -> None:
    headers = FORWARDED + X_FORWARDED
    scope = await scope_of(
        "127.0.0.1", headers, "2", tls_files, client_tls_config, style=ForwardedStyle.FORWARDED
    )
    assert scope["client"] == ["2001:db8::7", 4711]
    assert scope["scheme"] == "http"
    assert scope["host"] == "example.org"
    assert scope["server"] == ["example.org", 80]


async def test_a_bad_allow_list_is_refused_at_start() -> None:
    server = ASGIServer(app)
    server.forwarded_allow_ips = "127.0.0.1, localhost"
    server.handle_signals = False
    with pytest.raises(ValueError, match="'localhost' is not an IP address"):
        await server.run([Endpoint("http", "127.0.0.1", 0)])


async def websocket_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts a WebSocket and says its scope's scheme and client."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps([scope["scheme"], scope["client"]])})
    await send({"type": "websocket.close", "code": 1000})


@pytest.mark.parametrize(("proto", "scheme"), [(b"http", "ws"), (b"https", "wss")])
async def test_websocket_scheme_is_forwarded(
    proto: bytes,
    scheme: str,
    http_version: str,
    tls_files: TLSFiles,
    client_tls_config: ClientTLSConfig,
) -> None:
    server = ASGIServer(websocket_app)
    server.tls_config = tls_files.server_config()
    server.forwarded_allow_ips = "127.0.0.1"
    headers = [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", proto)]
    async with running(server, [Endpoint("https", "127.0.0.1", 0)]) as address:
        async with websocket(
            http_version, address, client_tls_config, extra=headers, h1_tls=True
        ) as ws:
            message = await ws.receive()
    assert isinstance(message, str), message
    assert json.loads(message) == [scheme, ["203.0.113.9", 0]]
