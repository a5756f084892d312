"""HTTP/3 (RFC 9114) over QUIC (RFC 9000), implemented with aioquic.

:class:`HTTP3ClientFactory` and :class:`HTTP3ServerFactory` make the
protocols; :func:`sniff_quic_packet`, :func:`build_version_negotiation_packet`,
:class:`RetryTokens`, :func:`build_retry_packet` and
:func:`build_invalid_token_close` help the networking layer route and
answer datagrams before a connection exists. See :mod:`._protocol` for the
theory of operation, :mod:`._quic` for flow control and :mod:`._retry` for
address validation. Every use of aioquic's internals is in :mod:`._aioquic`,
which refuses to import with an aioquic release it was not verified on (1.7).
"""

from ._factories import HTTP3ClientFactory as HTTP3ClientFactory
from ._factories import HTTP3ServerFactory as HTTP3ServerFactory
from ._packets import InvalidQUICPacket as InvalidQUICPacket
from ._packets import QUICPacketInfo as QUICPacketInfo
from ._packets import build_version_negotiation_packet as build_version_negotiation_packet
from ._packets import sniff_quic_packet as sniff_quic_packet
from ._protocol import HTTP3ClientProtocol as HTTP3ClientProtocol
from ._protocol import HTTP3ServerProtocol as HTTP3ServerProtocol
from ._retry import RetryTokens as RetryTokens
from ._retry import build_invalid_token_close as build_invalid_token_close
from ._retry import build_retry_packet as build_retry_packet
from ._settings import HTTP3Settings as HTTP3Settings

__all__ = (
    "HTTP3ClientFactory",
    "HTTP3ClientProtocol",
    "HTTP3ServerFactory",
    "HTTP3ServerProtocol",
    "HTTP3Settings",
    "InvalidQUICPacket",
    "QUICPacketInfo",
    "RetryTokens",
    "build_invalid_token_close",
    "build_retry_packet",
    "build_version_negotiation_packet",
    "sniff_quic_packet",
)
