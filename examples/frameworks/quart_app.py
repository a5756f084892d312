"""A Quart application served by hface, unchanged: ``hface server quart_app:app``.

The same routes as fastapi_app.py, in Quart's terms
(docs/frameworks/quart.rst); tests/test_frameworks serves it.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from quart import Quart, Response, request, websocket


def make_app(events: list[str]) -> Quart:
    """The application; its serving hooks append ``"startup"`` and ``"shutdown"`` to ``events``."""
    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 8 * 1024 * 1024

    @app.before_serving
    async def startup() -> None:
        events.append("startup")
        app.config["STARTED"] = "yes"

    @app.after_serving
    async def shutdown() -> None:
        events.append("shutdown")

    @app.get("/items")
    async def items() -> dict[str, Any]:
        return {
            "name": request.args["name"],
            "count": int(request.args.get("count", "1")),
            "http_version": request.scope["http_version"],
            "started": app.config["STARTED"],
        }

    @app.post("/json")
    async def post_json() -> dict[str, Any]:
        return {"received": await request.get_json()}

    @app.post("/form")
    async def post_form() -> dict[str, Any]:
        form = await request.form
        return {"fields": {"name": form["name"], "colour": form["colour"]}}

    @app.post("/upload")
    async def upload() -> dict[str, Any]:
        form = await request.form
        file = (await request.files)["file"]
        data = file.read()
        return {
            "note": form["note"],
            "filename": file.filename,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    @app.get("/stream")
    async def stream() -> Response:
        async def lines() -> AsyncIterator[bytes]:
            for number in range(10):
                yield f"line {number}\n".encode()

        return Response(lines(), mimetype="text/plain")

    @app.get("/events")
    async def events_stream() -> Response:
        async def sse() -> AsyncIterator[bytes]:
            for number in range(3):
                yield f"event: tick\ndata: {number}\n\n".encode()

        response = Response(sse(), mimetype="text/event-stream")
        response.timeout = None
        return response

    @app.websocket("/ws")
    async def echo() -> None:
        while True:
            message = await websocket.receive()
            await websocket.send(message)

    return app


app = make_app([])
