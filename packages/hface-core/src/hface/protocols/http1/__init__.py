"""HTTP/1.1, speaking the HTTP/2 style headers and events of every version.

One client and one server state machine; h11 parses here, and llhttp can
parse for the server (:mod:`hface.protocols.http1._httptools`). See
:mod:`hface.protocols.http1._base` for the theory of operation.
"""

from ._client import HTTP1ClientProtocol as HTTP1ClientProtocol
from ._factories import HTTP1ClientFactory as HTTP1ClientFactory
from ._factories import HTTP1ServerFactory as HTTP1ServerFactory
from ._server import HTTP1ServerProtocol as HTTP1ServerProtocol

__all__ = (
    "HTTP1ClientFactory",
    "HTTP1ClientProtocol",
    "HTTP1ServerFactory",
    "HTTP1ServerProtocol",
)
