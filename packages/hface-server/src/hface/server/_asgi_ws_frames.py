"""What a WebSocket session of an ``ASGIServer`` asks of wsproto: scope, extensions, limits.

The session (:mod:`hface.server._asgi_websocket`) leaves frames to wsproto.
This module holds what is written around it:

- :class:`FrameConnection` is wsproto's frame layer (``FrameProtocol``)
  with the state of the close handshake: what wsproto's ``Connection``
  does for a server, but the frames received come out as wsproto's
  ``Frame`` tuples rather than as an event object made for each (a frozen
  dataclass, the most the event layer cost per message);

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
- :class:`MessageAssembler` joins the pieces of data frames into whole
  messages and counts them against the same maximum.

What the session puts into wsproto to receive faster (a C unmask, a
receive buffer without copies) is in :mod:`._asgi_ws_speedups`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any, Final, cast

from wsproto.connection import ConnectionState
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import (
    CloseReason,
    Frame,
    FrameDecoder,
    FrameProtocol,
    Opcode,
    ParseFailed,
    RsvBits,
)
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import LocalProtocolError

from ._asgi_heads import check_fields
from ._asgi_types import Message, Scope

#: The ``scheme`` of a WebSocket scope, by the request's.
_SCHEMES: Final = {"http": "ws", "https": "wss"}
_OPEN: Final = ConnectionState.OPEN
_LOCAL_CLOSING: Final = ConnectionState.LOCAL_CLOSING
_REMOTE_CLOSING: Final = ConnectionState.REMOTE_CLOSING
_CLOSED: Final = ConnectionState.CLOSED
_TEXT: Final = Opcode.TEXT
_CLOSE: Final = Opcode.CLOSE


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


class FrameConnection:
    """A server's side of a WebSocket: wsproto's ``FrameProtocol`` and the close handshake.

    As wsproto's ``Connection`` (its ``state`` is the same
    ``ConnectionState``), with the frames received as wsproto's ``Frame``
    tuples (see the module docstring). A frame that does not parse comes
    out as a CLOSE frame with wsproto's code and reason and no change of
    state, as wsproto's ``Connection`` reports it; nothing is parsed after
    it. A frame that cannot be sent in the state raises wsproto's
    ``LocalProtocolError``.

    :param extensions: those negotiated.
    """

    __slots__ = ("_proto", "state")

    def __init__(self, extensions: list[Extension]) -> None:
        self._proto = FrameProtocol(client=False, extensions=extensions)
        self.state = _OPEN

    def receive_data(self, data: bytes) -> bool:
        """Take bytes received; False once closed (nothing more is read)."""
        state = self.state
        if state is _OPEN or state is _LOCAL_CLOSING:
            self._proto.receive_bytes(data)
        return state is not _CLOSED

    def frames(self) -> Iterator[Frame]:
        """The frames the bytes received make, whole or in part (a message's pieces)."""
        try:
            for frame in self._proto.received_frames():
                if frame.opcode is _CLOSE:
                    self.state = _CLOSED if self.state is _LOCAL_CLOSING else _REMOTE_CLOSING
                yield frame
        except ParseFailed as error:
            yield Frame(_CLOSE, (error.code, str(error)), True, True)

    def message(self, data: str | bytes) -> bytes:
        """A whole message's frame (text or binary), through the extensions."""
        self._check(self.state is _OPEN, "a message")
        return bytes(self._proto.send_data(data, True))

    def ping(self, payload: bytes) -> bytes:
        self._check(self.state is _OPEN, "a ping")
        return bytes(self._proto.ping(payload))

    def pong(self, payload: bytes) -> bytes:
        self._check(self.state is _OPEN, "a pong")
        return bytes(self._proto.pong(payload))

    def close(self, code: int, reason: str) -> bytes:
        """The close frame: the first of the handshake (OPEN) or the answer (REMOTE_CLOSING)."""
        state = self.state
        self._check(state is _OPEN or state is _REMOTE_CLOSING, "a close")
        data = bytes(self._proto.close(code, reason))
        self.state = _CLOSED if state is _REMOTE_CLOSING else _LOCAL_CLOSING
        return data

    def _check(self, allowed: bool, what: str) -> None:
        if not allowed:
            raise LocalProtocolError(f"{what} cannot be sent in state {self.state}")


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

    def add(self, frame: Frame) -> tuple[Message, int] | CloseReason | None:
        """Take a data frame: the whole message and its size once it ends, None before, or 1009.

        wsproto gives every piece of a message the message's opcode (text
        decoded as it comes).
        """
        data = cast("bytes | str", frame.payload)
        size = self._size + len(data)
        max_size = self._max_size
        if max_size is not None and size > max_size:
            return CloseReason.MESSAGE_TOO_BIG
        if not frame.message_finished:
            self._pieces.append(data)
            self._size = size
            return None
        self._size = 0
        pieces = self._pieces
        if frame.opcode is _TEXT:
            text = cast(str, data)
            if pieces:
                pieces.append(text)
                text = "".join(pieces)
                self._pieces = []
            return {"type": "websocket.receive", "text": text}, size
        payload = cast("bytes | bytearray", data)
        if pieces:
            # wsproto's pieces are its own (the bytes it made for each frame):
            # joined once, into the message.
            pieces.append(payload)
            payload = b"".join(pieces)
            self._pieces = []
        if type(payload) is not bytes:
            payload = bytes(payload)  # no copy of bytes (wsproto's, unmasked in C)
        return {"type": "websocket.receive", "bytes": payload}, size
