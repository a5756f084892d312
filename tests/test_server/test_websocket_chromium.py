"""A browser's WebSocket over HTTP/2 (RFC 8441): headless Chromium against a Starlette app.

The page the app serves opens a WebSocket to its own origin, sends a
message and reports the echo back with a second request; Chromium runs it
on the page's HTTP/2 connection (the server sends
SETTINGS_ENABLE_CONNECT_PROTOCOL), so the application sees ``http_version``
"2". Chromium does this on its own: no flag is needed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from hface.common import ServerTLSConfig
from hface.server import ASGIServer, Endpoint
from tests.test_server.conftest import running

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]

PAGE = """<!doctype html>
<title>hface WebSocket</title>
<script>
const ws = new WebSocket("wss://" + location.host + "/ws");
ws.onopen = () => ws.send("hello from the browser");
ws.onmessage = (event) => {
  fetch("/report?message=" + encodeURIComponent(event.data)).then(() => ws.close(1000));
};
ws.onerror = () => fetch("/report?message=error");
</script>
"""


class Browser:
    """What the app saw."""

    def __init__(self) -> None:
        self.versions: list[str] = []
        self.reports: list[str] = []
        self.reported = anyio.Event()

    def app(self) -> Starlette:
        async def page(request: Request) -> HTMLResponse:
            return HTMLResponse(PAGE)

        async def report(request: Request) -> PlainTextResponse:
            self.reports.append(request.query_params["message"])
            self.reported.set()
            return PlainTextResponse("thanks")

        async def echo(ws: WebSocket) -> None:
            self.versions.append(ws.scope["http_version"])
            await ws.accept()
            try:
                while True:
                    text = await ws.receive_text()
                    await ws.send_text(f"{text} (HTTP/{ws.scope['http_version']})")
            except WebSocketDisconnect:
                return

        return Starlette(
            routes=[Route("/", page), Route("/report", report), WebSocketRoute("/ws", echo)]
        )


async def test_chromium_websocket_over_http2(
    server_tls_config: ServerTLSConfig, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    browser = Browser()
    server = ASGIServer(browser.app())
    server.tls_config = server_tls_config
    async with running(server, [Endpoint("https", "127.0.0.1", 0)]) as address:
        argv = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--ignore-certificate-errors",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"https://localhost:{address[1]}/",
        ]
        process = await anyio.open_process(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            with anyio.fail_after(30):
                await browser.reported.wait()
        finally:
            with anyio.CancelScope(shield=True):
                process.terminate()
                with anyio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                await process.aclose()
    assert browser.reports == ["hello from the browser (HTTP/2)"]
    assert browser.versions == ["2"]
