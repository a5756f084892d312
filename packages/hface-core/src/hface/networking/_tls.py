"""TLS over anyio byte streams: SSL contexts from hface's TLS configs, and a TLS listener.

Decisions that apply to every TLS stream made here:

- Streams are *not* "standard compatible" in anyio's sense (trio calls the
  same choice ``https_compatible``): closing does not wait for the peer's
  ``close_notify``, and a peer that closes TCP without one gives a clean
  end of stream. HTTP frames its own messages, so a truncation shows up as
  an incomplete message one layer up; browsers and curl behave the same.
- TLS 1.2 is the minimum (RFC 9113 §9.2 for HTTP/2).
- Errors from :mod:`ssl` after the handshake are reported as anyio's
  :exc:`~anyio.BrokenResourceError` (chained from the original), so users
  of the streams only ever see anyio's stream exceptions.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import anyio
from anyio.abc import Listener, TaskGroup
from anyio.streams.tls import TLSStream

from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig
from hface.errors import TransportError, TransportErrorKind

from ._streams import ByteStream

_logger = logging.getLogger("hface.networking")

#: Seconds a server waits for a client to finish the TLS handshake.
TLS_HANDSHAKE_TIMEOUT: Final = 30.0


class TLSVerificationError(TransportError):
    """The peer's certificate could not be verified (untrusted, expired or wrong name).

    Its :attr:`~hface.errors.TransportError.kind` is ``TLS_VERIFICATION``;
    :attr:`~hface.errors.TransportError.reason` is the TLS library's verify message.
    """

    def __init__(
        self, message: str, *, address: AddressType | None = None, reason: str | None = None
    ) -> None:
        super().__init__(
            message, kind=TransportErrorKind.TLS_VERIFICATION, address=address, reason=reason
        )


def handshake_error(
    exc: BaseException, *, description: str, address: AddressType | None
) -> TransportError:
    """The error for a client's failed TLS handshake (raise it ``from exc``).

    :param description: names the peer in the message (``host:port``).
    :returns: :exc:`TLSVerificationError` for a certificate that is not
        trusted, else a ``TLS_HANDSHAKE`` :exc:`~hface.errors.TransportError`.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message
        return TLSVerificationError(
            f"cannot verify the TLS certificate of {description}: {reason}",
            address=address,
            reason=reason,
        )
    reason = str(exc) or type(exc).__name__
    return TransportError(
        f"TLS handshake with {description} failed: {reason}",
        kind=TransportErrorKind.TLS_HANDSHAKE,
        address=address,
        reason=reason,
    )


def make_server_ssl_context(
    tls_config: ServerTLSConfig, alpn_protocols: Sequence[str]
) -> ssl.SSLContext:
    """Build the SSL context of a TLS server.

    :param tls_config: the server's certificate and, for mutual TLS, the CA
        that client certificates must chain to.
    :param alpn_protocols: the ALPN protocol IDs to offer, in the server's
        order of preference (the server picks the first one the client offers).
    :returns: a new :class:`ssl.SSLContext`.
    :raises ValueError: if the configuration has no certificate, or requires
        client certificates without saying which CA to trust.
    :raises OSError: if a file cannot be read (:exc:`ssl.SSLError` if it is
        not a valid certificate or key).
    """
    if tls_config.certfile is None:
        raise ValueError("ServerTLSConfig.certfile is required for a TLS server")
    if tls_config.require_client_certificate and tls_config.client_cafile is None:
        raise ValueError("ServerTLSConfig.require_client_certificate needs client_cafile")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls_config.certfile, tls_config.keyfile)
    if tls_config.client_cafile is not None:
        context.load_verify_locations(cafile=tls_config.client_cafile)
        context.verify_mode = (
            ssl.CERT_REQUIRED if tls_config.require_client_certificate else ssl.CERT_OPTIONAL
        )
    if alpn_protocols:
        context.set_alpn_protocols(list(alpn_protocols))
    return context


def make_client_ssl_context(
    tls_config: ClientTLSConfig, alpn_protocols: Sequence[str]
) -> ssl.SSLContext:
    """Build the SSL context of a TLS client.

    Verification follows the config: with ``insecure`` neither the
    certificate nor the name is checked; otherwise the server must present
    a certificate for the name it is reached by, chaining to ``cafile``,
    ``capath`` or ``cadata`` if any is set, else to the system's CAs.
    ``certfile`` (and ``keyfile``) identify the client for mutual TLS;
    with ``keylog_filename`` OpenSSL appends the secrets there (NSS key log).

    :param tls_config: how to verify servers and identify the client.
    :param alpn_protocols: the ALPN protocol IDs to offer, preferred first.
    :returns: a new :class:`ssl.SSLContext`.
    :raises OSError: if a file cannot be read (:exc:`ssl.SSLError` if it is
        not a valid certificate or key).
    """
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=tls_config.cafile,
        capath=tls_config.capath,
        cadata=tls_config.cadata,
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls_config.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls_config.certfile is not None:
        context.load_cert_chain(tls_config.certfile, tls_config.keyfile)
    if tls_config.keylog_filename is not None:
        context.keylog_filename = tls_config.keylog_filename
    if alpn_protocols:
        context.set_alpn_protocols(list(alpn_protocols))
    return context


