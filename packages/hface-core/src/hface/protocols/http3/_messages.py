"""What aioquic 1.7 lets through of HTTP/3 messages, checked by hface (internal).

Theory of operation: :class:`~._aioquic.AioquicH3Connection` calls these on
the header sections aioquic decodes. RFC 9114 §4.1.2 makes a malformed
message a stream error: :class:`MessageErrorReport` is how one reaches the
protocol, which resets the stream. :func:`field_section_size` counts a
header section as SETTINGS_MAX_FIELD_SECTION_SIZE does (RFC 9114 §4.2.2).
:class:`CloseReason` reports a connection's close.
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


#: The aioquic releases (major, minor) whose internals :mod:`._aioquic` was verified on.
VERIFIED_AIOQUIC: Final = ((1, 7),)


def check_aioquic_version(version: str) -> None:
    """Raise ``ImportError`` unless ``version`` is a release in :data:`VERIFIED_AIOQUIC`."""
    parts = version.split(".")
    try:
        release = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        release = None
    if release not in VERIFIED_AIOQUIC:
        supported = ", ".join(f"{major}.{minor}.x" for major, minor in VERIFIED_AIOQUIC)
        raise ImportError(
            f"hface.protocols.http3 supports aioquic {supported}, not {version}: it relies on"
            " aioquic internals (flow control, datagram sizes, HTTP/3 settings) that change"
            " between releases; install a supported aioquic (pip install 'aioquic>=1.7,<1.8')"
        )
