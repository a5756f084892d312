"""Connection setup shared by :class:`ClientSession` and :class:`ProxyClientSession`.

Both sessions speak one :class:`ClientProtocol` to their servers (origins or
the proxy) through a :class:`ConnectionPool`; this module makes the opener
for that protocol and starts the pool with its task group.
"""

from __future__ import annotations

from hface.common import ClientTLSConfig
from hface.connections import HTTPConnection, HTTPOverQUICOpener, HTTPOverTCPOpener
from hface.networking import ClientNetworking
from hface.protocols import ALPNHTTPFactory, HTTPOverQUICClientFactory, HTTPOverTCPFactory

from ._models import ClientProtocol, Origin
from ._pool import ConnectionPool


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
    if protocol is ClientProtocol.HTTP3:
        return HTTPOverQUICOpener(
            http3_factory, tls_config=tls_config, networking=networking, auto_acknowledge=False
        )
    factory = make_tcp_factory(protocol, http1_factory, http2_factory)
    return HTTPOverTCPOpener(
        factory, tls_config=tls_config, networking=networking, auto_acknowledge=False
    )


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
) -> ConnectionPool:
    """Start a pool of connections speaking ``protocol``; close it with ``aclose()``.

    :param what: how errors name the servers (``"origin"`` or ``"proxy"``).
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

    pool = ConnectionPool(
        open_connection,
        connect_timeout=connect_timeout,
        max_idle_connections=max_idle_connections,
        what=what,
    )
    await pool.start()
    return pool
