"""An ASGI application that greets in plain text, over any HTTP version."""

from __future__ import annotations

from typing import Any

__all__ = ("GREETING", "application")

#: The text every response starts with; the HTTP version follows it.
GREETING = "Hello from hface!"


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every request with a greeting naming its HTTP version."""
    if scope["type"] != "http":
        return  # no lifespan work to do
    body = f"{GREETING} (HTTP/{scope['http_version']})\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})
