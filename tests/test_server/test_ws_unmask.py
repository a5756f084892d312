"""What the server puts into wsproto (``_asgi_ws_speedups``): the same bytes as wsproto's own.

The server hands wsproto a masker that XORs in C when the ``websockets``
library is installed (it is, in the test environments). A frame's payload
reaches the masker in pieces, as TCP reads cut it, and each piece goes on
with the key where the last one stopped: both are checked here against a
reference written from RFC 6455 §5.3, then end to end with messages whose
sizes are not multiples of four, echoed over a real connection.

And a receive buffer that keeps the reads as they came: wsproto hands out
the same events, piece for piece, as with its own buffer, on both sides
(masked frames to a server, unmasked ones to a client), however the reads
cut the frames; a read that is a whole payload comes out as it is.
"""

from __future__ import annotations

import os
import random
import sys
from typing import Any

import anyio
import pytest
import wsproto.frame_protocol
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, Event, Ping, TextMessage

from hface.server import ASGIServer, Endpoint
from hface.server._asgi_ws_speedups import FrameBuffer, use_compiled_unmask, use_frame_buffer
from tests.test_server.conftest import running


def _reference(data: bytes, key: bytes) -> bytes:
    """RFC 6455 §5.3: octet i of the payload XOR octet i mod 4 of the key."""
    return bytes(octet ^ key[index % 4] for index, octet in enumerate(data))


@pytest.mark.parametrize("pieces", [[1], [3, 5, 7], [4, 4], [65537, 3, 1000], [2, 1, 1, 9]])
def test_pieces_unmask_as_one_payload(pieces: list[int]) -> None:
    assert use_compiled_unmask()
    key = os.urandom(4)
    data = os.urandom(sum(pieces))
    masker = wsproto.frame_protocol.XorMaskerSimple(key)
    out = bytearray()
    start = 0
    for size in pieces:
        piece: object = masker.process(bytearray(data[start : start + size]))
        assert isinstance(piece, bytes)  # not a bytearray: no copy (see _CompiledMasker)
        out += piece
        start += size
    assert bytes(out) == _reference(data, key)
    assert masker.process(bytearray()) == b""


def test_without_websockets_wsproto_keeps_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "websockets.speedups", None)  # import fails
    assert use_compiled_unmask.__wrapped__() is False


#: wsproto's own classes, which use_frame_buffer() replaces in its module.
_WSPROTO_BUFFER: Any = FrameBuffer.__mro__[1]
_WSPROTO_NULL_MASKER: Any = wsproto.frame_protocol.XorMaskerNull.__mro__[-2]
_WSPROTO_MASKER: Any = wsproto.frame_protocol.XorMaskerSimple.__mro__[-2]


def _wire(sender: ConnectionType) -> bytes:
    """Messages of many sizes (each a frame), text and binary, with pings between."""
    connection = Connection(sender)
    wire = b""
    for size in (0, 1, 125, 126, 4095, 4096, 65535, 65536, 300_000, 1024 * 1024 + 3):
        wire += connection.send(BytesMessage(data=os.urandom(size)))
        wire += connection.send(Ping(payload=b"p"))
    wire += connection.send(TextMessage(data="κόσμε" * 2000))
    return wire


def _events(wire: bytes, cuts: list[int], receiver: ConnectionType) -> list[tuple[Any, ...]]:
    """What wsproto hands out of ``wire`` read in pieces cut at ``cuts``."""
    connection = Connection(receiver)
    seen: list[tuple[Any, ...]] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        connection.receive_data(wire[start:end])
        for event in connection.events():
            seen.append(_described(event))
    return seen


def _described(event: Event) -> tuple[Any, ...]:
    if isinstance(event, BytesMessage | TextMessage):
        assert type(event.data) in (bytes, str)  # never a view of a read
        return type(event), event.data, event.frame_finished, event.message_finished
    return (type(event),)


@pytest.mark.parametrize("receiver", [ConnectionType.SERVER, ConnectionType.CLIENT])
@pytest.mark.parametrize("reads", [1, 7, 60, 700])
def test_frame_buffer_hands_out_what_wsproto_does(
    monkeypatch: pytest.MonkeyPatch, receiver: ConnectionType, reads: int
) -> None:
    """The same events, pieces and bytes, however the reads cut the frames (masked or not)."""
    sender = ConnectionType.CLIENT if receiver is ConnectionType.SERVER else ConnectionType.SERVER
    wire = _wire(sender)
    cuts = sorted(random.Random(reads).sample(range(1, len(wire)), reads))
    use_compiled_unmask()
    use_frame_buffer()
    ours = _events(wire, cuts, receiver)
    monkeypatch.setattr(wsproto.frame_protocol, "Buffer", _WSPROTO_BUFFER)
    monkeypatch.setattr(wsproto.frame_protocol, "XorMaskerNull", _WSPROTO_NULL_MASKER)
    assert _events(wire, cuts, receiver) == ours
    assert len(ours) > 20


def test_frame_buffer_with_wsproto_s_own_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``websockets``, wsproto unmasks the views the buffer hands out, the same."""
    wire = _wire(ConnectionType.CLIENT)
    cuts = sorted(random.Random(3).sample(range(1, len(wire)), 50))
    use_frame_buffer()
    monkeypatch.setattr(wsproto.frame_protocol, "XorMaskerSimple", _WSPROTO_MASKER)
    ours = _events(wire, cuts, ConnectionType.SERVER)
    monkeypatch.setattr(wsproto.frame_protocol, "Buffer", _WSPROTO_BUFFER)
    assert _events(wire, cuts, ConnectionType.SERVER) == ours


def test_frame_buffer_hands_out_a_whole_read_as_it_is() -> None:
    """A payload read on its own (unmasked, to a client) reaches the event without a copy."""
    use_frame_buffer()
    payload = os.urandom(100_000)
    frame = Connection(ConnectionType.SERVER).send(BytesMessage(data=payload))
    header = frame[: len(frame) - len(payload)]
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(header)
    client.receive_data(payload)
    (event,) = client.events()
    assert isinstance(event, BytesMessage)
    assert event.data is payload


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "bytes": message["bytes"]})


@pytest.mark.anyio
async def test_echo_of_odd_sizes_through_tcp_pieces() -> None:
    """The ``websockets`` library (in a thread) sends; loopback reads cut the frames."""
    from websockets.sync.client import connect

    payloads = [os.urandom(size) for size in (1, 3, 125, 126, 65535, 65537, 1024 * 1024 + 3)]

    def talk(port: int) -> list[str | bytes]:
        with connect(f"ws://127.0.0.1:{port}/", max_size=None, open_timeout=10) as ws:
            echoes: list[str | bytes] = []
            for payload in payloads:
                ws.send(payload)
                echoes.append(ws.recv(timeout=10))
            return echoes

    server = ASGIServer(_echo)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        echoes = await anyio.to_thread.run_sync(talk, address[1])
    assert echoes == payloads
    assert wsproto.frame_protocol.XorMaskerSimple.__name__ == "_CompiledMasker"
    assert wsproto.frame_protocol.Buffer is FrameBuffer
