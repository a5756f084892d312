"""``hface client -v``: one line per hface event, timed from the start of the command.

Theory of operation. :class:`hface.client.Client` makes its protocols with
the factories in its public ``http1_factory``, ``http2_factory`` and
``http3_factory`` attributes (its proxy connections use the same ones).
:meth:`Tracer.install` wraps each factory, and each protocol it makes, in a
thin delegate that writes a line when:

- a connection is made (TCP: after the TLS handshake, with the TLS version
  and the ALPN protocol; QUIC: before its handshake, then once it completes);
- the protocol produces an event (``HeadersReceived``, ``DataReceived``,
  ``StreamReset...``, ``GoawayReceived``, ``ConnectionTerminated``): the
  connection layer pulls events right after the bytes that carry them
  arrive, so the timestamps are the arrival times;
- the client submits headers, data, a reset or a close.

The delegates change nothing in what the protocols do. Connections are
numbered in the order they are made (``#1``, ``#2``): through a proxy, ``#1``
is the connection to the proxy and ``#2`` the one tunnelled to the origin.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TextIO

from hface.client import Client
from hface.common import AddressType, ClientTLSConfig, DatagramType, HeadersType, HTTPErrorCodes
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoawayReceived,
    HeadersReceived,
    StreamReset,
)
from hface.protocols import (
    ConnectionState,
    HTTPOverQUICClientFactory,
    HTTPOverQUICProtocol,
    HTTPOverTCPFactory,
    HTTPOverTCPProtocol,
    HTTPProtocol,
)


def format_headers(headers: HeadersType) -> str:
    """Header fields as ``name: value`` separated by `` | `` (bytes decoded as Latin-1)."""
    return " | ".join(
        f"{name.decode('latin-1')}: {value.decode('latin-1')}" for name, value in headers
    )


def format_event(event: Event) -> str:
    """One line describing ``event``; bodies are shown by their size only."""
    name = type(event).__name__
    if isinstance(event, HeadersReceived):
        return (
            f"{name} stream_id={event.stream_id} end_stream={event.end_stream} "
            f"headers=[{format_headers(event.headers)}]"
        )
    if isinstance(event, DataReceived):
        return (
            f"{name} stream_id={event.stream_id} size={len(event.data)} "
            f"end_stream={event.end_stream}"
        )
    if isinstance(event, StreamReset):
        return f"{name} stream_id={event.stream_id} error_code={event.error_code:#x}"
    if isinstance(event, GoawayReceived):
        return f"{name} last_stream_id={event.last_stream_id} error_code={event.error_code:#x}"
    if isinstance(event, ConnectionTerminated):
        message = "" if event.message is None else f" message={event.message!r}"
        return f"{name} error_code={event.error_code:#x}{message}"
    return repr(event)


class Tracer:
    """Writes timestamped lines (``+0.012s ...``) to ``stream``.

    :param stream: where the lines go (stderr for ``hface client -v``).
    :param proxy: a proxy is used, so the first connection is to the proxy.
    """

    def __init__(self, stream: TextIO, *, proxy: bool = False) -> None:
        self._stream = stream
        self._proxy = proxy
        self._start = time.perf_counter()
        self._connections = 0

    def log(self, message: str) -> None:
        """Write ``message`` with the time elapsed since the tracer was made."""
        elapsed = time.perf_counter() - self._start
        self._stream.write(f"+{elapsed:.3f}s {message}\n")
        self._stream.flush()

    def install(self, client: Client) -> None:
        """Wrap the client's protocol factories so that their connections are traced."""
        client.http1_factory = TracingTCPFactory(client.http1_factory, self)
        client.http2_factory = TracingTCPFactory(client.http2_factory, self)
        client.http3_factory = TracingQUICFactory(client.http3_factory, self)

    def new_connection(self) -> str:
        """The label of the next connection: ``#1``, ``#2 (proxy)``..."""
        self._connections += 1
        label = f"#{self._connections}"
        if self._proxy:
            label += " (proxy)" if self._connections == 1 else " (origin)"
        return label


def _version_name(protocol: HTTPProtocol) -> str:
    return f"HTTP/{protocol.http_version}"


