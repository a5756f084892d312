"""The settings only HTTP/3 has: QUIC's timeout, windows, datagram sizes and IDs.

The windows are the receive windows of RFC 9000 §4.1; they stay fixed for
the connection's life (see :mod:`._quic`).

Datagram size: aioquic does no path MTU discovery (RFC 9000 §14.3), so on
an unknown path it sends 1,200-byte datagrams, the size every path must
carry (RFC 9000 §14). A loopback path (``127.0.0.0/8``, ``::1``) is known:
its MTU is 64 KiB and nothing on it fragments, so a peer on loopback gets
datagrams of up to ``loopback_max_datagram_size`` bytes. Pure-Python QUIC
spends its time per packet, not per byte, so this is what lets a local
client and server move tens of MB/s instead of a few. The cap is 16,383
bytes: aioquic writes long-header packet lengths as two-byte varints.
Either way no datagram exceeds the peer's ``max_udp_payload_size``
transport parameter (RFC 9000 §18.2), so a client sends its first flight
in ``max_datagram_size`` datagrams and grows them once the server's
parameters have arrived (see :mod:`._aioquic`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final

from .._settings import Check, Settings, int_between, positive


def _directory(label: str, value: object) -> None:
    """Check that a value is a directory's path (a string) or None."""
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{label} must be a directory's path, not {value!r}")


#: aioquic encodes long-header packet lengths in two-byte varints.
LARGEST_DATAGRAM_SIZE: Final = 16383
#: ls-qpack's bound of the blocked streams (LSQPACK_MAX_MAX_RISKED_STREAMS).
MAX_QPACK_BLOCKED_STREAMS: Final = 2**16 - 1

_CHECKS: Final[Mapping[str, Check]] = {
    "idle_timeout": positive,
    "stream_receive_window": int_between(1024, 2**62 - 1),
    "connection_receive_window": int_between(1024, 2**62 - 1),
    # RFC 9000 §14: every path carries 1,200 bytes.
    "max_datagram_size": int_between(1200, LARGEST_DATAGRAM_SIZE),
    "loopback_max_datagram_size": int_between(1200, LARGEST_DATAGRAM_SIZE),
    "qpack_blocked_streams": int_between(0, MAX_QPACK_BLOCKED_STREAMS),
    # RFC 9000 §17.2: connection IDs hface issues (aioquic's range).
    "connection_id_length": int_between(4, 20),
    "qlog_dir": _directory,
    # RFC 9221 §3: 0 would forbid even empty frames; 65,536 carries any UDP payload.
    "max_datagram_frame_size": int_between(0, 65536),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTP3Settings(Settings):
    """HTTP/3's own settings: QUIC's (RFC 9000) and QPACK's blocked streams.

    The limits every version shares are in
    :class:`~hface.protocols.ProtocolLimits`.

    :raises ValueError: if a setting is out of range.
    """

    CHECKS: ClassVar[Mapping[str, Check]] = _CHECKS

    idle_timeout: float = 60.0
    """Seconds without traffic before the connection ends (RFC 9000 §10.1); default 60.

    It also bounds the QUIC handshake.
    """

    stream_receive_window: int = 256 * 1024
    """Bytes a peer may send on one stream ahead of what we consumed; default 256 KiB.

    At least 1,024.
    """

    connection_receive_window: int = 1024 * 1024
    """Bytes a peer may send on all streams ahead of what we consumed; default 1 MiB.

    At least :attr:`stream_receive_window`.
    """

    max_datagram_size: int = 1200
    """The largest UDP payload we send; default 1,200 (RFC 9000 §14), at most 16,383."""

    loopback_max_datagram_size: int = 16000
    """The largest UDP payload we send to a peer on loopback; default 16,000.

    From :attr:`max_datagram_size` to 16,383 (see the module docstring of
    :mod:`hface.protocols.http3._settings`).
    """

    qpack_blocked_streams: int = 16
    """Streams the peer's header blocks may keep blocked at once; default 16.

    On table updates not yet received (SETTINGS_QPACK_BLOCKED_STREAMS, RFC
    9204 §2.1.2); one more is QPACK_DECOMPRESSION_FAILED. From 0 to 2**16-1.
    """

    connection_id_length: int = 8
    """The length of the connection IDs this endpoint issues, in bytes; default 8.

    A server's listener routes datagrams by them. From 4 to 20.
    """

    qlog_dir: str | None = None
    """A directory to write a qlog file of each connection in; default None (none).

    For debugging (qvis, aioquic's examples): aioquic's ``QuicFileLogger``
    writes ``<original destination connection ID>.qlog``, JSON, as the
    connection ends. The directory must exist.
    """

    max_datagram_frame_size: int = 65536
    """The largest QUIC DATAGRAM frame accepted (RFC 9221 §3); default 65,536; 0: none.

    Above 0 the transport parameter goes out with SETTINGS_H3_DATAGRAM
    (RFC 9297 §2.1.1): both sides may then send HTTP Datagrams in DATAGRAM
    frames. 0 sends neither (datagrams then need the Capsule Protocol).
    """

    def _check_together(self) -> None:
        if self.connection_receive_window < self.stream_receive_window:
            raise ValueError(
                "connection_receive_window must be at least stream_receive_window"
                f" ({self.stream_receive_window}), not {self.connection_receive_window}"
            )
        if self.loopback_max_datagram_size < self.max_datagram_size:
            raise ValueError(
                "loopback_max_datagram_size must be at least max_datagram_size"
                f" ({self.max_datagram_size}), not {self.loopback_max_datagram_size}"
            )
