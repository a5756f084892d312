"""The PROXY protocol, versions 1 and 2: a parser without I/O, and a reader for sockets.

Theory of operation
===================

A load balancer in TCP mode (HAProxy with ``send-proxy`` or
``send-proxy-v2``, an AWS Network Load Balancer, nginx's
``proxy_protocol``) connects to the server on the client's behalf, so the
server's peer address is the balancer's. The PROXY protocol (HAProxy's
``doc/proxy-protocol.txt``) lets the balancer say who the client is: it
sends one header before any byte of the client's own (before the TLS
ClientHello on a TLS endpoint), and the server reads it off the stream
before anything else.

:func:`parse_proxy_header` takes the bytes received so far and returns
either a :class:`ProxyHeader` (whose :attr:`~ProxyHeader.length` says
where the client's own bytes start), or ``None`` when the header is not
complete yet, or raises :exc:`ProxyProtocolError` as soon as the bytes
cannot be the start of a valid header. The caller keeps the buffer and
calls again with more; it applies a time limit of its own (the
specification suggests at least 3 seconds, to cover a TCP retransmit).
An endpoint that expects the header must refuse a connection without one
(§1 of the specification: guessing would let any client spoof its
address), so there is no "no header" outcome.

Version 1 (§2.1) is one line of ASCII text ending in CRLF, at most 107
bytes: ``PROXY TCP4|TCP6 <source> <destination> <source port>
<destination port>\\r\\n``, or ``PROXY UNKNOWN ...\\r\\n``, whose rest
the receiver ignores. Fields are separated by exactly one space, numbers
have no leading zeroes, and a lone CR or LF is an error.

Version 2 (§2.2) is binary: a 12-byte signature, a version-and-command
byte (version 2; LOCAL or PROXY), a family-and-transport byte, a 16-bit
length, then that many bytes: the addresses (4 or 16 bytes each, then
16-bit ports, for IPv4 and IPv6; 108 bytes each for Unix sockets) followed
by type-length-value records (TLVs), which are checked for shape and
skipped. The length is bounded by ``max_v2_length``, so a peer cannot
make the server buffer more than that.

Where the header gives no usable address (a LOCAL command: the balancer's
own health check; the UNKNOWN protocol of v1; the AF_UNSPEC family or
transport of v2; Unix socket addresses) :attr:`ProxyHeader.source` and
:attr:`~ProxyHeader.destination` are ``None``: the connection's own
addresses stand, as the specification says.

Reading it off a socket, and not one byte more
----------------------------------------------

The client's own bytes (a TLS ClientHello, an HTTP/1.1 request, the
HTTP/2 preface) may follow the header in the same segment, and must be
left to the TLS or HTTP layer that comes next. Rather than read too much
and replay the rest through a wrapper stream (which asyncio's own TLS,
set up on the accepted socket by ``loop.connect_accepted_socket``, could
not take), :class:`ProxyHeaderReader` works on the accepted socket itself,
before anything wraps it:

1. it *peeks* at what has arrived (``MSG_PEEK``: the bytes stay queued);
2. it parses the bytes it holds plus the peeked ones;
3. it *consumes* (``recv``) only bytes of the header: all the peeked ones
   while the header is incomplete (they can only be header), else exactly
   up to the header's end.

So when the header is complete, the socket's queue starts with the
client's first byte, and the socket can be handed to anything. The reader
never blocks (the socket is non-blocking): ``None`` means "wait until the
socket is readable and call again", which the caller does with its event
loop, under a time limit of its own::

    reader = ProxyHeaderReader()
    with anyio.fail_after(timeout):
        while (header := reader.read_from(client_socket)) is None:
            await anyio.wait_readable(client_socket)

Each call consumes what it peeked or returns ``None`` with nothing
waiting, so a slow sender cannot make the loop spin.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from enum import Enum
from typing import Final

from hface.common import AddressType
from hface.errors import HTTPError

#: §2.2: the first 12 bytes of every version 2 header.
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"

#: §2.1: the longest version 1 line, CRLF included.
MAX_V1_LENGTH: Final = 107

#: The default bound on the length field of a version 2 header (addresses and TLVs).
MAX_V2_LENGTH: Final = 4096

_V1_PREFIX: Final = b"PROXY "
_V1_PROTOCOLS: Final = (b"TCP4 ", b"TCP6 ", b"UNKNOWN")
_V2_FIXED_LENGTH: Final = 16


class ProxyProtocolError(HTTPError):
    """The bytes are not a valid PROXY protocol header; the connection must be closed."""


class ProxyCommand(Enum):
    """Whether the header speaks for a client (PROXY) or for the balancer itself (LOCAL)."""

    PROXY = "proxy"
    """Relayed on behalf of the client whose addresses the header carries."""

    LOCAL = "local"
    """Made by the balancer itself (a health check): the connection's own addresses stand."""


