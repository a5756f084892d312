"""Networking on anyio: TCP, TLS and UDP/QUIC sockets for servers and clients.

:class:`SystemNetworking` implements both :class:`ServerNetworking`
(listeners) and :class:`ClientNetworking` (connections) with the
operating system's sockets, on asyncio or Trio. Streams have anyio's
interfaces: :data:`ByteStream` for TCP and TLS (on asyncio built on the
event loop's own transports and TLS, elsewhere anyio's socket and TLS
streams), :data:`DatagramStream` for UDP, and
:class:`QUICStream` for one QUIC connection on a server's shared UDP
socket (see :class:`QUICListener` for how datagrams are routed, and
:class:`QUICHandshakeLimits` for how handshake floods are held off).
"""

from ._base import ClientNetworking as ClientNetworking
from ._base import ServerNetworking as ServerNetworking
from ._loop import CallSoon as CallSoon
from ._loop import LoopTools as LoopTools
from ._loop import Pulse as Pulse
from ._loop import Signal as Signal
from ._loop import current_call_soon as current_call_soon
from ._loop import current_loop_tools as current_loop_tools
from ._memory import release_memory as release_memory
from ._quic import QUIC_RECEIVE_QUEUE_SIZE as QUIC_RECEIVE_QUEUE_SIZE
from ._quic import QUICListener as QUICListener
from ._quic_admission import QUICHandshakeLimits as QUICHandshakeLimits
from ._quic_admission import QUICRetry as QUICRetry
from ._streams import ByteStream as ByteStream
from ._streams import DatagramStream as DatagramStream
from ._streams import NowaitByteStream as NowaitByteStream
from ._streams import NowaitDatagramStream as NowaitDatagramStream
from ._streams import QUICAttribute as QUICAttribute
from ._streams import QUICStream as QUICStream
from ._system import SystemNetworking as SystemNetworking
from ._tcp import TCPListener as TCPListener
from ._tls import TLS_HANDSHAKE_TIMEOUT as TLS_HANDSHAKE_TIMEOUT
from ._tls import TLSByteStream as TLSByteStream
from ._tls import TLSListener as TLSListener
from ._tls import TLSVerificationError as TLSVerificationError
from ._tls import make_client_ssl_context as make_client_ssl_context
from ._tls import make_server_ssl_context as make_server_ssl_context

__all__ = (
    "QUIC_RECEIVE_QUEUE_SIZE",
    "TLS_HANDSHAKE_TIMEOUT",
    "ByteStream",
    "CallSoon",
    "ClientNetworking",
    "DatagramStream",
    "LoopTools",
    "NowaitByteStream",
    "NowaitDatagramStream",
    "Pulse",
    "QUICAttribute",
    "QUICHandshakeLimits",
    "QUICListener",
    "QUICRetry",
    "QUICStream",
    "ServerNetworking",
    "Signal",
    "SystemNetworking",
    "TCPListener",
    "TLSByteStream",
    "TLSListener",
    "TLSVerificationError",
    "current_call_soon",
    "current_loop_tools",
    "make_client_ssl_context",
    "make_server_ssl_context",
    "release_memory",
)
