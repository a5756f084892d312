"""The hello application plus an ``Alt-Svc`` header advertising HTTP/3.

Servers add ``alt-svc`` by themselves when they serve HTTP/3; this
application sets it explicitly, for servers that don't (or to advertise
another port).
"""

from __future__ import annotations

from typing import Any

__all__ = ("ALT_SVC", "application")

from .hello import GREETING

#: Where HTTP/3 is offered: the same host, port 5443 (as in examples/server.py).
ALT_SVC = b'h3=":5443"; ma=86400'


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every request with a greeting and an ``alt-svc`` header."""
    if scope["type"] != "http":
        return
    body = f"{GREETING} (HTTP/{scope['http_version']})\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"alt-svc", ALT_SVC),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
