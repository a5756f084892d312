"""The stream types that networking hands to the connection layer."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Protocol, TypeAlias, runtime_checkable

import anyio.abc
from anyio import TypedAttributeSet, typed_attribute

from hface.common import DatagramType

#: A reliable, ordered byte stream: TCP, or TLS over TCP.
ByteStream: TypeAlias = anyio.abc.ByteStream


@runtime_checkable
class NowaitByteStream(Protocol):
    """A byte stream that can also take bytes without an ``await``.

    :class:`~hface.networking.SystemNetworking`'s streams on asyncio are
    (not anyio's, nor Trio's): their transport buffers what the kernel does
    not take at once, so a write to an empty buffer, or one that leaves
    the buffer under its high-water mark, never waits.
    The connection layer writes that way, with no cancel scope and no trip
    through the event loop, and falls back to ``await send()`` otherwise.
    """

    def send_nowait(self, item: bytes) -> bool:
        """Write ``item`` now if ``send()`` would not wait before writing it; return whether.

        Returns False, having written nothing, where ``send()`` would wait
        for the peer first or raise (closed, lost, a writer waiting): call
        ``send()`` then. An item written over the high-water mark makes the
        next call return False until the buffer drains.
        """


@runtime_checkable
class NowaitDatagramStream(Protocol):
    """A datagram stream that can also hand over a datagram it holds without an ``await``.

    A QUIC listener's streams are (on every event loop: their queue is
    hface's), and a client's UDP socket on asyncio. The connection layer
    takes a datagram that is already there that way, with no cancel scope
    and no trip through the event loop, and awaits ``receive()`` otherwise.
    """

    def receive_nowait(self) -> DatagramType | None:
        """The next datagram if one is queued now, else None.

        None too where ``receive()`` would raise (closed, ended, failed):
        call ``receive()`` then.
        """


#: An unreliable stream of UDP datagrams; each item is ``(payload, address)``.
DatagramStream: TypeAlias = anyio.abc.UnreliableObjectStream[DatagramType]


class QUICStream(DatagramStream):
    """The datagrams of one QUIC connection on a server's shared UDP socket.

    A listener demultiplexes the datagrams arriving on its one socket by
    QUIC connection ID (RFC 9000 §5.2) and gives each connection one of
    these streams. ``receive()`` returns the datagrams routed to this
    connection; ``send()`` writes to the shared socket.

    The connection IDs of a connection change over its life (RFC 9000
    §5.1): the owner of the stream reports its current set with
    :meth:`update_connection_ids` so that the listener keeps routing the
    peer's packets here, and reports the end of the handshake with
    :meth:`mark_handshake_complete`. A client whose address the listener
    validated with Retry has :class:`QUICAttribute` attributes.
    """

    @abstractmethod
    def update_connection_ids(self, connection_ids: Sequence[bytes]) -> None:
        """Declare which connection IDs belong to this connection.

        The given set replaces the previous one: IDs no longer listed stop
        being routed here, new ones start. Calling this after the stream
        is closed does nothing.

        :param connection_ids: every connection ID this endpoint has issued
            and not yet retired for the connection.
        """

    def mark_handshake_complete(self) -> None:
        """Declare that the connection's handshake has completed.

        The listener stops counting the connection as a half-open handshake
        (see :class:`~hface.networking.QUICHandshakeLimits`). Calls after the
        first do nothing; so does this default implementation.
        """


class QUICAttribute(TypedAttributeSet):
    """Typed attributes of a :class:`QUICStream` whose client proved its address with Retry.

    A listener that answered the client's first Initial with a Retry
    (RFC 9000 §8.1.2) validated the address with the token the client
    returned; the server's transport parameters must then carry both IDs
    (RFC 9000 §7.3). Absent (``stream.extra(...)`` raises, or returns its
    default) for a connection opened without Retry.
    """

    #: The destination connection ID of the client's first Initial, the one the Retry answered.
    original_destination_connection_id: bytes = typed_attribute()
    #: The source connection ID of the Retry packet, where the client sent its next Initial.
    retry_source_connection_id: bytes = typed_attribute()
