"""``Client`` and ``ClientSession``: HTTP requests over pooled connections."""

from __future__ import annotations

import math
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from http.cookiejar import CookieJar
from types import TracebackType
from typing import Final

import anyio

from hface.common import ClientTLSConfig, HeaderType
from hface.networking import ClientNetworking, SystemNetworking
from hface.protocols import HTTPOverQUICClientFactory, HTTPOverTCPFactory
from hface.protocols.http1 import HTTP1ClientFactory

from . import errors
from ._alt_svc import AltSvcCache
from ._auth import AuthInput, BasicAuth, DigestAuth, auth_of, authorize, digest_answer
from ._conveniences import (
    RequestOptions,
    Timeout,
    accept_codings,
    check_keywords,
    discard_response,
    drop_field,
    prepare_request,
    redirect_request,
)
from ._cookies import add_cookies, take_cookies
from ._decoding import accept_encoding, decoded
from ._exchange import Exchange, RetryableError
from ._headers import HeadersInput
from ._models import URL, ClientProtocol, Origin, Request, Response
from ._opening import make_http2_factory, make_http3_factory, start_pool
from ._pool import ConnectionPool
from ._proxy import ProxyClient, ProxyClientSession, split_proxy_url
from ._shortcuts import RequestShortcuts
from ._websocket import DEFAULT_MAX_MESSAGE_SIZE, WebSocket, open_websocket, websocket_url

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

#: What stream() takes with a Request, which has its parts already.
_SEND_KEYWORDS: Final = frozenset({"auth", "follow_redirects", "timeout"})

#: Seconds to wait for a connection (TCP, TLS or QUIC handshake) by default.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: Seconds to wait for each piece of a response by default.
DEFAULT_READ_TIMEOUT: Final = 30.0
#: Idle HTTP/1.1 connections kept per origin by default.
DEFAULT_MAX_IDLE_CONNECTIONS: Final = 8
#: Bytes of a response's header block accepted by default (curl's is 100 KiB).
DEFAULT_MAX_RESPONSE_HEADER_SIZE: Final = 64 * 1024
#: Decoded bytes per encoded byte allowed by default (past the first MiB).
DEFAULT_MAX_DECOMPRESSION_RATIO: Final = 200.0
#: Redirects followed in a row by default before :exc:`~.errors.TooManyRedirects`.
DEFAULT_MAX_REDIRECTS: Final = 20


