"""What a CONNECT request asks for, and whether the proxy grants it (:class:`TunnelPolicy`).

Pure functions and small coroutines, no HTTP: parse the authority-form
target (RFC 9110 §9.3.6, RFC 3986 §3.2), check Basic proxy credentials
(RFC 9110 §11.7.1, RFC 7617), resolve the target once and judge the
resolved addresses against the target policy, then connect to exactly
those addresses, so that DNS cannot answer differently between the check
and the connection (DNS rebinding).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import anyio

from hface.common import AddressType, HeadersType
from hface.errors import TransportError
from hface.networking import ByteStream, ClientNetworking

#: Bytes read from a TCP target at once.
_READ_SIZE: Final = 262144

#: A DNS name (letters, digits, ``-`` and ``_`` in dot-separated labels).
_NAME: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?:\.(?!-)[A-Za-z0-9_-]{1,63})*\.?")

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


#: The ``proxy-status`` error (RFC 9209 §2.3) of a refusal, by status, when
#: the refusal names none itself.
_PROXY_ERRORS: Final = {
    400: "http_request_error",
    403: "destination_ip_prohibited",
    405: "http_request_error",
    407: "http_request_denied",
    501: "http_request_error",
    502: "destination_unavailable",
}


@dataclass(frozen=True, kw_only=True)
class TunnelPolicy:
    """What one connection's streams may do (taken from :class:`ProxyServer`)."""

    #: Basic credentials the client must present, if any.
    credentials: tuple[str, str] | None
    #: Whether loopback, private and other non-public targets are allowed.
    allow_private: bool
    #: Seconds to resolve and connect to a target.
    connect_timeout: float
    #: Seconds a tunnel may pass no byte either way before it is closed.
    idle_timeout: float | None
    #: How targets are reached.
    networking: ClientNetworking
    #: Bytes read from the target at once (:attr:`ProxyServer.max_buffered_data
    #: <hface.server.ProxyServer.max_buffered_data>`).
    read_size: int = _READ_SIZE
    #: Whether CONNECT-UDP (RFC 9298) is served (:attr:`ProxyServer.connect_udp
    #: <hface.server.ProxyServer.connect_udp>`).
    connect_udp: bool = True


class TargetRefused(Exception):
    """The proxy refuses a target, or cannot reach it; carries the status to answer."""

    def __init__(self, status: int, message: str, *, proxy_error: str | None = None) -> None:
        super().__init__(message)
        #: The HTTP status of the response.
        self.status = status
        #: A short text for the response body.
        self.message = message
        #: The error type of the ``proxy-status`` field (RFC 9209 §2.3).
        self.proxy_error = proxy_error or _PROXY_ERRORS.get(status, "proxy_internal_error")


def proxy_status(error: str, details: str) -> bytes:
    """A ``proxy-status`` field value (RFC 9209 §2) naming this proxy, ``error`` and ``details``."""
    text = "".join(c if " " <= c <= "~" else "?" for c in details)
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'hface; error={error}; details="{quoted}"'.encode("ascii")


def header_value(headers: HeadersType, name: bytes) -> bytes | None:
    """The first value of the field ``name`` (lower-case), or None."""
    return next((value for key, value in headers if key == name), None)


def parse_target(authority: bytes | None) -> AddressType:
    """Parse an authority-form target: ``host:port`` or ``[v6]:port``.

    :raises TargetRefused: with 400 if the target is missing or malformed.
    """
    if not authority:
        raise TargetRefused(400, "CONNECT needs a host:port target")
    try:
        text = authority.decode("ascii")
    except UnicodeDecodeError:
        raise TargetRefused(400, "the target must be ASCII") from None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise TargetRefused(400, f"malformed target {text!r}: expected [address]:port")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetRefused(400, f"malformed target {text!r}: bad IPv6 address") from None
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise TargetRefused(400, f"malformed target {text!r}: a port is required")
        if not host or not _NAME.fullmatch(host) or len(host) > 253:
            raise TargetRefused(400, f"malformed target {text!r}: bad host")
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise TargetRefused(400, f"malformed target {text!r}: bad port")
    port = int(port_text)
    if not 0 < port < 65536:
        raise TargetRefused(400, f"malformed target {text!r}: port out of range")
    return host, port


