"""Connection setup shared by :class:`ClientSession` and :class:`ProxyClientSession`.

Both sessions speak one :class:`ClientProtocol` to their servers (origins or
the proxy) through a :class:`ConnectionPool`; this module makes the opener
for that protocol and starts the pool with its task group.

HTTP/3 discovery: given an :class:`~._alt_svc.AltSvcCache`, a pool that
speaks HTTP/1.1 or HTTP/2 by ALPN (:attr:`ClientProtocol.TCP`) races, for
an origin with an ``h3`` alternative, a QUIC connection to the
alternative against TCP started :data:`ALT_SVC_RACE_DELAY` later (or when
QUIC failed, which discards the alternative); see :mod:`._racing`.
"""

from __future__ import annotations

import anyio.to_thread

from hface.common import ClientTLSConfig
from hface.connections import (
    ConnectionOptions,
    HTTPConnection,
    HTTPOverQUICOpener,
    HTTPOverTCPOpener,
)
from hface.networking import ClientNetworking
from hface.protocols import ALPNHTTPFactory, HTTPOverQUICClientFactory, HTTPOverTCPFactory, http3
from hface.protocols.http2 import HTTP2ClientFactory
from hface.protocols.http3 import HTTP3ClientFactory

from ._alt_svc import AltSvcCache
from ._models import ClientProtocol, Origin
from ._pool import Attempt, ConnectionPool, Opener, Planner

#: A client's HTTP/2 and HTTP/3 stream receive window. Larger than the
#: protocols' default (256 KiB, sized for a server with many peers): a
#: client reads what it asked for, and a download gets at most one window
#: per round trip (10 ms and more under load in Python; a tunnelled
#: download through a proxy went twice as fast with this window). Not
#: larger: with 4 MiB (and 16 MiB per connection) a 100 MiB download
#: tunnelled over HTTP/2 went slower, 260-267 MB/s against 320-332.
CLIENT_STREAM_WINDOW = 1024 * 1024

#: Seconds a QUIC attempt to an Alt-Svc alternative runs alone before TCP
#: starts too (RFC 8305 §5 says 250 ms between addresses; this leaves room
#: for the TCP and TLS handshakes within 300 ms when UDP is blocked).
ALT_SVC_RACE_DELAY = 0.2

#: A client's HTTP/2 and HTTP/3 connection receive window (all streams together).
CLIENT_CONNECTION_WINDOW = 4 * 1024 * 1024

#: The largest HTTP/2 frame a client accepts (``SETTINGS_MAX_FRAME_SIZE``):
#: 64 KiB, not 16 KiB, so that bulk data comes in a quarter of the frames.
CLIENT_HTTP2_MAX_FRAME_SIZE = 64 * 1024

#: The QPACK dynamic table a client offers the server for response headers
#: (RFC 9204 §3.2.3): none. Each response encoded against it would cost an
#: acknowledgement on the decoder stream (a datagram of its own after
#: every response) and the processing of the server's table inserts: with
#: ngtcp2's server, 35 % of the client's CPU time per small GET and 40 %
#: of its latency. Requests are still compressed with the server's table.
CLIENT_HTTP3_QPACK_MAX_TABLE_CAPACITY = 0


def make_http2_factory(*, max_header_list_size: int | None = None) -> HTTP2ClientFactory:
    """The HTTP/2 factory clients use by default: the settings above, others as usual."""
    return HTTP2ClientFactory(
        initial_window_size=CLIENT_STREAM_WINDOW,
        connection_window_size=CLIENT_CONNECTION_WINDOW,
        max_frame_size=CLIENT_HTTP2_MAX_FRAME_SIZE,
        max_header_list_size=max_header_list_size,  # None: the factory's default
    )


def make_http3_factory(
    *, max_field_section_size: int = 64 * 1024, qlog_dir: str | None = None
) -> HTTP3ClientFactory:
    """The HTTP/3 factory clients use by default: the settings above, others as usual.

    :param max_field_section_size: the largest response header section accepted.
    :param qlog_dir: write a qlog file of each connection there (for debugging).
    """
    return HTTP3ClientFactory(
        max_field_section_size=max_field_section_size,
        qlog_dir=qlog_dir,
        stream_receive_window=CLIENT_STREAM_WINDOW,
        connection_receive_window=CLIENT_CONNECTION_WINDOW,
        qpack_max_table_capacity=CLIENT_HTTP3_QPACK_MAX_TABLE_CAPACITY,
    )


