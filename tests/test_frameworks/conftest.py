"""Real frameworks, unchanged, served by ``ASGIServer`` over HTTP/1.1, HTTP/2 and HTTP/3.

Each test module serves one application for all its tests
(:func:`serve`: an ``ASGIServer`` on an asyncio event loop in a thread of
its own, started once per module) and talks to it through a
:class:`Browser`: httpx for HTTP/1.1 and HTTP/2, hface's own client for
HTTP/3, with cookies kept the same way on all three. WebSocket tests use
the ``websockets`` library over HTTP/1.1.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

import anyio
import httpx
import pytest
from anyio.from_thread import start_blocking_portal

from hface.client import Client, ClientProtocol, Request
from hface.server import ASGIServer, Endpoint
from tests.helpers.certs import TLSFiles

#: Every HTTP version, as ASGI and the clients spell it.
VERSIONS = ("1.1", "2", "3")


@pytest.fixture(params=VERSIONS, ids=lambda v: f"http{v}")
def http_version(request: pytest.FixtureRequest) -> str:
    """Each HTTP version in turn."""
    version: str = request.param
    return version


@dataclass(frozen=True)
class Served:
    """A running server: where it listens and how to trust it."""

    port: int
    tls_files: TLSFiles

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"wss://localhost:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.tls_files.ca_file)


@contextmanager
def serve(
    app: Any, tls_files: TLSFiles, *, backend: str = "asyncio", root_path: str = ""
) -> Iterator[Served]:
    """Serve ``app`` on a free port of 127.0.0.1 (TLS and QUIC) while the block runs.

    The server runs on ``backend`` (``"asyncio"`` or ``"trio"``) in a
    thread of its own, with its lifespan; leaving the block shuts it down
    (lifespan shutdown included) and waits.
    """
    server = ASGIServer(app)
    server.tls_config = tls_files.server_config()
    server.handle_signals = False
    server.access_log = False
    server.root_path = root_path
    with start_blocking_portal(backend) as portal:
        future, addresses = portal.start_task(
            server.run, [Endpoint("https", "127.0.0.1", 0)], name="ASGIServer.run"
        )
        try:
            yield Served(addresses[0][1], tls_files)
        finally:
            future.cancel()  # then the portal waits for the task to end


@dataclass
class Reply:
    """A response, the same from every client."""

    status: int
    headers: list[tuple[str, str]]
    content: bytes
    http_version: str

    def header(self, name: str) -> str | None:
        """The first value of the header ``name`` (lowercase), or None."""
        return next((value for key, value in self.headers if key == name), None)

    def header_list(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        import json

        return json.loads(self.content)


@dataclass
class Browser:
    """Requests of one HTTP version, with cookies kept (as a browser would)."""

    http_version: str
    served: Served
    cookies: dict[str, str] = field(default_factory=dict)
    #: Use hface's own client on every version (HTTP/3 always uses it).
    hface_client: bool = False
    #: Send each cookie as a field of its own, as browsers may on HTTP/2 and
    #: HTTP/3 (RFC 9113 §8.2.3): the server must join them.
    split_cookies: bool = False

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        **body: Any,
    ) -> Reply:
        """One request; ``body`` as httpx takes it (``json``, ``data``, ``files``, ``content``)."""
        url = self.served.url + path
        built = httpx.Request(method, url, headers=headers, **body)
        content = built.read()
        fields = [
            (name.decode().lower(), value.decode())
            for name, value in built.headers.raw
            if name.lower() not in (b"host", b"cookie")
        ]
        crumbs = [f"{name}={value}" for name, value in self.cookies.items()]
        if self.split_cookies:
            fields.extend(("cookie", crumb) for crumb in crumbs)
        elif crumbs:
            fields.append(("cookie", "; ".join(crumbs)))
        if self.http_version == "3" or self.hface_client:
            reply = anyio.run(self._request_hface, method, url, fields, content)
        else:
            reply = self._request_httpx(method, url, fields, content)
        for value in reply.header_list("set-cookie"):
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(value)
            for name, morsel in cookie.items():
                self.cookies[name] = morsel.value
        return reply

    def get(self, path: str, **options: Any) -> Reply:
        return self.request("GET", path, **options)

    def post(self, path: str, **options: Any) -> Reply:
        return self.request("POST", path, **options)

    def _request_httpx(
        self, method: str, url: str, fields: list[tuple[str, str]], content: bytes
    ) -> Reply:
        http2 = self.http_version == "2"
        with httpx.Client(
            verify=self.served.ssl_context(), http1=not http2, http2=http2, timeout=30
        ) as client:
            response = client.request(method, url, headers=fields, content=content or None)
        version = {"HTTP/1.1": "1.1", "HTTP/2": "2"}[response.http_version]
        headers = [(k.decode().lower(), v.decode()) for k, v in response.headers.raw]
        return Reply(response.status_code, headers, response.content, version)

    async def _request_hface(
        self, method: str, url: str, fields: list[tuple[str, str]], content: bytes
    ) -> Reply:
        protocol = {
            "1.1": ClientProtocol.HTTP1,
            "2": ClientProtocol.HTTP2,
            "3": ClientProtocol.HTTP3,
        }[self.http_version]
        client = Client(tls_config=self.served.tls_files.client_config(), protocol=protocol)
        async with client.session() as session:
            response = await session.dispatch(
                Request(method, url, headers=fields, content=content or None)
            )
        headers = [(k.decode(), v.decode()) for k, v in response.headers]
        return Reply(response.status, headers, response.content, response.http_version)
