"""Unmasking the client's frames in C (websockets' ``apply_mask``): the same bytes as wsproto's.

The server hands wsproto a masker that XORs in C when the ``websockets``
library is installed (it is, in the test environments). A frame's payload
reaches the masker in pieces, as TCP reads cut it, and each piece goes on
with the key where the last one stopped: both are checked here against a
reference written from RFC 6455 §5.3, then end to end with messages whose
sizes are not multiples of four, echoed over a real connection.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio
import pytest
import wsproto.frame_protocol

from hface.server import ASGIServer, Endpoint
from hface.server._asgi_ws_frames import use_compiled_unmask
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
