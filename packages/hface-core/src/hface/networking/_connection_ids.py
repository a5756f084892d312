"""QUIC connection IDs that say which socket (worker) and which server they belong to.

Theory of operation
===================

A QUIC client addresses every packet after its first flight to a
connection ID the server chose (RFC 9000 §5.1, §7.2), whatever its own
address and port: that is what lets a connection survive NAT rebinding
and migration. So a server whose connections are spread over several
sockets (one per worker process, in a ``SO_REUSEPORT`` group) can route a
datagram to its connection's socket by the connection ID alone, if the ID
says which socket that is. :class:`ConnectionIDLayout` is where that is
said; a classic BPF program (``hface.networking._quic_steering``) reads it
in the kernel, and an ID-aware load balancer reads the server ID in the
same IDs to route between machines (QUIC-LB,
draft-ietf-quic-load-balancers, "plaintext" algorithm).

An ID of ``length`` bytes is laid out as::

    first octet | server ID (0-5 bytes) | slot | check | random (4 or more bytes)

- The **first octet** is random when there is no server ID. With a
  server ID it is QUIC-LB's: three config rotation bits, then the ID's
  length minus one (the "length self-description").
- The **server ID**: fixed per server instance, for a load balancer.
- The **slot**: the index of the issuing socket in its ``SO_REUSEPORT``
  group (0-255).
- The **check** byte is ``slot ^ 0x68``. It tells an ID this server issued
  from the random ID of a client's first Initial (RFC 9000 §7.2: at least
  8 random bytes): a random ID passes the check one time in 256, and
  then routes to a socket that is live anyway.
- The **random** bytes make IDs unique and unpredictable.

The slot and check bytes sit within the first 8 bytes (hence at most 5
server ID bytes), so that the BPF program can also read the same two
bytes of a client's random 8-byte Initial ID and spread new connections
over the workers with them.

:func:`make_connection_id` is a pure function: the caller supplies the
random bytes (:meth:`ConnectionIDLayout.generator` draws them from
:func:`os.urandom`, for the HTTP/3 server to call for every ID it issues).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

#: The check byte is the slot byte XOR this.
CHECK_KEY: Final = 0x68

#: Where the slot and check bytes must end at the latest: a client's random
#: Initial destination connection ID has at least 8 bytes (RFC 9000 §7.2).
_ROUTABLE_PREFIX: Final = 8

#: Fewer random bytes would make two live IDs of one server collide too often.
MIN_RANDOM_BYTES: Final = 4

#: The slot is one byte.
MAX_SLOTS: Final = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionIDLayout:
    """The shape of the connection IDs a QUIC server issues (see the module's docstring).

    :raises ValueError: if the layout leaves fewer than :data:`MIN_RANDOM_BYTES`
        random bytes, or does not fit QUIC's limits.
    """

    length: int = 8
    """The length of every ID issued, 4 to 20 bytes (RFC 9000 §17.2 allows up to 20)."""

    server_id: bytes = b""
    """A fixed ID of this server instance (at most 5 bytes), for an ID-aware load balancer."""

    config_rotation: int = 0
    """QUIC-LB's config rotation codepoint (0-6), in the first octet when there is a server ID."""

    def __post_init__(self) -> None:
        if not 4 <= self.length <= 20:
            raise ValueError("connection IDs have 4 to 20 bytes")
        if len(self.server_id) > _ROUTABLE_PREFIX - 3:
            raise ValueError(f"a server ID has at most {_ROUTABLE_PREFIX - 3} bytes")
        if not 0 <= self.config_rotation <= 6:
            raise ValueError("the config rotation codepoint is 0 to 6 (7 means unroutable)")
        if self.random_length < MIN_RANDOM_BYTES:
            raise ValueError(
                f"{self.length}-byte connection IDs with a {len(self.server_id)}-byte server ID "
                f"leave fewer than {MIN_RANDOM_BYTES} random bytes"
            )

    @property
    def slot_offset(self) -> int:
        """The position of the slot byte (the check byte follows it)."""
        return 1 + len(self.server_id)

    @property
    def random_length(self) -> int:
        """How many random bytes follow the check byte."""
        return self.length - self.slot_offset - 2

    @property
    def entropy_length(self) -> int:
        """How many random bytes :func:`make_connection_id` takes (first octet included)."""
        return self.random_length + (0 if self.server_id else 1)

    @classmethod
    def for_server_id(cls, server_id: bytes = b"") -> ConnectionIDLayout:
        """The layout of 8-byte IDs, or with ``server_id`` of IDs long enough for 8 random bytes.

        :raises ValueError: if ``server_id`` has more than 5 bytes.
        """
        if not server_id:
            return cls()
        return cls(length=len(server_id) + 11, server_id=server_id)  # octet, slot, check, 8

    def generator(self, slot: int) -> Callable[[], bytes]:
        """A function returning a new random ID of slot ``slot`` at each call."""
        _check_slot(slot)

        def generate() -> bytes:
            return make_connection_id(self, slot=slot, entropy=os.urandom(self.entropy_length))

        return generate


def make_connection_id(layout: ConnectionIDLayout, *, slot: int, entropy: bytes) -> bytes:
    """The connection ID of ``layout`` for the socket ``slot``, its random parts from ``entropy``.

    :param entropy: exactly ``layout.entropy_length`` random bytes.
    :raises ValueError: if ``slot`` is not 0-255 or ``entropy`` has another length.
    """
    _check_slot(slot)
    if len(entropy) != layout.entropy_length:
        raise ValueError(f"{layout.entropy_length} bytes of entropy needed, not {len(entropy)}")
    routing = bytes((slot, slot ^ CHECK_KEY))
    if layout.server_id:
        # QUIC-LB: config rotation bits, then the length self-description.
        first = bytes((layout.config_rotation << 5 | (layout.length - 1),))
        return first + layout.server_id + routing + entropy
    return entropy[:1] + routing + entropy[1:]


def connection_id_slot(layout: ConnectionIDLayout, connection_id: bytes) -> int | None:
    """The slot of an ID of ``layout``; None if the ID does not look issued with it."""
    offset = layout.slot_offset
    if len(connection_id) != layout.length:
        return None
    if layout.server_id and connection_id[1:offset] != layout.server_id:
        return None
    slot = connection_id[offset]
    return slot if connection_id[offset + 1] == slot ^ CHECK_KEY else None


def _check_slot(slot: int) -> None:
    if not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"a slot is 0 to {MAX_SLOTS - 1}, not {slot}")
