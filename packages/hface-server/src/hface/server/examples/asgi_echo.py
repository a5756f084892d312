"""An ASGI application that echoes the request: method, path, headers and body."""

from __future__ import annotations

from typing import Any

__all__ = ("application",)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer with a plain-text description of the request, then its body."""
    if scope["type"] != "http":
        return
    body = b""
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        more_body = message.get("more_body", False)
    target = scope["raw_path"]
    if scope["query_string"]:
        target += b"?" + scope["query_string"]
    lines = [
        f"{scope['method']} ".encode() + target + f" HTTP/{scope['http_version']}".encode(),
        *(name + b": " + value for name, value in scope["headers"]),
        b"",
    ]
    head = b"\r\n".join(lines) + b"\r\n"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": head + body})
