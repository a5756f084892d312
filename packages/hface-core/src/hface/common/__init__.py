"""Models shared by every layer of hface: TLS settings, error codes and type aliases.

The facades (:mod:`hface.server`, :mod:`hface.client`) re-export what their
users need from here, so most code never imports this module directly.
"""

from ._error_codes import HTTP1_ERROR_CODES as HTTP1_ERROR_CODES
from ._error_codes import HTTP2_ERROR_CODES as HTTP2_ERROR_CODES
from ._error_codes import HTTP3_ERROR_CODES as HTTP3_ERROR_CODES
from ._error_codes import HTTPErrorCodes as HTTPErrorCodes
from ._tls import ClientTLSConfig as ClientTLSConfig
from ._tls import ServerTLSConfig as ServerTLSConfig
from ._types import AddressType as AddressType
from ._types import DatagramType as DatagramType
from ._types import HeadersType as HeadersType
from ._types import HeaderType as HeaderType

__all__ = (
    "AddressType",
    "ClientTLSConfig",
    "DatagramType",
    "HTTP1_ERROR_CODES",
    "HTTP2_ERROR_CODES",
    "HTTP3_ERROR_CODES",
    "HTTPErrorCodes",
    "HeaderType",
    "HeadersType",
    "ServerTLSConfig",
)
