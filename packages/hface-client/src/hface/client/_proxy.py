"""``ProxyClient``: TCP (and TLS) connections and UDP tunnelled through an HTTP proxy.

A tunnel is a CONNECT exchange (RFC 9110 §9.3.6; RFC 9113 §8.5 and RFC 9114
§4.4 on HTTP/2 and HTTP/3) on a pooled connection to the proxy: once the
proxy answers 2xx, the stream's DATA is the tunnelled byte stream. Several
tunnels share one HTTP/2 or HTTP/3 connection to the proxy; over HTTP/1.1
each tunnel takes a whole connection. TLS to the origin runs inside the
tunnel (:class:`anyio.streams.tls.TLSStream` over the tunnel stream).
UDP goes through CONNECT-UDP (RFC 9298, :mod:`._proxy_udp`), so HTTP/3
runs through the proxy too.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
from anyio.streams.tls import TLSStream

from hface.common import AddressType, ClientTLSConfig, HeaderType
from hface.errors import HTTPError, LocalProtocolError, TransportErrorKind
from hface.events import ConnectionTerminated, DataReceived, Event, StreamReset
from hface.networking import (
    ByteStream,
    ClientNetworking,
    DatagramStream,
    SystemNetworking,
    TLSByteStream,
    make_client_ssl_context,
)
from hface.protocols import HTTPOverQUICClientFactory, HTTPOverTCPFactory
from hface.protocols.http1 import HTTP1ClientFactory

from . import errors
from ._exchange import Exchange, RetryableError
from ._models import ClientProtocol, Origin
from ._opening import make_http2_factory, make_http3_factory, start_pool
from ._pool import ConnectionPool
from ._proxy_udp import UDPTunnel, connect_udp_headers, tunnelled_http3_factory

#: Idle HTTP/1.1 connections to the proxy kept (each ends up carrying one tunnel).
MAX_IDLE_PROXY_CONNECTIONS = 4


def split_proxy_url(value: Origin | str) -> tuple[Origin, tuple[str, str] | None]:
    """Split ``https://user:password@proxy:port`` into the origin and the credentials.

    :raises ValueError: if ``value`` is not a proxy origin.
    """
    if isinstance(value, Origin):
        return value, None
    credentials = None
    text = value.strip()
    if "@" in text:
        parts = urlsplit(text if "://" in text else f"http://{text}")
        if parts.username is None:
            raise ValueError(f"invalid proxy URL {value!r}: empty user name")
        credentials = (unquote(parts.username), unquote(parts.password or ""))
        host_port = parts.netloc.rsplit("@", 1)[1]
        text = f"{parts.scheme}://{host_port}{parts.path}"
    return Origin.parse(text), credentials


def _format_authority(address: AddressType) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class TunnelStream(ByteStream):
    """The bytes of one CONNECT tunnel, as an anyio byte stream.

    A receive returns the data of every DATA event already queued for the
    stream (up to ``max_bytes``), not one event's: an HTTP/2 DATA frame or
    an HTTP/3 packet holds 16 KiB at most, and each receive costs the
    connection that reads the tunnel a round of its transport task. What
    was taken is acknowledged at once, in one window update.
    """

    def __init__(self, exchange: Exchange, target: str) -> None:
        self._exchange = exchange
        self._target = target
        self._eof = False
        # An event taken while gathering data that belongs to the next receive.
        self._held: Event | None = None

    async def receive(self, max_bytes: int = 65536) -> bytes:
        exchange = self._exchange
        data = await self._receive_one()
        chunks = [data]
        size = len(data)
        while size < max_bytes and not self._eof:
            event = exchange.next_event_nowait()
            if event is None:
                break
            if not isinstance(event, DataReceived) or size + len(event.data) > max_bytes:
                self._held = event  # the next receive takes it first
                break
            if event.end_stream:
                exchange.response_complete = True
                self._eof = True
            if event.data:
                chunks.append(event.data)
                size += len(event.data)
        with contextlib.suppress(HTTPError):
            await exchange.stream.acknowledge(size)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _receive_one(self) -> bytes:
        """Wait for the next non-empty DATA; raise at the end of the tunnel."""
        exchange = self._exchange
        while True:
            if self._eof:
                raise anyio.EndOfStream
            event, self._held = self._held, None
            if event is None:
                try:
                    event = await exchange.next_event(None, "tunnel data")
                except HTTPError as exc:
                    raise anyio.BrokenResourceError(str(exc)) from exc
            if isinstance(event, DataReceived):
                if event.end_stream:
                    exchange.response_complete = True
                    self._eof = True
                if event.data:
                    return event.data
            elif isinstance(event, StreamReset):
                exchange.response_complete = True
                raise anyio.BrokenResourceError(
                    f"the proxy {exchange.origin} reset the tunnel to {self._target} "
                    f"(error code {event.error_code:#x})"
                )
            elif isinstance(event, ConnectionTerminated):
                raise anyio.BrokenResourceError(
                    f"the connection to the proxy {exchange.origin} ended"
                )

    async def send(self, item: bytes) -> None:
        exchange = self._exchange
        if exchange.request_complete:
            raise anyio.ClosedResourceError
        try:
            await exchange.stream.send_data(item)
        except HTTPError as exc:
            raise anyio.BrokenResourceError(str(exc)) from exc

    async def send_eof(self) -> None:
        exchange = self._exchange
        if exchange.request_complete:
            return
        exchange.request_complete = True
        try:
            await exchange.stream.send_data(b"", end_stream=True)
        except HTTPError as exc:
            raise anyio.BrokenResourceError(str(exc)) from exc

    async def aclose(self) -> None:
        await self._exchange.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {}


class _TunnelTLSStream(TLSStream):
    """anyio's TLS stream, returning every TLS record already received in one receive.

    anyio's ``receive`` decrypts one record (16 KiB at most) per call, so a
    64 KiB chunk of the tunnel took four rounds of the transport task of
    the connection inside the tunnel. This one goes on decrypting the
    records already in its buffer (never waiting for more) up to
    ``max_bytes``. An error on a record after the first is left for the
    next receive to raise. (It reads anyio's ``_ssl_object``, ``_read_bio``
    and ``_write_bio``, the attributes of the ``TLSStream`` dataclass.)
    """

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await super().receive(max_bytes)
        ssl_object = self._ssl_object
        read_bio = self._read_bio
        size = len(data)
        if size >= max_bytes or not (read_bio.pending or ssl_object.pending()):
            return data
        chunks = [data]
        while size < max_bytes and (read_bio.pending or ssl_object.pending()):
            try:
                more = ssl_object.read(max_bytes - size)
            except ssl.SSLError:
                break  # an incomplete record (SSLWantReadError), or an error for the next call
            if not more:
                break  # close_notify: the next receive reports the end
            chunks.append(more)
            size += len(more)
        if self._write_bio.pending:
            await self._flush_write_bio()  # what reading made OpenSSL answer (a key update)
        return b"".join(chunks)


class ProxyClient:
    """Opens TCP connections (and TLS over them) through an HTTP proxy.

    Limits and their defaults: :attr:`connect_timeout` (10 s) to reach the
    proxy and :attr:`read_timeout` (30 s) for its answer to CONNECT, each
    raising :exc:`TimeoutError`; as many tunnels per HTTP/2 or HTTP/3
    connection as the proxy's stream limit allows (then another connection
    is opened), one per HTTP/1.1 connection; the proxy's response headers
    are bounded by the factories' options (``HTTP1ClientFactory(max_header_size=...)``,
    16 KiB, and ``HTTP2ClientFactory(max_header_list_size=...)``, 64 KiB;
    a :class:`Client` with a proxy passes on its
    :attr:`~Client.max_response_header_size` instead). A tunnel holds at
    most one flow-control window of the proxy's data (1 MiB on HTTP/2 and HTTP/3).

    :param proxy_origin: the proxy, e.g. ``"https://localhost:6443"``;
        ``https://user:password@proxy:port`` also sets Basic credentials.
    """

    def __init__(
        self,
        proxy_origin: Origin | str,
        *,
        tls_config: ClientTLSConfig | None = None,
        protocol: ClientProtocol = ClientProtocol.TCP,
        proxy_auth: tuple[str, str] | None = None,
        connect_timeout: float | None = 10.0,
        read_timeout: float | None = 30.0,
    ) -> None:
        origin, credentials = split_proxy_url(proxy_origin)
        #: The proxy.
        self.proxy_origin: Origin = origin
        #: Basic credentials for the proxy, ``(user, password)``.
        self.proxy_auth: tuple[str, str] | None = proxy_auth or credentials
        #: How the proxy (and, by default, tunnelled TLS origins) are verified.
        self.tls_config: ClientTLSConfig = tls_config or ClientTLSConfig()
        #: The HTTP version(s) to speak to the proxy.
        self.protocol: ClientProtocol = protocol
        #: Makes HTTP/1.1 protocols.
        self.http1_factory: HTTPOverTCPFactory = HTTP1ClientFactory()
        #: Makes HTTP/2 protocols.
        self.http2_factory: HTTPOverTCPFactory = make_http2_factory()
        #: Makes HTTP/3 protocols.
        self.http3_factory: HTTPOverQUICClientFactory = make_http3_factory()
        #: Seconds to connect to the proxy.
        self.connect_timeout: float | None = connect_timeout
        #: Seconds to wait for the proxy's answer to CONNECT.
        self.read_timeout: float | None = read_timeout

    def session(self) -> ProxyClientSession:
        """A session, to be entered: ``async with proxy_client.session() as session: ...``."""
        return ProxyClientSession(self)


class ProxyClientSession(ClientNetworking):
    """``ClientNetworking`` through the proxy; made by :meth:`ProxyClient.session`."""

    def __init__(self, proxy_client: ProxyClient) -> None:
        self._proxy_origin = proxy_client.proxy_origin
        self._proxy_auth = proxy_client.proxy_auth
        self._tls_config = proxy_client.tls_config.clone()
        self._protocol = proxy_client.protocol
        self._read_timeout = proxy_client.read_timeout
        self._connect_timeout = proxy_client.connect_timeout
        self._factories = (
            proxy_client.http1_factory,
            proxy_client.http2_factory,
            proxy_client.http3_factory,
        )
        self._pool: ConnectionPool | None = None
        self._closed = False

    async def __aenter__(self) -> ProxyClientSession:
        if self._pool is not None or self._closed:
            raise RuntimeError("a session can be entered only once")
        http1_factory, http2_factory, http3_factory = self._factories
        try:
            self._pool = await start_pool(
                self._protocol,
                tls_config=self._tls_config,
                http1_factory=http1_factory,
                http2_factory=http2_factory,
                http3_factory=http3_factory,
                networking=SystemNetworking(),
                connect_timeout=self._connect_timeout,
                max_idle_connections=MAX_IDLE_PROXY_CONNECTIONS,
                what="proxy",
            )
        except BaseException:
            self._closed = True  # a session that failed to start cannot be entered again
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every tunnel and connection to the proxy; end the background tasks."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            await self._pool.aclose()

    def _connect_headers(self, target: str) -> list[HeaderType]:
        headers: list[HeaderType] = [(b":method", b"CONNECT"), (b":authority", target.encode())]
        if self._proxy_auth is not None:
            user, password = self._proxy_auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers.append((b"proxy-authorization", f"Basic {token}".encode()))
        return headers

    async def connect_tcp(self, remote_address: AddressType) -> ByteStream:
        """Open a tunnel to ``remote_address`` through the proxy.

        :raises hface.client.errors.ProxyError: if the proxy refuses (non-2xx).
        :raises hface.client.errors.ConnectError: if the proxy cannot be reached.
        :raises TimeoutError: if the proxy does not answer in time.
        """
        target = _format_authority(remote_address)
        exchange = await self._open_tunnel(self._connect_headers(target), target)
        return TunnelStream(exchange, target)

    async def _open_tunnel(self, headers: list[HeaderType], target: str) -> Exchange:
        """Send a CONNECT (or CONNECT-UDP) and return its exchange once the proxy said 2xx."""
        if self._pool is None or self._closed:
            raise RuntimeError("enter the session first: async with proxy_client.session() as s")
        label = str(self._proxy_origin)
        for attempt in range(2):
            # The pool's errors name the proxy, and where the tunnel was to go.
            exchange = await self._pool.open_exchange(
                self._proxy_origin, headers, end_stream=False, purpose=f"tunnel to {target}"
            )
            try:
                status, _headers, complete = await exchange.receive_response_headers(
                    self._read_timeout
                )
            except RetryableError as exc:
                await exchange.aclose()
                if attempt == 0:
                    continue
                raise exc.error from None
            except BaseException:
                await exchange.aclose()
                raise
            if not 200 <= status < 300 or complete:
                await exchange.aclose()
                raise errors.ProxyError(
                    f"the proxy {label} refused a tunnel to {target} with status {status}",
                    origin=label,
                    status=status,
                )
            return exchange
        raise AssertionError("unreachable")  # pragma: no cover

    async def connect_tcp_tls(
        self,
        remote_address: AddressType,
        *,
        server_name: str | None = None,
        tls_config: ClientTLSConfig | None = None,
        alpn_protocols: Sequence[str] = (),
    ) -> ByteStream:
        """Open a tunnel to ``remote_address`` and do TLS with the origin inside it.

        :param tls_config: how to verify the origin; the session's by default.
        :raises hface.client.errors.TLSVerificationError: if the origin is not trusted.
        """
        stream = await self.connect_tcp(remote_address)
        context = make_client_ssl_context(tls_config or self._tls_config, alpn_protocols)
        label = f"https://{_format_authority(remote_address)}"
        try:
            tls_stream = await _TunnelTLSStream.wrap(
                stream,
                server_side=False,
                hostname=server_name or remote_address[0],
                ssl_context=context,
                standard_compatible=False,
            )
        except ssl.SSLCertVerificationError as exc:
            await anyio.aclose_forcefully(stream)
            raise errors.TLSVerificationError(
                f"cannot verify the TLS certificate of {label} "
                f"(through the proxy {self._proxy_origin}): {exc.verify_message}",
                origin=label,
                reason=exc.verify_message,
            ) from exc
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            await anyio.aclose_forcefully(stream)
            raise errors.ConnectError(
                f"TLS handshake with {label} through the proxy {self._proxy_origin} failed: {exc}",
                origin=label,
                kind=TransportErrorKind.TLS_HANDSHAKE,
                reason=str(exc) or type(exc).__name__,
            ) from exc
        return TLSByteStream(tls_stream)

    def tunnelled_http3_factory(
        self, factory: HTTPOverQUICClientFactory
    ) -> HTTPOverQUICClientFactory:
        """``factory`` for HTTP/3 inside this session's UDP tunnels: datagrams that fit them."""
        return tunnelled_http3_factory(factory, self._proxy_origin)

    async def connect_udp(self, remote_address: AddressType) -> DatagramStream:
        """Open a CONNECT-UDP tunnel (RFC 9298) to ``remote_address``: a datagram stream.

        The proxy must speak HTTP/2 or HTTP/3 (extended CONNECT) and serve
        CONNECT-UDP; see :mod:`hface.client._proxy_udp`. Datagrams are
        unreliable: what the tunnel cannot carry at once is dropped.

        :raises hface.client.errors.ProxyError: if the proxy refuses (non-2xx).
        :raises NotImplementedError: if the connection to the proxy is HTTP/1.1
            (hface's client does not upgrade to connect-udp).
        :raises hface.client.errors.ConnectError: if the proxy cannot be reached.
        :raises TimeoutError: if the proxy does not answer in time.
        """
        target = _format_authority(remote_address)
        headers = connect_udp_headers(self._proxy_origin, remote_address)
        headers += self._connect_headers(target)[2:]  # the credentials
        try:
            exchange = await self._open_tunnel(headers, f"{target} (UDP)")
        except LocalProtocolError as exc:  # an HTTP/1.1 proxy connection
            raise NotImplementedError(
                f"cannot tunnel UDP to {target} through the proxy {self._proxy_origin} over "
                "HTTP/1.1: speak HTTP/2 or HTTP/3 to the proxy for CONNECT-UDP"
            ) from exc
        return UDPTunnel(exchange, remote_address)
