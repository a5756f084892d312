"""The settings only HTTP/2 has: flow-control windows and the frame size.

The defaults trade memory for throughput conservatively. A peer can make us
buffer at most the connection window of unread data (RFC 9113 §6.9), however
many streams it opens, because windows reopen only as the application
consumes data. A window must still cover the bandwidth-delay product for
full speed: 256 KiB per stream and 1 MiB per connection allow about 2.5 MB/s
per stream and 10 MB/s per connection at 100 ms round trips, and far more
on short ones, for at most 1 MiB of unread data per connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final

from .._settings import Check, Settings, int_between

#: RFC 9113 §6.9.2: every connection window starts at 65,535 bytes.
DEFAULT_WINDOW: Final = 65_535
#: RFC 9113 §6.5.2 and §6.9.1: the bounds of the settings we take.
MAX_WINDOW: Final = 2**31 - 1
MIN_FRAME_SIZE: Final = 2**14
MAX_FRAME_SIZE: Final = 2**24 - 1

_CHECKS: Final[Mapping[str, Check]] = {
    "initial_window_size": int_between(0, MAX_WINDOW),
    "connection_window_size": int_between(DEFAULT_WINDOW, MAX_WINDOW),
    "max_frame_size": int_between(MIN_FRAME_SIZE, MAX_FRAME_SIZE),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTP2Settings(Settings):
    """HTTP/2's own settings, sent to the peer as SETTINGS (RFC 9113 §6.5.2).

    The connection window is not a setting: it is opened with a
    WINDOW_UPDATE on stream 0 (§6.9.2). The limits every version shares are
    in :class:`~hface.protocols.ProtocolLimits`.

    :raises ValueError: if a setting is out of the range HTTP/2 allows.
    """

    CHECKS: ClassVar[Mapping[str, Check]] = _CHECKS

    initial_window_size: int = 256 * 1024
    """The flow-control window of each stream for data we receive; default 256 KiB.

    SETTINGS_INITIAL_WINDOW_SIZE; from 0 to 2**31-1.
    """

    connection_window_size: int = 1024 * 1024
    """The flow-control window of the whole connection for data we receive; default 1 MiB.

    The most unread data a peer can make us hold. From 65,535 (the
    protocol's initial window) to 2**31-1.
    """

    max_frame_size: int = 64 * 1024
    """The largest frame payload we accept; default 64 KiB.

    SETTINGS_MAX_FRAME_SIZE: fewer frames than the protocol's 16 KiB, for
    throughput. From 2**14 to 2**24-1.
    """
