"""``hface client -v``: one line per hface event, timed from the start of the command.

:class:`Tracer` is a :class:`~hface.cli._instruments.ConnectionObserver`
(see that module for how the client's protocols are observed): it writes
a line when a connection is made (TCP: after the TLS handshake, with the
TLS version and the ALPN protocol; QUIC: before its handshake, then once it
completes), when the protocol produces an event (``HeadersReceived``,
``DataReceived``, ``DatagramReceived``, ``StreamReset...``, ``GoawayReceived``,
``ConnectionTerminated``), at the time it arrived, and when the client
submits headers, data, a datagram (``submit_datagram``: through a
CONNECT-UDP proxy), a reset or a close.

Connections are numbered in the order they are made (``#1``, ``#2``):
through a proxy, ``#1`` is the connection to the proxy and ``#2`` the one
tunnelled to the origin.
"""

from __future__ import annotations

import time
from typing import TextIO

from hface.client import Client
from hface.common import AddressType, HeadersType
from hface.events import (
    ConnectionTerminated,
    DatagramReceived,
    DataReceived,
    Event,
    GoawayReceived,
    HeadersReceived,
    StreamReset,
)

from ._instruments import ConnectionObserver, ProtocolObserver, instrument


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
    if isinstance(event, DatagramReceived):
        return f"{name} stream_id={event.stream_id} size={len(event.data)}"
    if isinstance(event, StreamReset):
        return f"{name} stream_id={event.stream_id} error_code={event.error_code:#x}"
    if isinstance(event, GoawayReceived):
        return f"{name} last_stream_id={event.last_stream_id} error_code={event.error_code:#x}"
    if isinstance(event, ConnectionTerminated):
        message = "" if event.message is None else f" message={event.message!r}"
        return f"{name} error_code={event.error_code:#x}{message}"
    return repr(event)


class Tracer(ConnectionObserver):
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
        """Have the client's connections traced."""
        instrument(client, self)

    def new_connection(self) -> str:
        """The label of the next connection: ``#1``, ``#2 (proxy)``..."""
        self._connections += 1
        label = f"#{self._connections}"
        if self._proxy:
            label += " (proxy)" if self._connections == 1 else " (origin)"
        return label

    def tcp_connection(
        self, *, tls_version: str | None, alpn_protocol: str | None, http_version: str
    ) -> ProtocolObserver:
        label = self.new_connection()
        if tls_version is None:
            security = "cleartext TCP"
        else:
            security = f"TLS established: {tls_version}, ALPN {alpn_protocol or 'none'}"
        self.log(f"{label} connected, {security}, speaking HTTP/{http_version}")
        return _TraceLines(self, label)

    def quic_connection(self, *, remote_address: AddressType, server_name: str) -> ProtocolObserver:
        label = self.new_connection()
        host, port = remote_address
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.log(f"{label} QUIC handshake with {address} (server name {server_name})")
        return _TraceLines(self, label)


class _TraceLines(ProtocolObserver):
    """The lines of one connection, each with its label."""

    def __init__(self, tracer: Tracer, label: str) -> None:
        self._tracer = tracer
        self._label = label

    def note(self, what: str) -> None:
        self._tracer.log(f"{self._label} {what}")

    def handshake_completed(self, http_version: str) -> None:
        self.note(f"QUIC handshake completed: TLSv1.3, ALPN h3, speaking HTTP/{http_version}")

    def headers_submitted(self, stream_id: int, headers: HeadersType, end_stream: bool) -> None:
        self.note(
            f"submit_headers stream_id={stream_id} end_stream={end_stream} "
            f"headers=[{format_headers(headers)}]"
        )

    def data_submitted(self, stream_id: int, size: int, end_stream: bool) -> None:
        self.note(f"submit_data stream_id={stream_id} size={size} end_stream={end_stream}")

    def event_received(self, event: Event) -> None:
        self.note(format_event(event))
