"""HTTP/2 stream errors and refusals against a real ASGIServer on loopback.

A raw client (prior knowledge, cleartext) sends what client libraries do
not: a malformed request beside good ones, a burst of streams far past
SETTINGS_MAX_CONCURRENT_STREAMS. The protocol-level details are in
tests/test_protocols/test_http2_conformance.py; here the server must keep
the connection and answer every stream it accepted.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from hpack import Encoder
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
)

from hface.common import AddressType, HeadersType
from hface.protocols._flood import FLOOD_WINDOW
from hface.protocols.http2 import HTTP2ServerFactory
from hface.server import ASGIServer, Endpoint
from tests.test_server.conftest import running

pytestmark = pytest.mark.anyio

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUEST: HeadersType = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]
REFUSED_STREAM = 0x7
PROTOCOL_ERROR = 0x1


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers ``ok``; on ``/long``, streams until the client goes away."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/long":
        await send({"type": "http.response.body", "body": b"event\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    await send({"type": "http.response.body", "body": b"ok"})


def h2_frame(type_: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """A raw HTTP/2 frame (RFC 9113 §4.1)."""
    header = struct.pack(">I", len(payload))[1:] + bytes([type_, flags])
    return header + struct.pack(">I", stream_id) + payload


def parse_frames(data: bytearray) -> list[Frame]:
    """Take the whole frames out of ``data``."""
    frames = []
    view = memoryview(data)
    offset = 0
    while len(view) - offset >= 9:
        frame, length = Frame.parse_frame_header(view[offset : offset + 9])
        if len(view) - offset < 9 + length:
            break
        frame.parse_body(view[offset + 9 : offset + 9 + length])
        frames.append(frame)
        offset += 9 + length
    view.release()
    del data[:offset]
    return frames


async def converse(
    address: AddressType, data: bytes, done: Callable[[list[Frame]], bool]
) -> list[Frame]:
    """Send ``data`` on a new connection; read frames until ``done`` says so (5 s at most)."""
    frames: list[Frame] = []
    buffer = bytearray()
    async with await anyio.connect_tcp(*address) as stream:
        await stream.send(data)
        with anyio.fail_after(5):
            while not done(frames):
                buffer += await stream.receive()
                frames += parse_frames(buffer)
    return frames


def answered(frames: list[Frame]) -> set[int]:
    """The streams whose response ended."""
    return {
        f.stream_id
        for f in frames
        if isinstance(f, (HeadersFrame, DataFrame)) and "END_STREAM" in f.flags
    }


async def test_malformed_request_resets_only_its_stream() -> None:
    """RFC 9113 §8.1.1, §5.4.2: stream 3 is reset, streams 1 and 5 are answered."""
    encoder = Encoder()
    data = PREFACE + h2_frame(0x4, 0, 0)
    data += h2_frame(0x1, 0x5, 1, encoder.encode(REQUEST))
    data += h2_frame(0x1, 0x5, 3, encoder.encode([*REQUEST, (b"connection", b"close")]))
    data += h2_frame(0x1, 0x5, 5, encoder.encode(REQUEST))
    async with running(ASGIServer(app), [Endpoint("http", "127.0.0.1", 0)]) as address:
        frames = await converse(address, data, lambda frames: answered(frames) >= {1, 5})
    resets = [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)]
    assert resets == [(3, PROTOCOL_ERROR)]
    assert not [f for f in frames if isinstance(f, GoAwayFrame)]


async def test_burst_past_max_concurrent_streams() -> None:
    """RFC 9113 §5.1.2: 1,000 streams at once, limit 100: 900 refused, 100 answered."""
    encoder = Encoder()
    data = PREFACE + h2_frame(0x4, 0, 0)
    for index in range(1000):
        data += h2_frame(0x1, 0x5, 2 * index + 1, encoder.encode(REQUEST))

    def done(frames: list[Frame]) -> bool:
        refused = sum(isinstance(f, RstStreamFrame) for f in frames)
        return refused + len(answered(frames)) >= 1000 or any(
            isinstance(f, GoAwayFrame) for f in frames
        )

    server = ASGIServer(app)
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        frames = await converse(address, data, done)
    assert not [f for f in frames if isinstance(f, GoAwayFrame)]
    refused = {f.stream_id for f in frames if isinstance(f, RstStreamFrame)}
    assert {f.error_code for f in frames if isinstance(f, RstStreamFrame)} == {REFUSED_STREAM}
    assert len(refused) == 900
    assert answered(frames) == set(range(1, 2001, 2)) - refused


@pytest.mark.slow
async def test_paced_pings_refill_the_flood_budget() -> None:
    """RFC 9113 §10.5: the connection layer tells HTTP/2 the time, so the budget refills.

    A budget of 5 control frames; 5 PINGs, then 5 more after the 10-second
    window: all acknowledged, no GOAWAY.
    """
    server = ASGIServer(app)
    server.http2_factory = HTTP2ServerFactory(max_control_frames=5)
    encoder = Encoder()
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        buffer = bytearray()
        frames: list[Frame] = []
        async with await anyio.connect_tcp(*address) as stream:
            await stream.send(PREFACE + h2_frame(0x4, 0, 0))
            long_request = [*REQUEST[:3], (b":path", b"/long")]
            await stream.send(h2_frame(0x1, 0x5, 1, encoder.encode(long_request)))
            for round_ in range(2):
                if round_:
                    await anyio.sleep(FLOOD_WINDOW + 0.5)
                for index in range(5):
                    await stream.send(h2_frame(0x6, 0, 0, b"%08d" % (10 * round_ + index)))
                with anyio.fail_after(5):
                    while sum(isinstance(f, PingFrame) for f in frames) < 5 * (round_ + 1):
                        buffer += await stream.receive()
                        frames += parse_frames(buffer)
                        assert not [f for f in frames if isinstance(f, GoAwayFrame)]
