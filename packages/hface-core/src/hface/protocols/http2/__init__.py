"""HTTP/2 (RFC 9113) on h2: sans-IO client and server protocols and their factories.

See :mod:`hface.protocols.http2._protocol` for the theory of operation
(flow control, held data, errors and GOAWAY).
"""

from ._factory import HTTP2ClientFactory as HTTP2ClientFactory
from ._factory import HTTP2ServerFactory as HTTP2ServerFactory
from ._protocol import HTTP2ClientProtocol as HTTP2ClientProtocol
from ._protocol import HTTP2ServerProtocol as HTTP2ServerProtocol
from ._settings import HTTP2Settings as HTTP2Settings

__all__ = (
    "HTTP2ClientFactory",
    "HTTP2ClientProtocol",
    "HTTP2ServerFactory",
    "HTTP2ServerProtocol",
    "HTTP2Settings",
)