class TracingTCPFactory(HTTPOverTCPFactory):
    """Makes the protocols of ``factory``, traced by ``tracer``."""

    def __init__(self, factory: HTTPOverTCPFactory, tracer: Tracer) -> None:
        self._factory = factory
        self._tracer = tracer

    @property
    def alpn_protocols(self) -> Sequence[str]:
        """The wrapped factory's ALPN protocol IDs."""
        return self._factory.alpn_protocols

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTPOverTCPProtocol:
        """Make a traced protocol, and log the connection's TLS parameters."""
        protocol = self._factory(tls_version=tls_version, alpn_protocol=alpn_protocol)
        label = self._tracer.new_connection()
        if tls_version is None:
            security = "cleartext TCP"
        else:
            security = f"TLS established: {tls_version}, ALPN {alpn_protocol or 'none'}"
        self._tracer.log(f"{label} connected, {security}, speaking {_version_name(protocol)}")
        return TracedTCPProtocol(protocol, self._tracer, label)


class TracingQUICFactory(HTTPOverQUICClientFactory):
    """Makes the protocols of ``factory``, traced by ``tracer``."""

    def __init__(self, factory: HTTPOverQUICClientFactory, tracer: Tracer) -> None:
        self._factory = factory
        self._tracer = tracer

    def __call__(
        self, *, remote_address: AddressType, server_name: str, tls_config: ClientTLSConfig
    ) -> HTTPOverQUICProtocol:
        """Make a traced protocol, and log the start of its QUIC handshake."""
        protocol = self._factory(
            remote_address=remote_address, server_name=server_name, tls_config=tls_config
        )
        label = self._tracer.new_connection()
        host, port = remote_address
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._tracer.log(f"{label} QUIC handshake with {address} (server name {server_name})")
        return TracedQUICProtocol(protocol, self._tracer, label)


class _TracedProtocol(HTTPProtocol):
    """Delegates to ``inner``; logs events and submissions (both versions share this)."""

    def __init__(self, inner: HTTPProtocol, tracer: Tracer, label: str) -> None:
        self._inner = inner
        self._tracer = tracer
        self._label = label

    def _log(self, message: str) -> None:
        self._tracer.log(f"{self._label} {message}")

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
        self._log(
            f"submit_headers stream_id={stream_id} end_stream={end_stream} "
            f"headers=[{format_headers(headers)}]"
        )

    def submit_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._inner.submit_data(stream_id, data, end_stream)
        self._log(f"submit_data stream_id={stream_id} size={len(data)} end_stream={end_stream}")

    def submit_stream_reset(self, stream_id: int, error_code: int = 0) -> None:
        self._inner.submit_stream_reset(stream_id, error_code)
        self._log(f"submit_stream_reset stream_id={stream_id} error_code={error_code:#x}")

    @property
    def state(self) -> ConnectionState:
        return self._inner.state

    def submit_goaway(self) -> None:
        self._inner.submit_goaway()
        self._log("submit_goaway")

    def submit_close(self, error_code: int | None = None) -> None:
        self._inner.submit_close(error_code)
        code = "none" if error_code is None else f"{error_code:#x}"
        self._log(f"submit_close error_code={code}")

    def next_event(self) -> Event | None:
        event = self._inner.next_event()
        if event is not None:
            self._log(format_event(event))
        return event

    def acknowledge_received_data(self, stream_id: int, amount: int) -> None:
        self._inner.acknowledge_received_data(stream_id, amount)

    def get_pending_data_size(self, stream_id: int) -> int:
        return self._inner.get_pending_data_size(stream_id)


class TracedTCPProtocol(_TracedProtocol, HTTPOverTCPProtocol):
    """An HTTP/1.1 or HTTP/2 protocol whose events are traced."""

    def __init__(self, inner: HTTPOverTCPProtocol, tracer: Tracer, label: str) -> None:
        super().__init__(inner, tracer, label)
        self._tcp = inner

    def bytes_received(self, data: bytes) -> None:
        self._tcp.bytes_received(data)

    def bytes_to_send(self) -> bytes:
        return self._tcp.bytes_to_send()

    def eof_received(self) -> None:
        self._log("end of stream received")
        self._tcp.eof_received()

    def connection_lost(self) -> None:
        self._log("connection lost")
        self._tcp.connection_lost()


class TracedQUICProtocol(_TracedProtocol, HTTPOverQUICProtocol):
    """An HTTP/3 protocol whose events (and handshake) are traced."""

    def __init__(self, inner: HTTPOverQUICProtocol, tracer: Tracer, label: str) -> None:
        super().__init__(inner, tracer, label)
        self._quic = inner
        self._handshake_logged = False

    @property
    def connection_ids(self) -> Sequence[bytes]:
        return self._quic.connection_ids

    @property
    def handshake_completed(self) -> bool:
        completed = self._quic.handshake_completed
        if completed and not self._handshake_logged:
            self._handshake_logged = True
            self._log(f"QUIC handshake completed: TLSv1.3, ALPN h3, speaking {_version_name(self)}")
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
        self._log("connection lost")
        self._quic.connection_lost()
