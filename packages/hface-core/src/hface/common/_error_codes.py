from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPErrorCodes:
    """The error codes one HTTP version uses for common situations.

    HTTP/2 (RFC 9113 §7) and HTTP/3 (RFC 9114 §8.1) carry error codes in
    stream resets and GOAWAY; HTTP/1.1 has none, so its protocol maps them
    to the status code of the response it can still send (or to closing
    the connection). Code that works on every version picks a code from
    :attr:`HTTPProtocol.error_codes <hface.protocols.HTTPProtocol.error_codes>`.
    """

    #: Graceful: nothing went wrong.
    no_error: int
    #: The peer violated the protocol.
    protocol_error: int
    #: Something went wrong on our side.
    internal_error: int
    #: The stream was refused before any processing; safe to retry.
    refused_stream: int
    #: The stream is no longer needed.
    cancel: int
    #: A malformed message (bad headers or content-length mismatch).
    message_error: int
    #: The tunnel of a CONNECT request was reset or failed.
    connect_error: int
    #: The peer is generating excessive load.
    excessive_load: int
    #: The peer exceeded flow control limits.
    flow_control_error: int


#: HTTP/1.1 has no error codes on the wire: these are the status codes sent when possible.
HTTP1_ERROR_CODES = HTTPErrorCodes(
    no_error=0,
    protocol_error=400,
    internal_error=500,
    refused_stream=503,
    cancel=499,
    message_error=400,
    connect_error=502,
    excessive_load=503,
    flow_control_error=400,
)

#: RFC 9113 §7.
HTTP2_ERROR_CODES = HTTPErrorCodes(
    no_error=0x0,
    protocol_error=0x1,
    internal_error=0x2,
    refused_stream=0x7,
    cancel=0x8,
    message_error=0x1,
    connect_error=0xA,
    excessive_load=0xB,
    flow_control_error=0x3,
)

#: RFC 9114 §8.1.
HTTP3_ERROR_CODES = HTTPErrorCodes(
    no_error=0x100,
    protocol_error=0x101,
    internal_error=0x102,
    refused_stream=0x10B,
    cancel=0x10C,
    message_error=0x10E,
    connect_error=0x10F,
    excessive_load=0x107,
    flow_control_error=0x3,
)
