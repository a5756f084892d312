"""The sans-IO interfaces of HTTP connections.

Theory of operation: a protocol object is one HTTP connection with no I/O.
The layer above feeds it what arrived (``bytes_received`` or
``datagram_received``, and the time through ``clock``), pulls what to send
(``bytes_to_send`` or ``datagrams_to_send``) and pulls what happened
(``next_event``). It submits its own side of the exchange with
``submit_headers``, ``submit_data``, ``submit_datagram`` (HTTP Datagrams, RFC 9297) and
``submit_stream_reset``, and ends
the connection with one method per intent: ``submit_goaway`` (graceful),
``submit_close`` (at once) and, on QUIC, ``abandon_linger``; its
:attr:`~HTTPProtocol.state` says where it is in its life (see
:mod:`hface.protocols._lifecycle`). Every version speaks the same header format (the HTTP/2
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
from hface.errors import LocalProtocolError
from hface.events import Event

from ._lifecycle import ConnectionState


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

    @property
    @abstractmethod
    def state(self) -> ConnectionState:
        """Where the connection is in its life: open, draining, lingering, closing or closed.

        Moved only through the implementation's transition table (see
        :mod:`hface.protocols._lifecycle`).
        """

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

    def submit_datagram(self, stream_id: int, data: bytes) -> bool:
        """Send an HTTP Datagram (RFC 9297) associated with a stream.

        HTTP/3 sends a QUIC DATAGRAM frame (RFC 9221) once both sides have
        SETTINGS_H3_DATAGRAM and the ``max_datagram_frame_size`` transport
        parameter; every version sends a DATAGRAM capsule on a stream that
        has switched to the Capsule Protocol (a 2xx response to an
        extended CONNECT such as ``connect-udp``; see
        :mod:`hface.protocols._capsules`). Datagrams are unreliable: one
        that cannot go out now (too large for a QUIC packet, or the queue of
        datagrams full) is dropped, and so is the data of a capsule the
        layer above chooses not to wait for.

        :returns: True if the datagram was queued, False if it was dropped.
        :raises LocalProtocolError: if the stream cannot carry datagrams:
            unknown, closed for sending, or neither negotiated nor switched.
        """
        raise LocalProtocolError(f"this protocol carries no HTTP Datagrams (stream {stream_id})")

    @abstractmethod
    def submit_stream_reset(self, stream_id: int, error_code: int = 0) -> None:
        """Cancel a stream in both directions (HTTP/1.1: close the connection).

        Pending data of the stream is discarded. Resetting a stream that is
        already closed does nothing. On HTTP/2, a ``no_error`` reset of a
        stream whose end was submitted but is held by flow control waits
        for it: the peer gets the whole message, then the request to stop
        sending (RFC 9113 §8.1).

        :param error_code: one of :attr:`error_codes`.
        """

    @abstractmethod
    def submit_goaway(self) -> None:
        """Begin a graceful close: the connection takes no new streams; those in flight go on.

        The peer learns it (GOAWAY on HTTP/2 and HTTP/3, ``Connection:
        close`` on HTTP/1.1) and the state becomes
        :attr:`~ConnectionState.DRAINING`. HTTP/3 then closes QUIC by itself
        once the streams in flight are done (:attr:`~ConnectionState.LINGERING`);
        closing the TCP connection of HTTP/1.1 and HTTP/2 is left to the
        layer above. Does nothing once this side's GOAWAY went out, or the
        connection is lingering, closing or closed.
        """

    def submit_shutdown_notice(self) -> None:
        """Announce a graceful close to come (servers), the first step of two.

        A GOAWAY naming the last stream received refuses the requests a
        client sent meanwhile; RFC 9113 §6.8 has a server first send one
        naming the largest stream ID, then, at least a round trip later,
        the real one (:meth:`submit_goaway`). This is the first step: HTTP/2
        and HTTP/3 send GOAWAY with the largest ID, so the peer opens no new
        stream, while those on their way are still taken; HTTP/1.1 answers
        the request in progress, or the next one, with ``Connection:
        close`` and ends after it. The state stays
        :attr:`~ConnectionState.OPEN` (:meth:`has_expired` is False) until
        :meth:`submit_goaway`. Does nothing on clients, or once a GOAWAY
        was sent or received; by default (an implementation with no way to
        announce it), nothing at all.
        """
        return None

    @abstractmethod
    def submit_close(self, error_code: int | None = None) -> None:
        """Close the connection at once, abandoning the streams in flight.

        HTTP/2 sends GOAWAY with ``error_code`` and the connection is
        :attr:`~ConnectionState.CLOSED`; HTTP/3 sends GOAWAY (if not sent
        yet) and QUIC's CONNECTION_CLOSE, which, for the no-error code,
        waits until the peer has acknowledged what was sent, for a bounded
        time (:attr:`~ConnectionState.LINGERING`; see
        :meth:`HTTPOverQUICProtocol.abandon_linger`), and with an error code
        goes out with the next ``datagrams_to_send``
        (:attr:`~ConnectionState.CLOSING`). An HTTP/1.1
        server answers a request that is owed a response with the status
        ``error_code`` (HTTP/1.1 error codes are statuses). Closing the TCP
        connection of HTTP/1.1 and HTTP/2 is left to the layer above. Does
        nothing once the connection is closing or closed, but that an
        error code cuts an HTTP/3 linger short.

        :param error_code: one of :attr:`error_codes`; None for ``no_error``.
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

    def clock(self, now: float) -> None:
        """Tell the protocol the current time (it reads no clock itself).

        The connection layer calls it before each :meth:`bytes_received` of
        a :attr:`multiplexed` protocol, so that budgets counted per unit of
        time may refill (HTTP/2's flood budget comes back every 10
        seconds). Does nothing by default (HTTP/1.1 counts nothing so).

        :param now: seconds on a monotonic clock (the event loop's).
        """


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

    @abstractmethod
    def abandon_linger(self) -> None:
        """Send a close that waits for acknowledgements now, without waiting any longer.

        After :meth:`submit_close` with the no-error code (or once a
        graceful close's last stream is done) the QUIC close waits until
        the peer has acknowledged what was sent
        (:attr:`~ConnectionState.LINGERING`); this sends it with the next
        :meth:`datagrams_to_send` (:attr:`~ConnectionState.CLOSING`). Does
        nothing if no close is lingering.
        """


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
