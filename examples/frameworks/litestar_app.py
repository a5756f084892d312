"""A Litestar application served by hface, unchanged: ``hface server litestar_app:app``.

The same routes as fastapi_app.py, in Litestar's terms
(docs/frameworks/litestar.rst); tests/test_frameworks serves it. The
handlers read the request itself (``request.query_params``, ``json()``,
``form()``): Litestar's typed handler parameters work as well, but the way
to declare them changes between its versions.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, Request, WebSocket, get, post, websocket
from litestar.datastructures import State, UploadFile
from litestar.response import ServerSentEvent, Stream

AnyRequest = Request[Any, Any, State]


def make_app(events: list[str]) -> Litestar:
    """The application; its hooks append ``"startup"`` and ``"shutdown"`` to ``events``."""

    def startup(app: Litestar) -> None:
        events.append("startup")
        app.state.started = "yes"

    def shutdown(app: Litestar) -> None:
        events.append("shutdown")

    @get("/items")
    async def items(request: AnyRequest) -> dict[str, Any]:
        query = request.query_params
        return {
            "name": query["name"],
            "count": int(query.get("count", "1")),
            "http_version": request.scope["http_version"],
            "started": request.app.state.started,
        }

    @post("/json")
    async def post_json(request: AnyRequest) -> dict[str, Any]:
        return {"received": await request.json()}

    @post("/form")
    async def post_form(request: AnyRequest) -> dict[str, Any]:
        form = await request.form()
        return {"fields": {"name": form["name"], "colour": form["colour"]}}

    @post("/upload")
    async def upload(request: AnyRequest) -> dict[str, Any]:
        form = await request.form()
        file = form["file"]
        assert isinstance(file, UploadFile)
        content = await file.read()
        return {
            "note": form["note"],
            "filename": file.filename,
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
        }

    @get("/stream")
    async def stream() -> Stream:
        async def lines() -> AsyncIterator[bytes]:
            for number in range(10):
                yield f"line {number}\n".encode()

        return Stream(lines(), media_type="text/plain")

    @get("/events")
    async def events_stream() -> ServerSentEvent:
        async def ticks() -> AsyncIterator[str]:
            for number in range(3):
                yield str(number)

        return ServerSentEvent(ticks(), event_type="tick")

    @websocket("/ws")
    async def echo(socket: WebSocket[Any, Any, State]) -> None:
        await socket.accept()
        while True:
            # The ASGI message itself: text stays text and bytes stay bytes.
            message: dict[str, Any] = dict(await socket.receive())
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await socket.send_data(message["text"])
            else:
                await socket.send_data(message["bytes"], mode="binary")

    return Litestar(
        route_handlers=[items, post_json, post_form, upload, stream, events_stream, echo],
        on_startup=[startup],
        on_shutdown=[shutdown],
        request_max_body_size=8 * 1024 * 1024,
    )


app = make_app([])
