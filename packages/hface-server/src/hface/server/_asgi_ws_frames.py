"""What a WebSocket session of an ``ASGIServer`` asks of wsproto: scope, extensions, limits.

The session (:mod:`hface.server._asgi_websocket`) leaves frames to wsproto
(``wsproto.connection.Connection``, made once the handshake is accepted).
This module holds the parts of the handshake and the limits that are
written around it:

- :func:`websocket_scope` turns the ``http`` scope the request made into
  the ASGI ``websocket`` scope (``ws``/``wss``, the offered subprotocols,
  the ``websocket.http.response`` extension);
- :func:`accept_response` makes the response to ``websocket.accept``;
  :func:`negotiate_extensions` answers a ``Sec-WebSocket-Extensions``
  offer: ``permessage-deflate`` (RFC 7692) only, and only when the server
  enables it;
- :class:`BoundedDeflate` is wsproto's ``PerMessageDeflate`` that never
  inflates a message past the maximum message size: each compressed piece
  is inflated with ``max_length`` set to what the message may still grow
  by, so a compression bomb costs at most that much memory before the
  session closes with 1009 (message too big);
- :class:`MessageAssembler` joins the pieces wsproto hands out into whole
  messages and counts them against the same maximum.

What the session puts into wsproto to receive faster (a C unmask, a
receive buffer without copies) is in :mod:`._asgi_ws_speedups`.
"""

from __future__ import annotations

import zlib
from typing import Any, Final, cast

from wsproto.events import BytesMessage, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits
from wsproto.handshake import server_extensions_handshake

from ._asgi_heads import check_fields
from ._asgi_types import Message, Scope

#: The ``scheme`` of a WebSocket scope, by the request's.
_SCHEMES: Final = {"http": "ws", "https": "wss"}


def websocket_scope(http_scope: Scope) -> Scope:
    """The ASGI ``websocket`` scope of an extended CONNECT whose ``http`` scope is given."""
    scope = dict(http_scope)
    scope["type"] = "websocket"
    scope["scheme"] = _SCHEMES.get(http_scope["scheme"], "ws")
    del scope["method"]
    subprotocols: list[str] = []
    for name, value in http_scope["headers"]:
        if name == b"sec-websocket-protocol":
            subprotocols += [
                token for part in value.decode("latin-1").split(",") if (token := part.strip())
            ]
    scope["subprotocols"] = subprotocols
    scope["extensions"] = {"websocket.http.response": {}}
    return scope


def accept_response(
    scope: Scope, accept: Message, *, deflate: bool, max_size: int | None
) -> tuple[list[tuple[bytes, bytes]], list[Extension]]:
    """The response fields to a ``websocket.accept`` (but the defaults), and the extensions.

    The subprotocol and the extensions negotiated come first; of the
    application's own header fields those named the same are left out.
    """
    headers: list[tuple[bytes, bytes]] = [(b":status", b"200")]
    subprotocol = accept.get("subprotocol")
    if subprotocol is not None:
        headers.append((b"sec-websocket-protocol", subprotocol.encode()))
    extensions, answer = negotiate_extensions(
        offered_extensions(scope), deflate=deflate, max_size=max_size
    )
    if answer is not None:
        headers.append((b"sec-websocket-extensions", answer))
    names = {name for name, _ in headers}
    for name, value in check_fields(accept.get("headers") or (), "header"):
        if name not in names:
            headers.append((name, value))
    return headers, extensions


def offered_extensions(http_scope: Scope) -> list[str]:
    """The ``Sec-WebSocket-Extensions`` offers of the request, one string each."""
    offers: list[str] = []
    for name, value in http_scope["headers"]:
        if name == b"sec-websocket-extensions":
            offers += [part.strip() for part in value.decode("latin-1").split(",")]
    return [offer for offer in offers if offer]


def negotiate_extensions(
    offers: list[str], *, deflate: bool, max_size: int | None
) -> tuple[list[Extension], bytes | None]:
    """The extensions to run and the ``Sec-WebSocket-Extensions`` answer (None: none)."""
    if not deflate or not offers:
        return [], None
    extension = BoundedDeflate(max_size)
    answer = server_extensions_handshake(offers, [extension])
    if answer is None or not extension.enabled():
        return [], None
    return [extension], answer


class BoundedDeflate(PerMessageDeflate):
    """``permessage-deflate`` that inflates a message only up to ``max_size`` bytes.

    :param max_size: the largest message, inflated (None: no limit).
    """

    def __init__(self, max_size: int | None) -> None:
        super().__init__()
        self._max_size = max_size
        self._inflated = 0  # bytes of the message in progress, inflated so far

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if opcode is not Opcode.CONTINUATION and not opcode.iscontrol():
            self._inflated = 0  # the first frame of a message
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        decompressor = self._decompressor
        assert decompressor is not None
        limit = self._max_size
        try:
            if limit is None:
                return decompressor.decompress(data)
            room = limit - self._inflated
            out = decompressor.decompress(data, room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > limit or decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not fin or not self._inbound_is_compressible or not self._inbound_compressed:
            return super().frame_inbound_complete(proto, fin)
        # RFC 7692 §7.2.2: the tail the sender removed, inflated under the same bound.
        data = self._inflate(b"\x00\x00\xff\xff")
        if isinstance(data, CloseReason):
            return data
        if self.client_no_context_takeover:
            self._decompressor = None
        self._inbound_compressed = None
        return data


class MessageAssembler:
    """Joins the pieces of each message wsproto hands out, up to ``max_size`` bytes.

    :param max_size: the largest message (text counted in characters, as
        wsproto decodes it as it comes; None: no limit).
    """

    __slots__ = ("_max_size", "_pieces", "_size")

    def __init__(self, max_size: int | None) -> None:
        self._max_size = max_size
        # The pieces of the message in progress: str (text) or bytes (binary).
        self._pieces: list[Any] = []
        self._size = 0

    def add(self, event: TextMessage | BytesMessage) -> tuple[Message, int] | CloseReason | None:
        """Take a piece: the whole message and its size once it ends, None before, or 1009."""
        data = event.data
        size = self._size + len(data)
        max_size = self._max_size
        if max_size is not None and size > max_size:
            return CloseReason.MESSAGE_TOO_BIG
        if not event.message_finished:
            self._pieces.append(data)
            self._size = size
            return None
        self._size = 0
        pieces = self._pieces
        if type(event) is TextMessage:
            text = event.data
            if pieces:
                pieces.append(text)
                text = "".join(pieces)
                self._pieces = []
            return {"type": "websocket.receive", "text": text}, size
        payload = cast("bytes | bytearray", event.data)  # a BytesMessage's
        if pieces:
            # wsproto's pieces are its own (the bytes it made for the event):
            # joined once, into the message.
            pieces.append(payload)
            payload = b"".join(pieces)
            self._pieces = []
        if type(payload) is not bytes:
            payload = bytes(payload)  # no copy of bytes (wsproto's, unmasked in C)
        return {"type": "websocket.receive", "bytes": payload}, size
