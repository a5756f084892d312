"""One ``HTTPConnection`` API for HTTP/1.1, HTTP/2 and HTTP/3.

Servers get connections from an :class:`HTTPListener`
(:class:`HTTPOverTCPListener`, :class:`HTTPOverQUICListener`,
:class:`HTTPMultiListener`); clients from an :class:`HTTPOpener`
(:class:`HTTPOverTCPOpener`, :class:`HTTPOverQUICOpener`).
"""

from ._connection import DEFAULT_LINGER_MAX_BYTES as DEFAULT_LINGER_MAX_BYTES
from ._connection import DEFAULT_LINGER_TIMEOUT as DEFAULT_LINGER_TIMEOUT
from ._connection import HTTPConnection as HTTPConnection
from ._connection import HTTPOverQUICConnection as HTTPOverQUICConnection
from ._connection import HTTPOverTCPConnection as HTTPOverTCPConnection
from ._listeners import HandlerType as HandlerType
from ._listeners import HTTPListener as HTTPListener
from ._listeners import HTTPMultiListener as HTTPMultiListener
from ._listeners import HTTPOverQUICListener as HTTPOverQUICListener
from ._listeners import HTTPOverTCPListener as HTTPOverTCPListener
from ._openers import HTTPOpener as HTTPOpener
from ._openers import HTTPOverQUICOpener as HTTPOverQUICOpener
from ._openers import HTTPOverTCPOpener as HTTPOverTCPOpener

__all__ = (
    "DEFAULT_LINGER_MAX_BYTES",
    "DEFAULT_LINGER_TIMEOUT",
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
    "HandlerType",
)