class Client:
    """An HTTP client: HTTP/1.1, HTTP/2 or HTTP/3, directly or through a proxy.

    Set the attributes, then enter :meth:`session` to make requests. The
    session takes a copy of the settings when it starts.

    Limits and their defaults, against slow or hostile servers:

    - :attr:`connect_timeout` (10 s) for the TCP and TLS, or QUIC,
      handshake; :attr:`read_timeout` (30 s) for the response headers and
      each piece of the body; :attr:`timeout` (none) for a whole request.
      Each raises :exc:`TimeoutError`.
    - :attr:`max_response_header_size` (64 KiB): the largest header block
      of a response (HTTP/1.1: the status line included; HTTP/2 and
      HTTP/3: decoded, 32 bytes counted per field, and sent to the server
      as ``SETTINGS_MAX_HEADER_LIST_SIZE`` or
      ``SETTINGS_MAX_FIELD_SECTION_SIZE``). A larger one fails the request
      with a :class:`~hface.client.errors.ClientError`, as soon as the
      excess arrives.
    - Requests in flight per HTTP/2 or HTTP/3 connection: as many as the
      server's stream limit allows; past it the pool opens another
      connection to the origin. HTTP/1.1 carries one request per
      connection at a time, and :attr:`max_idle_connections` (8) stay open
      per origin between requests.
    - What a server may make the client hold: one flow-control window of
      response body per stream (1 MiB) and per connection (4 MiB), and
      the flood and rapid-reset budgets of the HTTP/2 factory (see
      :class:`~hface.protocols.http2.HTTP2ClientFactory`, whose options
      apply through :attr:`http2_factory`).

    :param proxy_origin: tunnel every request through this HTTP proxy (CONNECT;
        HTTP/3: CONNECT-UDP); ``https://user:password@proxy:port`` also sets Basic
        proxy credentials (:attr:`proxy_auth`).
    """

    def __init__(
        self,
        *,
        tls_config: ClientTLSConfig | None = None,
        protocol: ClientProtocol = ClientProtocol.TCP,
        proxy_origin: Origin | str | None = None,
        proxy_protocol: ClientProtocol = ClientProtocol.TCP,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
        timeout: float | None = None,
    ) -> None:
        #: How servers (and the proxy) are verified; the system's CAs by default.
        self.tls_config: ClientTLSConfig = tls_config or ClientTLSConfig()
        #: The HTTP version(s) to speak to servers.
        self.protocol: ClientProtocol = protocol
        #: The HTTP proxy, if any; requests go through CONNECT tunnels.
        self.proxy_origin: Origin | None = None
        #: Basic credentials for the proxy, ``(user, password)``.
        self.proxy_auth: tuple[str, str] | None = None
        if proxy_origin is not None:
            self.proxy_origin, self.proxy_auth = split_proxy_url(proxy_origin)
        #: The HTTP version(s) to speak to the proxy.
        self.proxy_protocol: ClientProtocol = proxy_protocol
        #: Makes HTTP/1.1 protocols.
        self.http1_factory: HTTPOverTCPFactory = HTTP1ClientFactory()
        #: Makes HTTP/2 protocols.
        self.http2_factory: HTTPOverTCPFactory = make_http2_factory()
        #: Makes HTTP/3 protocols.
        self.http3_factory: HTTPOverQUICClientFactory = make_http3_factory()
        #: Opens the network connections to origins (TCP, TLS, UDP): the
        #: system's sockets; another :class:`~hface.networking.ClientNetworking`
        #: may choose the addresses or watch the connects (``hface client
        #: --resolve`` does). Not used through a proxy: the tunnels are the network.
        self.networking: ClientNetworking = SystemNetworking()
        #: Seconds to establish a connection (TCP + TLS, or QUIC); ``None``: no limit.
        self.connect_timeout: float | None = connect_timeout
        #: Seconds to wait for the response headers and for each body chunk.
        self.read_timeout: float | None = read_timeout
        #: Seconds for a whole :meth:`ClientSession.dispatch` (up to its last
        #: byte); for :meth:`ClientSession.stream`, up to the response headers.
        self.timeout: float | None = timeout
        #: Idle HTTP/1.1 connections kept per origin.
        self.max_idle_connections: int = DEFAULT_MAX_IDLE_CONNECTIONS
        #: Bytes of a response's header block accepted (HTTP/1.1, 2 and 3;
        #: applied to the client's own factories, not to one set in their place).
        self.max_response_header_size: int = DEFAULT_MAX_RESPONSE_HEADER_SIZE
        #: Whether :meth:`ClientSession.request` and its shortcuts follow
        #: redirects (``follow_redirects=`` of a request says it for one).
        self.follow_redirects: bool = False
        #: Redirects followed in a row before :exc:`~.errors.TooManyRedirects`.
        self.max_redirects: int = DEFAULT_MAX_REDIRECTS
        #: Credentials for :meth:`ClientSession.request` and its shortcuts
        #: (``auth=`` of a request overrides them): a :class:`BasicAuth`, a
        #: :class:`DigestAuth` or a ``(user, password)`` pair (Basic).
        self.auth: AuthInput = None
        #: Whether :meth:`ClientSession.request` and its shortcuts ask for
        #: compressed responses (``Accept-Encoding``: gzip, deflate, and br
        #: and zstd where installed) and decompress them as they stream.
        self.decompress: bool = True
        #: Decoded bytes allowed per encoded byte received, past the first
        #: MiB, before :exc:`~.errors.DecodingError` (a decompression bomb);
        #: ``None``: no limit.
        self.max_decompression_ratio: float | None = DEFAULT_MAX_DECOMPRESSION_RATIO
        #: The cookie jar of every session, if they should share one;
        #: ``None``: each session keeps its own (:attr:`ClientSession.cookies`).
        self.cookies: CookieJar | None = None
        #: A directory to write a qlog file of each QUIC connection in (for
        #: debugging; applied to the client's own HTTP/3 factory, as
        #: ``qlog_dir`` of :class:`~hface.protocols.http3.HTTP3ClientFactory`).
        #: TLS secrets go to :attr:`ClientTLSConfig.keylog_filename`.
        self.qlog_dir: str | None = None
        #: HTTP/3 discovery: with an :class:`AltSvcCache`, sessions speaking
        #: :attr:`ClientProtocol.TCP` (without a proxy) keep the ``h3`` Alt-Svc
        #: of servers and race QUIC against TCP to them; ``None``: no discovery.
        self.alt_svc: AltSvcCache | None = None
        self._own_factories = (self.http1_factory, self.http2_factory)
        self._own_http3_factory = self.http3_factory

    def session(self) -> ClientSession:
        """A session, to be entered: ``async with client.session() as session: ...``.

        Leaving the block closes every connection and ends every background task.
        """
        return ClientSession(self)


