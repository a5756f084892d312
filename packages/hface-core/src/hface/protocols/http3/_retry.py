"""Stateless address validation: Retry packets and their tokens (RFC 9000 §8.1.2).

Theory of operation
-------------------

A QUIC server that answers a client's first Initial with its handshake
flight spends a signature and keeps a connection's state for an address it
has not seen answer; a flood of Initials from spoofed addresses costs it
dearly. A Retry packet (RFC 9000 §17.2.5) costs neither: it carries a
*token* and a new connection ID, and a client that really is at its address
sends its Initial again, to that connection ID, with the token. The server
keeps nothing in between: everything it must know is in the token.

A token of :class:`RetryTokens` is::

    marker (1) | issued at (8, ms) | length (1) | original destination ID | tag (16)

The tag is the first 16 bytes of an HMAC-SHA256, under a key made at
start-up (or given, to share between servers), of all that precedes it and
of what the token is only valid with: the client's address (IP and port)
and the connection ID the Retry packet gave it, which its next Initial is
sent to (RFC 9000 §17.2.5.2). So a token is refused if forged, altered,
presented from another address or to another connection ID, or older than
its lifetime (RFC 9000 §8.1.4: clients return them at once). The contents
are not secret (the client knows its address and its first connection ID),
so they are only signed.

The original destination connection ID travels in the token because the
server must echo it, and the Retry's connection ID, in its transport
parameters (RFC 9000 §7.3), which is how the client knows no one in
between sent the Retry. The Retry packet itself carries an integrity tag
(RFC 9001 §5.8), which aioquic's ``encode_quic_retry`` computes.

A token that fails validation means the client has followed a Retry
already and will not follow another (RFC 9000 §17.2.5.2): the server
closes at once with INVALID_TOKEN (§8.1.2, §10.2), in an Initial packet
built here without any connection state (:func:`build_invalid_token_close`).
Tokens of a format not ours (a NEW_TOKEN of another server) are not Retry
tokens: :meth:`RetryTokens.is_retry_token` tells them apart, and the
server treats their bearer as unvalidated (§8.1.3).

Nothing here reads a clock or does I/O: the caller passes ``now``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import struct
from typing import Final

from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    CONNECTION_ID_MAX_SIZE,
    QuicErrorCode,
    QuicFrameType,
    QuicPacketType,
    encode_quic_retry,
)
from aioquic.quic.packet_builder import QuicPacketBuilder

from hface.common import AddressType

from ._packets import QUICPacketInfo

#: The first byte of hface's Retry tokens (a format version).
_MARKER: Final = 0xA7
_TAG_SIZE: Final = 16
#: Marker, issue time, length of the original destination connection ID.
_HEAD: Final = struct.Struct("!BQB")
#: Seconds a token may seem to come from the future (clocks step back a little).
_CLOCK_SLACK: Final = 2.0


def _address_bytes(address: AddressType) -> bytes:
    host, port = address
    try:
        packed = ipaddress.ip_address(host).packed
    except ValueError:
        packed = host.encode("utf-8", "surrogateescape")
    return packed + port.to_bytes(2, "big")


class RetryTokens:
    """Issues and validates the tokens of Retry packets (see the module's docstring).

    :param lifetime: seconds a token is valid after it was issued (a client
        returns it after one round trip).
    :param key: the secret the tokens are signed with, at least 16 bytes;
        servers that must accept each other's tokens share it (and a clock).
        By default a random key made now: only this object accepts its tokens.
    :raises ValueError: if ``lifetime`` is not positive or ``key`` too short.
    """

    def __init__(self, *, lifetime: float, key: bytes | None = None) -> None:
        if not lifetime > 0:
            raise ValueError(f"a Retry token lifetime must be positive, not {lifetime!r}")
        if key is not None and len(key) < 16:
            raise ValueError("a Retry token key has at least 16 bytes")
        self._lifetime = lifetime
        self._key = os.urandom(32) if key is None else bytes(key)

    @property
    def lifetime(self) -> float:
        """Seconds a token is valid after it was issued."""
        return self._lifetime

    def issue(
        self,
        *,
        address: AddressType,
        original_destination_connection_id: bytes,
        retry_source_connection_id: bytes,
        now: float,
    ) -> bytes:
        """A token for the client at ``address``, to return to ``retry_source_connection_id``.

        :param original_destination_connection_id: the destination connection
            ID of the client's Initial being answered.
        :param retry_source_connection_id: the source connection ID of the
            Retry packet carrying the token.
        :param now: the current time, in seconds (the clock :meth:`validate` uses).
        """
        odcid = original_destination_connection_id
        head = _HEAD.pack(_MARKER, max(int(now * 1000), 0), len(odcid)) + odcid
        return head + self._tag(head, address, retry_source_connection_id)

    def validate(
        self, token: bytes, *, address: AddressType, destination_connection_id: bytes, now: float
    ) -> bytes | None:
        """The original destination connection ID a valid token carries; None if invalid.

        :param address: where the Initial carrying the token came from.
        :param destination_connection_id: the connection ID that Initial was sent to.
        """
        if not self.is_retry_token(token):
            return None
        head, tag = token[:-_TAG_SIZE], token[-_TAG_SIZE:]
        if not hmac.compare_digest(tag, self._tag(head, address, destination_connection_id)):
            return None
        _, issued_ms, length = _HEAD.unpack_from(head)
        age = now - issued_ms / 1000
        if not -_CLOCK_SLACK <= age <= self._lifetime:
            return None
        return head[_HEAD.size : _HEAD.size + length]

    @staticmethod
    def is_retry_token(token: bytes) -> bool:
        """Return True if ``token`` has the format of hface's Retry tokens (valid or not)."""
        if len(token) < _HEAD.size + _TAG_SIZE or token[0] != _MARKER:
            return False
        length = token[_HEAD.size - 1]
        return length <= CONNECTION_ID_MAX_SIZE and len(token) == _HEAD.size + length + _TAG_SIZE

    def _tag(self, head: bytes, address: AddressType, connection_id: bytes) -> bytes:
        message = head + bytes((len(connection_id),)) + connection_id + _address_bytes(address)
        return hmac.digest(self._key, message, hashlib.sha256)[:_TAG_SIZE]


def build_retry_packet(info: QUICPacketInfo, *, source_connection_id: bytes, token: bytes) -> bytes:
    """The Retry packet answering the Initial ``info`` describes (RFC 9000 §17.2.5).

    :param source_connection_id: the connection ID the client must send its
        next Initial to (one this server issues); not the Initial's
        destination connection ID.
    :param token: the token the client must return (:meth:`RetryTokens.issue`).
    :raises ValueError: if ``info`` is not an Initial, or the connection ID is the Initial's.
    """
    if not info.is_initial or info.version is None:
        raise ValueError("only an Initial packet is answered with Retry")
    if source_connection_id == info.destination_connection_id:
        raise ValueError("a Retry's source connection ID differs from the Initial's destination")
    return encode_quic_retry(
        version=info.version,
        source_cid=source_connection_id,
        destination_cid=info.source_connection_id,
        original_destination_cid=info.destination_connection_id,
        retry_token=token,
    )


def build_invalid_token_close(info: QUICPacketInfo) -> bytes:
    """An Initial packet closing the connection attempt with INVALID_TOKEN (RFC 9000 §8.1.2).

    Protected with the Initial keys of the packet's destination connection
    ID (RFC 9001 §5.2), as the client expects; a CONNECTION_CLOSE is not
    ack-eliciting, so the datagram is not padded (and smaller than the
    client's: no amplification).

    :raises ValueError: if ``info`` is not an Initial.
    """
    if not info.is_initial or info.version is None:
        raise ValueError("only an Initial packet is answered with an Initial")
    crypto = CryptoPair()
    crypto.setup_initial(cid=info.destination_connection_id, is_client=False, version=info.version)
    builder = QuicPacketBuilder(
        host_cid=info.destination_connection_id,
        peer_cid=info.source_connection_id,
        version=info.version,
        is_client=False,
        max_datagram_size=1200,
    )
    builder.start_packet(QuicPacketType.INITIAL, crypto)
    buf = builder.start_frame(QuicFrameType.TRANSPORT_CLOSE, capacity=3)
    buf.push_uint_var(QuicErrorCode.INVALID_TOKEN)
    buf.push_uint_var(0)  # the frame type that caused it: none
    buf.push_uint_var(0)  # no reason phrase
    datagrams, _ = builder.flush()
    return datagrams[0]
