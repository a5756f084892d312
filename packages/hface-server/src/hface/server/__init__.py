"""The server facade: serve an ASGI application, or run an HTTP proxy.

See :class:`ASGIServer` and :class:`ProxyServer`; both listen on
:class:`Endpoint` objects for the HTTP versions :class:`ServerProtocol` says,
within the :class:`ServerLimits` and :class:`ServerTimeouts` they are given;
:func:`run_workers` serves with several processes.

:class:`ProxyServer` (and its tunnels' modules) is imported at its first
use, so that a server of an ASGI application does not keep the proxy in
memory.
"""

from typing import TYPE_CHECKING, Any

from hface.common import ServerTLSConfig as ServerTLSConfig

from ._asgi import ASGIServer as ASGIServer
from ._asgi_types import ClientDisconnected as ClientDisconnected
from ._base import BaseServer as BaseServer
from ._config import ServerLimits as ServerLimits
from ._config import ServerTimeouts as ServerTimeouts
from ._forwarded import ForwardedStyle as ForwardedStyle
from ._models import Endpoint as Endpoint
from ._models import ServerProtocol as ServerProtocol
from ._workers import run_workers as run_workers

if TYPE_CHECKING:
    from ._proxy import ProxyServer as ProxyServer

__all__ = (
    "ASGIServer",
    "BaseServer",
    "ClientDisconnected",
    "Endpoint",
    "ForwardedStyle",
    "ProxyServer",
    "ServerLimits",
    "ServerProtocol",
    "ServerTLSConfig",
    "ServerTimeouts",
    "run_workers",
)


def __getattr__(name: str) -> Any:
    """``ProxyServer``, imported when first asked for (see the module docstring)."""
    if name == "ProxyServer":
        from ._proxy import ProxyServer

        globals()[name] = ProxyServer  # found directly from now on
        return ProxyServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
