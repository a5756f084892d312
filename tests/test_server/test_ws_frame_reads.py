"""FrameConnection's frames are wsproto's however the reads fall (see FrameBuffer)."""

from __future__ import annotations

import struct
from typing import cast

import pytest
from wsproto.frame_protocol import FrameProtocol, Opcode

from hface.server._asgi_ws_frames import FrameConnection
from hface.server._asgi_ws_speedups import use_frame_buffer

use_frame_buffer()


def frame(opcode: int, payload: bytes, *, fin: bool = True, length: bytes | None = None) -> bytes:
    """A masked frame from the client; ``length``: its length field as given."""
    key = b"\x5a\x0f\xc3\x81"
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    size = len(payload)
    if length is None:
        if size < 126:
            length = bytes([0x80 | size])
        elif size < 65536:
            length = bytes([0x80 | 126]) + struct.pack("!H", size)
        else:
            length = bytes([0x80 | 127]) + struct.pack("!Q", size)
    return bytes([(0x80 if fin else 0) | opcode]) + length + key + masked


STREAM = b"".join(
    [
        frame(2, bytes(range(256)) * 4),
        frame(1, "héllo wörld".encode()),
        frame(2, b""),
        frame(9, b"ping"),
        frame(1, b"frag", fin=False),
        frame(0, b"mented"),
        frame(2, bytes(range(100))),
        frame(2, bytes(range(250)) * 280),
        frame(1, "é".encode() * 200),
        frame(8, struct.pack("!H", 1000) + b"bye"),
    ]
)


def messages(frames: list[tuple[Opcode, object, bool]]) -> list[tuple[Opcode, object]]:
    """The messages and control frames the frames make, pieces joined."""
    out: list[tuple[Opcode, object]] = []
    pieces: list[object] = []
    for opcode, payload, finished in frames:
        if opcode in (Opcode.TEXT, Opcode.BINARY):
            pieces.append(payload)
            if finished:
                joined: object
                if opcode is Opcode.TEXT:
                    joined = "".join(str(piece) for piece in pieces)
                else:
                    joined = b"".join(bytes(cast(bytes, piece)) for piece in pieces)
                out.append((opcode, joined))
                pieces = []
        else:
            out.append((opcode, payload))
    return out


def parse(
    connection: FrameConnection | FrameProtocol, data: bytes, step: int
) -> list[tuple[Opcode, object]]:
    """The messages ``connection`` makes of ``data`` read ``step`` bytes at a time."""
    frames: list[tuple[Opcode, object, bool]] = []
    for index in range(0, len(data), step):
        piece = data[index : index + step]
        if isinstance(connection, FrameConnection):
            connection.receive_data(piece)
            got = connection.frames()
        else:
            connection.receive_bytes(piece)
            got = connection.received_frames()
        frames += [(f.opcode, f.payload, f.message_finished) for f in got]
    return messages(frames)


@pytest.mark.parametrize("step", [1, 3, 7, 100, 1030, 4096, len(STREAM)])
def test_the_messages_are_wsproto_s_however_the_reads_fall(step: int) -> None:
    expected = parse(FrameProtocol(client=False, extensions=[]), STREAM, len(STREAM))
    assert expected[-1][0] is Opcode.CLOSE
    assert parse(FrameConnection([]), STREAM, step) == expected


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(1, b"\xff\xfe"), 1007),  # not UTF-8
        (frame(2, b"x" * 100, length=bytes([0x80 | 126]) + struct.pack("!H", 100)), 1002),
        (frame(2, b"x")[:1] + bytes([1]) + b"x", 1002),  # not masked
        (bytes([0xC2]) + frame(2, b"x")[1:], 1002),  # a reserved bit
    ],
    ids=["not-utf-8", "long-length", "unmasked", "reserved-bit"],
)
def test_a_bad_frame_is_wsproto_s_error(data: bytes, code: int) -> None:
    connection = FrameConnection([])
    connection.receive_data(frame(2, b"first") + data)
    got = list(connection.frames())
    assert got[0].payload == b"first"
    assert got[-1].opcode is Opcode.CLOSE
    assert got[-1].payload[0] == code
