"""A WebSocket test client on every version: wsproto frames over a raw byte pipe.

HTTP/1.1: a TCP connection (cleartext), the RFC 6455 upgrade written by
hand. HTTP/2 and HTTP/3: an extended CONNECT (``:protocol websocket``,
RFC 8441, RFC 9220) on a stream of an hface client connection. Either way
the frames are wsproto's (``Connection(CLIENT)``), and :meth:`WSClient.send_raw`
sends bytes as they are, for the conformance cases that craft frames.
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import client_extensions_handshake

from hface.common import AddressType, ClientTLSConfig
from hface.connections import HTTPStream
from hface.events import DataReceived, HeadersReceived
from tests.test_connections.conftest import connect


@dataclass
class Handshake:
    """The answer to the opening handshake."""

    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


class WSClient:
    """One WebSocket, or the refused attempt at one (:attr:`handshake`)."""

    def __init__(self, handshake: Handshake, deflate: bool) -> None:
        self.handshake = handshake
        extensions: list[Extension] = []
        offer = handshake.header(b"sec-websocket-extensions")
        if deflate and offer is not None:
            extension = PerMessageDeflate()
            client_extensions_handshake([offer.decode()], [extension])
            extensions.append(extension)
        self.ws = Connection(ConnectionType.CLIENT, extensions)
        self._events: list[Event] = []
        self._stream: HTTPStream | None = None
        self._socket: anyio.abc.ByteStream | None = None
        self.eof = False

    async def send_raw(self, data: bytes) -> None:
        if self._stream is not None:
            await self._stream.send_data(data)
        else:
            assert self._socket is not None
            await self._socket.send(data)

    async def receive_raw(self) -> bytes:
        """The next bytes from the server; b"" at its end."""
        if self._socket is not None:
            try:
                return await self._socket.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return b""
        assert self._stream is not None
        while True:
            event = await self._stream.receive_event()
            if isinstance(event, DataReceived):
                if event.data:
                    return event.data
                if event.end_stream:
                    return b""
            elif isinstance(event, HeadersReceived):
                continue
            else:
                return b""

    async def send(self, event: Event) -> None:
        await self.send_raw(self.ws.send(event))

    async def send_text(self, text: str) -> None:
        await self.send(TextMessage(data=text))

    async def send_bytes(self, data: bytes) -> None:
        await self.send(BytesMessage(data=data))

    async def next_event(self) -> Event | None:
        """The next whole event (messages joined), None once the server is gone."""
        text: list[str] = []
        binary: list[bytes] = []
        while True:
            while self._events:
                event = self._events.pop(0)
                if isinstance(event, TextMessage):
                    text.append(event.data)
                    if event.message_finished:
                        return TextMessage(data="".join(text))
                elif isinstance(event, BytesMessage):
                    binary.append(bytes(event.data))
                    if event.message_finished:
                        return BytesMessage(data=b"".join(binary))
                else:
                    if isinstance(event, Ping):
                        await self.send(event.response())
                        continue
                    return event
            data = await self.receive_raw()
            if not data:
                self.eof = True
                return None
            self.ws.receive_data(data)
            self._events += list(self.ws.events())

    async def receive(self) -> str | bytes | CloseConnection | None:
        """The next message's data, or the close, or None once the server is gone."""
        while True:
            event = await self.next_event()
            if isinstance(event, Pong):
                continue
            if isinstance(event, TextMessage):
                return event.data
            if isinstance(event, BytesMessage):
                return bytes(event.data)
            if event is None or isinstance(event, CloseConnection):
                return event

    async def close(self, code: int = 1000, reason: str = "") -> CloseConnection | None:
        """Send a close; return the server's (None if it went without one)."""
        await self.send(CloseConnection(code=code, reason=reason))
        while True:
            event = await self.receive()
            if event is None or isinstance(event, CloseConnection):
                return event


def _request_fields(subprotocols: tuple[str, ...], deflate: bool) -> list[tuple[bytes, bytes]]:
    fields = [(b"sec-websocket-version", b"13")]
    if subprotocols:
        fields.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
    if deflate:
        fields.append((b"sec-websocket-extensions", b"permessage-deflate"))
    return fields


@asynccontextmanager
async def websocket(
    http_version: str,
    address: AddressType,
    tls_config: ClientTLSConfig | None,
    path: str = "/ws",
    *,
    subprotocols: tuple[str, ...] = (),
    deflate: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
    h1_tls: bool = False,
) -> AsyncIterator[WSClient]:
    """Open a WebSocket on ``http_version`` (HTTP/1.1: cleartext unless ``h1_tls``; else TLS)."""
    fields = _request_fields(subprotocols, deflate) + (extra or [])
    if http_version == "1.1":
        if h1_tls:
            assert tls_config is not None
            context = ssl.create_default_context(cafile=tls_config.cafile)
            context.set_alpn_protocols(["http/1.1"])
            socket: anyio.abc.ByteStream = await anyio.connect_tcp(
                *address,
                tls=True,
                ssl_context=context,
                tls_hostname="localhost",
                tls_standard_compatible=False,
            )
        else:
            socket = await anyio.connect_tcp(*address)
        async with socket:
            key = base64.b64encode(os.urandom(16))
            lines = [
                b"GET " + path.encode() + b" HTTP/1.1",
                b"Host: localhost",
                b"Upgrade: websocket",
                b"Connection: Upgrade",
                b"Sec-WebSocket-Key: " + key,
                *(name + b": " + value for name, value in fields),
            ]
            await socket.send(b"\r\n".join(lines) + b"\r\n\r\n")
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                data = await socket.receive()
                buffer += data
            head, _, rest = buffer.partition(b"\r\n\r\n")
            status_line, *header_lines = head.split(b"\r\n")
            headers = [
                (name.strip().lower(), value.strip())
                for name, _, value in (line.partition(b":") for line in header_lines)
            ]
            handshake = Handshake(int(status_line.split()[1]), headers, rest)
            client = WSClient(handshake, deflate)
            client._socket = socket
            if handshake.status == 101 and rest:
                client.ws.receive_data(rest)
                client._events += list(client.ws.events())
            yield client
        return
    assert tls_config is not None
    async with await connect(http_version, address, tls_config) as connection:
        stream = connection.open_stream()
        async with stream:
            await stream.send_headers(
                [
                    (b":method", b"CONNECT"),
                    (b":protocol", b"websocket"),
                    (b":scheme", b"https"),
                    (b":authority", b"localhost"),
                    (b":path", path.encode()),
                    *fields,
                ]
            )
            handshake = Handshake(0)
            while not handshake.status:
                event = await stream.receive_event()
                if isinstance(event, HeadersReceived):
                    headers = list(event.headers)
                    handshake.status = int(dict(headers)[b":status"])
                    handshake.headers = [(k, v) for k, v in headers if not k.startswith(b":")]
                else:
                    raise AssertionError(f"no response: {event!r}")
            client = WSClient(handshake, deflate)
            client._stream = stream
            if handshake.status != 200:
                while (data := await client.receive_raw()) != b"":
                    handshake.body += data
            yield client
