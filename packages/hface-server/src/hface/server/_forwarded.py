"""The client behind a reverse proxy: ``Forwarded`` and ``X-Forwarded-*``, from trusted peers only.

Theory of operation
===================

Behind a reverse proxy (nginx, HAProxy in HTTP mode, a cloud load
balancer) the server's peer is the proxy. The proxy says who its client
was in request headers: the standard ``Forwarded`` (RFC 7239), or the
older ``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``X-Forwarded-Host``.
Anyone can send those headers, so they are believed only when the peer is
a proxy the operator trusts (:class:`TrustedProxies`, the
``--forwarded-allow-ips`` of uvicorn and gunicorn: addresses, networks,
or ``*``; nothing by default).

Each proxy on the way *appends* the address it received the request from,
so the list reads client, proxy 1, proxy 2, ... and the right-most entry
was written by the proxy nearest to us. :func:`resolve_forwarded` walks it
from the right, as uvicorn's ``ProxyHeadersMiddleware`` does: while an
entry is itself a trusted proxy, the next one to the left is believed;
the first untrusted entry is the client. If every entry is trusted (or
the set is ``*``), the left-most is. An entry that is not an address
(``unknown``, an obfuscated name, garbage) ends the walk as well, and the
client is then unknown (``None``): the proxy's address would be wrong.

The scheme and host come from the hop the client was found at: in
``Forwarded`` the same element (RFC 7239 §5.4: ``proto`` and ``host`` are
what that proxy received); for ``X-Forwarded-Proto`` and
``X-Forwarded-Host`` the entry at the same position when the lists are as
long as ``X-Forwarded-For``, else the right-most one (proxies that
overwrite rather than append). A scheme other than ``http``/``https``
(``ws``/``wss`` for WebSockets) and a host that is not a valid
``host[:port]`` are ignored.

Only one family of headers is read, chosen by :class:`ForwardedStyle`: a
proxy strips or rewrites the headers it manages and passes the others on
from the client untouched, so believing both would let a client write the
one its proxy does not manage. ``X-Forwarded-*`` is the default, as in
uvicorn, since that is what nginx and HAProxy are usually set to send. A
``Forwarded`` header that does not parse (RFC 7239 §4) is ignored whole.

The result (:class:`ForwardedClient`) is what the application should see;
the function reads nothing but its arguments.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Final, TypeAlias

from hface.common import AddressType, HeadersType

_IPAddress: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"
_IPNetwork: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"

#: RFC 7230 §3.2.6 token characters.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: uri-host [":" port] (RFC 3986 §3.2.2): a reg-name, an IPv4 address or "[" IPv6 "]".
_HOST: Final = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)(:[0-9]{1,5})?")
#: Addresses and trust decisions remembered (a server sees the same few
#: proxies and clients again and again; parsing one costs microseconds).
_CACHE_SIZE: Final = 1024
_SCHEMES: Final = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


class ForwardedStyle(Enum):
    """Which headers a trusted proxy's client information is read from."""

    X_FORWARDED = "x-forwarded"
    """``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``X-Forwarded-Host``."""

    FORWARDED = "forwarded"
    """``Forwarded`` (RFC 7239)."""


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The peers whose forwarding headers are believed.

    Made from the ``--forwarded-allow-ips`` value with :meth:`parse`.
    """

    networks: tuple[_IPNetwork, ...] = ()
    """Trusted addresses, as networks (a single address is a /32 or /128)."""

    everyone: bool = False
    """Trust every peer (``*``)."""

    @classmethod
    def parse(cls, value: str | Iterable[str]) -> TrustedProxies:
        """Read ``"127.0.0.1, 10.0.0.0/8, ::1"`` (or a list of items), or ``"*"``.

        :raises ValueError: if an item is neither ``*``, an IP address nor a network.
        """
        items = value.split(",") if isinstance(value, str) else value
        networks: list[_IPNetwork] = []
        everyone = False
        for item in (item.strip() for item in items):
            if item == "*":
                everyone = True
            elif item:
                try:
                    networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(
                        f"forwarded-allow-ips: {item!r} is not an IP address, a network or *"
                    ) from None
        return cls(tuple(networks), everyone)

    def __contains__(self, host: object) -> bool:
        """Whether ``host`` (an IP address as text; None for a Unix socket peer) is trusted."""
        if self.everyone:
            return True
        return isinstance(host, str) and _is_trusted(self, host)


@lru_cache(maxsize=_CACHE_SIZE)
def _is_trusted(proxies: TrustedProxies, host: str) -> bool:
    """Whether ``host`` is in one of the networks of ``proxies`` (remembered: peers repeat)."""
    address = _ip(host)
    if address is None:
        return False
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return any(
        candidate in network
        for network in proxies.networks
        for candidate in (address, mapped)
        if candidate is not None and candidate.version == network.version
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardedClient:
    """The request as its client made it, as far as trusted proxies say."""

    client: AddressType | None
    """The client's address and port (port 0 when not given); None when unknown."""

    scheme: str
    """The scheme the client used (``http``/``https``, or ``ws``/``wss`` for WebSockets)."""

    host: str | None
    """The host (and port) the client asked for; None to keep the request's own."""


