"""The exceptions hface raises, one tree for every layer::

    HTTPError
     ├── ProtocolError
     │    ├── LocalProtocolError    we (or the caller) misused the protocol: raised at once
     │    └── RemoteProtocolError   the peer broke the protocol (carries error_code)
     ├── StreamError               one stream failed (stream_id, error_code)
     └── TransportError            the network failed under us (wraps anyio's errors)

Bad input from a peer never surfaces from the sans-IO protocols as an
exception: it becomes an event (``ConnectionTerminated``, ``StreamResetReceived``).
``RemoteProtocolError`` is for the layers above, which turn such events into
exceptions for their callers. Timeouts are the builtin :class:`TimeoutError`.
The client and server packages subclass these in their own ``errors`` modules.

Errors are classified by their type and fields, never by their message:
a :exc:`TransportError` carries its :class:`TransportErrorKind`, the
address, the reason underneath and, for a connection that ended, the
:class:`TerminationReason` its protocol gave in ``ConnectionTerminated``.
"""

from ._errors import HTTPError as HTTPError
from ._errors import LocalProtocolError as LocalProtocolError
from ._errors import ProtocolError as ProtocolError
from ._errors import RemoteProtocolError as RemoteProtocolError
from ._errors import StreamError as StreamError
from ._errors import TerminationReason as TerminationReason
from ._errors import TransportError as TransportError
from ._errors import TransportErrorKind as TransportErrorKind

__all__ = (
    "HTTPError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "StreamError",
    "TerminationReason",
    "TransportError",
    "TransportErrorKind",
)
