"""Tasks waiting for another task's write on an HTTP/2 connection all go on at once.

The task that writes on a TCP connection writes until the protocol has
nothing left, what the tasks waiting for it produced included. Once it is
done, those tasks have nothing left to write: they must all return at
once, not take turns one after another as on a lock (a convoy that, on a
busy connection, kept hundreds of finished streams waiting).

Real TLS sockets on loopback; the client's stream holds its writes at a
gate, so that the test decides when the writer's write ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from hface.common import AddressType, ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.connections import HTTPConnection, HTTPOverTCPOpener
from hface.events import ConnectionTerminated
from hface.networking import ByteStream, SystemNetworking
from hface.protocols.http2 import HTTP2ClientFactory

from .conftest import serving

pytestmark = pytest.mark.anyio

#: Tasks that wait for the writer.
WAITERS = 30


class GatedStream(anyio.abc.ByteStream):
    """A real stream whose writes wait while its gate is closed."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._gate: anyio.Event | None = None  # None: open
        #: Set once a write waits at the closed gate.
        self.held = anyio.Event()

    def close_gate(self) -> None:
        self._gate = anyio.Event()

    def open_gate(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    async def send(self, item: bytes) -> None:
        gate = self._gate
        if gate is not None:
            self.held.set()
            await gate.wait()
        await self._stream.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._stream.receive(max_bytes)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._stream.extra_attributes


class GatedNetworking(SystemNetworking):
    """System networking whose TLS client streams are :class:`GatedStream`."""

    stream: GatedStream | None = None

    async def connect_tcp_tls(
        self,
        remote_address: AddressType,
        *,
        server_name: str | None = None,
        tls_config: ClientTLSConfig,
        alpn_protocols: Sequence[str],
    ) -> ByteStream:
        stream = await super().connect_tcp_tls(
            remote_address,
            server_name=server_name,
            tls_config=tls_config,
            alpn_protocols=alpn_protocols,
        )
        self.stream = GatedStream(stream)
        return self.stream


async def drain(connection: HTTPConnection) -> None:
    """Serve nothing: read until the client goes."""
    while not isinstance(await connection.receive_event(), ConnectionTerminated):
        pass


def request() -> HeadersType:
    return [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", b"/"),
    ]


async def test_waiters_for_a_write_return_together(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    networking = GatedNetworking()
    async with serving("2", server_tls_config, drain) as address:
        opener = HTTPOverTCPOpener(
            HTTP2ClientFactory(), tls_config=client_tls_config, networking=networking
        )
        connection = await opener(address, tls=True, server_name="localhost")
        async with connection, anyio.create_task_group() as task_group:
            stream = networking.stream
            assert stream is not None
            stream_ids = []
            for _ in range(WAITERS + 1):
                stream_id = connection.get_available_stream_id()
                await connection.send_headers(stream_id, request())
                stream_ids.append(stream_id)
            done = 0

            async def send(stream_id: int) -> None:
                nonlocal done
                await connection.send_data(stream_id, b"data")
                done += 1

            stream.close_gate()
            task_group.start_soon(send, stream_ids[0])  # the writer, held at the gate
            with anyio.fail_after(5):
                await stream.held.wait()
            for stream_id in stream_ids[1:]:
                task_group.start_soon(send, stream_id)
            await anyio.sleep(0.2)  # every waiter waits for the writer now
            assert done == 0
            stream.open_gate()
            rounds = 0
            with anyio.fail_after(5):
                while done < WAITERS + 1:
                    await anyio.lowlevel.checkpoint()
                    rounds += 1
            # On a lock, the last waiter would go on WAITERS rounds after the first.
            assert rounds < WAITERS // 3
