"""Protocols that report what they do: what ``-v`` traces and ``-w`` times.

Theory of operation. :class:`hface.client.Client` makes its protocols with
the factories in its public ``http1_factory``, ``http2_factory`` and
``http3_factory`` attributes (its proxy connections use the same ones).
:func:`instrument` wraps each factory, and each protocol it makes, in a
thin delegate that tells a :class:`ConnectionObserver` when:

- a connection is made (TCP: after the TLS handshake, with the TLS version
  and the ALPN protocol; QUIC: before its handshake), which answers with a
  :class:`ProtocolObserver` for that connection;
- a QUIC handshake completes (seen when the connection layer asks);
- the protocol produces an event: the connection layer pulls events right
  after the bytes that carry them arrive, so that is when they arrived;
- the client submits headers, data, a reset, a GOAWAY or a close; the
  connection ends or is lost.

The delegates change nothing in what the protocols do. Several observers
are several layers of delegates (``-v`` and ``-w`` together).
"""

from __future__ import annotations

from collections.abc import Sequence

from hface.client import Client
from hface.common import AddressType, ClientTLSConfig, DatagramType, HeadersType, HTTPErrorCodes
from hface.events import Event
from hface.protocols import (
    ConnectionState,
    HTTPOverQUICClientFactory,
    HTTPOverQUICProtocol,
    HTTPOverTCPFactory,
    HTTPOverTCPProtocol,
    HTTPProtocol,
    ProtocolLimits,
)


class ProtocolObserver:
    """Told what one connection's protocol does; each method does nothing here."""

    def handshake_completed(self, http_version: str) -> None:
        """A QUIC handshake completed (TLS 1.3, ALPN h3)."""

    def headers_submitted(self, stream_id: int, headers: HeadersType, end_stream: bool) -> None:
        """The client submitted headers."""

    def data_submitted(self, stream_id: int, size: int, end_stream: bool) -> None:
        """The client submitted ``size`` bytes of data."""

    def note(self, what: str) -> None:
        """Something else happened: ``submit_stream_reset stream_id=1 ...``, ``connection lost``."""

    def event_received(self, event: Event) -> None:
        """The protocol produced ``event``."""


class ConnectionObserver:
    """Told of each connection the client makes; observes none of them here."""

    def tcp_connection(
        self, *, tls_version: str | None, alpn_protocol: str | None, http_version: str
    ) -> ProtocolObserver | None:
        """A TCP (or TLS) connection is made; return the observer of its protocol, if any."""
        return None

    def quic_connection(
        self, *, remote_address: AddressType, server_name: str
    ) -> ProtocolObserver | None:
        """A QUIC connection starts its handshake; return the observer of its protocol, if any."""
        return None


def instrument(client: Client, observer: ConnectionObserver) -> None:
    """Wrap the client's protocol factories so that ``observer`` sees their connections."""
    client.http1_factory = _ObservedTCPFactory(client.http1_factory, observer)
    client.http2_factory = _ObservedTCPFactory(client.http2_factory, observer)
    client.http3_factory = _ObservedQUICFactory(client.http3_factory, observer)


class _ObservedTCPFactory(HTTPOverTCPFactory):
    """Makes the protocols of ``factory``, observed by ``observer``."""

    def __init__(self, factory: HTTPOverTCPFactory, observer: ConnectionObserver) -> None:
        self._factory = factory
        self._observer = observer

    @property
    def alpn_protocols(self) -> Sequence[str]:
        """The wrapped factory's ALPN protocol IDs."""
        return self._factory.alpn_protocols

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTPOverTCPProtocol:
        protocol = self._factory(tls_version=tls_version, alpn_protocol=alpn_protocol)
        observer = self._observer.tcp_connection(
            tls_version=tls_version, alpn_protocol=alpn_protocol, http_version=protocol.http_version
        )
        return protocol if observer is None else _ObservedTCPProtocol(protocol, observer)


class _ObservedQUICFactory(HTTPOverQUICClientFactory):
    """Makes the protocols of ``factory``, observed by ``observer``."""

    def __init__(self, factory: HTTPOverQUICClientFactory, observer: ConnectionObserver) -> None:
        self._factory = factory
        self._observer = observer

    def with_limits(self, limits: ProtocolLimits) -> HTTPOverQUICClientFactory:
        return _ObservedQUICFactory(self._factory.with_limits(limits), self._observer)

    def with_max_datagram_size(self, size: int, loopback_size: int) -> HTTPOverQUICClientFactory:
        factory = self._factory.with_max_datagram_size(size, loopback_size)
        return _ObservedQUICFactory(factory, self._observer)

    def __call__(
        self, *, remote_address: AddressType, server_name: str, tls_config: ClientTLSConfig
    ) -> HTTPOverQUICProtocol:
        protocol = self._factory(
            remote_address=remote_address, server_name=server_name, tls_config=tls_config
        )
        observer = self._observer.quic_connection(
            remote_address=remote_address, server_name=server_name
        )
        return protocol if observer is None else _ObservedQUICProtocol(protocol, observer)


