"""What every server facade bounds: :class:`ServerLimits` and :class:`ServerTimeouts`.

Both are plain mutable dataclasses, as :class:`~hface.common.ServerTLSConfig`
is: ``server.timeouts.keep_alive = 2.0`` before :meth:`BaseServer.run
<hface.server.BaseServer.run>`. The defaults follow what users of
hypercorn, uvicorn and nginx expect (named beside each field).

Limits that belong to one protocol are options of its factory, so that a
factory can be used without a server (``server.http1_factory`` and so on):

- HTTP/1.1: the request line plus header block, 16 KiB
  (``HTTP1ServerFactory(max_header_size=...)``; beyond it, 431).
- HTTP/2: the decoded header list, 64 KiB, and 100 concurrent streams
  (``HTTP2ServerFactory(max_header_list_size=..., max_concurrent_streams=...)``),
  plus its flood and rapid-reset budgets.
- HTTP/3: 100 concurrent streams and the QUIC idle timeout, 60 s, which
  also bounds the QUIC handshake
  (``HTTP3ServerFactory(max_concurrent_streams=..., idle_timeout=...)``).
- Request body bytes held per stream: HTTP/2 and HTTP/3 by their
  flow-control windows (the factories' window options);
  HTTP/1.1 by :attr:`ASGIServer.max_buffered_data <hface.server.ASGIServer.max_buffered_data>`.
  Proxy tunnels acknowledge data only once the target took it, so they hold
  no more than one window either.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True, slots=True)
class ServerLimits:
    """How much one client may ask of a server; ``None`` means no limit.

    Checked the same way on HTTP/1.1, HTTP/2 and HTTP/3.
    """

    #: Connections served at once (uvicorn's ``limit_concurrency``, nginx's
    #: ``worker_connections``). One more is not served: an HTTP/1.1 request
    #: on it gets ``503`` and the connection closes; HTTP/2 and HTTP/3 get
    #: GOAWAY at once, so clients retry elsewhere or later.
    max_connections: int | None = 1000

    #: Header fields in one request (pseudo-headers included); beyond it, ``431``.
    max_header_count: int | None = 100

    #: Bytes of the request target (``:path``); beyond it, ``414``
    #: (nginx's ``large_client_header_buffers``: 8 KiB).
    max_path_length: int | None = 8192

    #: Bytes of one request body (nginx's ``client_max_body_size``); ``413``
    #: at once if ``content-length`` says more, else as soon as more arrives
    #: (then the application's ``receive()`` returns ``http.disconnect``).
    #: ``None`` (the default) leaves it to the application.
    max_body_size: int | None = None

    def check(self) -> None:
        """Raise ``ValueError`` unless every limit is ``None`` or positive."""
        for name in ("max_connections", "max_header_count", "max_path_length", "max_body_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"limits.{name} must be None or a positive integer, not {value!r}")


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
    #: part of a request has arrived (a silent connection just closes).
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
    #: read (nginx's ``send_timeout``, 60 s); then the stream is reset (on
    #: HTTP/1.1 the connection closes) and ``send()`` raises
    #: :class:`~hface.server.ClientDisconnected`.
    write: float | None = 60.0

    #: At shutdown, how long requests and tunnels in flight get to finish
    #: after GOAWAY before they are cancelled (hypercorn's ``graceful_timeout``).
    graceful_shutdown: float = 10.0

    def check(self) -> None:
        """Raise ``ValueError`` unless every timeout is ``None`` or positive."""
        for name in ("tls_handshake", "header_read", "keep_alive", "body_read", "write"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"timeouts.{name} must be None or positive, not {value!r}")
        if not self.graceful_shutdown >= 0:
            raise ValueError(
                f"timeouts.graceful_shutdown must be 0 or more, not {self.graceful_shutdown!r}"
            )
