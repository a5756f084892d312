"""TLS listeners and connections of SystemNetworking, with certificates made by trustme.

Every test that takes ``networking`` runs over each stream implementation
(see conftest.py): the event loop's TLS and anyio's.
"""

from __future__ import annotations

import contextlib
import hashlib
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.errors import TransportError
from hface.networking import (
    ByteStream,
    TLSByteStream,
    TLSVerificationError,
    make_server_ssl_context,
)
from hface.networking._asyncio_streams import TLS_READ_BUFFER
from tests.helpers.certs import TLSFiles
from tests.helpers.network import LOOPBACK_HOSTS, NetworkingFactory

pytestmark = pytest.mark.anyio

ALPN = ("h2", "http/1.1")


async def report_alpn(stream: ByteStream) -> None:
    """Tell the client what the server saw: the ALPN protocol and whether a client cert came."""
    async with stream:
        alpn = stream.extra(TLSAttribute.alpn_protocol) or "-"
        cert = "cert" if stream.extra(TLSAttribute.peer_certificate) else "nocert"
        try:
            await stream.send(f"{alpn} {cert}".encode())
            await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass


async def read_until_closed(stream: ByteStream) -> None:
    while True:
        await stream.receive()


@asynccontextmanager
async def tls_server(
    tls_config: ServerTLSConfig,
    networking: NetworkingFactory,
    *,
    host: str = "127.0.0.1",
    handler: Callable[[ByteStream], Awaitable[None]] = report_alpn,
) -> AsyncIterator[tuple[str, int]]:
    """Serve TLS on a free port for the duration of the block; yield its address."""
    listener = await networking().listen_tcp_tls(
        (host, 0), tls_config=tls_config, alpn_protocols=ALPN
    )
    port = listener.extra(SocketAttribute.local_port)
    assert listener.extra(SocketAttribute.local_address) == (host, port)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handler)
            yield host, port
            await listener.aclose()


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_alpn_and_attributes(
    tls_files: TLSFiles, host: str, networking: NetworkingFactory
) -> None:
    async with tls_server(tls_files.server_config(), networking, host=host) as address:
        stream = await networking().connect_tcp_tls(
            address, tls_config=tls_files.client_config(), alpn_protocols=["http/1.1", "h2"]
        )
        async with stream:
            # The server's preference wins when both offer h2.
            assert await stream.receive() == b"h2 nocert"
            assert stream.extra(TLSAttribute.alpn_protocol) == "h2"
            assert stream.extra(TLSAttribute.tls_version) in ("TLSv1.2", "TLSv1.3")
            certificate = stream.extra(TLSAttribute.peer_certificate)
            assert certificate is not None
            assert ("DNS", "localhost") in certificate["subjectAltName"]
            assert stream.extra(SocketAttribute.remote_address) == address


async def test_alpn_fallback(tls_files: TLSFiles, networking: NetworkingFactory) -> None:
    async with tls_server(tls_files.server_config(), networking) as address:
        stream = await networking().connect_tcp_tls(
            address, tls_config=tls_files.client_config(), alpn_protocols=["http/1.1"]
        )
        async with stream:
            assert await stream.receive() == b"http/1.1 nocert"


async def test_server_name(tls_files: TLSFiles, networking: NetworkingFactory) -> None:
    async with tls_server(tls_files.server_config(), networking) as address:
        stream = await networking().connect_tcp_tls(
            address,
            server_name="localhost",
            tls_config=tls_files.client_config(),
            alpn_protocols=ALPN,
        )
        await stream.aclose()
        with pytest.raises(TLSVerificationError, match="cannot verify the TLS certificate"):
            await networking().connect_tcp_tls(
                address,
                server_name="example.com",
                tls_config=tls_files.client_config(),
                alpn_protocols=ALPN,
            )


async def test_untrusted_certificate(tls_files: TLSFiles, networking: NetworkingFactory) -> None:
    async with tls_server(tls_files.server_config(), networking) as address:
        # The system's CAs do not include the test CA.
        with pytest.raises(TLSVerificationError, match="cannot verify the TLS certificate") as info:
            await networking().connect_tcp_tls(
                address, tls_config=ClientTLSConfig(), alpn_protocols=ALPN
            )
    assert isinstance(info.value, TransportError)
    assert info.value.__cause__ is not None


