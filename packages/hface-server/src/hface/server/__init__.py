"""The server facade: serve an ASGI application, or run an HTTP proxy.

See :class:`ASGIServer` and :class:`ProxyServer`; both listen on
:class:`Endpoint` objects for the HTTP versions :class:`ServerProtocol` says.
"""

from hface.common import ServerTLSConfig as ServerTLSConfig

from ._base import BaseServer as BaseServer
from ._models import Endpoint as Endpoint
from ._models import ServerProtocol as ServerProtocol

__all__ = (
    "BaseServer",
    "Endpoint",
    "ServerProtocol",
    "ServerTLSConfig",
)
