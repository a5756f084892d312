"""The client facade: HTTP/1.1, HTTP/2 and HTTP/3 requests, directly or through a proxy.

Make a :class:`Client`, enter :meth:`Client.session`, and call
:meth:`ClientSession.get` (``post``, ... or :meth:`ClientSession.request`:
query parameters, JSON and form bodies, redirects, Basic authentication,
per-request timeouts), :meth:`ClientSession.dispatch` with a
:class:`Request` (the request as it is), or :meth:`ClientSession.stream`
for large bodies, :meth:`ClientSession.websocket` for a :class:`WebSocket`.
:class:`ProxyClient` opens raw TCP tunnels through an HTTP proxy.
Exceptions are in :mod:`hface.client.errors`; timeouts raise :exc:`TimeoutError`.
"""

from hface.common import ClientTLSConfig as ClientTLSConfig

from ._alt_svc import AltService as AltService
from ._alt_svc import AltSvcCache as AltSvcCache
from ._auth import BasicAuth as BasicAuth
from ._auth import DigestAuth as DigestAuth
from ._client import Client as Client
from ._client import ClientSession as ClientSession
from ._conveniences import QueryOptions as QueryOptions
from ._conveniences import RequestOptions as RequestOptions
from ._conveniences import Timeout as Timeout
from ._decoding import BodyDecoder as BodyDecoder
from ._decoding import accept_encoding as accept_encoding
from ._headers import Headers as Headers
from ._models import URL as URL
from ._models import ClientProtocol as ClientProtocol
from ._models import Origin as Origin
from ._models import Request as Request
from ._models import Response as Response
from ._proxy import ProxyClient as ProxyClient
from ._proxy import ProxyClientSession as ProxyClientSession
from ._websocket import WebSocket as WebSocket
from ._websocket import WebSocketState as WebSocketState

__all__ = (
    "URL",
    "AltService",
    "AltSvcCache",
    "Client",
    "ClientProtocol",
    "ClientSession",
    "ClientTLSConfig",
    "DigestAuth",
    "BasicAuth",
    "BodyDecoder",
    "Headers",
    "Origin",
    "ProxyClient",
    "ProxyClientSession",
    "QueryOptions",
    "Request",
    "RequestOptions",
    "Response",
    "Timeout",
    "WebSocket",
    "WebSocketState",
    "accept_encoding",
)
