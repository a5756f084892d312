"""The events that every HTTP version speaks, whatever is underneath.

Sans-IO protocols return them from ``next_event()`` and connections from
``receive_event()``. They are immutable values, compared by value::

    Event
     ├── ConnectionTerminated   the connection is over (error_code, message, reason)
     ├── GoawayReceived         the peer will accept no new streams
     └── StreamEvent            about one stream (stream_id)
          ├── HeadersReceived   a header block: request, response or trailers
          ├── DataReceived      a piece of the body
          ├── DatagramReceived  an HTTP Datagram (RFC 9297) of the stream
          └── StreamReset       the stream was cancelled
               ├── StreamResetReceived   by the peer
               └── StreamResetSent       by us

Trailers arrive as a second ``HeadersReceived`` with ``end_stream=True``.
"""

from ._events import ConnectionTerminated as ConnectionTerminated
from ._events import DatagramReceived as DatagramReceived
from ._events import DataReceived as DataReceived
from ._events import Event as Event
from ._events import GoawayReceived as GoawayReceived
from ._events import HeadersReceived as HeadersReceived
from ._events import StreamEvent as StreamEvent
from ._events import StreamReset as StreamReset
from ._events import StreamResetReceived as StreamResetReceived
from ._events import StreamResetSent as StreamResetSent

__all__ = (
    "ConnectionTerminated",
    "DataReceived",
    "DatagramReceived",
    "Event",
    "GoawayReceived",
    "HeadersReceived",
    "StreamEvent",
    "StreamReset",
    "StreamResetReceived",
    "StreamResetSent",
)
