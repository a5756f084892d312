"""HTTP/3 (RFC 9114) over QUIC (RFC 9000), implemented with aioquic.

:class:`HTTP3ClientFactory` and :class:`HTTP3ServerFactory` make the
protocols; :func:`sniff_quic_packet`, :func:`build_version_negotiation_packet`,
:class:`RetryTokens`, :func:`build_retry_packet` and
:func:`build_invalid_token_close` help the networking layer route and
answer datagrams before a connection exists. See :mod:`._protocol` for the
theory of operation, :mod:`._quic` for flow control and :mod:`._retry` for
address validation. Every use of aioquic's internals is in :mod:`._aioquic`,
which refuses to import with an aioquic release it was not verified on (1.7).

The factories and :class:`HTTP3Settings` are imported with the package; the
other names on first use (a module ``__getattr__``), since they import
aioquic and with it the cryptography package, resident megabytes a server
that HTTP/3 never reaches does without.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from ._factories import HTTP3ClientFactory as HTTP3ClientFactory
from ._factories import HTTP3ServerFactory as HTTP3ServerFactory
from ._settings import HTTP3Settings as HTTP3Settings

if TYPE_CHECKING:
    from ._packets import InvalidQUICPacket as InvalidQUICPacket
    from ._packets import QUICPacketInfo as QUICPacketInfo
    from ._packets import build_version_negotiation_packet as build_version_negotiation_packet
    from ._packets import sniff_quic_packet as sniff_quic_packet
    from ._protocol import HTTP3ClientProtocol as HTTP3ClientProtocol
    from ._protocol import HTTP3ServerProtocol as HTTP3ServerProtocol
    from ._retry import RetryTokens as RetryTokens
    from ._retry import build_invalid_token_close as build_invalid_token_close
    from ._retry import build_retry_packet as build_retry_packet

#: The names imported on first use, and their modules.
_LAZY: Final = {
    "InvalidQUICPacket": "._packets",
    "QUICPacketInfo": "._packets",
    "build_version_negotiation_packet": "._packets",
    "sniff_quic_packet": "._packets",
    "HTTP3ClientProtocol": "._protocol",
    "HTTP3ServerProtocol": "._protocol",
    "RetryTokens": "._retry",
    "build_invalid_token_close": "._retry",
    "build_retry_packet": "._retry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
