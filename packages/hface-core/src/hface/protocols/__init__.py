"""Sans-IO HTTP protocols: HTTP/1.1, HTTP/2 and HTTP/3 behind one interface.

See :mod:`hface.protocols._protocols` for the theory of operation. The
implementations are in :mod:`hface.protocols.http1` (h11),
:mod:`hface.protocols.http2` (h2) and :mod:`hface.protocols.http3` (aioquic);
third parties add theirs through the ``hface.protocols`` entry point group
(see :class:`ProtocolRegistry`).
"""

from ._factories import ALPNHTTPFactory as ALPNHTTPFactory
from ._factories import HTTPOverQUICClientFactory as HTTPOverQUICClientFactory
from ._factories import HTTPOverQUICServerFactory as HTTPOverQUICServerFactory
from ._factories import HTTPOverTCPFactory as HTTPOverTCPFactory
from ._lifecycle import ConnectionState as ConnectionState
from ._prior_knowledge import PriorKnowledgeHTTPFactory as PriorKnowledgeHTTPFactory
from ._protocols import HTTP1Protocol as HTTP1Protocol
from ._protocols import HTTP2Protocol as HTTP2Protocol
from ._protocols import HTTP3Protocol as HTTP3Protocol
from ._protocols import HTTPOverQUICProtocol as HTTPOverQUICProtocol
from ._protocols import HTTPOverTCPProtocol as HTTPOverTCPProtocol
from ._protocols import HTTPProtocol as HTTPProtocol
from ._registry import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from ._registry import PREFERRED_IMPLEMENTATIONS as PREFERRED_IMPLEMENTATIONS
from ._registry import PROTOCOL_KINDS as PROTOCOL_KINDS
from ._registry import ProtocolRegistry as ProtocolRegistry
from ._registry import protocol_registry as protocol_registry
from ._settings import ProtocolLimits as ProtocolLimits

__all__ = (
    "ALPNHTTPFactory",
    "ConnectionState",
    "ENTRY_POINT_GROUP",
    "HTTP1Protocol",
    "HTTP2Protocol",
    "HTTP3Protocol",
    "HTTPOverQUICClientFactory",
    "HTTPOverQUICProtocol",
    "HTTPOverQUICServerFactory",
    "HTTPOverTCPFactory",
    "HTTPOverTCPProtocol",
    "HTTPProtocol",
    "PREFERRED_IMPLEMENTATIONS",
    "PROTOCOL_KINDS",
    "PriorKnowledgeHTTPFactory",
    "ProtocolLimits",
    "ProtocolRegistry",
    "protocol_registry",
)