class ClientSession(RequestShortcuts):
    """Makes requests; returned by :meth:`Client.session`.

    Enter and leave it in the same task. The connections live as long as the session.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._tls_config = client.tls_config.clone()
        self._protocol = client.protocol
        self._connect_timeout = client.connect_timeout
        self._read_timeout = client.read_timeout
        self._timeout = client.timeout
        self._follow_redirects = client.follow_redirects
        self._max_redirects = client.max_redirects
        self._auth = auth_of(client.auth)
        self._accept_encoding = accept_encoding() if client.decompress else None
        self._max_decompression_ratio = client.max_decompression_ratio
        #: The cookies :meth:`request` and its shortcuts send and keep
        #: (an ``http.cookiejar.CookieJar``), across the session's requests.
        self.cookies: CookieJar = CookieJar() if client.cookies is None else client.cookies
        self._alt_svc = client.alt_svc if client.proxy_origin is None else None
        self._pool: ConnectionPool | None = None
        self._proxy_session: ProxyClientSession | None = None
        self._closed = False

    async def __aenter__(self) -> ClientSession:
        if self._pool is not None or self._closed:
            raise RuntimeError("a session can be entered only once")
        try:
            await self._start_pools()
        except BaseException:
            # Whatever was entered is left, innermost first, and from no
            # scope of ours: task groups must be exited in the order entered.
            await self.aclose()
            raise
        return self

    def _factories(
        self,
    ) -> tuple[HTTPOverTCPFactory, HTTPOverTCPFactory, HTTPOverQUICClientFactory]:
        """The HTTP/1.1, 2 and 3 factories, with the client's limits if they are its own."""
        client = self._client
        size: object = client.max_response_header_size  # set by users: any type may come
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"max_response_header_size must be a positive integer, not {size!r}")
        http1, http2 = client.http1_factory, client.http2_factory
        own1, own2 = client._own_factories
        if http1 is own1:
            http1 = HTTP1ClientFactory(max_header_size=size)
        if http2 is own2:
            http2 = make_http2_factory(max_header_list_size=size)
        http3 = client.http3_factory
        if http3 is client._own_http3_factory:
            http3 = make_http3_factory(max_field_section_size=size, qlog_dir=client.qlog_dir)
        return http1, http2, http3

    async def _start_pools(self) -> None:
        client = self._client
        http1_factory, http2_factory, http3_factory = self._factories()
        networking = client.networking
        if client.proxy_origin is not None:
            proxy = ProxyClient(
                client.proxy_origin,
                tls_config=self._tls_config,
                protocol=client.proxy_protocol,
                proxy_auth=client.proxy_auth,
                connect_timeout=client.connect_timeout,
                read_timeout=client.read_timeout,
            )
            proxy.http1_factory = http1_factory
            proxy.http2_factory = http2_factory
            proxy.http3_factory = http3_factory
            proxy_session = proxy.session()
            await proxy_session.__aenter__()
            self._proxy_session = networking = proxy_session
            http3_factory = proxy_session.tunnelled_http3_factory(http3_factory)
        self._pool = await start_pool(
            self._protocol,
            tls_config=self._tls_config,
            http1_factory=http1_factory,
            http2_factory=http2_factory,
            http3_factory=http3_factory,
            networking=networking,
            connect_timeout=self._connect_timeout,
            max_idle_connections=client.max_idle_connections,
            alt_svc=self._alt_svc,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection and end every background task (call from the entering task)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._pool is not None:
                await self._pool.aclose()
        finally:
            if self._proxy_session is not None:
                await self._proxy_session.aclose()

    @property
    def connections_opened(self) -> int:
        """How many connections this session has opened so far (for statistics)."""
        return 0 if self._pool is None else self._pool.connections_opened

    async def dispatch(self, request: Request) -> Response:
        """Send ``request`` and return the response with its whole body in ``content``.

        :raises TimeoutError: if a timeout of the client expired.
        :raises hface.client.errors.ClientError: see :mod:`hface.client.errors`.
        """
        timeout = self._timeout
        with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
            async with self.stream(request) as response:
                await response.aread()
                return response
        assert scope.cancelled_caught
        raise TimeoutError(
            f"timed out after {timeout} s waiting for {request.method} {request.url}"
        )

    @asynccontextmanager
    async def _stream(self, request: Request) -> AsyncIterator[Response]:
        timeout = self._timeout
        with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
            exchange, response = await self._start(request)
        if scope.cancelled_caught:
            raise TimeoutError(
                f"timed out after {timeout} s waiting for {request.method} {request.url}"
            )
        try:
            yield response
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
                await exchange.aclose()

    def stream(
        self,
        method: str | Request,
        url: URL | str | None = None,
        **options: Unpack[RequestOptions],
    ) -> AbstractAsyncContextManager[Response]:
        """Send a request; give the response once its headers are in.

        An async context manager: ``async with session.stream(request) as
        response: ...``, or with the arguments of :meth:`request`:
        ``async with session.stream("GET", url) as response: ...``. Read the
        body with ``async for chunk in response.aiter_bytes()``; the block's
        end releases the stream (resetting it if unread). A :class:`Request`
        alone goes as it is, as with :meth:`dispatch`.
        """
        if isinstance(method, Request):
            if url is not None:
                raise TypeError("give a Request or a method and a URL, not both")
            check_keywords("stream", options, _SEND_KEYWORDS)  # no parts: it has them
            if all(value is None for value in options.values()):
                return self._stream(method)
            request = method
            auth, follow_redirects = options.get("auth"), options.get("follow_redirects")
            limits = Timeout.of(options.get("timeout"))
        else:
            if url is None:
                raise TypeError("stream() needs a URL after the method")
            request, auth, follow_redirects, limits = prepare_request(method, url, options)
        return self._send(request, auth=auth, follow_redirects=follow_redirects, limits=limits)

    async def request(
        self, method: str, url: URL | str, **options: Unpack[RequestOptions]
    ) -> Response:
        """Send a request made of these arguments; return the response, its body read.

        :param params: query parameters, added to the URL's.
        :param headers: header fields: a :class:`Headers`, a ``dict`` or pairs.
        :param content: the body as ``bytes`` or an async iterable of ``bytes``;
            or ``data``, a form (``application/x-www-form-urlencoded``);
            or ``files`` (``{"name": content}``, ``(filename, content)`` or
            ``(filename, content, content_type)``), with ``data``'s fields,
            as ``multipart/form-data``;
            or ``json``, any value ``json.dumps()`` takes (``application/json``).
        :param auth: a :class:`BasicAuth`, a :class:`DigestAuth` or a
            ``(user, password)`` pair (Basic) (default: :attr:`Client.auth`).
        :param follow_redirects: follow 301, 302, 303, 307 and 308 (default:
            :attr:`Client.follow_redirects`); :attr:`Response.history` holds
            the redirects followed.
        :param timeout: seconds for the whole request, or a :class:`Timeout`
            (default: the client's timeouts).
        :raises TimeoutError: if a timeout expired.
        :raises hface.client.errors.TooManyRedirects: past :attr:`Client.max_redirects`.
        :raises hface.client.errors.ClientError: see :mod:`hface.client.errors`.
        """
        request, auth, follow_redirects, limits = prepare_request(method, url, options)
        total = self._timeout if limits.total is None else limits.total
        with anyio.move_on_after(math.inf if total is None else total) as scope:
            context = self._send(
                request, auth=auth, follow_redirects=follow_redirects, limits=limits
            )
            async with context as response:
                await response.aread()
                return response
        assert scope.cancelled_caught
        raise TimeoutError(f"timed out after {total} s waiting for {method} {request.url}")

    @asynccontextmanager
    async def _send(
        self,
        request: Request,
        *,
        auth: AuthInput,
        follow_redirects: bool | None,
        limits: Timeout,
    ) -> AsyncIterator[Response]:
        """The request, with its authentication and redirects; the last response."""
        credentials = self._auth if auth is None else auth_of(auth)
        follow = self._follow_redirects if follow_redirects is None else follow_redirects
        total = self._timeout if limits.total is None else limits.total
        first_origin = request.url.origin
        history: list[Response] = []
        while True:
            if isinstance(credentials, BasicAuth) and request.url.origin == first_origin:
                authorize(request, credentials.authorization)
            if self._accept_encoding is not None:
                accept_codings(request, self._accept_encoding)
            jar_cookie = add_cookies(self.cookies, request)
            with anyio.move_on_after(math.inf if total is None else total) as scope:
                exchange, response = await self._start(request, limits)
            if scope.cancelled_caught:
                raise TimeoutError(
                    f"timed out after {total} s waiting for {request.method} {request.url}"
                )
            response.request = request
            take_cookies(self.cookies, request, response)
            if isinstance(credentials, DigestAuth) and request.url.origin == first_origin:
                answer = digest_answer(request, response, credentials)
                if answer is not None:
                    await discard_response(response, exchange)
                    authorize(request, answer)
                    drop_field(request, (b"cookie", jar_cookie))  # the jar's may have changed
                    continue
            try:
                next_request = redirect_request(request, response) if follow else None
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await exchange.aclose()
                raise
            if next_request is None:
                response.history = tuple(history)
                self._decode(response)
                try:
                    yield response
                finally:
                    with anyio.CancelScope(shield=True):
                        await response.aclose()
                        await exchange.aclose()
                return
            await discard_response(response, exchange)
            history.append(response)
            if len(history) > self._max_redirects:
                raise errors.TooManyRedirects(
                    f"more than {self._max_redirects} redirects, the last to {next_request.url}",
                    origin=str(request.url.origin),
                    response=response,
                )
            if isinstance(credentials, DigestAuth):  # a new challenge for the new target
                kept = [field for field in next_request.headers if field[0] != b"authorization"]
                next_request.headers = kept
            # The jar says anew for the new target.
            drop_field(next_request, (b"cookie", jar_cookie))
            request = next_request

    def websocket(
        self,
        url: URL | str,
        *,
        headers: HeadersInput | None = None,
        subprotocols: Sequence[str] = (),
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> AbstractAsyncContextManager[WebSocket]:
        """Open a WebSocket: ``async with session.websocket("wss://host/ws") as ws: ...``.

        Over the session's HTTP version: HTTP/1.1's upgrade (RFC 6455), or an
        extended CONNECT on HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220), which
        the server must allow. The block's end closes it (code 1000).

        :param url: ``ws://`` or ``wss://`` (``http(s)://`` too).
        :param subprotocols: offered in ``Sec-WebSocket-Protocol``;
            :attr:`WebSocket.subprotocol` says the server's choice.
        :param max_message_size: the largest message received (bytes); past
            it the WebSocket closes with 1009.
        :raises hface.client.errors.WebSocketRejected: if the server refused.
        :raises hface.client.errors.ClientError: see :mod:`hface.client.errors`.
        """
        if self._pool is None or self._closed:
            raise RuntimeError("enter the session first: async with client.session() as session")
        return open_websocket(
            self._pool,
            websocket_url(url),
            headers=headers,
            subprotocols=tuple(subprotocols),
            read_timeout=self._read_timeout,
            max_message_size=max_message_size,
        )

    def _decode(self, response: Response) -> None:
        """Make ``response``'s body undo its ``Content-Encoding`` as it streams."""
        coding = response.get_header(b"content-encoding")
        if coding is None or response._body is None or self._accept_encoding is None:
            return
        assert response.request is not None
        response._body = decoded(
            response._body,
            coding.decode("latin-1"),
            max_ratio=self._max_decompression_ratio,
            origin=str(response.request.url.origin),
        )

    async def _start(
        self, request: Request, limits: Timeout | None = None
    ) -> tuple[Exchange, Response]:
        if self._pool is None or self._closed:
            raise RuntimeError("enter the session first: async with client.session() as session")
        origin = request.url.origin
        headers = self._request_headers(request)
        body = request.content
        has_body = not isinstance(body, bytes) or bool(body)
        replayable = isinstance(body, bytes)
        read_timeout = self._read_timeout
        if limits is not None and limits.read is not None:
            read_timeout = limits.read
        for attempt in range(2):
            if limits is None or limits.connect is None:
                exchange = await self._pool.open_exchange(origin, headers, end_stream=not has_body)
            else:
                with anyio.move_on_after(limits.connect) as scope:
                    exchange = await self._pool.open_exchange(
                        origin, headers, end_stream=not has_body
                    )
                if scope.cancelled_caught:
                    raise TimeoutError(f"timed out after {limits.connect} s connecting to {origin}")
            try:
                if has_body:
                    exchange.start_upload(self._pool.task_group, body)
                status, response_headers, complete = await exchange.receive_response_headers(
                    read_timeout
                )
            except RetryableError as exc:
                await exchange.aclose()
                if attempt == 0 and replayable:
                    continue
                raise exc.error from None
            except BaseException:
                await exchange.aclose()
                raise
            alt_svc, version = self._alt_svc, exchange.http_version
            if alt_svc is not None and alt_svc.take(origin, response_headers, version):
                self._pool.retire(origin)  # the next requests try the new alternative
            response = Response(
                status=status, headers=response_headers, http_version=exchange.http_version
            )
            if not complete:
                response._body = exchange.iter_body(read_timeout)
            return exchange, response
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _request_headers(request: Request) -> list[HeaderType]:
        headers = request.protocol_headers
        names = {name for name, _ in request.headers}
        body = request.content
        needs_length = bool(body) or request.method in ("POST", "PUT", "PATCH")
        if isinstance(body, bytes) and b"content-length" not in names and needs_length:
            headers.append((b"content-length", str(len(body)).encode()))
        if b"user-agent" not in names:
            headers.append((b"user-agent", b"hface"))
        return headers