class ProxyFamily(Enum):
    """The address family of the relayed connection."""

    UNSPEC = "unspec"
    """Unknown or unsupported (v1 ``UNKNOWN``, v2 ``AF_UNSPEC``): no addresses."""

    INET = "inet"
    """IPv4."""

    INET6 = "inet6"
    """IPv6."""

    UNIX = "unix"
    """A Unix socket (v2 only); its paths are not reported."""


class ProxyTransport(Enum):
    """The transport of the relayed connection."""

    UNSPEC = "unspec"
    """Unknown or unsupported."""

    STREAM = "stream"
    """TCP (or a Unix stream socket)."""

    DGRAM = "dgram"
    """UDP (or a Unix datagram socket); v2 only."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyHeader:
    """A complete PROXY protocol header, as read by :func:`parse_proxy_header`."""

    version: int
    """1 (text) or 2 (binary)."""

    command: ProxyCommand
    """PROXY, or LOCAL for a connection the balancer made for itself (always PROXY in v1)."""

    family: ProxyFamily
    """The address family of the client's connection to the balancer."""

    transport: ProxyTransport
    """The transport of the client's connection to the balancer."""

    source: AddressType | None
    """The client's address and port; None where the connection's own peer address stands."""

    destination: AddressType | None
    """The address and port the client connected to; None likewise."""

    length: int
    """How many bytes the header took: the client's own bytes start there."""


def parse_proxy_header(
    data: bytes | bytearray | memoryview, *, max_v2_length: int = MAX_V2_LENGTH
) -> ProxyHeader | None:
    """Read the PROXY protocol header at the start of ``data``.

    :param data: every byte received on the connection so far.
    :param max_v2_length: the largest length field accepted in a version 2 header.
    :returns: the header, or None if ``data`` is a valid beginning that needs more bytes.
    :raises ProxyProtocolError: if ``data`` does not start with a valid header.
    """
    data = bytes(data)
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data, max_v2_length)
    if V2_SIGNATURE.startswith(data):
        return None
    if data.startswith(_V1_PREFIX):
        return _parse_v1(data)
    if _V1_PREFIX.startswith(data):
        return None
    raise ProxyProtocolError("the connection does not start with a PROXY protocol header")