def check_credentials(headers: HeadersType, credentials: tuple[str, str]) -> bool:
    """Whether ``proxy-authorization`` carries these Basic credentials (RFC 7617)."""
    value = header_value(headers, b"proxy-authorization")
    if value is None:
        return False
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return False
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    user, password = credentials
    expected = f"{user}:{password}".encode()
    return hmac.compare_digest(decoded, expected)


def _ip(text: str) -> _IPAddress:
    address = ipaddress.ip_address(text.partition("%")[0])  # drop an IPv6 zone
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


#: IPv6 ranges whose last 32 bits are an IPv4 address the packets reach:
#: IPv4-compatible (RFC 4291 §2.5.5.1, deprecated), IPv4-translated (SIIT,
#: RFC 2765 §2.1) and the NAT64 well-known prefix (RFC 6052 §2.1).
_LAST_32_BITS_IPV4: Final = (
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
    ipaddress.IPv6Network("64:ff9b::/96"),
)
#: The local-use NAT64 prefix (RFC 8215): where the IPv4 address sits is the
#: network's choice, and the range is not globally reachable.
_NAT64_LOCAL_USE: Final = ipaddress.IPv6Network("64:ff9b:1::/48")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to through a translator or tunnel."""
    embedded: list[ipaddress.IPv4Address] = []
    if any(address in network for network in _LAST_32_BITS_IPV4):
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:  # 6to4, 2002::/16 (RFC 3056)
        embedded.append(address.sixtofour)
    if address.teredo is not None:  # Teredo, 2001::/32 (RFC 4380): server and client
        embedded.extend(address.teredo)
    return embedded


def is_public(address: str) -> bool:
    """Whether an IP address may be reached under the non-loopback policy.

    Loopback, private, link-local, unspecified, shared (CGNAT), reserved,
    documentation and multicast ranges are all refused: only globally
    routable unicast addresses pass. An IPv6 address that carries an IPv4
    address (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64, 6to4,
    Teredo) passes only if that IPv4 address does too: a NAT64 or 6to4
    gateway on the proxy's network would take it there.
    """
    ip = _ip(address)
    if not (ip.is_global and not ip.is_multicast):
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL_USE:
            return False
        return all(is_public(str(inner)) for inner in _embedded_ipv4(ip))
    return True


async def _resolve(host: str, port: int) -> list[AddressType]:
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise TargetRefused(
            502, f"cannot resolve {host}: {error}", proxy_error="dns_error"
        ) from None
    addresses: list[AddressType] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = (str(sockaddr[0]), port)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(502, f"cannot resolve {host}", proxy_error="dns_error")
    return addresses


async def resolve_target(target: AddressType, *, allow_private: bool) -> list[AddressType]:
    """Resolve the target once and apply the policy to every address it resolves to.

    :raises TargetRefused: 502 if the name does not resolve; 403 if
        ``allow_private`` is False and any address is not public.
    """
    host, port = target
    addresses = await _resolve(host, port)
    if not allow_private:
        for ip, _port in addresses:
            if not is_public(ip):
                raise TargetRefused(403, f"target {host} is not allowed: {ip} is not public")
    return addresses


async def connect_target(
    networking: ClientNetworking, addresses: Sequence[AddressType], *, description: str
) -> ByteStream:
    """Connect to the first of ``addresses`` that answers.

    :raises TargetRefused: with 502 if none can be reached.
    """
    reason = "no address"
    for address in addresses:
        try:
            return await networking.connect_tcp(address)
        except TransportError as error:
            reason = str(error)
    raise TargetRefused(502, f"cannot reach {description}: {reason}")


async def is_loopback_host(host: str) -> bool:
    """Whether every address ``host`` stands for is a loopback address.

    Names that do not resolve count as non-loopback (the safe answer).
    """
    try:
        return _ip(host).is_loopback
    except ValueError:
        pass
    try:
        infos = await anyio.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(_ip(str(info[4][0])).is_loopback for info in infos)