@contextmanager
def _map_ssl_errors() -> Generator[None, None, None]:
    try:
        yield
    except ssl.SSLError as exc:
        raise anyio.BrokenResourceError(f"TLS error: {exc}") from exc


class TLSByteStream(ByteStream):
    """A TLS stream whose errors are all anyio's stream exceptions.

    Wraps :class:`anyio.streams.tls.TLSStream` and exposes its extra
    attributes (:class:`anyio.streams.tls.TLSAttribute`: ``alpn_protocol``,
    ``tls_version``, ``peer_certificate``, ...) and those of the socket under it.
    """

    def __init__(self, tls_stream: TLSStream) -> None:
        self._tls_stream = tls_stream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        with _map_ssl_errors():
            return await self._tls_stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        with _map_ssl_errors():
            await self._tls_stream.send(item)

    async def send_eof(self) -> None:
        # TLS cannot half-close: TLSStream raises NotImplementedError, and so do we.
        await self._tls_stream.send_eof()

    async def aclose(self) -> None:
        with _map_ssl_errors():
            await self._tls_stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._tls_stream.extra_attributes


async def wrap_client_tls(
    stream: ByteStream,
    *,
    ssl_context: ssl.SSLContext,
    server_name: str | None,
    description: str,
    address: AddressType | None = None,
) -> TLSByteStream:
    """Do the client side of a TLS handshake on ``stream``.

    :param description: names the peer in error messages (``host:port``).
    :param address: the peer's address, for the errors' fields.
    :raises TLSVerificationError: if the server's certificate is not trusted.
    :raises TransportError: if the handshake fails for any other reason.
    """
    try:
        tls_stream = await TLSStream.wrap(
            stream,
            server_side=False,
            hostname=server_name,
            ssl_context=ssl_context,
            standard_compatible=False,
        )
    except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:  # ssl's errors too
        await anyio.aclose_forcefully(stream)
        raise handshake_error(exc, description=description, address=address) from exc
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    return TLSByteStream(tls_stream)


class TLSListener(Listener[ByteStream]):
    """Accepts TCP connections and does the server side of a TLS handshake on each.

    A client that fails the handshake (bad certificate, no common protocol,
    garbage, timeout) is logged at debug level on the ``hface.networking``
    logger and disconnected; the listener keeps serving. Only connections
    that completed the handshake reach the handler, as :class:`TLSByteStream`.

    Extra attributes are those of the wrapped listener (``local_address``
    and ``local_port`` of :class:`anyio.abc.SocketAttribute`).

    :param handshake_timeout: seconds a client gets to finish the handshake
        (:data:`TLS_HANDSHAKE_TIMEOUT` by default; ``None`` for no limit).
    """

    def __init__(
        self,
        listener: Listener[ByteStream],
        *,
        ssl_context: ssl.SSLContext,
        handshake_timeout: float | None = TLS_HANDSHAKE_TIMEOUT,
    ) -> None:
        self._listener = listener
        self._ssl_context = ssl_context
        self._handshake_timeout = handshake_timeout

    async def serve(
        self,
        handler: Callable[[ByteStream], Any],
        task_group: TaskGroup | None = None,
    ) -> None:
        async def handshake_then_handle(stream: ByteStream) -> None:
            try:
                with anyio.fail_after(self._handshake_timeout):  # None: no deadline
                    tls_stream = await TLSStream.wrap(
                        stream,
                        server_side=True,
                        ssl_context=self._ssl_context,
                        standard_compatible=False,
                    )
            except Exception as exc:
                # One bad client must not end serve(): log it and drop it.
                _logger.debug("TLS handshake failed: %r", exc)
                await anyio.aclose_forcefully(stream)
                return
            except BaseException:
                await anyio.aclose_forcefully(stream)
                raise
            await handler(TLSByteStream(tls_stream))

        await self._listener.serve(handshake_then_handle, task_group)

    async def aclose(self) -> None:
        await self._listener.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._listener.extra_attributes
