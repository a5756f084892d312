"""The sans-IO interfaces of HTTP connections.

Theory of operation: a protocol object is one HTTP connection with no I/O.
The layer above feeds it what arrived (``bytes_received`` or
``datagram_received``, and the time through ``clock``), pulls what to send
(``bytes_to_send`` or ``datagrams_to_send``) and pulls what happened
(``next_event``). It submits its own side of the exchange with
``submit_headers``, ``submit_data``, ``submit_stream_reset`` and
``submit_close``. Every version speaks the same header format (the HTTP/2
style, with pseudo-headers) and the same events (:mod:`hface.events`).

Flow control is explicit. Data a peer sends is not credited back to it
until the consumer calls :meth:`HTTPProtocol.acknowledge_received_data`, so
a consumer that stops acknowledging stops the peer. Data submitted beyond
the peer's window is held by the protocol and released as the window
reopens; :meth:`HTTPProtocol.get_pending_data_size` tells how much is held
so the layer above can stop producing.

Bad input from the peer never raises: it becomes events
(``ConnectionTerminated`` with the version's error code, ``StreamResetSent``
for a stream that broke the rules). Misuse by the caller raises
:class:`hface.errors.LocalProtocolError` at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from hface.common import (
    HTTP1_ERROR_CODES,
    HTTP2_ERROR_CODES,
    HTTP3_ERROR_CODES,
    DatagramType,
    HeadersType,
    HTTPErrorCodes,
)
from hface.events import Event


class HTTPProtocol(ABC):
    """One HTTP connection, client or server side, of any version, with no I/O."""

    @property
    @abstractmethod
    def http_version(self) -> str:
        """The HTTP version: ``"1.1"``, ``"2"`` or ``"3"`` (as ASGI spells it)."""

    @property
    @abstractmethod
    def multiplexed(self) -> bool:
        """True if streams run concurrently on this connection (HTTP/2, HTTP/3)."""

    @property
    @abstractmethod
    def error_codes(self) -> HTTPErrorCodes:
        """This version's error codes, for resets and closes."""

    @abstractmethod
    def is_available(self) -> bool:
        """Return True if a new stream can be opened now.

        False while an HTTP/1.1 exchange is in progress, at the peer's limit
        of concurrent streams, or once the connection is closing.
        """

    @abstractmethod
    def has_expired(self) -> bool:
        """Return True if the connection is closed or closing and takes no new streams."""

    @abstractmethod
    def get_available_stream_id(self) -> int:
        """Return the ID for the next stream this side opens (clients only).

        The stream is opened by :meth:`submit_headers` with that ID; until
        then the same ID may be returned again.

        :raises LocalProtocolError: on a server, or if no stream can be opened.
        """

    @abstractmethod
    def submit_headers(
        self, stream_id: int, headers: HeadersType, end_stream: bool = False
    ) -> None:
        """Send a header block: a request (client), a response (server) or trailers.

        :param headers: HTTP/2 style: lower-case names, pseudo-headers first.
        :param end_stream: close the stream for sending after the headers.
        :raises LocalProtocolError: if the stream cannot take headers now, or
            the headers are invalid for this version.
        """

    @abstractmethod
    def submit_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Send body data on a stream.

        Data beyond the peer's flow-control window is held and sent as the
        window reopens (see :meth:`get_pending_data_size`).

        :param end_stream: close the stream for sending after this data.
        :raises LocalProtocolError: if the stream is not open for sending.
        """

    @abstractmethod
    def submit_stream_reset(self, stream_id: int, error_code: int = 0) -> None:
        """Cancel a stream in both directions (HTTP/1.1: close the connection).

        Pending data of the stream is discarded. Resetting a stream that is
        already closed does nothing.

        :param error_code: one of :attr:`error_codes`.
        """

    @abstractmethod
    def submit_close(self, error_code: int = 0) -> None:
        """Begin closing the connection; it takes no new streams from then on.

        With the no-error code the close is graceful: the peer learns that
        no new stream will be processed (GOAWAY on HTTP/2 and HTTP/3,
        ``Connection: close`` on HTTP/1.1) and streams in flight may finish;
        HTTP/3 then closes the QUIC connection by itself once they have.
        With any other code, or when called a second time, the connection
        closes at once (abandoning the streams in flight); except that
        HTTP/3 sends its QUIC close only once the peer has acknowledged
        what was sent, for a bounded time, unless called a third time.
        Closing the TCP connection under HTTP/1.1 and HTTP/2 is left to
        the layer above.

        :param error_code: one of :attr:`error_codes`.
        """

    @abstractmethod
    def next_event(self) -> Event | None:
        """Return the next event, or None if none is ready."""

    @abstractmethod
    def acknowledge_received_data(self, stream_id: int, amount: int) -> None:
        """Credit ``amount`` bytes of received data back to the peer.

        Call as the application consumes ``DataReceived.data``: the peer's
        flow-control window reopens only as far as data is acknowledged.
        Acknowledging a closed or unknown stream does nothing. HTTP/1.1 has
        no windows and ignores it (the layer above stops reading instead).
        """

    @abstractmethod
    def get_pending_data_size(self, stream_id: int) -> int:
        """Return how many bytes submitted on the stream are held, not yet sendable.

        Data is held while the peer's flow-control window is closed. Zero
        for unknown or closed streams.
        """


class HTTPOverTCPProtocol(HTTPProtocol):
    """An HTTP protocol that runs over a byte stream (TCP, TLS): HTTP/1.1, HTTP/2."""

    @abstractmethod
    def bytes_received(self, data: bytes) -> None:
        """Feed bytes received from the peer. Never raises for bad input."""

    @abstractmethod
    def bytes_to_send(self) -> bytes:
        """Return and forget the bytes waiting to be sent (possibly empty)."""

    @abstractmethod
    def eof_received(self) -> None:
        """Tell the protocol the peer will send no more bytes."""

    @abstractmethod
    def connection_lost(self) -> None:
        """Tell the protocol the transport is gone; a ``ConnectionTerminated`` follows."""


class HTTPOverQUICProtocol(HTTPProtocol):
    """An HTTP protocol that runs over QUIC, handling UDP datagrams: HTTP/3."""

    @property
    @abstractmethod
    def connection_ids(self) -> Sequence[bytes]:
        """The connection IDs this endpoint answers to, for routing datagrams."""

    @property
    @abstractmethod
    def handshake_completed(self) -> bool:
        """True once the QUIC (and so TLS) handshake has completed."""

    @abstractmethod
    def clock(self, now: float) -> None:
        """Tell the protocol the current time; handles timers that have expired.

        :param now: seconds on a monotonic clock (the event loop's).
        """

    @abstractmethod
    def get_timer(self) -> float | None:
        """Return when :meth:`clock` must be called next, or None."""

    @abstractmethod
    def datagram_received(self, datagram: DatagramType) -> None:
        """Feed a datagram received from the peer. Never raises for bad input."""

    @abstractmethod
    def datagrams_to_send(self) -> Sequence[DatagramType]:
        """Return and forget the datagrams waiting to be sent."""

    @abstractmethod
    def connection_lost(self) -> None:
        """Tell the protocol the socket is gone; a ``ConnectionTerminated`` follows."""


class HTTP1Protocol(HTTPOverTCPProtocol):
    """The base of HTTP/1.1 implementations."""

    @property
    def http_version(self) -> str:
        return "1.1"

    @property
    def multiplexed(self) -> bool:
        return False

    @property
    def error_codes(self) -> HTTPErrorCodes:
        return HTTP1_ERROR_CODES


class HTTP2Protocol(HTTPOverTCPProtocol):
    """The base of HTTP/2 implementations."""

    @property
    def http_version(self) -> str:
        return "2"

    @property
    def multiplexed(self) -> bool:
        return True

    @property
    def error_codes(self) -> HTTPErrorCodes:
        return HTTP2_ERROR_CODES


class HTTP3Protocol(HTTPOverQUICProtocol):
    """The base of HTTP/3 implementations."""

    @property
    def http_version(self) -> str:
        return "3"

    @property
    def multiplexed(self) -> bool:
        return True

    @property
    def error_codes(self) -> HTTPErrorCodes:
        return HTTP3_ERROR_CODES