async def test_insecure(tls_files: TLSFiles, networking: NetworkingFactory) -> None:
    async with tls_server(tls_files.server_config(), networking) as address:
        stream = await networking().connect_tcp_tls(
            address,
            server_name="example.com",
            tls_config=ClientTLSConfig(insecure=True),
            alpn_protocols=ALPN,
        )
        async with stream:
            assert await stream.receive() == b"h2 nocert"


async def test_cadata(tls_files: TLSFiles, networking: NetworkingFactory) -> None:
    cadata = await anyio.Path(tls_files.ca_file).read_text()
    async with tls_server(tls_files.server_config(), networking) as address:
        stream = await networking().connect_tcp_tls(
            address, tls_config=ClientTLSConfig(cadata=cadata), alpn_protocols=ALPN
        )
        await stream.aclose()


async def test_mutual_tls(tls_files: TLSFiles, networking: NetworkingFactory) -> None:
    server_config = tls_files.server_config(client_auth=True, require=True)
    async with tls_server(server_config, networking) as address:
        stream = await networking().connect_tcp_tls(
            address, tls_config=tls_files.client_config(client_cert=True), alpn_protocols=ALPN
        )
        async with stream:
            assert await stream.receive() == b"h2 cert"


async def test_optional_client_certificate(
    tls_files: TLSFiles, networking: NetworkingFactory
) -> None:
    async with tls_server(tls_files.server_config(client_auth=True), networking) as address:
        stream = await networking().connect_tcp_tls(
            address, tls_config=tls_files.client_config(), alpn_protocols=ALPN
        )
        async with stream:
            assert await stream.receive() == b"h2 nocert"


async def test_missing_client_certificate(
    tls_files: TLSFiles, networking: NetworkingFactory
) -> None:
    server_config = tls_files.server_config(client_auth=True, require=True)
    system = networking()
    async with tls_server(server_config, networking) as address:
        # With TLS 1.3 the client finishes its handshake before the server
        # checks the certificate, so the refusal may arrive on the first read.
        async def connect_and_read() -> None:
            stream = await system.connect_tcp_tls(
                address, tls_config=tls_files.client_config(), alpn_protocols=ALPN
            )
            async with stream:
                await stream.receive()

        with pytest.raises((TransportError, anyio.BrokenResourceError, anyio.EndOfStream)):
            await connect_and_read()
        # The listener survived the bad client.
        stream = await system.connect_tcp_tls(
            address, tls_config=tls_files.client_config(client_cert=True), alpn_protocols=ALPN
        )
        async with stream:
            assert await stream.receive() == b"h2 cert"


async def test_garbage_client_does_not_end_serve(
    tls_files: TLSFiles, networking: NetworkingFactory
) -> None:
    system = networking()
    async with tls_server(tls_files.server_config(), networking) as address:
        async with await system.connect_tcp(address) as plain:
            await plain.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            # The server hangs up (maybe after a TLS alert) instead of answering.
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await read_until_closed(plain)
        stream = await system.connect_tcp_tls(
            address, tls_config=tls_files.client_config(), alpn_protocols=ALPN
        )
        async with stream:
            assert await stream.receive() == b"h2 nocert"


async def test_server_tls_config_validation() -> None:
    with pytest.raises(ValueError, match="certfile"):
        make_server_ssl_context(ServerTLSConfig(), ALPN)
    with pytest.raises(ValueError, match="client_cafile"):
        make_server_ssl_context(
            ServerTLSConfig(certfile="cert.pem", require_client_certificate=True), ALPN
        )


async def echo_all(stream: ByteStream) -> None:
    """Send back what arrives, until the peer closes."""
    async with stream:
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while True:
                await stream.send(await stream.receive())


