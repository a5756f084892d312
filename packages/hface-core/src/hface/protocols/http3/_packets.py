"""Reading QUIC packet headers before any connection exists, for datagram routing.

Theory of operation: a server receives every client's datagrams on one UDP
socket and must find the connection each belongs to from the destination
connection ID in its header (RFC 9000 §5.2). Long headers (RFC 9000 §17.2)
carry the version and both connection IDs with their lengths (an Initial
also its address validation token, see :mod:`._retry`); short headers
(§17.3) carry only the destination ID, whose length the server chose, so the
caller passes it. A long-header packet of a version the server does not
support is answered with a Version Negotiation packet (§6, §17.2.1), which
echoes the client's connection IDs swapped.

The parsing is aioquic's (``aioquic.quic.packet.pull_quic_header``); its
failures become :class:`InvalidQUICPacket`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aioquic.quic.packet import (
    CONNECTION_ID_MAX_SIZE,
    QuicPacketType,
    QuicProtocolVersion,
    encode_quic_version_negotiation,
    pull_quic_header,
)

from ._aioquic import Buffer, BufferReadError

_KNOWN_VERSIONS = frozenset(
    (QuicProtocolVersion.NEGOTIATION, QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2)
)


@dataclass(frozen=True, slots=True, kw_only=True)
class QUICPacketInfo:
    """What a server needs from the first packet of a datagram to route it."""

    destination_connection_id: bytes
    """The connection ID the packet is addressed to."""

    source_connection_id: bytes
    """The sender's connection ID; ``b""`` for short-header packets."""

    version: int | None
    """The QUIC version of a long-header packet; None for short-header packets."""

    is_initial: bool
    """True for an Initial packet, the only kind that may open a connection."""

    is_long_header: bool
    """True for long-header packets (handshake), False for short (1-RTT)."""

    token: bytes = b""
    """An Initial's address validation token (RFC 9000 §17.2.2); ``b""`` if none."""


class InvalidQUICPacket(ValueError):
    """The datagram does not start with a QUIC packet header we can read."""


def sniff_quic_packet(data: bytes, *, connection_id_length: int) -> QUICPacketInfo:
    """Read the header of the first QUIC packet in a datagram.

    :param connection_id_length: the length of the connection IDs this
        server issues, needed to read short headers.
    :raises InvalidQUICPacket: if the header cannot be read.
    """
    if not data:
        raise InvalidQUICPacket("empty datagram")
    version: int | None = None
    if data[0] & 0x80:
        # The version-independent part of a long header (RFC 8999 §5.1), which
        # is all a packet of an unknown version can be trusted to carry.
        try:
            buf = Buffer(data=data)
            buf.pull_uint8()
            version = buf.pull_uint32()
        except BufferReadError as exc:
            raise InvalidQUICPacket("truncated long header") from exc
        if version not in _KNOWN_VERSIONS:
            try:
                dcid = buf.pull_bytes(_pull_cid_length(buf))
                scid = buf.pull_bytes(_pull_cid_length(buf))
            except BufferReadError as exc:
                raise InvalidQUICPacket("truncated long header") from exc
            return QUICPacketInfo(
                destination_connection_id=dcid,
                source_connection_id=scid,
                version=version,
                is_initial=False,
                is_long_header=True,
            )
    try:
        header = pull_quic_header(Buffer(data=data), host_cid_length=connection_id_length)
    except (BufferReadError, ValueError) as exc:
        raise InvalidQUICPacket(str(exc) or "truncated QUIC header") from exc
    return QUICPacketInfo(
        destination_connection_id=header.destination_cid,
        source_connection_id=header.source_cid,
        version=header.version,
        is_initial=header.packet_type == QuicPacketType.INITIAL,
        is_long_header=header.version is not None,
        token=header.token if header.packet_type == QuicPacketType.INITIAL else b"",
    )


def _pull_cid_length(buf: Buffer) -> int:
    length = buf.pull_uint8()
    if length > CONNECTION_ID_MAX_SIZE:
        raise InvalidQUICPacket(f"connection ID too long ({length} bytes)")
    return length


def build_version_negotiation_packet(
    info: QUICPacketInfo, supported_versions: Sequence[int]
) -> bytes:
    """Return the Version Negotiation packet answering a packet (RFC 9000 §17.2.1).

    The client's source connection ID becomes the destination and the other
    way round, as §17.2.1 requires.
    """
    return encode_quic_version_negotiation(
        source_cid=info.destination_connection_id,
        destination_cid=info.source_connection_id,
        supported_versions=list(supported_versions),
    )
