"""TLS listeners and connections of SystemNetworking, with certificates made by trustme."""

from __future__ import annotations

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
    SystemNetworking,
    TLSVerificationError,
    make_server_ssl_context,
)
from tests.helpers.certs import TLSFiles
from tests.helpers.network import LOOPBACK_HOSTS

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
    *,
    host: str = "127.0.0.1",
    handler: Callable[[ByteStream], Awaitable[None]] = report_alpn,
) -> AsyncIterator[tuple[str, int]]:
    """Serve TLS on a free port for the duration of the block; yield its address."""
    listener = await SystemNetworking().listen_tcp_tls(
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
async def test_alpn_and_attributes(tls_files: TLSFiles, host: str) -> None:
    async with tls_server(tls_files.server_config(), host=host) as address:
        stream = await SystemNetworking().connect_tcp_tls(
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


async def test_alpn_fallback(tls_files: TLSFiles) -> None:
    async with tls_server(tls_files.server_config()) as address:
        stream = await SystemNetworking().connect_tcp_tls(
            address, tls_config=tls_files.client_config(), alpn_protocols=["http/1.1"]
        )
        async with stream:
            assert await stream.receive() == b"http/1.1 nocert"


async def test_server_name(tls_files: TLSFiles) -> None:
    async with tls_server(tls_files.server_config()) as address:
        stream = await SystemNetworking().connect_tcp_tls(
            address,
            server_name="localhost",
            tls_config=tls_files.client_config(),
            alpn_protocols=ALPN,
        )
        await stream.aclose()
        with pytest.raises(TLSVerificationError, match="cannot verify the TLS certificate"):
            await SystemNetworking().connect_tcp_tls(
                address,
                server_name="example.com",
                tls_config=tls_files.client_config(),
                alpn_protocols=ALPN,
            )


async def test_untrusted_certificate(tls_files: TLSFiles) -> None:
    async with tls_server(tls_files.server_config()) as address:
        # The system's CAs do not include the test CA.
        with pytest.raises(TLSVerificationError, match="cannot verify the TLS certificate") as info:
            await SystemNetworking().connect_tcp_tls(
                address, tls_config=ClientTLSConfig(), alpn_protocols=ALPN
            )
    assert isinstance(info.value, TransportError)
    assert info.value.__cause__ is not None


async def test_insecure(tls_files: TLSFiles) -> None:
    async with tls_server(tls_files.server_config()) as address:
        stream = await SystemNetworking().connect_tcp_tls(
            address,
            server_name="example.com",
            tls_config=ClientTLSConfig(insecure=True),
            alpn_protocols=ALPN,
        )
        async with stream:
            assert await stream.receive() == b"h2 nocert"


async def test_cadata(tls_files: TLSFiles) -> None:
    cadata = await anyio.Path(tls_files.ca_file).read_text()
    async with tls_server(tls_files.server_config()) as address:
        stream = await SystemNetworking().connect_tcp_tls(
            address, tls_config=ClientTLSConfig(cadata=cadata), alpn_protocols=ALPN
        )
        await stream.aclose()


async def test_mutual_tls(tls_files: TLSFiles) -> None:
    server_config = tls_files.server_config(client_auth=True, require=True)
    async with tls_server(server_config) as address:
        stream = await SystemNetworking().connect_tcp_tls(
            address, tls_config=tls_files.client_config(client_cert=True), alpn_protocols=ALPN
        )
        async with stream:
            assert await stream.receive() == b"h2 cert"


async def test_optional_client_certificate(tls_files: TLSFiles) -> None:
    async with tls_server(tls_files.server_config(client_auth=True)) as address:
        stream = await SystemNetworking().connect_tcp_tls(
            address, tls_config=tls_files.client_config(), alpn_protocols=ALPN
        )
        async with stream:
            assert await stream.receive() == b"h2 nocert"


async def test_missing_client_certificate(tls_files: TLSFiles) -> None:
    server_config = tls_files.server_config(client_auth=True, require=True)
    networking = SystemNetworking()
    async with tls_server(server_config) as address:
        # With TLS 1.3 the client finishes its handshake before the server
        # checks the certificate, so the refusal may arrive on the first read.
        async def connect_and_read() -> None:
            stream = await networking.connect_tcp_tls(
                address, tls_config=tls_files.client_config(), alpn_protocols=ALPN
            )
            async with stream:
                await stream.receive()

        with pytest.raises((TransportError, anyio.BrokenResourceError, anyio.EndOfStream)):
            await connect_and_read()
        # The listener survived the bad client.
        stream = await networking.connect_tcp_tls(
            address, tls_config=tls_files.client_config(client_cert=True), alpn_protocols=ALPN
        )
        async with stream:
            assert await stream.receive() == b"h2 cert"


async def test_garbage_client_does_not_end_serve(tls_files: TLSFiles) -> None:
    networking = SystemNetworking()
    async with tls_server(tls_files.server_config()) as address:
        async with await networking.connect_tcp(address) as plain:
            await plain.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            # The server hangs up (maybe after a TLS alert) instead of answering.
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await read_until_closed(plain)
        stream = await networking.connect_tcp_tls(
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
