"""The PROXY protocol parser: the specification's examples, malformed headers, limits.

Every valid header is read whole, with the client's bytes after it, and
one byte at a time (``None`` until the last byte, then the same header).
Every malformed one raises :exc:`ProxyProtocolError`, and no input raises
anything else.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hface.networking._proxy_protocol import (
    MAX_V1_LENGTH,
    MAX_V2_LENGTH,
    V2_SIGNATURE,
    ProxyCommand,
    ProxyFamily,
    ProxyHeader,
    ProxyProtocolError,
    ProxyTransport,
    parse_proxy_header,
)

CLIENT_BYTES = b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"


def v2(command: int, family: int, body: bytes, *, version: int = 2) -> bytes:
    """A version 2 header: signature, version and command, family and transport, length, body."""
    return V2_SIGNATURE + struct.pack("!BBH", version << 4 | command, family, len(body)) + body


def ipv4_block(source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    return (
        ipaddress.IPv4Address(source).packed
        + ipaddress.IPv4Address(destination).packed
        + struct.pack("!HH", source_port, destination_port)
    )


def ipv6_block(source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    return (
        ipaddress.IPv6Address(source).packed
        + ipaddress.IPv6Address(destination).packed
        + struct.pack("!HH", source_port, destination_port)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def header(
    version: int,
    family: ProxyFamily,
    transport: ProxyTransport,
    source: tuple[str, int] | None,
    destination: tuple[str, int] | None,
    command: ProxyCommand = ProxyCommand.PROXY,
) -> ProxyHeader:
    """The header expected; its length is set by the tests (the whole wire bytes)."""
    return ProxyHeader(
        version=version,
        command=command,
        family=family,
        transport=transport,
        source=source,
        destination=destination,
        length=0,
    )


V4, V6, UNIX, UNSPEC = ProxyFamily.INET, ProxyFamily.INET6, ProxyFamily.UNIX, ProxyFamily.UNSPEC
TCP, UDP, NONE = ProxyTransport.STREAM, ProxyTransport.DGRAM, ProxyTransport.UNSPEC
MAX_IPV6 = ":".join(["ffff"] * 8)
UNIX_BLOCK = b"/run/client.sock".ljust(108, b"\0") + b"/run/server.sock".ljust(108, b"\0")

#: (wire bytes, the header they hold): §2.1's examples and §2.2's protocol bytes.
VALID = {
    "v1 example": (
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        header(1, V4, TCP, ("192.168.0.1", 56324), ("192.168.0.11", 443)),
    ),
    "v1 longest TCP4": (
        b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
        header(1, V4, TCP, ("255.255.255.255", 65535), ("255.255.255.255", 65535)),
    ),
    "v1 longest TCP6": (
        f"PROXY TCP6 {MAX_IPV6} {MAX_IPV6} 65535 65535\r\n".encode(),
        header(1, V6, TCP, (MAX_IPV6, 65535), (MAX_IPV6, 65535)),
    ),
    "v1 compressed TCP6": (
        b"PROXY TCP6 2001:DB8::1 ::1 0 8443\r\n",
        header(1, V6, TCP, ("2001:db8::1", 0), ("::1", 8443)),
    ),
    "v1 UNKNOWN short": (b"PROXY UNKNOWN\r\n", header(1, UNSPEC, NONE, None, None)),
    "v1 UNKNOWN worst case": (
        f"PROXY UNKNOWN {MAX_IPV6} {MAX_IPV6} 65535 65535\r\n".encode(),
        header(1, UNSPEC, NONE, None, None),
    ),
    "v2 TCP over IPv4": (
        v2(1, 0x11, ipv4_block("192.0.2.7", "198.51.100.1", 40000, 443)),
        header(2, V4, TCP, ("192.0.2.7", 40000), ("198.51.100.1", 443)),
    ),
    "v2 UDP over IPv4": (
        v2(1, 0x12, ipv4_block("192.0.2.7", "198.51.100.1", 5353, 53)),
        header(2, V4, UDP, ("192.0.2.7", 5353), ("198.51.100.1", 53)),
    ),
    "v2 TCP over IPv6": (
        v2(1, 0x21, ipv6_block("2001:db8::7", "2001:db8::1", 50000, 443)),
        header(2, V6, TCP, ("2001:db8::7", 50000), ("2001:db8::1", 443)),
    ),
    "v2 UDP over IPv6": (
        v2(1, 0x22, ipv6_block("2001:db8::7", "2001:db8::1", 50000, 443)),
        header(2, V6, UDP, ("2001:db8::7", 50000), ("2001:db8::1", 443)),
    ),
    "v2 with TLVs": (
        v2(
            1,
            0x11,
            ipv4_block("10.1.2.3", "10.0.0.1", 1234, 80)
            + tlv(0x01, b"h2")
            + tlv(0x02, b"example.test")
            + tlv(0x04, b"")
            + tlv(0xEA, b"\x01vpce-0123456789abcdef"),
        ),
        header(2, V4, TCP, ("10.1.2.3", 1234), ("10.0.0.1", 80)),
    ),
    "v2 UNIX stream": (v2(1, 0x31, UNIX_BLOCK), header(2, UNIX, TCP, None, None)),
    "v2 UNIX datagram": (v2(1, 0x32, UNIX_BLOCK), header(2, UNIX, UDP, None, None)),
    "v2 AF_UNSPEC": (v2(1, 0x00, b""), header(2, UNSPEC, NONE, None, None)),
    "v2 AF_UNSPEC with addresses ignored": (
        v2(1, 0x00, b"anything at all"),
        header(2, UNSPEC, NONE, None, None),
    ),
    "v2 IPv4 with an unspecified transport": (
        v2(1, 0x10, ipv4_block("192.0.2.7", "198.51.100.1", 1, 2)),
        header(2, V4, NONE, None, None),
    ),
    "v2 LOCAL": (
        v2(0, 0x00, b""),
        header(2, UNSPEC, NONE, None, None, ProxyCommand.LOCAL),
    ),
    # §2.2: for LOCAL "the receiver must ... discard the protocol block including the family".
    "v2 LOCAL with addresses": (
        v2(0, 0x11, ipv4_block("127.0.0.1", "127.0.0.1", 1, 2)),
        header(2, V4, TCP, None, None, ProxyCommand.LOCAL),
    ),
}

#: Bytes that can never begin a valid header, with what the error says.
MALFORMED = {
    "no header": (CLIENT_BYTES, "does not start with a PROXY"),
    "TLS first": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "does not start"),
    "lower case": (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "does not start"),
    "v1 unknown protocol": (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"),
    "v1 LF only": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CR or LF"),
    "v1 CR only": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rGET", "CR or LF"),
    "v1 LF inside": (b"PROXY TCP4 1.2.3.4\n 5.6.7.8 1 2\r\n", "CR or LF"),
    "v1 two spaces": (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "6 fields"),
    "v1 missing port": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "6 fields"),
    "v1 extra field": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "6 fields"),
    "v1 leading zero address": (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "invalid address"),
    "v1 leading zero port": (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "invalid port"),
    "v1 port too big": (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "invalid port"),
    "v1 signed port": (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "invalid port"),
    "v1 address out of range": (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "invalid address"),
    "v1 IPv6 in TCP4": (b"PROXY TCP4 ::1 ::1 1 2\r\n", "another family"),
    "v1 IPv4 in TCP6": (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "another family"),
    "v1 scoped IPv6": (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "invalid address"),
    "v1 host name": (b"PROXY TCP4 localhost 5.6.7.8 1 2\r\n", "invalid address"),
    "v1 non-ASCII": ("PROXY TCP4 1.2.3.4 5.6.7.٨ 1 2\r\n".encode(), "invalid address"),
    "v1 too long": (b"PROXY UNKNOWN " + b"x" * 100, "without CRLF in 107 bytes"),
    "v1 CRLF just past the limit": (b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n", "CR or LF"),
    "v2 version 1": (v2(1, 0x11, ipv4_block("1.2.3.4", "5.6.7.8", 1, 2), version=1), "version"),
    "v2 version 3": (v2(1, 0x11, b"", version=3), "version"),
    "v2 command 2": (v2(2, 0x11, ipv4_block("1.2.3.4", "5.6.7.8", 1, 2)), "command"),
    "v2 family 4": (v2(1, 0x41, b"\0" * 12), "family byte"),
    "v2 transport 3": (v2(1, 0x13, b"\0" * 12), "family byte"),
    "v2 IPv4 block short": (v2(1, 0x11, b"\0" * 11), "too short"),
    "v2 IPv6 block short": (v2(1, 0x21, b"\0" * 35), "too short"),
    "v2 UNIX block short": (v2(1, 0x31, b"\0" * 215), "too short"),
    "v2 truncated TLV": (
        v2(1, 0x11, ipv4_block("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01\x00"),
        "truncated TLV",
    ),
    "v2 TLV overruns": (
        v2(1, 0x11, ipv4_block("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01\x00\x05abc"),
        "TLV longer",
    ),
    "v2 longer than the limit": (
        V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x11, MAX_V2_LENGTH + 1),
        f"at most {MAX_V2_LENGTH}",
    ),
}


@pytest.mark.parametrize(("wire", "expected"), VALID.values(), ids=VALID.keys())
def test_valid_header_is_read_and_the_client_bytes_follow(
    wire: bytes, expected: ProxyHeader
) -> None:
    parsed = parse_proxy_header(wire + CLIENT_BYTES)
    assert parsed == replace(expected, length=len(wire))
    assert (wire + CLIENT_BYTES)[parsed.length :] == CLIENT_BYTES


@pytest.mark.parametrize(("wire", "expected"), VALID.values(), ids=VALID.keys())
def test_valid_header_one_byte_at_a_time(wire: bytes, expected: ProxyHeader) -> None:
    for end in range(len(wire)):
        assert parse_proxy_header(wire[:end]) is None, wire[:end]
    assert parse_proxy_header(bytearray(wire)) == replace(expected, length=len(wire))
    assert parse_proxy_header(memoryview(wire)) == replace(expected, length=len(wire))


@pytest.mark.parametrize(("wire", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_header_is_refused(wire: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse_proxy_header(wire)


@pytest.mark.parametrize(
    "wire",
    [
        b"GET",
        b"PROXY TCP5",
        b"PROXY X",
        V2_SIGNATURE + b"\x31",
        V2_SIGNATURE + b"\x21\x51",
    ],
)
def test_malformed_start_is_refused_before_the_rest_arrives(wire: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(wire)


def test_v2_length_limit_is_a_parameter() -> None:
    wire = v2(1, 0x11, ipv4_block("1.2.3.4", "5.6.7.8", 1, 2) + tlv(0xE0, b"x" * 100))
    assert parse_proxy_header(wire, max_v2_length=115) is not None
    with pytest.raises(ProxyProtocolError, match="at most 114"):
        parse_proxy_header(wire, max_v2_length=114)


def test_v1_line_of_107_bytes_is_the_longest() -> None:
    longest = b"PROXY UNKNOWN " + b"x" * (MAX_V1_LENGTH - 16)
    assert parse_proxy_header(longest) is None
    assert parse_proxy_header(longest + b"\r") is None
    parsed = parse_proxy_header(longest + b"\r\n")
    assert parsed is not None
    assert parsed.length == MAX_V1_LENGTH
    # One byte more and the CRLF cannot come in time: refused at once.
    assert parse_proxy_header(longest + b"x") is None
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(longest + b"x\r")


@given(st.binary(max_size=300))
def test_any_bytes_give_a_header_none_or_proxy_protocol_error(data: bytes) -> None:
    try:
        parsed = parse_proxy_header(data)
    except ProxyProtocolError:
        return
    assert parsed is None or 0 < parsed.length <= len(data)


@given(st.binary(max_size=120))
def test_any_bytes_after_the_v2_signature_never_crash(data: bytes) -> None:
    try:
        parsed = parse_proxy_header(V2_SIGNATURE + data)
    except ProxyProtocolError:
        return
    assert parsed is None or parsed.length <= len(V2_SIGNATURE) + len(data)
