"""The heads of an ASGI request and response: the scope in, checked fields out.

A request's header block becomes its ASGI ``http`` scope in one pass
(:func:`make_scope`). The fields come lowercase with the pseudo-headers
first (hface's events say so for every version), so no name is lowercased
here; the pseudo-headers give the method, scheme, target and authority,
and the authority becomes the first field, ``host``, in place of any
``host`` the request had (the ASGI specification says so; HTTP/1.1's
``Host`` reaches the server as ``:authority``). HTTP/2 and HTTP/3 clients
may split ``cookie`` into several fields (RFC 9113 §8.2.3, RFC 9114
§4.2.1): they are joined with ``"; "`` into one, as those RFCs ask before
a request goes to a generic application (frameworks read one ``cookie``
field: Starlette the first, Django all of them joined with commas).
``path`` is percent-decoded, ``raw_path`` not; both get the server's
``root_path`` in front. Behind a trusted reverse proxy the forwarding
headers then replace the connection's client, the scheme, the ``host``
field and the server (:func:`~hface.server._forwarded.resolve_forwarded`;
nothing is read when no proxy is trusted). What the server itself checks of a request (its
method, target, declared length, field count) comes back beside the scope.

An application's response header names and values are checked before
they go on the wire (:func:`check_fields`): on HTTP/1.1 a CR or LF in a
value could inject other fields. The names applications use again and
again are remembered once checked.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from anyio.abc import SocketAttribute

from hface.common import AddressType, HeadersType
from hface.connections import HTTPConnection

from ._asgi_types import Scope
from ._forwarded import ForwardedStyle, TrustedProxies, resolve_forwarded

#: The ``(client, server)`` addresses of a connection, each None if unknown;
#: a Unix socket's server is ``(path, None)`` (the ASGI specification's form).
Addresses = tuple[AddressType | None, tuple[str, int | None] | None]


def make_scope(
    headers: HeadersType,
    *,
    http_version: str,
    root_path: str,
    addresses: Addresses,
    state: dict[str, Any],
    trusted_proxies: TrustedProxies | None = None,
    forwarded_style: ForwardedStyle = ForwardedStyle.X_FORWARDED,
) -> tuple[Scope, bytes, bytes, bytes | None, bytes | None]:
    """The scope of a request; with its method, target, ``content-length`` and ``:protocol``.

    With ``trusted_proxies``, a request from one of them gets the client,
    scheme and host its forwarding headers say (:func:`resolve_forwarded`):
    the scope's ``client``, ``scheme``, ``host`` field and ``server``.

    :returns: ``(scope, raw_method, raw_target, content_length, protocol)``:
        the method and target as received, the ``content-length`` field as
        received (None if absent), the ``:protocol`` (None if absent).
    """
    method = b"GET"
    scheme = b"http"
    target = b"/"
    authority: bytes | None = None
    content_length: bytes | None = None
    protocol: bytes | None = None
    fields: list[list[bytes]] = []
    has_host = False
    cookie: list[bytes] | None = None  # the first cookie field, which takes the others
    for name, value in headers:
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                target = value
            elif name == b":scheme":
                scheme = value
            elif name == b":authority":
                authority = value
            elif name == b":protocol":
                protocol = value
        else:
            if name == b"host":
                has_host = True
            elif name == b"content-length":
                content_length = value
            elif name == b"cookie":
                if cookie is not None:  # a crumb (RFC 9113 §8.2.3): joined to the first
                    cookie[1] += b"; " + value
                    continue
                cookie = [name, value]
                fields.append(cookie)
                continue
            fields.append([name, value])
    if authority is not None:
        # ASGI: ":authority" becomes "host", first, replacing any "host" field.
        if has_host:
            fields = [field for field in fields if field[0] != b"host"]
        fields.insert(0, [b"host", authority])
    raw_path, _, query_string = target.partition(b"?")
    if b"%" in raw_path:
        path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
    else:
        path = raw_path.decode("utf-8", "replace")
    if root_path:
        path = root_path + path
        raw_path = root_path.encode("utf-8") + raw_path
    client, server = addresses
    scheme_text = _ascii(scheme)
    if trusted_proxies is not None:
        peer = client if server is None or server[1] is not None else None  # Unix: no peer
        forwarded = resolve_forwarded(
            peer=peer,
            scheme=scheme_text,
            headers=headers,
            trusted=trusted_proxies,
            style=forwarded_style,
        )
        client, scheme_text = forwarded.client, forwarded.scheme
        if forwarded.host is not None:
            server = _host_address(forwarded.host, scheme_text)
            if authority is not None or has_host:
                fields = [field for field in fields if field[0] != b"host"]
            fields.insert(0, [b"host", forwarded.host.encode("ascii")])
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},  # ASGI_VERSIONS, as a literal
        "http_version": http_version,
        "method": _ascii(method),
        "scheme": scheme_text,
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path,
        "headers": fields,
        "client": client,
        "server": server,
        "state": state.copy(),
        "extensions": {"http.response.trailers": {}, "http.response.early_hint": {}},
    }
    return scope, method, target, content_length, protocol


def _host_address(host: str, scheme: str) -> tuple[str, int]:
    """``host[:port]`` (checked by :func:`resolve_forwarded`) as a scope's ``server``."""
    name, colon, port = host.rpartition(":")
    if not colon or name.endswith(":") or "]" in port:  # no port (IPv6 has colons)
        name, port = host, ""
    default = 443 if scheme in ("https", "wss") else 80
    return name.strip("[]"), int(port) if port else default


