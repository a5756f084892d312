"""A tiny ASGI application for hypercorn (run in a subprocess by the tests).

``/`` answers ``hello``; ``/bytes/N`` answers N deterministic bytes (see
:func:`pattern`); ``/echo`` answers the request body; ``/slow`` never answers.
A WebSocket (:func:`websocket`) is accepted and echoed, except on
``/deny`` (refused with 403) and ``/close-4000`` (closed at once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_BLOCK = bytes(range(256)) * 256  # 64 KiB


def pattern(size: int) -> bytes:
    """``size`` bytes of the repeating pattern the servers send."""
    full, rest = divmod(size, len(_BLOCK))
    return _BLOCK * full + _BLOCK[:rest]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if path == "/slow":
        await asyncio.sleep(3600)
    headers = [(b"content-type", b"application/octet-stream")]
    if path.startswith("/bytes/"):
        size = int(path.removeprefix("/bytes/"))
        headers.append((b"content-length", str(size).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for start in range(0, size, len(_BLOCK)):
            chunk = pattern(min(len(_BLOCK), size - start))
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    content = body if path == "/echo" else f"hello {scope['http_version']}".encode()
    headers.append((b"content-length", str(len(content)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Say ``version V`` (the HTTP version), then echo every message until the close."""
    await receive()  # websocket.connect
    path: str = scope["path"]
    if path == "/deny":
        await send({"type": "websocket.close", "code": 1000})
        return
    subprotocol = "echo" if "echo" in scope.get("subprotocols", []) else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    if path == "/close-4000":
        await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
        return
    await send({"type": "websocket.send", "text": f"version {scope['http_version']}"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
