"""One ``HTTPConnection`` API for HTTP/1.1, HTTP/2 and HTTP/3.

Servers get connections from an :class:`HTTPListener`
(:class:`HTTPOverTCPListener`, :class:`HTTPOverQUICListener`,
:class:`HTTPMultiListener`) and their streams from
:meth:`HTTPConnection.accept_stream`; clients get connections from an
:class:`HTTPOpener` (:class:`HTTPOverTCPOpener`, :class:`HTTPOverQUICOpener`)
and open streams with :meth:`HTTPConnection.open_stream`. Both tune them
with :class:`ConnectionOptions`.
"""

from ._connection import HTTPConnection as HTTPConnection
from ._connection import HTTPStream as HTTPStream
from ._listeners import HandlerType as HandlerType
from ._listeners import HTTPListener as HTTPListener
from ._listeners import HTTPMultiListener as HTTPMultiListener
from ._listeners import HTTPOverQUICListener as HTTPOverQUICListener
from ._listeners import HTTPOverTCPListener as HTTPOverTCPListener
from ._openers import HTTPOpener as HTTPOpener
from ._openers import HTTPOverQUICOpener as HTTPOverQUICOpener
from ._openers import HTTPOverTCPOpener as HTTPOverTCPOpener
from ._options import DEFAULT_LINGER_MAX_BYTES as DEFAULT_LINGER_MAX_BYTES
from ._options import DEFAULT_LINGER_TIMEOUT as DEFAULT_LINGER_TIMEOUT
from ._options import DEFAULT_QUIC_HANDSHAKE_TIMEOUT as DEFAULT_QUIC_HANDSHAKE_TIMEOUT
from ._options import ConnectionOptions as ConnectionOptions
from ._quic import HTTPOverQUICConnection as HTTPOverQUICConnection
from ._tcp import HTTPOverTCPConnection as HTTPOverTCPConnection

__all__ = (
    "DEFAULT_LINGER_MAX_BYTES",
    "DEFAULT_LINGER_TIMEOUT",
    "DEFAULT_QUIC_HANDSHAKE_TIMEOUT",
    "ConnectionOptions",
    "HTTPConnection",
    "HTTPListener",
    "HTTPMultiListener",
    "HTTPOpener",
    "HTTPOverQUICConnection",
    "HTTPOverQUICListener",
    "HTTPOverQUICOpener",
    "HTTPOverTCPConnection",
    "HTTPOverTCPListener",
    "HTTPOverTCPOpener",
    "HTTPStream",
    "HandlerType",
)
