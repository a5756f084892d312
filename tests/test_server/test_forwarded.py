"""Forwarded headers are believed from trusted proxies only, the right-most untrusted hop wins.

A table of requests (peer, scheme, headers, trusted proxies, header
style) and what the application should see (client, scheme, host): the
behaviour of uvicorn's ``ProxyHeadersMiddleware`` for ``X-Forwarded-For``
and ``-Proto``, extended to ``X-Forwarded-Host`` and to RFC 7239's
``Forwarded`` (whose examples are here).
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from hface.common import AddressType
from hface.server._forwarded import (
    ForwardedClient,
    ForwardedStyle,
    TrustedProxies,
    resolve_forwarded,
)

LOCAL = TrustedProxies.parse("127.0.0.1")
PRIVATE = TrustedProxies.parse("127.0.0.1, 10.0.0.0/8, fd00::/8")
EVERYONE = TrustedProxies.parse("*")
NOBODY = TrustedProxies.parse("")
PROXY: AddressType = ("127.0.0.1", 40000)
X, RFC = ForwardedStyle.X_FORWARDED, ForwardedStyle.FORWARDED


class Case(NamedTuple):
    headers: list[tuple[bytes, bytes]]
    client: AddressType | None
    scheme: str = "http"
    host: str | None = None
    trusted: TrustedProxies = LOCAL
    style: ForwardedStyle = X
    peer: AddressType | None = PROXY
    request_scheme: str = "http"


def xff(value: str) -> tuple[bytes, bytes]:
    return (b"x-forwarded-for", value.encode())


def xfp(value: str) -> tuple[bytes, bytes]:
    return (b"x-forwarded-proto", value.encode())


def xfh(value: str) -> tuple[bytes, bytes]:
    return (b"x-forwarded-host", value.encode())


def fwd(value: str) -> tuple[bytes, bytes]:
    return (b"forwarded", value.encode())


CLIENT: AddressType = ("203.0.113.7", 0)

CASES = {
    # Who is trusted.
    "untrusted peer: headers ignored": Case(
        [xff("203.0.113.7"), xfp("https"), xfh("example.com")],
        ("192.0.2.1", 5000),
        peer=("192.0.2.1", 5000),
    ),
    "nothing trusted by default": Case([xff("203.0.113.7")], PROXY, trusted=NOBODY),
    "trusted peer": Case([xff("203.0.113.7")], CLIENT),
    "trusted network": Case([xff("203.0.113.7")], CLIENT, peer=("10.1.2.3", 1), trusted=PRIVATE),
    "trusted IPv6 network": Case(
        [xff("203.0.113.7")], CLIENT, peer=("fd00::5", 1), trusted=PRIVATE
    ),
    "IPv4-mapped peer": Case([xff("203.0.113.7")], CLIENT, peer=("::ffff:127.0.0.1", 1)),
    "Unix socket peer, not trusted": Case([xff("203.0.113.7")], None, peer=None),
    "Unix socket peer, everyone trusted": Case(
        [xff("203.0.113.7")], CLIENT, peer=None, trusted=EVERYONE
    ),
    # The walk from the right.
    "chain of trusted proxies": Case(
        [xff("203.0.113.7, 10.0.0.2, 10.0.0.3")], CLIENT, trusted=PRIVATE
    ),
    "client's own entry not believed": Case([xff("1.2.3.4, 203.0.113.7")], CLIENT),
    "spoofed entry behind an untrusted hop": Case(
        [xff("10.0.0.9, 203.0.113.7, 10.0.0.2")], CLIENT, trusted=PRIVATE
    ),
    "every hop trusted: the left-most": Case(
        [xff("10.0.0.5, 10.0.0.2")], ("10.0.0.5", 0), trusted=PRIVATE
    ),
    "everyone trusted: the left-most": Case(
        [xff("1.2.3.4, 203.0.113.7")], ("1.2.3.4", 0), trusted=EVERYONE
    ),
    "several header lines, in order": Case(
        [xff("203.0.113.7"), xff("10.0.0.2")], CLIENT, trusted=PRIVATE
    ),
    "empty header": Case([xff("")], PROXY),
    "unknown hop": Case([xff("unknown")], None),
    "garbage hop": Case([xff("not an address, 10.0.0.2")], None, trusted=PRIVATE),
    "IPv6 hop": Case([xff("2001:db8::7")], ("2001:db8::7", 0)),
    "bracketed IPv6 hop with port": Case([xff("[2001:DB8::7]:4711")], ("2001:db8::7", 4711)),
    "IPv4 hop with port": Case([xff("203.0.113.7:5555")], ("203.0.113.7", 5555)),
    "scoped IPv6 hop": Case([xff("fe80::1%eth0")], None),
    # Scheme and host.
    "proto https": Case([xff("203.0.113.7"), xfp("https")], CLIENT, scheme="https"),
    "proto without for": Case([xfp("HTTPS")], PROXY, scheme="https"),
    "proto unknown scheme ignored": Case([xff("203.0.113.7"), xfp("ftp")], CLIENT),
    "proto https on a WebSocket": Case([xfp("https")], PROXY, scheme="wss", request_scheme="ws"),
    "proto http on a secure WebSocket": Case(
        [xfp("http")], PROXY, scheme="ws", request_scheme="wss"
    ),
    "proto aligned with the client's hop": Case(
        [xff("203.0.113.7, 10.0.0.2"), xfp("https, http")],
        CLIENT,
        scheme="https",
        trusted=PRIVATE,
    ),
    "proto list of another length: the right-most": Case(
        [xff("203.0.113.7, 10.0.0.2"), xfp("http, https, https")],
        CLIENT,
        scheme="https",
        trusted=PRIVATE,
    ),
    "host": Case([xfh("example.com")], PROXY, host="example.com"),
    "host with port": Case([xfh("example.com:8443")], PROXY, host="example.com:8443"),
    "IPv6 host": Case([xfh("[2001:db8::1]:8443")], PROXY, host="[2001:db8::1]:8443"),
    "host aligned with the client's hop": Case(
        [xff("203.0.113.7, 10.0.0.2"), xfh("example.com, internal")],
        CLIENT,
        host="example.com",
        trusted=PRIVATE,
    ),
    "invalid host ignored": Case([xfh("example.com/path")], PROXY),
    "host with a space ignored": Case([xfh("exa mple.com")], PROXY),
    "host with a port too large ignored": Case([xfh("example.com:65536")], PROXY),
    "Forwarded not read in the X-Forwarded style": Case([fwd("for=203.0.113.7")], PROXY),
    # RFC 7239, with its examples (§4, §5, §7.1).
    "Forwarded": Case(
        [fwd("for=192.0.2.60;proto=http;by=203.0.113.43")], ("192.0.2.60", 0), style=RFC
    ),
    "Forwarded, obfuscated client": Case([fwd('for="_gazonk"')], None, style=RFC),
    "Forwarded, IPv6 and port, any case": Case(
        [fwd('For="[2001:db8:cafe::17]:4711"')], ("2001:db8:cafe::17", 4711), style=RFC
    ),
    "Forwarded, two hops": Case(
        [fwd("for=192.0.2.43, for=198.51.100.17")], ("198.51.100.17", 0), style=RFC
    ),
    "Forwarded, two hops, the nearest trusted": Case(
        [fwd("for=192.0.2.43;proto=https;host=example.com, for=10.0.0.2;proto=http")],
        ("192.0.2.43", 0),
        scheme="https",
        host="example.com",
        trusted=PRIVATE,
        style=RFC,
    ),
    "Forwarded, host and proto of the client's hop only": Case(
        [fwd("for=192.0.2.43, for=10.0.0.2;proto=https;host=internal")],
        ("192.0.2.43", 0),
        trusted=PRIVATE,
        style=RFC,
    ),
    "Forwarded, several lines": Case(
        [fwd("for=192.0.2.43"), fwd("for=10.0.0.2")], ("192.0.2.43", 0), trusted=PRIVATE, style=RFC
    ),
    "Forwarded, unknown": Case([fwd("for=unknown;proto=https")], None, "https", style=RFC),
    "Forwarded, no for": Case([fwd("proto=https")], None, "https", style=RFC),
    "Forwarded, obfuscated port": Case(
        [fwd('for="192.0.2.43:_abc"')], ("192.0.2.43", 0), style=RFC
    ),
    "Forwarded, empty members and pairs": Case(
        [fwd("for=192.0.2.43;;proto=https, ,")], ("192.0.2.43", 0), "https", style=RFC
    ),
    "Forwarded, quoted comma and escapes": Case(
        [fwd(r'for=192.0.2.43;host="ex\ample.com";x="a,b;c"')],
        ("192.0.2.43", 0),
        host="example.com",
        style=RFC,
    ),
    "Forwarded, untrusted peer": Case(
        [fwd("for=192.0.2.43")], ("192.0.2.1", 1), peer=("192.0.2.1", 1), style=RFC
    ),
    "X-Forwarded-For not read in the Forwarded style": Case([xff("203.0.113.7")], PROXY, style=RFC),
    "Forwarded, missing value": Case([fwd("for=;proto=https")], PROXY, style=RFC),
    "Forwarded, space instead of ;": Case([fwd("for=192.0.2.43 proto=https")], PROXY, style=RFC),
    "Forwarded, unterminated quote": Case([fwd('for="192.0.2.43')], PROXY, style=RFC),
    "Forwarded, parameter twice": Case([fwd("for=192.0.2.43;for=198.51.100.1")], PROXY, style=RFC),
    "Forwarded, bad name": Case([fwd("f(r=192.0.2.43")], PROXY, style=RFC),
    "Forwarded, quote inside a token": Case([fwd('for=192.0.2.4"3"')], PROXY, style=RFC),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_forwarded_headers(case: Case) -> None:
    resolved = resolve_forwarded(
        peer=case.peer,
        scheme=case.request_scheme,
        headers=case.headers,
        trusted=case.trusted,
        style=case.style,
    )
    assert resolved == ForwardedClient(client=case.client, scheme=case.scheme, host=case.host)


def test_trusted_proxies_are_parsed() -> None:
    trusted = TrustedProxies.parse(" 127.0.0.1 ,10.0.0.0/8,::1,192.168.1.7/24, ")
    assert "127.0.0.1" in trusted
    assert "10.255.0.1" in trusted
    assert "::1" in trusted
    assert "192.168.1.200" in trusted
    assert "127.0.0.2" not in trusted
    assert "::2" not in trusted
    assert "not an address" not in trusted
    assert None not in trusted
    assert TrustedProxies.parse(["127.0.0.1", "*"]).everyone
    assert "198.51.100.1" in EVERYONE


@pytest.mark.parametrize("value", ["localhost", "10.0.0.0/33", "*.example.com", "unix:"])
def test_trusted_proxies_refuse_what_is_not_an_address(value: str) -> None:
    with pytest.raises(ValueError, match="forwarded-allow-ips"):
        TrustedProxies.parse(value)