async def test_a_large_echo_arrives_whole(
    tls_files: TLSFiles, networking: NetworkingFactory
) -> None:
    payload = hashlib.sha256(b"seed").digest() * 65536  # 2 MiB
    async with tls_server(tls_files.server_config(), networking, handler=echo_all) as address:
        stream = await networking().connect_tcp_tls(
            address, tls_config=tls_files.client_config(), alpn_protocols=ALPN
        )
        async with stream, anyio.create_task_group() as tg:
            tg.start_soon(stream.send, payload)
            received = bytearray()
            while len(received) < len(payload):
                received += await stream.receive()
            assert received == payload


async def test_server_side_attributes_and_the_end(
    tls_files: TLSFiles, networking: NetworkingFactory
) -> None:
    seen: dict[str, object] = {}
    ended = anyio.Event()

    async def inspect(stream: ByteStream) -> None:
        async with stream:
            seen["server_side"] = stream.extra(TLSAttribute.server_side)
            seen["cert"] = stream.extra(TLSAttribute.peer_certificate_binary)
            seen["ssl_object"] = stream.extra(TLSAttribute.ssl_object)
            seen["remote"] = stream.extra(SocketAttribute.remote_address)
            with pytest.raises(NotImplementedError):
                await stream.send_eof()  # TLS cannot half-close
            await stream.send(b"bye")
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            ended.set()

    server_config = tls_files.server_config(client_auth=True, require=True)
    async with tls_server(server_config, networking, handler=inspect) as address:
        stream = await networking().connect_tcp_tls(
            address, tls_config=tls_files.client_config(client_cert=True), alpn_protocols=ALPN
        )
        async with stream:
            assert await stream.receive() == b"bye"
            assert stream.extra(TLSAttribute.server_side) is False
            local = stream.extra(SocketAttribute.local_address)
        await ended.wait()
    assert seen["server_side"] is True
    assert isinstance(seen["cert"], bytes)
    assert isinstance(seen["ssl_object"], ssl.SSLObject | ssl.SSLSocket)
    assert seen["remote"] == local


async def test_the_stream_implementation(
    tls_files: TLSFiles, networking: NetworkingFactory, stream_path: tuple[object, bool]
) -> None:
    """On asyncio the event loop's TLS serves, unless asyncio_transports=False; anyio's else."""
    on_loop_transports = stream_path[1]
    streams: list[ByteStream] = []

    async def keep(stream: ByteStream) -> None:
        streams.append(stream)
        await report_alpn(stream)

    async with tls_server(tls_files.server_config(), networking, handler=keep) as address:
        stream = await networking().connect_tcp_tls(
            address, tls_config=tls_files.client_config(), alpn_protocols=ALPN
        )
        async with stream:
            assert await stream.receive() == b"h2 nocert"
    assert isinstance(stream, TLSByteStream) is not on_loop_transports
    assert isinstance(streams[0], TLSByteStream) is not on_loop_transports


async def test_asyncio_tls_keeps_a_small_read_buffer(
    tls_files: TLSFiles, networking: NetworkingFactory, stream_path: tuple[object, bool]
) -> None:
    """CPython's TLS layer (3.11+) would keep 256 KiB per connection; it gets 64 KiB.

    Other TLS layers (uvloop's, anyio's) have no such buffer: nothing to check.
    """
    streams: list[ByteStream] = []
    checked = 0

    async def keep(stream: ByteStream) -> None:
        streams.append(stream)
        await report_alpn(stream)

    async with tls_server(tls_files.server_config(), networking, handler=keep) as address:
        stream = await networking().connect_tcp_tls(
            address, tls_config=tls_files.client_config(), alpn_protocols=ALPN
        )
        async with stream:
            assert await stream.receive() == b"h2 nocert"
            for each in (stream, streams[0]):
                transport = getattr(each, "_transport", None)
                buffer = getattr(getattr(transport, "_ssl_protocol", None), "_ssl_buffer", None)
                if buffer is not None:
                    assert len(buffer) == TLS_READ_BUFFER == 64 * 1024
                    checked += 1
    if stream_path == ("asyncio", True) and sys.version_info >= (3, 11):
        assert checked == 2  # asyncio's own TLS: both ends were checked
