"""A WebSocket client over HTTP/3 written on aioquic alone (RFC 9220), for the server tests.

Independent of hface's own HTTP/3 code: aioquic's ``QuicConnection`` and
``H3Connection`` over an anyio UDP socket (so it runs on asyncio and
Trio), an extended CONNECT with ``:protocol websocket``, and wsproto's
frames on the stream.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage

from hface.common import AddressType


class H3WebSocket:
    """One WebSocket on an aioquic HTTP/3 connection."""

    def __init__(
        self, udp: anyio.abc.ConnectedUDPSocket, quic: QuicConnection, address: tuple[str, int]
    ) -> None:
        self._udp = udp
        self._address = address
        self._send_lock = anyio.Lock()
        self._quic = quic
        self._h3 = H3Connection(quic)
        self.stream_id = -1
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.ws = Connection(ConnectionType.CLIENT)
        self._events: list[Event] = []
        self._changed = anyio.Event()
        self.ended = False

    async def flush(self) -> None:
        async with self._send_lock:
            for data, _ in self._quic.datagrams_to_send(now=time.monotonic()):
                await self._udp.send(data)

    async def pump(self) -> None:
        """Receive datagrams and run aioquic's timers, forever."""
        quic = self._quic
        while True:
            timer = quic.get_timer()
            wait = None if timer is None else max(0.0, timer - time.monotonic())
            with anyio.move_on_after(wait):
                data = await self._udp.receive()
                quic.receive_datagram(data, self._address, now=time.monotonic())
            timer = quic.get_timer()
            if timer is not None and timer <= time.monotonic():
                quic.handle_timer(time.monotonic())
            while (quic_event := quic.next_event()) is not None:
                for event in self._h3.handle_event(quic_event):
                    if getattr(event, "stream_id", None) != self.stream_id:
                        continue
                    if isinstance(event, HeadersReceived):
                        self.headers = [(k, v) for k, v in event.headers if not k.startswith(b":")]
                        self.status = int(dict(event.headers)[b":status"])
                        self.ended = self.ended or event.stream_ended
                    elif isinstance(event, DataReceived):
                        if event.data:
                            self.ws.receive_data(event.data)
                            self._events += list(self.ws.events())
                        self.ended = self.ended or event.stream_ended
                    self._wake()
            await self.flush()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def open(self, path: str) -> None:
        self.stream_id = self._quic.get_next_available_stream_id()
        self._h3.send_headers(
            self.stream_id,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", path.encode()),
                (b"sec-websocket-version", b"13"),
            ],
        )
        await self.flush()
        while not self.status:
            await self._changed.wait()

    async def send(self, event: Event) -> None:
        self._h3.send_data(self.stream_id, self.ws.send(event), end_stream=False)
        await self.flush()

    async def receive(self) -> str | bytes | CloseConnection | None:
        """The next message, the close, or None at the end."""
        text: list[str] = []
        binary: list[bytes] = []
        while True:
            while self._events:
                event = self._events.pop(0)
                if isinstance(event, Ping):
                    await self.send(event.response())
                elif isinstance(event, TextMessage):
                    text.append(event.data)
                    if event.message_finished:
                        return "".join(text)
                elif isinstance(event, BytesMessage):
                    binary.append(bytes(event.data))
                    if event.message_finished:
                        return b"".join(binary)
                elif isinstance(event, CloseConnection):
                    return event
            if self.ended:
                return None
            await self._changed.wait()


@asynccontextmanager
async def h3_websocket(address: AddressType, cafile: str, path: str) -> AsyncIterator[H3WebSocket]:
    """Open a WebSocket over HTTP/3 on aioquic; close the QUIC connection at the end."""
    configuration = QuicConfiguration(is_client=True, alpn_protocols=["h3"])
    configuration.load_verify_locations(cafile)
    configuration.server_name = "localhost"
    quic = QuicConnection(configuration=configuration)
    async with await anyio.create_connected_udp_socket(address[0], address[1]) as udp:
        remote = (str(address[0]), int(address[1]))
        client = H3WebSocket(udp, quic, remote)
        quic.connect(remote, now=time.monotonic())
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(client.pump)
            await client.flush()
            await client.open(path)
            try:
                yield client
            finally:
                quic.close()
                await client.flush()
                task_group.cancel_scope.cancel()
