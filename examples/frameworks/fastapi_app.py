"""A FastAPI application served by hface, unchanged: ``hface server fastapi_app:app``.

JSON routes, form and multipart posts, a streamed response, server-sent
events, lifespan state and a WebSocket echo (docs/frameworks/fastapi.rst).
The tests serve :func:`make_app` over HTTP/1.1, HTTP/2 and HTTP/3
(tests/test_frameworks).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse


def make_app(events: list[str]) -> FastAPI:
    """The application; its lifespan appends ``"startup"`` and ``"shutdown"`` to ``events``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"started": "yes"}  # the lifespan state: in every request's scope
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/items")
    async def items(request: Request, name: str, count: int = 1) -> dict[str, Any]:
        return {
            "name": name,
            "count": count,
            "http_version": request.scope["http_version"],
            "started": request.state.started,
        }

    @app.post("/json")
    async def post_json(payload: dict[str, Any]) -> dict[str, Any]:
        return {"received": payload}

    @app.post("/form")
    async def post_form(
        name: Annotated[str, Form()], colour: Annotated[str, Form()]
    ) -> dict[str, Any]:
        return {"fields": {"name": name, "colour": colour}}

    @app.post("/upload")
    async def upload(
        note: Annotated[str, Form()], file: Annotated[UploadFile, File()]
    ) -> dict[str, Any]:
        data = await file.read()
        return {
            "note": note,
            "filename": file.filename,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            for number in range(10):
                yield f"line {number}\n".encode()

        return StreamingResponse(lines(), media_type="text/plain")

    @app.get("/events")
    async def events_stream() -> StreamingResponse:
        async def sse() -> AsyncIterator[str]:
            for number in range(3):
                yield f"event: tick\ndata: {number}\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:
                    await websocket.send_text(message["text"])
                else:
                    await websocket.send_bytes(message["bytes"])
        except WebSocketDisconnect:
            return

    return app


app = make_app([])