class ProxyHeaderReader:
    """Reads one PROXY header off a non-blocking socket, and no byte after it (see the module).

    :param max_v2_length: the largest length field accepted in a version 2 header.
    """

    def __init__(self, *, max_v2_length: int = MAX_V2_LENGTH) -> None:
        self._max_v2_length = max_v2_length
        self._limit = max(MAX_V1_LENGTH, _V2_FIXED_LENGTH + max_v2_length)
        self._received = b""
        self._header: ProxyHeader | None = None

    def read_from(self, sock: socket.socket) -> ProxyHeader | None:
        """Take what has arrived of the header off ``sock``; the header once it is complete.

        Once it has returned the header, it returns it again and reads nothing.

        :returns: the header, or None if more must arrive first (wait until
            ``sock`` is readable, then call again).
        :raises ProxyProtocolError: if the bytes are not a valid header, or
            the peer closed the connection before the header's end.
        :raises OSError: if the socket fails.
        """
        if self._header is not None:
            return self._header
        try:
            peeked = sock.recv(self._limit - len(self._received), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return None
        if not peeked:
            raise ProxyProtocolError("the connection ended before its PROXY protocol header did")
        header = parse_proxy_header(self._received + peeked, max_v2_length=self._max_v2_length)
        wanted = len(peeked) if header is None else header.length - len(self._received)
        while wanted > 0:
            # The peeked bytes are queued: recv() returns at once, at most
            # what was asked (less only if a signal interrupts it).
            chunk = sock.recv(wanted)
            if not chunk:  # cannot be, after a peek; but never loop on it
                raise ProxyProtocolError("the connection ended in its PROXY protocol header")
            self._received += chunk
            wanted -= len(chunk)
        self._header = header
        return header


def _parse_v1(data: bytes) -> ProxyHeader | None:
    start = data[len(_V1_PREFIX) : len(_V1_PREFIX) + 7]
    if not any(known.startswith(start) or start.startswith(known) for known in _V1_PROTOCOLS):
        raise ProxyProtocolError(f"PROXY v1 line with an unknown protocol {start!r}")
    end = data.find(b"\r\n", 0, MAX_V1_LENGTH)
    if end < 0:
        # §2.1: a lone CR or LF never ends the line; nor may the line run on.
        if b"\n" in data[:MAX_V1_LENGTH] or b"\r" in data[: min(len(data) - 1, MAX_V1_LENGTH)]:
            raise ProxyProtocolError("PROXY v1 line with a CR or LF outside its CRLF")
        if len(data) >= MAX_V1_LENGTH:
            raise ProxyProtocolError(f"PROXY v1 line without CRLF in {MAX_V1_LENGTH} bytes")
        return None
    line = data[:end]
    if b"\r" in line or b"\n" in line:
        raise ProxyProtocolError("PROXY v1 line with a CR or LF outside its CRLF")
    fields = line.split(b" ")
    protocol = fields[1]
    if protocol == b"UNKNOWN":
        # §2.1: "the receiver must ignore anything presented before the CRLF".
        return ProxyHeader(
            version=1,
            command=ProxyCommand.PROXY,
            family=ProxyFamily.UNSPEC,
            transport=ProxyTransport.UNSPEC,
            source=None,
            destination=None,
            length=end + 2,
        )
    if protocol == b"TCP4":
        family, version = ProxyFamily.INET, 4
    elif protocol == b"TCP6":
        family, version = ProxyFamily.INET6, 6
    else:
        raise ProxyProtocolError(f"PROXY v1 line with an unknown protocol {protocol!r}")
    if len(fields) != 6:
        raise ProxyProtocolError("PROXY v1 line without exactly 6 fields separated by 1 space")
    source_host = _v1_address(fields[2], version)
    destination_host = _v1_address(fields[3], version)
    return ProxyHeader(
        version=1,
        command=ProxyCommand.PROXY,
        family=family,
        transport=ProxyTransport.STREAM,
        source=(source_host, _v1_port(fields[4])),
        destination=(destination_host, _v1_port(fields[5])),
        length=end + 2,
    )


def _v1_address(field: bytes, version: int) -> str:
    """An address of the family the line announced, in its canonical text (§2.1)."""
    try:
        # ipaddress refuses IPv4 numbers with leading zeroes, as §2.1 does; and
        # an IPv6 scope ("%eth0") means nothing to the receiver.
        if b"%" in field:
            raise ValueError(field)
        address = ipaddress.ip_address(field.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyProtocolError(f"PROXY v1 line with an invalid address {field!r}") from None
    if address.version != version:
        raise ProxyProtocolError(f"PROXY v1 line with an address of another family {field!r}")
    return str(address)


def _v1_port(field: bytes) -> int:
    # §2.1: decimal, 0..65535, no leading zeroes.
    if not field.isdigit() or len(field) > 5 or (len(field) > 1 and field.startswith(b"0")):
        raise ProxyProtocolError(f"PROXY v1 line with an invalid port {field!r}")
    port = int(field)
    if port > 65535:
        raise ProxyProtocolError(f"PROXY v1 line with an invalid port {field!r}")
    return port


_V2_COMMANDS: Final = {0x0: ProxyCommand.LOCAL, 0x1: ProxyCommand.PROXY}
_V2_FAMILIES: Final = {
    0x0: ProxyFamily.UNSPEC,
    0x1: ProxyFamily.INET,
    0x2: ProxyFamily.INET6,
    0x3: ProxyFamily.UNIX,
}
_V2_TRANSPORTS: Final = {
    0x0: ProxyTransport.UNSPEC,
    0x1: ProxyTransport.STREAM,
    0x2: ProxyTransport.DGRAM,
}
#: §2.2: the size of the address block of each family (both addresses, then the ports).
_V2_ADDRESS_BLOCK: Final = {ProxyFamily.INET: 12, ProxyFamily.INET6: 36, ProxyFamily.UNIX: 216}


def _parse_v2(data: bytes, max_v2_length: int) -> ProxyHeader | None:
    # Each fixed byte is checked as soon as it is there (§2.2: "Receivers
    # must drop connections presenting unexpected values here").
    if len(data) > 12:
        version_command = data[12]
        if version_command >> 4 != 2:
            raise ProxyProtocolError(f"PROXY v2 header of version {version_command >> 4}")
        if version_command & 0x0F not in _V2_COMMANDS:
            raise ProxyProtocolError(f"PROXY v2 header with command {version_command & 0x0F:#x}")
    if len(data) > 13:
        family_transport = data[13]
        if family_transport >> 4 not in _V2_FAMILIES or family_transport & 0x0F not in (
            _V2_TRANSPORTS
        ):
            raise ProxyProtocolError(f"PROXY v2 header with family byte {family_transport:#04x}")
    if len(data) < _V2_FIXED_LENGTH:
        return None
    version_command, family_transport, length = struct.unpack_from("!BBH", data, 12)
    command = _V2_COMMANDS[version_command & 0x0F]
    family = _V2_FAMILIES[family_transport >> 4]
    transport = _V2_TRANSPORTS[family_transport & 0x0F]
    if length > max_v2_length:
        raise ProxyProtocolError(f"PROXY v2 header of {length} bytes (at most {max_v2_length})")
    if len(data) < _V2_FIXED_LENGTH + length:
        return None
    body = data[_V2_FIXED_LENGTH : _V2_FIXED_LENGTH + length]
    header = ProxyHeader(
        version=2,
        command=command,
        family=family,
        transport=transport,
        source=None,
        destination=None,
        length=_V2_FIXED_LENGTH + length,
    )
    if command is ProxyCommand.LOCAL:
        # §2.2: the receiver "must use the real connection endpoints and
        # discard the protocol block including the family".
        return header
    if family is ProxyFamily.UNSPEC or transport is ProxyTransport.UNSPEC:
        # §2.2: "The receiver should ignore address information", whatever follows.
        return header
    address_length = _V2_ADDRESS_BLOCK[family]
    if len(body) < address_length:
        raise ProxyProtocolError(f"PROXY v2 header too short for its {family.value} addresses")
    _check_tlvs(body[address_length:])
    if family is ProxyFamily.UNIX:
        return header
    size = 4 if family is ProxyFamily.INET else 16
    source_port, destination_port = struct.unpack_from("!HH", body, 2 * size)
    source = (str(ipaddress.ip_address(body[:size])), source_port)
    destination = (str(ipaddress.ip_address(body[size : 2 * size])), destination_port)
    return ProxyHeader(
        version=2,
        command=command,
        family=family,
        transport=transport,
        source=source,
        destination=destination,
        length=header.length,
    )


def _check_tlvs(tlvs: bytes) -> None:
    """Make sure the bytes after the addresses are whole TLVs (§2.2), which are skipped."""
    offset = 0
    while offset < len(tlvs):
        if offset + 3 > len(tlvs):
            raise ProxyProtocolError("PROXY v2 header with a truncated TLV")
        (value_length,) = struct.unpack_from("!H", tlvs, offset + 1)
        offset += 3 + value_length
        if offset > len(tlvs):
            raise ProxyProtocolError("PROXY v2 header with a TLV longer than the header")
