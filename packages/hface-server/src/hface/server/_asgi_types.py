"""The ASGI 3.0 vocabulary the server speaks: scopes, messages, ``receive``, ``send``.

In a module of its own, below everything else of the ASGI server, so that
the modules which use these types import nothing of each other for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, Protocol

#: An ASGI connection scope (``http`` or ``lifespan``).
Scope = MutableMapping[str, Any]
#: An ASGI event message.
Message = MutableMapping[str, Any]
#: The ``receive`` callable an application awaits.
Receive = Callable[[], Awaitable[Message]]
#: The ``send`` callable an application awaits.
Send = Callable[[Message], Awaitable[None]]
#: An ASGI 3.0 application: ``await app(scope, receive, send)``.
ASGIApp = Callable[..., Awaitable[None]]

#: The ``asgi`` key of every ``http`` scope (the HTTP spec's version).
ASGI_VERSIONS: Final = {"version": "3.0", "spec_version": "2.4"}
#: The ``asgi`` key of the ``lifespan`` scope (the lifespan spec's version).
LIFESPAN_VERSIONS: Final = {"version": "3.0", "spec_version": "2.0"}


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client has gone away (ASGI spec 2.4)."""


class GoingAway(Protocol):
    """What the server tells an open WebSocket at shutdown."""

    def going_away(self) -> None:
        """Close with 1001 (going away)."""