def make_tcp_factory(
    protocol: ClientProtocol,
    http1_factory: HTTPOverTCPFactory,
    http2_factory: HTTPOverTCPFactory,
) -> HTTPOverTCPFactory:
    """The factory for HTTP over TCP that ``protocol`` asks for."""
    if protocol is ClientProtocol.HTTP1:
        return http1_factory
    if protocol is ClientProtocol.HTTP2:
        return http2_factory
    return ALPNHTTPFactory([http2_factory, http1_factory], "http/1.1")


def make_opener(
    protocol: ClientProtocol,
    *,
    tls_config: ClientTLSConfig,
    http1_factory: HTTPOverTCPFactory,
    http2_factory: HTTPOverTCPFactory,
    http3_factory: HTTPOverQUICClientFactory,
    networking: ClientNetworking,
) -> HTTPOverTCPOpener | HTTPOverQUICOpener:
    """An opener of client connections; data is acknowledged as it is consumed."""
    options = ConnectionOptions(auto_acknowledge=False)
    if protocol is ClientProtocol.HTTP3:
        return HTTPOverQUICOpener(
            http3_factory, tls_config=tls_config, networking=networking, options=options
        )
    factory = make_tcp_factory(protocol, http1_factory, http2_factory)
    return HTTPOverTCPOpener(factory, tls_config=tls_config, networking=networking, options=options)


async def start_pool(
    protocol: ClientProtocol,
    *,
    tls_config: ClientTLSConfig,
    http1_factory: HTTPOverTCPFactory,
    http2_factory: HTTPOverTCPFactory,
    http3_factory: HTTPOverQUICClientFactory,
    networking: ClientNetworking,
    connect_timeout: float | None,
    max_idle_connections: int,
    what: str = "origin",
    alt_svc: AltSvcCache | None = None,
) -> ConnectionPool:
    """Start a pool of connections speaking ``protocol``; close it with ``aclose()``.

    :param what: how errors name the servers (``"origin"`` or ``"proxy"``).
    :param alt_svc: the HTTP/3 alternatives to race TCP with (see above).
    """
    opener = make_opener(
        protocol,
        tls_config=tls_config,
        http1_factory=http1_factory,
        http2_factory=http2_factory,
        http3_factory=http3_factory,
        networking=networking,
    )

    async def open_connection(origin: Origin) -> HTTPConnection:
        if protocol is ClientProtocol.HTTP3 and not origin.tls:
            raise ValueError(f"HTTP/3 needs an https {what}, not {origin}")
        return await opener(origin.address, tls=origin.tls, server_name=origin.host)

    planner: Planner | None = None
    if alt_svc is not None and protocol is ClientProtocol.TCP:
        quic_opener = make_opener(
            ClientProtocol.HTTP3,
            tls_config=tls_config,
            http1_factory=http1_factory,
            http2_factory=http2_factory,
            http3_factory=http3_factory,
            networking=networking,
        )
        planner = _alt_svc_planner(alt_svc, quic_opener, open_connection)
    pool = ConnectionPool(
        open_connection,
        connect_timeout=connect_timeout,
        max_idle_connections=max_idle_connections,
        what=what,
        planner=planner,
    )
    await pool.start()
    return pool


def _alt_svc_planner(
    cache: AltSvcCache, quic_opener: HTTPOverTCPOpener | HTTPOverQUICOpener, tcp: Opener
) -> Planner:
    """For an origin with an ``h3`` alternative: QUIC to it, then TCP."""

    def plan(origin: Origin) -> tuple[Attempt, ...]:
        service = cache.lookup(origin)
        if service is None or not origin.tls:
            return ()

        async def open_quic(origin: Origin) -> HTTPConnection:
            address = (service.host, service.port)
            return await quic_opener(address, tls=True, server_name=origin.host)

        def forget(error: BaseException) -> None:
            cache.discard(origin, service)

        quic = Attempt(0.0, open_quic, forget, prepare=_load_http3)
        return (quic, Attempt(ALT_SVC_RACE_DELAY, tcp))

    return plan


async def _load_http3() -> None:
    """Import the HTTP/3 stack (aioquic, cryptography) in a thread, once, before a race.

    ``hface.protocols.http3`` imports it at the first use of a lazy name
    (its module ``__getattr__``), which then stays in the module's namespace.
    """
    if "HTTP3ClientProtocol" not in vars(http3):
        await anyio.to_thread.run_sync(getattr, http3, "HTTP3ClientProtocol")
