"""The WebSocket opening handshake of HTTP/1.1 (RFC 6455 §4), in the HTTP/2 style.

Theory of operation. hface speaks the HTTP/2 style on every version, and
HTTP/2 and HTTP/3 open a WebSocket with an extended CONNECT (``:method
CONNECT`` and ``:protocol websocket``, RFC 8441 §4, RFC 9220). So the
server state machine (:mod:`._server`) presents an HTTP/1.1 upgrade to
WebSocket the same way, and the layer above writes one code path for
three versions:

- :func:`websocket_key` tells a request that asks for a WebSocket (a
  ``GET`` of HTTP/1.1 or later with ``Upgrade: websocket`` and the
  ``upgrade`` connection option) from an ordinary one, and checks it: a
  ``Sec-WebSocket-Version`` other than 13 is refused with 426 (and
  ``Sec-WebSocket-Version: 13``, RFC 6455 §4.4), a missing version or a
  missing or malformed ``Sec-WebSocket-Key`` (not 16 bytes in base64,
  §4.1) with 400; either closes the connection, as a request that does
  not parse does;
- :func:`websocket_request_headers` makes its header list an extended
  CONNECT's: ``:method CONNECT``, ``:protocol websocket``, ``:scheme``,
  ``:authority`` and ``:path``, without the ``Sec-WebSocket-Key`` (which
  HTTP/2 and HTTP/3 do not have, RFC 8441 §5);
- :func:`switching_protocols` writes the answer to a 2xx response: ``101
  Switching Protocols`` with ``Upgrade``, ``Connection`` and the
  ``Sec-WebSocket-Accept`` computed from the key (§4.2.2), and the fields
  the application gave (a subprotocol, extensions). The connection is then
  a byte tunnel, as after a 2xx response to CONNECT.

A CONNECT-UDP upgrade (``Upgrade: connect-udp``, RFC 9298 §3.2) is
presented the same way (:func:`upgrade_token`, :func:`upgrade_request_headers`,
``:protocol connect-udp``) and answered with a 101 without a key; the
tunnel then carries capsules (:mod:`hface.protocols._capsules`).

A non-2xx response to such a request is an ordinary response to a ``GET``.

The client state machine (:mod:`._client`) does the reverse:
:func:`websocket_upgrade_fields` adds the upgrade's fields and a fresh key
to an extended CONNECT sent as a ``GET``, and
:func:`accepted_websocket_headers` checks the ``101`` against the key and
presents it as the ``200`` of HTTP/2 and HTTP/3.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from typing import Final

from hface.common import HeaderType

from ._framing import head_bytes
from ._headers import RequestHead, comma_tokens
from ._parser import ParseError

#: RFC 6455 §1.3: appended to the key before it is hashed into the accept value.
WEBSOCKET_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: The fields of a 426 answer to a WebSocket version we do not speak (RFC 6455 §4.4).
VERSION_FIELDS: Final[tuple[HeaderType, ...]] = (
    (b"upgrade", b"websocket"),
    (b"sec-websocket-version", b"13"),
)

#: The fields of a 101 answer that the state machine writes itself.
_OWN_FIELDS: Final = frozenset({b"content-length", b"sec-websocket-accept"})


def websocket_key(head: RequestHead) -> bytes | ParseError | None:
    """Return the key of a WebSocket upgrade request; None for another request.

    :returns: the ``Sec-WebSocket-Key`` as sent; None if ``head`` does not
        ask for a WebSocket; a :class:`ParseError` (426 or 400) if it asks
        for one the wrong way.
    """
    if head.method != b"GET" or head.http_version < b"1.1":
        return None
    upgrades: list[bytes] = []
    options: list[bytes] = []
    keys: list[bytes] = []
    versions: list[bytes] = []
    for name, value in head.headers:
        if name == b"upgrade":
            upgrades.append(value)
        elif name == b"connection":
            options.append(value)
        elif name == b"sec-websocket-key":
            keys.append(value)
        elif name == b"sec-websocket-version":
            versions.append(value)
    if not upgrades or b"websocket" not in comma_tokens(upgrades):
        return None
    if b"upgrade" not in comma_tokens(options):
        return None
    if not versions:
        return ParseError(400, "missing Sec-WebSocket-Version", b"GET")
    if versions != [b"13"]:
        return ParseError(426, "only WebSocket version 13 is supported", b"GET")
    if len(keys) != 1 or not _valid_key(keys[0]):
        return ParseError(400, "invalid Sec-WebSocket-Key", b"GET")
    return keys[0]


def _valid_key(key: bytes) -> bool:
    """Return True if ``key`` is 16 bytes in base64 (RFC 6455 §4.1)."""
    try:
        return len(base64.b64decode(key.strip(b" \t"), validate=True)) == 16
    except binascii.Error:
        return False


def websocket_request_headers(headers: list[HeaderType]) -> list[HeaderType]:
    """Return a WebSocket upgrade request's header list as an extended CONNECT's."""
    result: list[HeaderType] = [(b":method", b"CONNECT"), (b":protocol", b"websocket")]
    for name, value in headers:
        if name == b":method" or name == b"sec-websocket-key":
            continue
        result.append((name, value))
    return result


def accept_value(key: bytes) -> bytes:
    """Return the ``Sec-WebSocket-Accept`` value for ``key`` (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1(key.strip(b" \t") + WEBSOCKET_GUID).digest()
    return base64.b64encode(digest)


def switching_protocols(
    key: bytes, fields: Sequence[HeaderType], token: bytes = b"websocket"
) -> bytes:
    """Return the ``101 Switching Protocols`` head that accepts the upgrade to ``token``.

    :param key: the WebSocket key (empty for another upgrade token).
    """
    own: list[HeaderType] = [(b"upgrade", token), (b"connection", b"Upgrade")]
    if key:
        own.append((b"sec-websocket-accept", accept_value(key)))
    own += [(name, value) for name, value in fields if name not in _OWN_FIELDS]
    return head_bytes(101, own)


def websocket_upgrade_fields() -> tuple[bytes, list[HeaderType]]:
    """Return a fresh ``Sec-WebSocket-Key`` and the fields that ask for the upgrade with it."""
    key = base64.b64encode(os.urandom(16))  # RFC 6455 §4.1: 16 random bytes
    fields: list[HeaderType] = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", key),
    ]
    return key, fields


