"""The exceptions of :mod:`hface.client`, each a subclass of a :mod:`hface.errors` class.

::

    hface.errors.HTTPError
     └── ClientError                    (any client failure; also one of below)
          ├── ConnectError              (+ TransportError: cannot reach the origin)
          │    └── TLSVerificationError (+ networking.TLSVerificationError)
          ├── ConnectionLostError       (+ TransportError: gone mid-request)
          ├── RemoteProtocolError       (+ errors.RemoteProtocolError: bad response)
          ├── StreamResetError          (+ errors.StreamError: the peer reset the stream)
          ├── ProxyError                (the proxy refused the CONNECT tunnel)
          ├── HTTPStatusError           (raise_for_status(): a 4xx or 5xx response)
          ├── DecodingError             (a Content-Encoding not undone, or a bomb)
          ├── TooManyRedirects          (more redirects than allowed)
          ├── WebSocketRejected         (the server refused a WebSocket)
          └── WebSocketClosed           (a WebSocket was closed, or ended)

Timeouts are the builtin :exc:`TimeoutError` (from anyio cancel scopes), with
a message naming the origin and the phase (connect, read, whole request).
Every message says what happened and to which origin (or proxy); the
fields say it for code (:attr:`~hface.errors.TransportError.kind` and
:attr:`~hface.errors.TransportError.reason` of the transport errors, the
cause of each as its ``__cause__``).

HTTP/1.1 has no stream resets: a server that closes the connection before
the response is complete gives :exc:`ConnectionLostError`, one that sends an
unparsable response :exc:`RemoteProtocolError`; :exc:`StreamResetError` is
for HTTP/2 and HTTP/3. Invalid input (a bad URL, header or body type) raises
:exc:`ValueError` or :exc:`TypeError` when the :class:`Request` is made.
"""

from __future__ import annotations

from typing import Any

from hface import errors as _core
from hface import networking as _networking


class ClientError(_core.HTTPError):
    """The base of the client's exceptions.

    :param origin: the server (``scheme://host:port``) the failure concerns.
    """

    def __init__(self, message: str, *, origin: str) -> None:
        super().__init__(message)
        #: The origin (``scheme://host:port``) the request went to.
        self.origin = origin


class ConnectError(ClientError, _core.TransportError):
    """No connection could be made to the origin (refused, unreachable, DNS, handshake).

    :param kind: what failed: ``CONNECT``, ``TLS_HANDSHAKE`` (also QUIC's
        handshake) or ``TLS_VERIFICATION``.
    :param reason: why, in the words of the layer underneath, if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        origin: str,
        kind: _core.TransportErrorKind = _core.TransportErrorKind.CONNECT,
        reason: str | None = None,
    ) -> None:
        # The core class's signature, not ClientError's (whose super() is it).
        _core.TransportError.__init__(self, message, kind=kind, reason=reason)
        self.origin = origin


class TLSVerificationError(ConnectError, _networking.TLSVerificationError):
    """The origin's TLS certificate is not trusted (unknown CA, expired, wrong name)."""

    def __init__(self, message: str, *, origin: str, reason: str | None = None) -> None:
        kind = _core.TransportErrorKind.TLS_VERIFICATION
        super().__init__(message, origin=origin, kind=kind, reason=reason)


class ConnectionLostError(ClientError, _core.TransportError):
    """The connection ended before the response was complete.

    :param termination: why the connection ended, if its protocol said.
    """

    def __init__(
        self, message: str, *, origin: str, termination: _core.TerminationReason | None = None
    ) -> None:
        # The core class's signature, not ClientError's (whose super() is it).
        _core.TransportError.__init__(
            self, message, kind=_core.TransportErrorKind.CLOSED, termination=termination
        )
        self.origin = origin


class RemoteProtocolError(ClientError, _core.RemoteProtocolError):
    """The server broke the HTTP protocol (e.g. a response without ``:status``)."""

    def __init__(self, message: str, *, origin: str, error_code: int = 0) -> None:
        # The core class's signature, not ClientError's (whose super() is it).
        _core.RemoteProtocolError.__init__(self, message, error_code=error_code)
        self.origin = origin


class StreamResetError(ClientError, _core.StreamError):
    """The server reset the request's stream."""

    def __init__(self, message: str, *, origin: str, stream_id: int, error_code: int) -> None:
        # The core class's signature, not ClientError's (whose super() is it).
        _core.StreamError.__init__(self, stream_id, error_code, message)
        self.origin = origin


class ProxyError(ClientError):
    """The proxy refused to open a tunnel (a non-2xx answer to CONNECT).

    :param status: the proxy's status code (e.g. 407 when credentials are missing).
    """

    def __init__(self, message: str, *, origin: str, status: int) -> None:
        super().__init__(message, origin=origin)
        #: The status code the proxy answered CONNECT with.
        self.status = status


class HTTPStatusError(ClientError):
    """A 4xx or 5xx response, raised by :meth:`~hface.client.Response.raise_for_status`.

    :param response: the :class:`~hface.client.Response` (its body read if it was).
    """

    # Typed Any: this module is below the models (they raise it), so it cannot name them.
    def __init__(self, message: str, *, response: Any) -> None:
        request = response.request
        super().__init__(message, origin="" if request is None else str(request.url.origin))
        #: The :class:`~hface.client.Response`.
        self.response: Any = response
        #: Its status code.
        self.status: int = response.status


class DecodingError(ClientError):
    """A response body's ``Content-Encoding`` cannot be undone, or decodes to too much.

    An unknown coding, corrupt data, or a body past
    :attr:`~hface.client.Client.max_decompression_ratio` (a decompression bomb).
    """


class TooManyRedirects(ClientError):
    """More redirects than :attr:`~hface.client.Client.max_redirects` in a row.

    :param response: the last redirect :class:`~hface.client.Response` (body not read).
    """

    def __init__(self, message: str, *, origin: str, response: Any) -> None:
        super().__init__(message, origin=origin)
        #: The last redirect :class:`~hface.client.Response`.
        self.response: Any = response


class WebSocketRejected(ClientError):
    """The server answered a WebSocket's opening handshake with another status.

    (On HTTP/1.1 anything but ``101``, on HTTP/2 and HTTP/3 anything but ``200``.)

    :param status: the status code.
    :param body: the first 64 KiB of the response's body.
    """

    def __init__(self, message: str, *, origin: str, status: int, body: bytes) -> None:
        super().__init__(message, origin=origin)
        #: The status code the server answered with.
        self.status = status
        #: The start of the response's body.
        self.body = body


class WebSocketClosed(ClientError):
    """A WebSocket is closed: by the server, by us, or by the end of its connection.

    :param code: the close code (RFC 6455 §7.4): the server's, or 1006 if
        the connection ended without a Close.
    :param reason: the close reason the server gave, or what happened.
    """

    def __init__(self, message: str, *, origin: str, code: int, reason: str) -> None:
        super().__init__(message, origin=origin)
        #: The close code.
        self.code = code
        #: The close reason.
        self.reason = reason


__all__ = (
    "ClientError",
    "ConnectError",
    "ConnectionLostError",
    "DecodingError",
    "HTTPStatusError",
    "ProxyError",
    "RemoteProtocolError",
    "StreamResetError",
    "TLSVerificationError",
    "TooManyRedirects",
    "WebSocketClosed",
    "WebSocketRejected",
)
