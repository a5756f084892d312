"""A PROXY header is read off an accepted socket, and the client's bytes stay for TLS or HTTP.

Real TCP connections on loopback: a client sends a PROXY header (at once,
or a byte at a time), then its own bytes; the server takes the header
with :class:`ProxyHeaderReader` on the raw accepted socket, then hands the
socket to anyio (as plain TCP, or as TLS) and must read every byte the
client sent after the header.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketStream
from anyio.streams.tls import TLSStream

from hface.networking._proxy_protocol import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderReader,
    ProxyProtocolError,
)
from tests.helpers.certs import TLSFiles

pytestmark = pytest.mark.anyio

V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n"
V2 = (
    V2_SIGNATURE
    + struct.pack("!BBH", 0x21, 0x11, 12 + 7)
    + bytes((192, 0, 2, 7, 198, 51, 100, 1))
    + struct.pack("!HH", 40000, 443)
    + b"\x02\x00\x04host"  # a TLV, skipped
)
HEADERS = {"v1": V1, "v2": V2}
PAYLOAD = b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"


@asynccontextmanager
async def listening() -> AsyncIterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        yield listener


async def accept_with_header(
    listener: socket.socket, reader: ProxyHeaderReader
) -> tuple[socket.socket, ProxyHeader, int]:
    """Accept a connection and read its header: the socket, the header, how many tries it took."""
    while True:
        await anyio.wait_readable(listener)
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            continue
        break
    connection.setblocking(False)
    tries = 1
    try:
        with anyio.fail_after(10):
            while (header := reader.read_from(connection)) is None:
                await anyio.wait_readable(connection)
                tries += 1
    except BaseException:
        connection.close()
        raise
    return connection, header, tries


async def send_slowly(stream: SocketStream, data: bytes) -> None:
    for index in range(len(data)):
        await stream.send(data[index : index + 1])
        await anyio.sleep(0.002)


@pytest.mark.parametrize("at_once", [True, False], ids=["at once", "a byte at a time"])
@pytest.mark.parametrize("wire", HEADERS.values(), ids=HEADERS.keys())
async def test_the_client_bytes_after_the_header_stay_on_the_socket(
    wire: bytes, at_once: bool
) -> None:
    async with listening() as listener:
        address = listener.getsockname()
        async with await anyio.connect_tcp(*address) as client:
            if at_once:
                await client.send(wire + PAYLOAD)
            async with anyio.create_task_group() as task_group:
                if not at_once:
                    task_group.start_soon(send_slowly, client, wire)
                connection, header, tries = await accept_with_header(listener, ProxyHeaderReader())
            if not at_once:
                await client.send(PAYLOAD)
            # Each try consumed what it saw: a slow sender does not make it spin.
            assert tries <= (2 if at_once else 2 * len(wire) + 2)
            async with await SocketStream.from_socket(connection) as stream:
                received = b""
                with anyio.fail_after(10):
                    while len(received) < len(PAYLOAD):
                        received += await stream.receive()
    assert header.source == ("192.0.2.7", 40000)
    assert header.destination == ("198.51.100.1", 443)
    assert header.length == len(wire)
    assert received == PAYLOAD


@pytest.mark.parametrize("wire", HEADERS.values(), ids=HEADERS.keys())
async def test_tls_starts_after_the_header(wire: bytes, tls_files: TLSFiles) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tls_files.server_cert_file, tls_files.server_key_file)
    client_context = ssl.create_default_context(cafile=tls_files.ca_file)

    async def client(address: tuple[str, int]) -> bytes:
        tcp = await anyio.connect_tcp(*address)
        await tcp.send(wire)  # the ClientHello follows at once, maybe in the same segment
        async with await TLSStream.wrap(
            tcp, hostname="localhost", ssl_context=client_context, standard_compatible=False
        ) as tls:
            await tls.send(PAYLOAD)
            return await tls.receive()

    async with listening() as listener:
        answers: list[bytes] = []
        async with anyio.create_task_group() as task_group:

            async def run_client() -> None:
                answers.append(await client(listener.getsockname()))

            task_group.start_soon(run_client)
            connection, header, _ = await accept_with_header(listener, ProxyHeaderReader())
            tcp = await SocketStream.from_socket(connection)
            async with await TLSStream.wrap(
                tcp, server_side=True, ssl_context=server_context, standard_compatible=False
            ) as tls:
                received = b""
                with anyio.fail_after(10):
                    while len(received) < len(PAYLOAD):
                        received += await tls.receive()
                await tls.send(b"ok")
    assert header.source == ("192.0.2.7", 40000)
    assert received == PAYLOAD
    assert answers == [b"ok"]


@pytest.mark.parametrize(
    ("sent", "message"),
    [
        (PAYLOAD, "does not start with a PROXY"),
        (b"PROXY TCP4 192.0.2.7", "ended before"),
        (V2[:20], "ended before"),
    ],
    ids=["no header", "v1 cut short", "v2 cut short"],
)
async def test_a_bad_or_missing_header_is_refused(sent: bytes, message: str) -> None:
    async with listening() as listener:
        async with await anyio.connect_tcp(*listener.getsockname()) as client:
            await client.send(sent)
            await client.send_eof()
            with pytest.raises(ProxyProtocolError, match=message):
                await accept_with_header(listener, ProxyHeaderReader())


async def test_the_reader_returns_its_header_again_and_reads_no_more() -> None:
    async with listening() as listener:
        async with await anyio.connect_tcp(*listener.getsockname()) as client:
            await client.send(V1 + PAYLOAD)
            reader = ProxyHeaderReader()
            connection, header, _ = await accept_with_header(listener, reader)
            with connection:
                assert reader.read_from(connection) is header
                assert connection.recv(1000, socket.MSG_PEEK) == PAYLOAD
