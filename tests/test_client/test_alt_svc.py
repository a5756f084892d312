"""HTTP/3 discovery: the Alt-Svc cache (RFC 7838) and the race of QUIC against TCP."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import pytest

from hface.client import AltService, AltSvcCache, Client, Origin
from hface.client._racing import Attempt, race
from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.server import ASGIServer, Endpoint
from tests.helpers.peers import free_port
from tests.test_server.conftest import running

from .conftest import PeerServer

pytestmark = pytest.mark.anyio

ORIGIN = Origin("https", "example.com", 443)
NOW = 1_800_000_000.0


# -- the cache ------------------------------------------------------------------------


def test_update_lookup_and_expiry() -> None:
    cache = AltSvcCache()
    value = 'h2=":8443", h3="alt.example.com:8443"; ma=60; persist=1, h3=":443"'
    assert cache.update(ORIGIN, [value], http_version="2", now=NOW)
    assert cache.lookup(ORIGIN, now=NOW) == AltService("alt.example.com", 8443, NOW + 60, True)
    # The first one expired: the next (24 hours by default) is the one.
    assert cache.lookup(ORIGIN, now=NOW + 61) == AltService("example.com", 443, NOW + 86400)
    assert not cache.update(ORIGIN, ['h3=":443"'], http_version="2", now=NOW)  # known already
    assert len(cache) == 1


def test_clear_and_discard() -> None:
    cache = AltSvcCache()
    cache.update(ORIGIN, ['h3=":443"; ma=100'], http_version="2", now=NOW)
    cache.update(ORIGIN, ["clear"], http_version="2", now=NOW)
    assert cache.lookup(ORIGIN, now=NOW) is None
    cache.update(ORIGIN, ['h3=":443"'], http_version="1.1", now=NOW)
    service = cache.lookup(ORIGIN, now=NOW)
    assert service is not None
    cache.discard(ORIGIN, service)
    assert cache.lookup(ORIGIN, now=NOW) is None
    # Not for cleartext origins, and not what is malformed.
    assert not cache.update(Origin("http", "a", 80), ['h3=":443"'], http_version="1.1", now=NOW)
    assert not cache.update(ORIGIN, ['h3=":99999", h3=x'], http_version="2", now=NOW)


def test_curl_file_format() -> None:
    cache = AltSvcCache()
    cache.update(ORIGIN, ['h3="alt.example.com:8443"; ma=3600'], http_version="2", now=NOW)
    text = cache.dumps(now=NOW)
    # curl's own line for it (lib/altsvc.c writes this format).
    assert 'h2 example.com 443 h3 alt.example.com 8443 "20270115 09:00:00" 0 0' in text
    loaded = AltSvcCache()
    loaded.loads(text + 'h2 a.example 443 h2 b.example 443 "20270115 09:00:00" 0 0\n', now=NOW)
    assert loaded.dumps(now=NOW) == text
    assert AltSvcCache().dumps(now=NOW).startswith("#")
    loaded.loads(text, now=NOW + 3600)  # expired: nothing more
    assert len(loaded) == 1


# -- discovery ------------------------------------------------------------------------


@asynccontextmanager
async def hface_server(server_tls_config: ServerTLSConfig, app: Any = None) -> AsyncIterator[int]:
    """hface's server (HTTP/1.1, 2 and 3 on one port, Alt-Svc on); its port."""
    server = ASGIServer(app or _hello)
    server.tls_config = server_tls_config
    server.access_log = False
    server.alt_svc = app is None  # else only the app's
    async with running(server, [Endpoint("https", "127.0.0.1", 0)]) as (_host, port):
        yield port


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = []
    if scope["path"].startswith("/alt/"):  # an alternative on another UDP port
        headers.append((b"alt-svc", f'h3=":{scope["path"][5:]}"'.encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": scope["http_version"].encode()})


async def test_second_request_over_http3(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    client = Client(tls_config=client_tls_config)
    client.alt_svc = AltSvcCache()
    async with hface_server(server_tls_config) as port:
        url = f"https://localhost:{port}/"
        async with client.session() as session:
            versions = [(await session.get(url)).http_version for _ in range(3)]
        assert versions == ["2", "3", "3"]
        service = client.alt_svc.lookup(Origin("https", "localhost", port))
        assert service is not None
        assert (service.host, service.port) == ("localhost", port)
        # A new session (sharing the cache) goes to HTTP/3 at once.
        async with client.session() as session:
            assert (await session.get(url)).http_version == "3"


async def test_no_discovery_by_default(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with hface_server(server_tls_config) as port:
        async with Client(tls_config=client_tls_config).session() as session:
            for _ in range(2):
                response = await session.get(f"https://localhost:{port}/")
                assert response.http_version == "2"


async def test_hypercorn_advertises_http3(
    hypercorn_server: PeerServer, client_tls_config: ClientTLSConfig
) -> None:
    client = Client(tls_config=client_tls_config)
    client.alt_svc = AltSvcCache()
    async with client.session() as session:
        first = await session.get(hypercorn_server.url + "/")
        second = await session.get(hypercorn_server.url + "/")
    assert (first.http_version, second.http_version) == ("2", "3")


@contextmanager
def blackhole() -> Iterator[int]:
    """A UDP port whose datagrams are dropped (bound, never read): UDP "blocked"."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        yield sink.getsockname()[1]


async def _timed_get(client: Client, url: str, first: str | None = None) -> tuple[float, str]:
    async with client.session() as session:
        if first is not None:
            await session.get(first)  # learns the alternative
        start = time.monotonic()
        response = await session.get(url)
        return time.monotonic() - start, response.http_version


async def test_blocked_udp_falls_back_to_tcp_in_bounded_time(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with hface_server(server_tls_config, _hello) as port:
        base = f"https://localhost:{port}"
        with blackhole() as udp_port:
            direct, _version = await _timed_get(Client(tls_config=client_tls_config), base + "/")
            client = Client(tls_config=client_tls_config)
            client.alt_svc = AltSvcCache()
            raced, version = await _timed_get(client, base + "/", first=f"{base}/alt/{udp_port}")
    assert version == "2"
    assert raced - direct < 0.3, (raced, direct)
    assert raced >= 0.2  # QUIC had its head start
    service = client.alt_svc.lookup(Origin("https", "localhost", port))
    assert service is not None  # nothing failed: only no answer
    assert service.port == udp_port


async def test_unreachable_alternative_is_forgotten(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    closed_port = free_port()  # nothing listens on UDP: ICMP port unreachable
    async with hface_server(server_tls_config, _hello) as port:
        base = f"https://localhost:{port}"
        client = Client(tls_config=client_tls_config)
        client.alt_svc = AltSvcCache()
        elapsed, version = await _timed_get(client, base + "/", first=f"{base}/alt/{closed_port}")
    assert version == "2"
    assert elapsed < 0.2  # TCP started as soon as QUIC failed
    assert len(client.alt_svc) == 0


# -- the race -------------------------------------------------------------------------


class _Opened:
    """What a fake opener opens: its name, and whether the race closed it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True


async def test_the_head_start_counts_from_the_end_of_prepare() -> None:
    """QUIC's import (``prepare``) does not eat into its head start over TCP."""
    order: list[str] = []

    def opener(name: str, seconds: float) -> Any:
        async def open_(origin: Origin) -> Any:
            order.append(f"{name} starts")
            await anyio.sleep(seconds)
            return _Opened(name)

        return open_

    async def prepare() -> None:
        await anyio.sleep(0.4)  # longer than TCP's delay
        order.append("prepared")

    async def start(open_: Any) -> Any:
        return await open_(ORIGIN)

    attempts = (
        Attempt(0.0, opener("quic", 0.05), prepare=prepare),
        Attempt(0.2, opener("tcp", 0.0)),
    )
    winner = await race(attempts, start)
    assert winner.name == "quic"  # type: ignore[attr-defined]
    assert order == ["prepared", "quic starts"]