def resolve_forwarded(
    *,
    peer: AddressType | None,
    scheme: str,
    headers: HeadersType,
    trusted: TrustedProxies,
    style: ForwardedStyle = ForwardedStyle.X_FORWARDED,
) -> ForwardedClient:
    """Who the client is, given the peer, the request's headers and the trusted proxies.

    :param peer: the connection's peer address; None for a Unix socket
        (trusted only by ``*``).
    :param scheme: the request's own scheme; its WebSocket-ness is kept.
    :param headers: the request's headers (lower-case names).
    :returns: the peer, ``scheme`` and no host when the peer is not trusted
        or the headers say nothing.
    """
    if (None if peer is None else peer[0]) not in trusted:
        return ForwardedClient(client=peer, scheme=scheme, host=None)
    if style is ForwardedStyle.FORWARDED:
        elements = _parse_forwarded(_joined(headers, b"forwarded"))
        if not elements:
            return ForwardedClient(client=peer, scheme=scheme, host=None)
        nodes = [element.get("for") for element in elements]
        index, client = _walk(nodes, trusted)
        proto, host = elements[index].get("proto"), elements[index].get("host")
    else:
        nodes = [item.strip() for item in _joined(headers, b"x-forwarded-for").split(",")]
        if nodes == [""]:
            nodes = []
        index, client = _walk(nodes, trusted) if nodes else (0, peer)
        proto = _aligned(_joined(headers, b"x-forwarded-proto"), index, len(nodes))
        host = _aligned(_joined(headers, b"x-forwarded-host"), index, len(nodes))
    return ForwardedClient(
        client=client,
        scheme=_scheme(proto, scheme),
        host=host if host is not None and _valid_host(host) else None,
    )


def _joined(headers: HeadersType, name: bytes) -> str:
    """Every field of one name, joined as one list (RFC 9110 §5.3)."""
    return ",".join(value.decode("latin-1") for key, value in headers if key == name)


def _walk(nodes: Sequence[str | None], trusted: TrustedProxies) -> tuple[int, AddressType | None]:
    """The position and address of the right-most node that is not a trusted proxy."""
    for index in range(len(nodes) - 1, -1, -1):
        address = _node_address(nodes[index])
        if address is None or address[0] not in trusted:
            return index, address
    return 0, _node_address(nodes[0])


def _aligned(joined: str, index: int, count: int) -> str | None:
    """The entry of a list that matches position ``index`` of a list of ``count`` hops."""
    values = [value.strip() for value in joined.split(",")] if joined else []
    if not values:
        return None
    return values[index] if len(values) == count else values[-1]


def _scheme(proto: str | None, scheme: str) -> str:
    family = _SCHEMES.get((proto or "").lower())
    if family is None:
        return scheme
    if scheme in ("ws", "wss"):
        return "wss" if family == "https" else "ws"
    return family


def _valid_host(host: str) -> bool:
    match = _HOST.fullmatch(host)
    return match is not None and (not match.group(2) or int(match.group(2)[1:]) <= 65535)


@lru_cache(maxsize=_CACHE_SIZE)
def _ip(text: str) -> _IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _node_address(node: str | None) -> AddressType | None:
    """The address of a ``for=`` node or an ``X-Forwarded-For`` entry (RFC 7239 §6).

    Forms: ``192.0.2.1``, ``192.0.2.1:8080``, ``2001:db8::1``,
    ``[2001:db8::1]``, ``[2001:db8::1]:8080``. ``unknown``, obfuscated
    names (``_hidden``) and anything else give None; so does a port that is
    obfuscated, since the address alone is still known: port 0 then.
    """
    if not node:
        return None
    host, port_text = node, ""
    if node.startswith("["):
        host, bracket, port_text = node[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            return None
        port_text = port_text[1:]
    elif node.count(":") == 1:
        host, _, port_text = node.partition(":")
    address = _ip(host)
    if address is None or "%" in host:
        return None
    port = int(port_text) if port_text.isdigit() and len(port_text) <= 5 else 0
    return (str(address), port if port <= 65535 else 0)


def _parse_forwarded(value: str) -> list[dict[str, str]]:
    """The elements of a ``Forwarded`` field value (RFC 7239 §4); ``[]`` if it does not parse.

    Names are lower-cased and quoted values unquoted. Empty list members
    and empty pairs (``for=a;;proto=http, ,for=b``) are allowed, as the
    grammar allows them.
    """
    elements: list[dict[str, str]] = []
    for member in _split(value, ","):
        element: dict[str, str] = {}
        for pair in _split(member, ";"):
            pair = pair.strip(" \t")
            if not pair:
                continue
            name, equals, raw = pair.partition("=")
            parsed = _pair_value(raw)
            if not equals or not _TOKEN.fullmatch(name) or parsed is None:
                return []
            if name.lower() in element:
                return []  # §4: "MUST NOT occur more than once per forwarded-element"
            element[name.lower()] = parsed
        if element:
            elements.append(element)
    return elements


def _split(value: str, separator: str) -> list[str]:
    """``value`` split at each ``separator`` outside quoted strings."""
    parts: list[str] = []
    start, quoted, escaped = 0, False, False
    for position, character in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and character == "\\":
            escaped = True
        elif character == '"':
            quoted = not quoted
        elif character == separator and not quoted:
            parts.append(value[start:position])
            start = position + 1
    parts.append(value[start:])
    return parts


def _pair_value(raw: str) -> str | None:
    """A token, or the text of a quoted-string (RFC 7230 §3.2.6); None if neither."""
    if _TOKEN.fullmatch(raw):
        return raw
    if len(raw) < 2 or not raw.startswith('"') or not raw.endswith('"'):
        return None
    characters: list[str] = []
    escaped = False
    for character in raw[1:-1]:
        if escaped:
            characters.append(character)
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == '"':
            return None
        else:
            characters.append(character)
    return None if escaped else "".join(characters)
