"""What every server facade bounds: :class:`ServerLimits` and :class:`ServerTimeouts`.

Both are plain mutable dataclasses, as :class:`~hface.common.ServerTLSConfig`
is: ``server.timeouts.keep_alive = 2.0`` before :meth:`BaseServer.run
<hface.server.BaseServer.run>`. The defaults follow what users of
hypercorn, uvicorn and nginx expect (named beside each field).

The protocol limits of :class:`ServerLimits` (header size, concurrent
streams, header table size, reset budget) are options of the protocol
factories, which can be used without a server. A server applies them to
the factories it made itself (``server.http1_factory`` and so on, as
created); a factory you set in their place keeps its own options. The
factories' other options stay theirs:

- HTTP/2: flow-control windows, frame size and the flood budget
  (``HTTP2ServerFactory(initial_window_size=..., max_control_frames=...)``).
- HTTP/3: the QUIC idle timeout, 60 s, which also bounds the QUIC
  handshake, and the flow-control windows
  (``HTTP3ServerFactory(idle_timeout=..., stream_receive_window=...)``).
- Request body bytes held per stream: HTTP/2 and HTTP/3 by their
  flow-control windows (256 KiB a stream, 1 MiB a connection);
  HTTP/1.1 by :attr:`ASGIServer.max_buffered_data <hface.server.ASGIServer.max_buffered_data>`.
  Proxy tunnels acknowledge data only once the target took it, so they hold
  no more than one window per tunnel either (see
  :class:`~hface.server.ProxyServer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(kw_only=True, slots=True)
class ServerLimits:
    """How much one client may ask of a server; ``None`` means no limit.

    The first four are checked the same way on HTTP/1.1, HTTP/2 and HTTP/3.
    The protocol limits after them (never ``None``) map to each version's
    own mechanism, as each field says: they are options of the protocol
    factories, applied to those the server made itself (a factory set in
    place of :attr:`BaseServer.http2_factory <hface.server.BaseServer.http2_factory>`
    and the others keeps its own options).
    """

    #: Connections served at once (uvicorn's ``limit_concurrency``, nginx's
    #: ``worker_connections``). At the limit, the connection open longest
    #: among those with no request in flight (silent, or idle between
    #: requests) is closed to make room, as nginx frees its reusable
    #: connections; only if every one has a request in flight is one more
    #: not served: an HTTP/1.1 request on it gets ``503`` and the connection
    #: closes; HTTP/2 and HTTP/3 get GOAWAY at once, so clients retry
    #: elsewhere or later.
    max_connections: int | None = 1000

    #: Header fields the client sent in one request (pseudo-headers, which
    #: HTTP/1.1 does not send, not counted); beyond it, ``431``.
    max_header_count: int | None = 100

    #: Bytes of the request target (``:path``); beyond it, ``414``
    #: (nginx's ``large_client_header_buffers``: 8 KiB).
    max_path_length: int | None = 8192

    #: Bytes of one request body (nginx's ``client_max_body_size``); ``413``
    #: at once if ``content-length`` says more, else as soon as more arrives
    #: (then the application's ``receive()`` returns ``http.disconnect``).
    #: ``None`` (the default) leaves it to the application.
    max_body_size: int | None = None

    #: Bytes of one request's header block; beyond it, ``431`` on HTTP/1.1
    #: (the request line included: h11's ``max_incomplete_event_size``) and
    #: GOAWAY on HTTP/2 (the decoded list, 32 bytes counted per field:
    #: ``SETTINGS_MAX_HEADER_LIST_SIZE``, RFC 9113 §6.5.2, which also bounds
    #: the HPACK bomb). 16 KiB, as h11's default and nginx's 8 KiB lines.
    #: On HTTP/3 it is ``SETTINGS_MAX_FIELD_SECTION_SIZE`` (counted the same
    #: way, RFC 9114 §4.2.2 and §7.2.4.1); a larger request gets ``431``.
    max_header_size: int = 16384

    #: Requests in flight on one HTTP/2 or HTTP/3 connection
    #: (``SETTINGS_MAX_CONCURRENT_STREAMS``, RFC 9113 §5.1.2; QUIC's
    #: ``initial_max_streams_bidi``, RFC 9000 §4.6). A client past it gets
    #: ``RST_STREAM(REFUSED_STREAM)`` on HTTP/2 and ``STREAM_LIMIT_ERROR``
    #: on HTTP/3; well-behaved clients wait. 100, as h2o's and nginx's.
    max_concurrent_streams: int = 100

    #: Bytes of the dynamic table a client's header encoder may use: HPACK's
    #: (``SETTINGS_HEADER_TABLE_SIZE``, RFC 7541 §4.2) on HTTP/2, QPACK's
    #: (``SETTINGS_QPACK_MAX_TABLE_CAPACITY``, RFC 9204 §3.2.3) on HTTP/3;
    #: what one connection's header compression may make the server hold,
    #: 0 for no dynamic table. 4,096, HPACK's initial value.
    header_table_size: int = 4096

    #: Streams a client may reset (or have reset for its errors) before they
    #: complete, beyond one per completed request; past it, HTTP/2 gets
    #: GOAWAY(ENHANCE_YOUR_CALM) and HTTP/3 H3_EXCESSIVE_LOAD (the rapid
    #: reset attack, CVE-2023-44487). 200.
    max_reset_streams: int = 200

    def check(self) -> None:
        """Raise ``ValueError`` unless every limit is ``None`` or positive, and in range."""
        for name in ("max_connections", "max_header_count", "max_path_length", "max_body_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"limits.{name} must be None or a positive integer, not {value!r}")
        for name, (least, most) in _PROTOCOL_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
                raise ValueError(
                    f"limits.{name} must be an integer from {least} to {most}, not {value!r}"
                )


#: The protocol limits of :class:`ServerLimits` and the range of each
#: (HTTP/2 SETTINGS values are 32-bit, RFC 9113 §6.5.2; hface's QPACK tables
#: stop at 2**30 - 1 bytes; a table of 0 bytes is none).
_PROTOCOL_LIMITS: Final = {
    "max_header_size": (1, 2**32 - 1),
    "max_concurrent_streams": (1, 2**31 - 1),
    "header_table_size": (0, 2**30 - 1),
    "max_reset_streams": (1, 2**31 - 1),
}


@dataclass(kw_only=True, slots=True)
class ServerTimeouts:
    """How long a server waits for a client, in seconds; ``None`` means forever.

    Each ends in a defined way: the client gets a status where one can
    still be sent, else the stream is reset or the connection closed.
    """

    #: The TLS handshake over TCP and the QUIC handshake; a client that has
    #: not finished it is disconnected (nginx's ``ssl_handshake_timeout``;
    #: Go's 10 s).
    tls_handshake: float | None = 10.0

    #: From the connection's start to the first request's complete headers
    #: (slowloris; nginx's ``client_header_timeout``, 60 s). The connection
    #: then closes: HTTP/2 and HTTP/3 with GOAWAY, HTTP/1.1 with ``408`` if
    #: part of a request has arrived (a silent connection just closes). A
    #: connection accepted while more than half of
    #: :attr:`ServerLimits.max_connections` are taken gets a tenth of it.
    header_read: float | None = 60.0

    #: A connection with no request in flight after its first one (hypercorn's
    #: and uvicorn's ``keep_alive_timeout``, 5 s); then it closes, HTTP/2 and
    #: HTTP/3 with GOAWAY, HTTP/1.1 as after :attr:`header_read`.
    keep_alive: float | None = 5.0

    #: Between two pieces of a request body while the application waits for
    #: one (nginx's ``client_body_timeout``, 60 s); then ``408`` if no
    #: response was started (else the stream is reset) and ``receive()``
    #: returns ``http.disconnect``.
    body_read: float | None = 60.0

    #: One ``send()`` of the application waiting on a client that does not
    #: read (nginx's ``send_timeout``, 60 s), of a response or a WebSocket
    #: message; then the stream is reset (on HTTP/1.1 the connection closes)
    #: and ``send()`` raises :class:`~hface.server.ClientDisconnected`.
    write: float | None = 60.0

    #: From a connection's start to the end of its PROXY protocol header,
    #: when :attr:`BaseServer.proxy_protocol <hface.server.BaseServer.proxy_protocol>`
    #: is on (at least 3 s, the specification says, to cover a TCP
    #: retransmit); then the connection is closed.
    proxy_header: float = 5.0

    #: At shutdown, how long requests and tunnels in flight get to finish
    #: after GOAWAY before they are cancelled (hypercorn's ``graceful_timeout``).
    graceful_shutdown: float = 10.0

    def check(self) -> None:
        """Raise ``ValueError`` unless every timeout is ``None`` or positive."""
        for name in ("tls_handshake", "header_read", "keep_alive", "body_read", "write"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"timeouts.{name} must be None or positive, not {value!r}")
        if not self.proxy_header > 0:
            raise ValueError(f"timeouts.proxy_header must be positive, not {self.proxy_header!r}")
        if not self.graceful_shutdown >= 0:
            raise ValueError(
                f"timeouts.graceful_shutdown must be 0 or more, not {self.graceful_shutdown!r}"
            )
