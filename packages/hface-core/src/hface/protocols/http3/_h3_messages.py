"""The HTTP/3 message rules and reports that need no aioquic internals (internal).

Split from :mod:`._aioquic`, which uses them: the size of a field section
(RFC 9114 §4.2.2), the pseudo-headers a request must have (§4.3.1, RFC 9220
§3), and the tuples that report a close and a malformed message.
"""

from __future__ import annotations

from typing import NamedTuple

from aioquic.h3.connection import MessageError


class CloseReason(NamedTuple):
    """Why a QUIC connection closes: its error code and reason, sent or received."""

    error_code: int
    """The QUIC or HTTP/3 error code."""
    reason: str
    """The reason phrase (possibly empty)."""
    transport: bool
    """True for a transport-level close (RFC 9000 §20.1), not an application's."""


class MessageErrorReport(NamedTuple):
    """A malformed message (RFC 9114 §4.1.2): its stream, why (for people), and
    whether the peer has sent all of the stream already (nothing to stop)."""

    stream_id: int
    reason: str
    receiving_ended: bool


def field_section_size(headers: list[tuple[bytes, bytes]]) -> int:
    """The size of a field section as RFC 9114 §4.2.2 counts it (32 bytes per field)."""
    return sum(len(name) + len(value) for name, value in headers) + 32 * len(headers)


def check_request_pseudo_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Raise ``MessageError`` unless a request but CONNECT (and extended CONNECT) has them all."""
    names = {name for name, _ in headers if name.startswith(b":")}
    connect = (b":method", b"CONNECT") in headers
    if b":protocol" in names and not connect:  # RFC 9220 §3, RFC 8441 §4
        raise MessageError("Pseudo-header b':protocol' is for CONNECT only")
    if connect and b":protocol" not in names:
        return
    missing = {b":scheme", b":path"} - names
    if missing and b":method" in names:
        raise MessageError(f"Pseudo-headers {sorted(missing)} are missing")
