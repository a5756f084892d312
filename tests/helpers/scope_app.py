"""An ASGI application that answers with what its scope says, as JSON.

For deployment tests: the server runs it (in process, or as ``hface server
tests.helpers.scope_app:app`` in a subprocess or a network namespace) and
the client reads the ``client``, ``server``, ``scheme``, ``root_path``,
``path``, ``host`` and ``http_version`` the application saw, and the
``HFACE_TEST_INSTANCE`` environment variable of the server's process (which
server of several answered).
"""

from __future__ import annotations

import json
import os
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = dict(scope["headers"])
    body = json.dumps(
        {
            "instance": os.environ.get("HFACE_TEST_INSTANCE"),
            "client": scope["client"],
            "server": scope["server"],
            "scheme": scope["scheme"],
            "root_path": scope["root_path"],
            "path": scope["path"],
            "host": headers.get(b"host", b"").decode("latin-1"),
            "http_version": scope["http_version"],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
