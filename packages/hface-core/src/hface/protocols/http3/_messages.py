"""What aioquic 1.7 lets through of HTTP/3 messages, checked by hface (internal).

Theory of operation: :class:`~._aioquic.AioquicH3Connection` calls these on
the header sections aioquic decodes. RFC 9114 §4.1.2 makes a malformed
message a stream error: :class:`MessageErrorReport` is how one reaches the
protocol, which resets the stream. :func:`field_section_size` counts a
header section as SETTINGS_MAX_FIELD_SECTION_SIZE does (RFC 9114 §4.2.2).
None of this touches aioquic's private members.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from aioquic.h3.connection import MessageError

#: RFC 9114 §7.2.4.1: the identifier of SETTINGS_MAX_FIELD_SECTION_SIZE.
SETTINGS_MAX_FIELD_SECTION_SIZE: Final = 0x6
#: Responses without content, whatever their content-length (RFC 9110 §15.3.5, §15.4.5).
NO_CONTENT_STATUSES: Final = frozenset({(b":status", b"204"), (b":status", b"304")})


def field_section_size(headers: list[tuple[bytes, bytes]]) -> int:
    """The size of a field section as RFC 9114 §4.2.2 counts it (32 bytes per field)."""
    return sum(len(name) + len(value) for name, value in headers) + 32 * len(headers)


class MessageErrorReport(NamedTuple):
    """A malformed message (RFC 9114 §4.1.2): its stream, why (for people), and
    whether the peer has sent all of the stream already (nothing to stop)."""

    stream_id: int
    reason: str
    receiving_ended: bool


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
