from __future__ import annotations


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
    """The network connection failed, was closed, or ended unexpectedly."""
