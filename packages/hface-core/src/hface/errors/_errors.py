from __future__ import annotations

import enum

from hface.common import AddressType


class TerminationReason(enum.Enum):
    """Why a connection ended, whatever the HTTP version.

    Set by the protocol (or the connection) that ended it, in
    ``ConnectionTerminated.reason``, and carried up in
    :attr:`TransportError.termination`: layers above classify the end by
    it, never by the event's or the exception's message.
    """

    #: The peer closed the connection: an orderly close, the end of its
    #: byte stream (also in the middle of a message), or a close with an
    #: error code of its own (the event's ``error_code``).
    CLOSED_BY_PEER = "closed by the peer"
    #: We closed it, as asked (``submit_close``, a reset of an HTTP/1.1
    #: exchange, a pooled connection given up).
    CLOSED_BY_US = "closed by us"
    #: The peer broke the protocol, and we closed the connection with the
    #: version's error code (HTTP/1.1: the status of our error answer). On
    #: QUIC also a transport error that either side reported
    #: (``transport_error_code``).
    PEER_PROTOCOL_ERROR = "the peer broke the protocol"
    #: Something failed on our side (an internal error).
    LOCAL_ERROR = "an error on our side"
    #: The network stream failed or went away under the protocol.
    TRANSPORT_LOST = "the transport was lost"
    #: A time limit passed: QUIC's idle timeout, a handshake that did not complete.
    TIMEOUT = "timed out"
    #: The TLS handshake failed (on QUIC a CRYPTO_ERROR, by either side:
    #: ``transport_error_code`` is 0x100 plus the TLS alert, RFC 9001 §4.8).
    TLS_FAILURE = "the TLS handshake failed"


class TransportErrorKind(enum.Enum):
    """What failed, for a :exc:`TransportError`."""

    #: No connection could be made: refused, unreachable, a name that does not resolve.
    CONNECT = "connect"
    #: An address could not be bound to listen on.
    LISTEN = "listen"
    #: The TLS handshake failed (on HTTP/3 the QUIC handshake), other than by verification.
    TLS_HANDSHAKE = "TLS handshake"
    #: The peer's TLS certificate is not trusted (unknown CA, expired, wrong name).
    TLS_VERIFICATION = "TLS verification"
    #: The connection has ended (:attr:`TransportError.termination` says why, when known).
    CLOSED = "closed"
    #: A read or a write failed on a connection that was open.
    BROKEN = "broken"


class HTTPError(Exception):
    """The base of every exception hface raises on purpose."""


class ProtocolError(HTTPError):
    """An HTTP protocol was violated, by one side or the other."""


class LocalProtocolError(ProtocolError):
    """The caller asked for something the protocol does not allow.

    Examples: data on a stream that is closed for sending, headers twice
    where only trailers may follow, an unknown stream ID. Raised at once by
    the method that was misused; the connection stays usable.
    """


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol.

    :param message: what happened, for people.
    :param error_code: the version's error code (``HTTPErrorCodes``); for
        HTTP/1.1 the status code a server would answer with.
    """

    def __init__(self, message: str, *, error_code: int) -> None:
        super().__init__(message)
        #: The version's error code for the violation.
        self.error_code = error_code


class StreamError(HTTPError):
    """A stream was reset, by the peer or by us.

    :param stream_id: the stream that failed.
    :param error_code: the version's error code from the reset.
    """

    def __init__(self, stream_id: int, error_code: int, message: str | None = None) -> None:
        super().__init__(message or f"stream {stream_id} reset with error code {error_code:#x}")
        #: The stream that failed.
        self.stream_id = stream_id
        #: The version's error code from the reset.
        self.error_code = error_code


class TransportError(HTTPError):
    """The network connection failed, was closed, or ended unexpectedly.

    The message says what happened for people; the fields say it for code,
    so that a layer above builds its own message from them and never reads
    this one. The exception that caused it, if any, is the ``__cause__``.

    :param message: what happened, for people.
    :param kind: what failed.
    :param address: the peer's ``(host, port)`` (for :attr:`~TransportErrorKind.LISTEN`
        the local one), if known.
    :param reason: why, in the words of what failed underneath (the
        operating system, the TLS library), without the address; None if
        nothing underneath said.
    :param termination: why the connection ended, if it ended.
    :param transport_error_code: the QUIC transport error code it closed with, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: TransportErrorKind = TransportErrorKind.BROKEN,
        address: AddressType | None = None,
        reason: str | None = None,
        termination: TerminationReason | None = None,
        transport_error_code: int | None = None,
    ) -> None:
        super().__init__(message)
        #: What failed.
        self.kind = kind
        #: The peer's ``(host, port)`` (the local one for a listener), if known.
        self.address = address
        #: Why, in the words of what failed underneath, if anything said.
        self.reason = reason
        #: Why the connection ended, if it ended and the layer knew.
        self.termination = termination
        #: The QUIC transport error code of the close (RFC 9000 §20.1), if any.
        self.transport_error_code = transport_error_code
