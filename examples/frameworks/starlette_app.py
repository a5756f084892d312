"""A Starlette application served by hface, unchanged: ``hface server starlette_app:app``.

The same routes as fastapi_app.py, in Starlette's own terms
(docs/frameworks/starlette.rst); tests/test_frameworks serves it.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


def make_app(events: list[str]) -> Starlette:
    """The application; its lifespan appends ``"startup"`` and ``"shutdown"`` to ``events``."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"started": "yes"}
        events.append("shutdown")

    async def items(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "name": request.query_params["name"],
                "count": int(request.query_params.get("count", "1")),
                "http_version": request.scope["http_version"],
                "started": request.state.started,
            }
        )

    async def post_json(request: Request) -> JSONResponse:
        return JSONResponse({"received": await request.json()})

    async def post_form(request: Request) -> JSONResponse:
        async with request.form() as form:
            return JSONResponse({"fields": {"name": form["name"], "colour": form["colour"]}})

    async def upload(request: Request) -> JSONResponse:
        async with request.form(max_part_size=8 * 1024 * 1024) as form:
            file = form["file"]
            assert isinstance(file, UploadFile)
            data = await file.read()
            return JSONResponse(
                {
                    "note": form["note"],
                    "filename": file.filename,
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )

    async def stream(request: Request) -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            for number in range(10):
                yield f"line {number}\n".encode()

        return StreamingResponse(lines(), media_type="text/plain")

    async def events_stream(request: Request) -> StreamingResponse:
        async def sse() -> AsyncIterator[str]:
            for number in range(3):
                yield f"event: tick\ndata: {number}\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])

    routes = [
        Route("/items", items),
        Route("/json", post_json, methods=["POST"]),
        Route("/form", post_form, methods=["POST"]),
        Route("/upload", upload, methods=["POST"]),
        Route("/stream", stream),
        Route("/events", events_stream),
        WebSocketRoute("/ws", echo),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


app = make_app([])