class _ObservedProtocol(HTTPProtocol):
    """Delegates to ``inner``; reports submissions and events (both transports share this)."""

    def __init__(self, inner: HTTPProtocol, observer: ProtocolObserver) -> None:
        self._inner = inner
        self._observer = observer

    @property
    def http_version(self) -> str:
        return self._inner.http_version

    @property
    def multiplexed(self) -> bool:
        return self._inner.multiplexed

    @property
    def error_codes(self) -> HTTPErrorCodes:
        return self._inner.error_codes

    def is_available(self) -> bool:
        return self._inner.is_available()

    def has_expired(self) -> bool:
        return self._inner.has_expired()

    def get_available_stream_id(self) -> int:
        return self._inner.get_available_stream_id()

    def submit_headers(
        self, stream_id: int, headers: HeadersType, end_stream: bool = False
    ) -> None:
        self._inner.submit_headers(stream_id, headers, end_stream)
        self._observer.headers_submitted(stream_id, headers, end_stream)

    def submit_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._inner.submit_data(stream_id, data, end_stream)
        self._observer.data_submitted(stream_id, len(data), end_stream)

    def submit_datagram(self, stream_id: int, data: bytes) -> bool:
        queued = self._inner.submit_datagram(stream_id, data)
        dropped = "" if queued else " dropped"
        self._observer.note(f"submit_datagram stream_id={stream_id} size={len(data)}{dropped}")
        return queued

    def submit_stream_reset(self, stream_id: int, error_code: int = 0) -> None:
        self._inner.submit_stream_reset(stream_id, error_code)
        self._observer.note(f"submit_stream_reset stream_id={stream_id} error_code={error_code:#x}")

    @property
    def state(self) -> ConnectionState:
        return self._inner.state

    def submit_goaway(self) -> None:
        self._inner.submit_goaway()
        self._observer.note("submit_goaway")

    def submit_shutdown_notice(self) -> None:
        self._inner.submit_shutdown_notice()
        self._observer.note("submit_shutdown_notice")

    def submit_close(self, error_code: int | None = None) -> None:
        self._inner.submit_close(error_code)
        code = "none" if error_code is None else f"{error_code:#x}"
        self._observer.note(f"submit_close error_code={code}")

    def next_event(self) -> Event | None:
        event = self._inner.next_event()
        if event is not None:
            self._observer.event_received(event)
        return event

    def acknowledge_received_data(self, stream_id: int, amount: int) -> None:
        self._inner.acknowledge_received_data(stream_id, amount)

    def get_pending_data_size(self, stream_id: int) -> int:
        return self._inner.get_pending_data_size(stream_id)


class _ObservedTCPProtocol(_ObservedProtocol, HTTPOverTCPProtocol):
    """An HTTP/1.1 or HTTP/2 protocol that reports to an observer."""

    def __init__(self, inner: HTTPOverTCPProtocol, observer: ProtocolObserver) -> None:
        super().__init__(inner, observer)
        self._tcp = inner

    def bytes_received(self, data: bytes) -> None:
        self._tcp.bytes_received(data)

    def bytes_to_send(self) -> bytes:
        return self._tcp.bytes_to_send()

    def eof_received(self) -> None:
        self._observer.note("end of stream received")
        self._tcp.eof_received()

    def connection_lost(self) -> None:
        self._observer.note("connection lost")
        self._tcp.connection_lost()


class _ObservedQUICProtocol(_ObservedProtocol, HTTPOverQUICProtocol):
    """An HTTP/3 protocol that reports to an observer, its handshake's end too."""

    def __init__(self, inner: HTTPOverQUICProtocol, observer: ProtocolObserver) -> None:
        super().__init__(inner, observer)
        self._quic = inner
        self._handshake_reported = False

    @property
    def connection_ids(self) -> Sequence[bytes]:
        return self._quic.connection_ids

    @property
    def handshake_completed(self) -> bool:
        completed = self._quic.handshake_completed
        if completed and not self._handshake_reported:
            self._handshake_reported = True
            self._observer.handshake_completed(self.http_version)
        return completed

    def clock(self, now: float) -> None:
        self._quic.clock(now)

    def get_timer(self) -> float | None:
        return self._quic.get_timer()

    def abandon_linger(self) -> None:
        self._quic.abandon_linger()

    def datagram_received(self, datagram: DatagramType) -> None:
        self._quic.datagram_received(datagram)

    def datagrams_to_send(self) -> Sequence[DatagramType]:
        return self._quic.datagrams_to_send()

    def connection_lost(self) -> None:
        self._observer.note("connection lost")
        self._quic.connection_lost()