def accepted_websocket_headers(
    key: bytes, fields: Sequence[HeaderType], headers: Sequence[HeaderType]
) -> list[HeaderType] | None:
    """Return a ``101``'s header list as a ``200``'s; None if it does not accept ``key``.

    RFC 6455 §4.1: the client fails the connection unless ``Upgrade`` is
    ``websocket``, ``Connection`` has ``upgrade``, and
    ``Sec-WebSocket-Accept`` is the key's.

    :param fields: the response's fields as received.
    :param headers: its header list (``:status`` first, hop-by-hop fields dropped).
    """
    upgrades = [value for name, value in fields if name == b"upgrade"]
    options = [value for name, value in fields if name == b"connection"]
    accepts = [value for name, value in fields if name == b"sec-websocket-accept"]
    if b"websocket" not in comma_tokens(upgrades) or b"upgrade" not in comma_tokens(options):
        return None
    if accepts != [accept_value(key)]:
        return None
    result: list[HeaderType] = [(b":status", b"200")]
    result += [
        (name, value)
        for name, value in headers
        if name != b"sec-websocket-accept" and name[:1] != b":"
    ]
    return result


#: The upgrade tokens other than WebSocket presented as extended CONNECT:
#: CONNECT-UDP (RFC 9298 §3.2) switches the connection to capsules.
OTHER_UPGRADES: Final = (b"connect-udp",)


def upgrade_token(head: RequestHead) -> bytes | None:
    """Return the upgrade token of a ``GET`` asking for one of :data:`OTHER_UPGRADES`, else None.

    RFC 9298 §3.2: ``Upgrade: connect-udp`` with the ``upgrade`` connection option.
    """
    if head.method != b"GET" or head.http_version < b"1.1":
        return None
    upgrades = [value for name, value in head.headers if name == b"upgrade"]
    options = [value for name, value in head.headers if name == b"connection"]
    if b"upgrade" not in comma_tokens(options):
        return None
    tokens = comma_tokens(upgrades)
    return next((token for token in OTHER_UPGRADES if token in tokens), None)


def upgrade_request_headers(headers: list[HeaderType], token: bytes) -> list[HeaderType]:
    """Return an upgrade request's header list as an extended CONNECT's for ``token``."""
    result: list[HeaderType] = [(b":method", b"CONNECT"), (b":protocol", token)]
    result += [(name, value) for name, value in headers if name != b":method"]
    return result
