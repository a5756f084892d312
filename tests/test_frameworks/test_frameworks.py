"""FastAPI, Starlette, Quart and Litestar applications, unchanged, on every HTTP version.

The same routes in each framework (examples/frameworks): JSON with query
parameters, a JSON post, form and multipart posts (a 1 MiB file), a
streamed response, server-sent events, lifespan state, and a WebSocket
echo. One server per framework for the whole module; HTTP/1.1 and HTTP/2
through httpx, HTTP/3 through hface's own client (conftest.Browser).
Django has a module of its own (test_django.py).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.helpers.certs import TLSFiles
from tests.test_frameworks.apps import load_example
from tests.test_frameworks.conftest import Browser, Served, serve

#: The frameworks of this module and their example modules.
FRAMEWORKS = {
    "fastapi": "fastapi_app",
    "starlette": "starlette_app",
    "quart": "quart_app",
    "litestar": "litestar_app",
}
#: The event loops each runs on (Quart runs on asyncio only).
SERVED = [
    pytest.param((name, backend), id=f"{name}-{backend}")
    for name in FRAMEWORKS
    for backend in ("asyncio", "trio")
    if not (name == "quart" and backend == "trio")
]

MIB = 1024 * 1024


@dataclass
class Running:
    """One framework's application, served, with its lifespan events so far."""

    name: str
    served: Served
    events: list[str]

    def browser(self, http_version: str) -> Browser:
        return Browser(http_version, self.served)


@pytest.fixture(scope="module", params=SERVED)
def running(request: pytest.FixtureRequest, tls_files: TLSFiles) -> Iterator[Running]:
    """Each framework's application, served for the module's tests; lifespan checked at the end."""
    name, backend = request.param
    module = load_example(FRAMEWORKS[name])
    events: list[str] = []
    with serve(module.make_app(events), tls_files, backend=backend) as served:
        assert events == ["startup"]  # before the first request
        yield Running(name, served, events)
    assert events == ["startup", "shutdown"]  # once each


def test_json_get_with_query_parameters(running: Running, http_version: str) -> None:
    reply = running.browser(http_version).get("/items?name=caf%C3%A9&count=3")
    assert reply.status == 200
    assert reply.http_version == http_version
    assert reply.header("content-type") == "application/json"
    assert reply.json() == {
        "name": "café",
        "count": 3,
        "http_version": http_version,
        "started": "yes",  # the lifespan state, in the request's scope
    }


def test_json_post(running: Running, http_version: str) -> None:
    payload = {"numbers": list(range(100)), "nested": {"text": "héllo"}}
    reply = running.browser(http_version).post("/json", json=payload)
    assert reply.status in (200, 201)  # Litestar answers POST with 201
    assert reply.json() == {"received": payload}


def test_form_post(running: Running, http_version: str) -> None:
    reply = running.browser(http_version).post("/form", data={"name": "Ada", "colour": "vert"})
    assert reply.status in (200, 201)
    assert reply.json() == {"fields": {"name": "Ada", "colour": "vert"}}


def test_multipart_upload_of_1_mib(running: Running, http_version: str) -> None:
    data = os.urandom(MIB)
    reply = running.browser(http_version).post(
        "/upload",
        data={"note": "a mebibyte"},
        files={"file": ("random.bin", data, "application/octet-stream")},
    )
    assert reply.status in (200, 201), reply.text
    assert reply.json() == {
        "note": "a mebibyte",
        "filename": "random.bin",
        "size": MIB,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_streaming_response(running: Running, http_version: str) -> None:
    reply = running.browser(http_version).get("/stream")
    assert reply.status == 200
    assert reply.text == "".join(f"line {number}\n" for number in range(10))
    assert reply.header("content-length") is None  # streamed: the length was not known


def test_server_sent_events(running: Running, http_version: str) -> None:
    reply = running.browser(http_version).get("/events")
    assert reply.status == 200
    assert (reply.header("content-type") or "").startswith("text/event-stream")
    events = []
    for block in reply.text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if fields:
            events.append((fields.get("event"), fields.get("data")))
    assert events == [("tick", str(number)) for number in range(3)]


def test_hface_client_on_every_version(running: Running, http_version: str) -> None:
    """hface's own client, not only on HTTP/3: a query, a JSON post and a stream."""
    browser = Browser(http_version, running.served, hface_client=True)
    reply = browser.get("/items?name=x")
    assert reply.http_version == http_version
    assert reply.json()["http_version"] == http_version
    assert browser.post("/json", json={"a": [1, 2]}).json() == {"received": {"a": [1, 2]}}
    assert browser.get("/stream").text.count("line") == 10


def test_unknown_route_is_404(running: Running, http_version: str) -> None:
    assert running.browser(http_version).get("/nowhere").status == 404


def test_websocket_echo(running: Running) -> None:
    """The framework's WebSocket endpoint: text and a 1 MiB binary message, over HTTP/1.1."""
    from websockets.sync.client import connect

    served = running.served
    message = os.urandom(MIB)
    # open_timeout: 10 s by default, which a stalled CI host once outlasted.
    context = served.ssl_context()
    with connect(served.ws_url + "/ws", ssl=context, max_size=2 * MIB, open_timeout=30) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=10) == "héllo"
        ws.send(message)
        assert ws.recv(timeout=10) == message
