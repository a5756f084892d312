"""The one ASGI application every server in the benchmark serves.

- ``GET /`` (any path not below): ``Hello, world!``
- ``GET /bytes/N``: N zero bytes (at most 256 MiB), in 256 KiB messages.
- ``GET /sleep/MS``: ``Hello, world!`` after MS milliseconds (at most 60 s),
  to hold streams open for the memory measurements.

Plain ASGI 3 with no framework, so that what is measured is the server.
Lifespan events are answered, since uvicorn and granian send them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO: Final = b"Hello, world!"
CHUNK: Final = bytes(256 * 1024)
MAX_BYTES: Final = 256 * 1024 * 1024
MAX_SLEEP_MS: Final = 60_000


def _headers(length: int, content_type: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", content_type), (b"content-length", str(length).encode())]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Serve the three benchmark routes (see the module docstring)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    if path.startswith("/bytes/"):
        size = _number(path, MAX_BYTES)
        if size is None:
            await _reply(send, 400, b"bad size\n")
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": _headers(size, b"application/octet-stream"),
            }
        )
        sent = 0
        while sent < size:
            piece = min(len(CHUNK), size - sent)
            sent += piece
            body = CHUNK if piece == len(CHUNK) else CHUNK[:piece]
            await send({"type": "http.response.body", "body": body, "more_body": sent < size})
        if size == 0:
            await send({"type": "http.response.body", "body": b""})
        return
    if path.startswith("/sleep/"):
        milliseconds = _number(path, MAX_SLEEP_MS)
        if milliseconds is None:
            await _reply(send, 400, b"bad duration\n")
            return
        await asyncio.sleep(milliseconds / 1000)
    await _reply(send, 200, HELLO)


def _number(path: str, limit: int) -> int | None:
    text = path.rsplit("/", 1)[1]
    if not text.isdigit() or int(text) > limit:
        return None
    return int(text)


async def _reply(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": _headers(len(body), b"text/plain"),
        }
    )
    await send({"type": "http.response.body", "body": body})


#: What ``hface server bench.app`` looks for.
application = app