def _ascii(value: bytes) -> str:
    """A method or scheme as a string; the common ones without decoding."""
    text = _COMMON_TOKENS.get(value)
    return text if text is not None else value.decode("ascii", "replace")


_COMMON_TOKENS = {
    token.encode(): token
    for token in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "http", "https")
}


def connection_addresses(connection: HTTPConnection) -> Addresses:
    """The ``(client, server)`` addresses of ``connection`` for a scope (None if unknown).

    On a Unix socket the server is ``(path, None)`` and the client None
    (its address is a path, usually empty), unless a PROXY protocol
    header named the client.
    """
    client = _address(connection, SocketAttribute.remote_address)
    server = _address(connection, SocketAttribute.local_address)
    if isinstance(server, str):
        return (client if isinstance(client, tuple) else None), (server, None)
    return (
        client if isinstance(client, tuple) else None,
        server if isinstance(server, tuple) else None,
    )


def _address(connection: HTTPConnection, attribute: Any) -> AddressType | str | None:
    address = connection.extra(attribute, None)
    if isinstance(address, tuple):
        return (str(address[0]), int(address[1]))
    return address if isinstance(address, str) else None


#: A field name (RFC 9110 §5.1: a token), lowercase as HTTP/2 and HTTP/3 want it.
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
#: A field value (RFC 9110 §5.5): no control characters but HTAB, so no CR or LF.
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")

#: Field names as applications spell them, mapped to their checked lowercase
#: form: applications send the same few names on every response.
_CHECKED_NAMES: dict[bytes, bytes] = {}
#: At most this many names are remembered (an application that makes names
#: up must not grow the cache without bound).
_MAX_CHECKED_NAMES = 512


def check_fields(fields: Any, what: str) -> list[tuple[bytes, bytes]]:
    """The application's ``(name, value)`` pairs as lowercase bytes, checked.

    :raises RuntimeError: for a name or value that could not go on the wire
        as it is (which on HTTP/1.1 could inject other fields).
    """
    checked: list[tuple[bytes, bytes]] = []
    names = _CHECKED_NAMES
    try:
        for raw_name, value in fields:
            is_bytes = type(raw_name) is bytes
            name = names.get(raw_name) if is_bytes else None
            if name is None:
                name = bytes(raw_name).lower()
                if not _FIELD_NAME.fullmatch(name):
                    raise RuntimeError(f"invalid {what} name {name!r}")
                if is_bytes and len(names) < _MAX_CHECKED_NAMES:
                    names[raw_name] = name
            if type(value) is not bytes:
                value = bytes(value)
            if not _FIELD_VALUE.fullmatch(value):
                raise RuntimeError(f"invalid {what} value {value!r} for {name!r}")
            checked.append((name, value))
    except (TypeError, ValueError) as error:
        raise RuntimeError(f"invalid {what}s {fields!r}: {error}") from None
    return checked


def status_bytes(status: int) -> bytes:
    """``status`` as the bytes of a ``:status`` field."""
    return _STATUS_BYTES.get(status) or str(status).encode()


#: ``:status`` values, encoded once.
_STATUS_BYTES = {status: str(status).encode() for status in range(100, 1000)}
