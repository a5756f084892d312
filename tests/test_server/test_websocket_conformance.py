"""WebSocket conformance of the ASGI server, modelled on the Autobahn testsuite's case list.

Each case has its Autobahn section number in its id (the numbers of the
Autobahn|Testsuite's fuzzingclient cases: 1 framing, 2 pings and pongs,
3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close, 9 limits,
12 compression), and runs on every version: crafted frames on an HTTP/1.1
upgrade, and on an HTTP/2 and an HTTP/3 extended CONNECT stream. The
frames the client sends are written by hand here (masked, as RFC 6455 §5.3
wants from a client); the server's are read by hand too. The application
echoes every message.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.server import ASGIServer, Endpoint
from tests.helpers.ws_client import WSClient, websocket
from tests.test_server.conftest import running

pytestmark = pytest.mark.anyio

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """One client frame (RFC 6455 §5.2), masked with a random key."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    length = len(payload)
    bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    return frame(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


@dataclass
class Case:
    """What the client sends, and what the server must answer."""

    sends: bytes
    #: The frames the server sends back, as (opcode, payload), before its close.
    answers: list[tuple[int, bytes]]
    #: The code of the server's close, or None if it must not close.
    close: int | None = None
    #: The answers may be missing: the close (or the failure) came in the
    #: same write as the message, and the server closes at once, before the
    #: application could answer (Autobahn's NON-STRICT; uvicorn and
    #: hypercorn do the same).
    answers_optional: bool = False


def echo(opcode: int, payload: bytes) -> Case:
    return Case(frame(opcode, payload), [(opcode, payload)])


def fails(sends: bytes, code: int = 1002, answers: list[tuple[int, bytes]] | None = None) -> Case:
    return Case(sends, answers or [], close=code, answers_optional=bool(answers))


def close_echo(code: int, reason: bytes = b"") -> Case:
    return Case(close_frame(code, reason), [], close=code)


# A text message whose UTF-8 spans two fragments (κόσμε split inside a character).
_KOSME = "κόσμε".encode()

CASES: dict[str, Case] = {
    # 1: framing, every length encoding.
    "1.1.1 text, empty": echo(TEXT, b""),
    "1.1.2 text, 125 bytes": echo(TEXT, b"*" * 125),
    "1.1.3 text, 126 bytes": echo(TEXT, b"*" * 126),
    "1.1.4 text, 127 bytes": echo(TEXT, b"*" * 127),
    "1.1.5 text, 128 bytes": echo(TEXT, b"*" * 128),
    "1.1.6 text, 65535 bytes": echo(TEXT, b"*" * 65535),
    "1.1.7 text, 65536 bytes": echo(TEXT, b"*" * 65536),
    "1.2.1 binary, empty": echo(BINARY, b""),
    "1.2.3 binary, 126 bytes": echo(BINARY, b"\xfe" * 126),
    "1.2.7 binary, 65536 bytes": echo(BINARY, b"\xfe" * 65536),
    "1.2.8 binary, 65536 bytes in one write": Case(
        frame(BINARY, bytes(range(256)) * 256), [(BINARY, bytes(range(256)) * 256)]
    ),
    # 2: pings and pongs.
    "2.1 ping, no payload": Case(frame(PING), [(PONG, b"")]),
    "2.2 ping, text payload": Case(frame(PING, b"Hello, world!"), [(PONG, b"Hello, world!")]),
    "2.3 ping, binary payload": Case(frame(PING, b"\x00\xff\xfe"), [(PONG, b"\x00\xff\xfe")]),
    "2.4 ping, 125 bytes": Case(frame(PING, b"\xfe" * 125), [(PONG, b"\xfe" * 125)]),
    "2.5 ping, 126 bytes": fails(frame(PING, b"\xfe" * 126)),
    "2.6 ping then message": Case(
        frame(PING, b"p") + frame(TEXT, b"after"), [(PONG, b"p"), (TEXT, b"after")]
    ),
    "2.7 unsolicited pong": Case(frame(PONG) + frame(TEXT, b"x"), [(TEXT, b"x")]),
    "2.8 unsolicited pong with payload": Case(
        frame(PONG, b"unsolicited") + frame(TEXT, b"x"), [(TEXT, b"x")]
    ),
    "2.10 ten pings": Case(
        b"".join(frame(PING, b"%d" % i) for i in range(10)),
        [(PONG, b"%d" % i) for i in range(10)],
    ),
    # 3: reserved bits (no extension negotiated).
    "3.1 RSV1 on text": fails(frame(TEXT, b"x", rsv=4)),
    "3.2 RSV2 after a good message": fails(
        frame(TEXT, b"good") + frame(TEXT, b"x", rsv=2), answers=[(TEXT, b"good")]
    ),
    "3.3 RSV3 on ping": fails(frame(PING, b"x", rsv=1)),
    "3.7 RSV1+2+3 on close": fails(frame(CLOSE, b"\x03\xe8", rsv=7)),
    # 4: opcodes.
    "4.1.1 reserved non-control opcode 3": fails(frame(3)),
    "4.1.3 reserved opcode 5 after a message": fails(
        frame(TEXT, b"good") + frame(5, b"x"), answers=[(TEXT, b"good")]
    ),
    "4.2.1 reserved control opcode 11": fails(frame(11)),
    "4.2.5 reserved control opcode 15 with payload": fails(frame(15, b"x")),
    # 5: fragmentation.
    "5.1 fragmented ping": fails(frame(PING, b"a", fin=False) + frame(CONT, b"b")),
    "5.2 fragmented pong": fails(frame(PONG, b"a", fin=False) + frame(CONT, b"b")),
    "5.3 text in two fragments": Case(
        frame(TEXT, b"frag", fin=False) + frame(CONT, b"ment"), [(TEXT, b"fragment")]
    ),
    "5.6 ping between fragments": Case(
        frame(TEXT, b"frag", fin=False) + frame(PING, b"p") + frame(CONT, b"ment"),
        [(PONG, b"p"), (TEXT, b"fragment")],
    ),
    "5.9 continuation with nothing to continue": fails(frame(CONT, b"x")),
    "5.15 new message while one is fragmented": fails(
        frame(TEXT, b"a", fin=False) + frame(TEXT, b"b")
    ),
    "5.19 binary in many fragments, pings between": Case(
        frame(BINARY, b"1", fin=False)
        + frame(CONT, b"2", fin=False)
        + frame(PING, b"x")
        + frame(CONT, b"3", fin=False)
        + frame(CONT, b"4"),
        [(PONG, b"x"), (BINARY, b"1234")],
    ),
    # 6: UTF-8.
    "6.1.1 empty text": echo(TEXT, b""),
    "6.2.1 valid UTF-8": echo(TEXT, _KOSME),
    "6.2.3 valid UTF-8 split inside a character": Case(
        frame(TEXT, _KOSME[:3], fin=False) + frame(CONT, _KOSME[3:]), [(TEXT, _KOSME)]
    ),
    "6.3.1 invalid UTF-8": fails(frame(TEXT, _KOSME + b"\xed\xa0\x80"), 1007),
    "6.4.1 invalid UTF-8 in a fragment": fails(
        frame(TEXT, b"\xce\xba", fin=False) + frame(CONT, b"\xf4\x90\x80\x80"), 1007
    ),
    "6.6.1 lone continuation byte": fails(frame(TEXT, b"\x80"), 1007),
    "6.21.1 UTF-16 surrogate": fails(frame(TEXT, b"\xed\xa0\x80"), 1007),
    # 7: closing.
    "7.1.1 message then close": Case(
        frame(TEXT, b"Hello") + close_frame(1000), [(TEXT, b"Hello")], 1000, answers_optional=True
    ),
    "7.1.2 nothing after close is processed": Case(
        close_frame(1000) + frame(TEXT, b"late"), [], close=1000
    ),
    # Echoed empty (1005, "no status received", is never sent on the wire).
    "7.3.1 close, empty payload": Case(close_frame(), [], close=1005),
    "7.3.2 close, 1-byte payload": fails(frame(CLOSE, b"\x03")),
    "7.3.3 close 1000": close_echo(1000),
    "7.3.4 close with a reason": close_echo(1000, b"Hello World!"),
    "7.3.5 close with a 123-byte reason": close_echo(1000, b"*" * 123),
    "7.3.6 close with a 124-byte reason": fails(close_frame(1000, b"*" * 124)),
    "7.5.1 close reason not UTF-8": fails(close_frame(1000, b"\xce\xba\xe1\xbd"), 1007),
    "7.7.1 close 1000": close_echo(1000),
    "7.7.2 close 1001": close_echo(1001),
    "7.7.3 close 1002": close_echo(1002),
    "7.7.4 close 1003": close_echo(1003),
    "7.7.5 close 1007": close_echo(1007),
    "7.7.6 close 1008": close_echo(1008),
    "7.7.7 close 1009": close_echo(1009),
    "7.7.8 close 1010": close_echo(1010),
    "7.7.9 close 1011": close_echo(1011),
    "7.7.10 close 3000": close_echo(3000),
    "7.7.11 close 3999": close_echo(3999),
    "7.7.12 close 4000": close_echo(4000),
    "7.7.13 close 4999": close_echo(4999),
    "7.9.1 close 0": fails(close_frame(0)),
    "7.9.2 close 999": fails(close_frame(999)),
    "7.9.3 close 1004": fails(close_frame(1004)),
    "7.9.4 close 1005": fails(close_frame(1005)),
    "7.9.5 close 1006": fails(close_frame(1006)),
    "7.9.9 close 1015": fails(close_frame(1015)),
    "7.9.10 close 1016": fails(close_frame(1016)),
    "7.9.11 close 1100": fails(close_frame(1100)),
    "7.9.12 close 2000": fails(close_frame(2000)),
    "7.9.13 close 2999": fails(close_frame(2999)),
    "7.13.1 close 5000": fails(close_frame(5000)),
    # 9: limits (ws_max_size is 1 MiB here).
    "9.1.3 text of 1 MiB": echo(TEXT, b"*" * (1024 * 1024)),
    "9.2.3 binary of 1 MiB in 64 KiB fragments": Case(
        b"".join(
            frame(BINARY if i == 0 else CONT, b"\xfe" * 65536, fin=i == 15) for i in range(16)
        ),
        [(BINARY, b"\xfe" * (1024 * 1024))],
    ),
    "9.x message over ws_max_size": fails(frame(BINARY, b"x" * (1024 * 1024 + 1)), 1009),
    "9.x fragments over ws_max_size": fails(
        b"".join(frame(BINARY if i == 0 else CONT, b"x" * 65536, fin=False) for i in range(17)),
        1009,
    ),
    # RFC 6455 §5.1: a client's frames are masked.
    "5.1 (RFC 6455) unmasked client frame": fails(frame(TEXT, b"x", masked=False)),
}


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        data = {key: value for key, value in message.items() if key in ("text", "bytes")}
        await send({"type": "websocket.send", **data})


class FrameReader:
    """Reads the server's frames by hand (messages joined)."""

    def __init__(self, client: WSClient) -> None:
        self._client = client
        self._buffer = b""
        self._partial: tuple[int, bytes] | None = None

    async def next(self) -> tuple[int, bytes] | None:
        """The next control frame or whole message; None once the server is gone."""
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            data = await self._client.receive_raw()
            if not data:
                return None
            self._buffer += data

    def _parse(self) -> tuple[int, bytes] | None:
        while len(buffer := self._buffer) >= 2:
            opcode, length, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            fin = bool(buffer[0] & 0x80)
            assert not buffer[1] & 0x80, "server frames are not masked"
            if length == 126:
                if len(buffer) < 4:
                    return None
                length, offset = struct.unpack("!H", buffer[2:4])[0], 4
            elif length == 127:
                if len(buffer) < 10:
                    return None
                length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
            if len(buffer) < offset + length:
                return None
            payload = buffer[offset : offset + length]
            self._buffer = buffer[offset + length :]
            if opcode == CONT:
                assert self._partial is not None
                self._partial = (self._partial[0], self._partial[1] + payload)
            elif opcode in (TEXT, BINARY):
                self._partial = (opcode, payload)
            else:
                return opcode, payload
            if fin:
                whole, self._partial = self._partial, None
                return whole
        return None


@pytest.mark.parametrize("http_version", ["1.1", "2", "3"], ids=["http1", "http2", "http3"])
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_conformance(
    case: Case,
    http_version: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    server = ASGIServer(echo_app)
    server.tls_config = server_tls_config
    server.ws_max_size = 1024 * 1024
    server.ws_ping_interval = None
    server.access_log = False
    endpoint = Endpoint("http" if http_version == "1.1" else "https", "127.0.0.1", 0)
    async with (
        running(server, [endpoint]) as address,
        websocket(http_version, address, client_tls_config) as client,
    ):
        reader = FrameReader(client)
        await client.send_raw(case.sends)
        with anyio.fail_after(10):
            frames = [await reader.next() for _ in case.answers]
            first = frames[0] if frames else None
            if case.answers_optional and first is not None and first[0] == CLOSE:
                last: tuple[int, bytes] | None = first  # closed before the app answered
            else:
                assert frames == case.answers
                last = None
            if case.close is None:
                # No close expected: close ourselves after the answers.
                await client.send_raw(close_frame(1000))
            if last is None:
                last = await reader.next()
    expected = case.close if case.close is not None else 1000
    assert last is not None, "the server never sent its close"
    opcode, payload = last
    assert opcode == CLOSE
    code = struct.unpack("!H", payload[:2])[0] if payload else 1005
    assert code == expected


@pytest.mark.parametrize("http_version", ["1.1", "2", "3"], ids=["http1", "http2", "http3"])
@pytest.mark.parametrize(
    "size",
    [16, 64, 256, 1024, 4096, 65536, 1024 * 1024],
    ids=[f"12.1.{n} deflate, {size} bytes" for n, size in enumerate((16, 64, 256), 1)]
    + ["12.1.4 deflate, 1 KiB", "12.1.5 deflate, 4 KiB", "12.1.6 deflate, 64 KiB"]
    + ["12.1.7 deflate, 1 MiB"],
)
async def test_compression(
    size: int,
    http_version: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    """Compressed messages (RFC 7692) of every size, each way, text and binary."""
    server = ASGIServer(echo_app)
    server.tls_config = server_tls_config
    server.access_log = False
    endpoint = Endpoint("http" if http_version == "1.1" else "https", "127.0.0.1", 0)
    text = ("Hello, κόσμε! " * (size // 14 + 1))[:size]
    data = os.urandom(size // 2) + b"\x00" * (size - size // 2)
    async with (
        running(server, [endpoint]) as address,
        websocket(http_version, address, client_tls_config, deflate=True) as client,
    ):
        assert client.handshake.header(b"sec-websocket-extensions") is not None
        with anyio.fail_after(10):
            for _ in range(2):  # the second with the context taken over
                await client.send_text(text)
                assert await client.receive() == text
                await client.send_bytes(data)
                assert await client.receive() == data
            close = await client.close()
        assert close is not None
        assert close.code == 1000
