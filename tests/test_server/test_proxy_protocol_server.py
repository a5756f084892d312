"""``ASGIServer.proxy_protocol``: the client a PROXY header names is the scope's ``client``.

Real TCP connections on loopback (asyncio and Trio): a test client plays
the load balancer, sending a v1 or v2 header that names 192.0.2.7:40000
(an address the client is not), then an HTTP/1.1 request, in cleartext or
over TLS (the header comes before the ClientHello). The application
(:mod:`tests.helpers.scope_app`) answers with its scope. A connection
without a valid header, or too slow to send it, is closed without an
answer, logged at debug level, without a traceback.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import time

import anyio
import pytest

from hface.common import AddressType
from hface.networking._proxy_protocol import V2_SIGNATURE
from hface.server import ASGIServer, Endpoint
from tests.helpers.certs import TLSFiles
from tests.helpers.scope_app import app
from tests.test_server.conftest import running

pytestmark = pytest.mark.anyio

CLIENT = ("192.0.2.7", 40000)
V1 = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n"
V2 = (
    V2_SIGNATURE
    + struct.pack("!BBH", 0x21, 0x11, 12)
    + bytes((192, 0, 2, 7, 127, 0, 0, 1))
    + struct.pack("!HH", 40000, 443)
)
#: v2, LOCAL command: the balancer's own health check; the peer's address stands.
V2_LOCAL = V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, 0)
HEADERS = {"v1": V1, "v2": V2}
REQUEST = b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def exchange(
    address: AddressType, first: bytes, *, ca_file: str | None
) -> tuple[bytes, AddressType]:
    """Send ``first``, then a request (over TLS if ``ca_file``); return the answer, our address."""
    with socket.create_connection(address, timeout=10) as raw:
        own = raw.getsockname()[:2]
        raw.sendall(first)
        sock: socket.socket = raw
        if ca_file is not None:
            sock = ssl.create_default_context(cafile=ca_file).wrap_socket(
                raw, server_hostname="localhost"
            )
        with sock:  # the TLS socket took the descriptor over
            sock.sendall(REQUEST)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return answer, own


def body(answer: bytes) -> dict[str, object]:
    head, _, content = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer
    result: dict[str, object] = json.loads(content)
    return result


def proxy_server(tls_files: TLSFiles) -> ASGIServer:
    server = ASGIServer(app)
    server.tls_config = tls_files.server_config()
    server.proxy_protocol = True
    return server


@pytest.mark.parametrize("version", list(HEADERS))
@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
async def test_the_header_names_the_client(version: str, tls: bool, tls_files: TLSFiles) -> None:
    endpoint = Endpoint("https" if tls else "http", "127.0.0.1", 0)
    async with running(proxy_server(tls_files), [endpoint]) as address:
        answer, _ = await anyio.to_thread.run_sync(
            lambda: exchange(address, HEADERS[version], ca_file=tls_files.ca_file if tls else None)
        )
    assert body(answer)["client"] == list(CLIENT)


async def test_a_local_header_keeps_the_peer(tls_files: TLSFiles) -> None:
    async with running(proxy_server(tls_files), [Endpoint("http", "127.0.0.1", 0)]) as address:
        answer, own = await anyio.to_thread.run_sync(
            lambda: exchange(address, V2_LOCAL, ca_file=None)
        )
    assert body(answer)["client"] == list(own)


async def test_without_proxy_protocol_the_header_is_not_read(tls_files: TLSFiles) -> None:
    server = proxy_server(tls_files)
    server.proxy_protocol = False
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        answer, own = await anyio.to_thread.run_sync(lambda: exchange(address, b"", ca_file=None))
    assert body(answer)["client"] == list(own)


def closed_without_answer(address: AddressType, first: bytes) -> float:
    """Send ``first`` and wait for the server to close; return how long that took."""
    started = time.monotonic()
    with socket.create_connection(address, timeout=10) as sock:
        if first:
            sock.sendall(first)
        try:
            received = sock.recv(65536)
        except ConnectionResetError:
            received = b""
    assert received == b"", received
    return time.monotonic() - started


#: What a balancer would never send: no header, a v1 line that is wrong, a v2 of version 3.
NOT_HEADERS = {
    "v1-missing": REQUEST,
    "v1-bad": b"PROXY TCP4 192.0.2.7 127.0.0.1 040000 443\r\n" + REQUEST,
    "v2-bad-version": V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12) + REQUEST,
    "tls-missing": b"\x16\x03\x01\x00\x05hello",
}


@pytest.mark.parametrize("first", list(NOT_HEADERS))
async def test_a_connection_without_a_valid_header_is_closed(
    first: str, tls_files: TLSFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hface")
    async with running(proxy_server(tls_files), [Endpoint("http", "127.0.0.1", 0)]) as address:
        await anyio.to_thread.run_sync(lambda: closed_without_answer(address, NOT_HEADERS[first]))
        # The server still serves well-behaved balancers.
        answer, _ = await anyio.to_thread.run_sync(lambda: exchange(address, V1, ca_file=None))
    assert body(answer)["client"] == list(CLIENT)
    refused = [record for record in caplog.records if "closed a connection" in record.message]
    assert refused
    assert all(record.levelno == logging.DEBUG for record in refused)
    assert not [record for record in caplog.records if record.exc_info]


async def test_a_silent_connection_is_closed_after_the_header_timeout(
    tls_files: TLSFiles,
) -> None:
    server = proxy_server(tls_files)
    server.timeouts.proxy_header = 0.5
    async with running(server, [Endpoint("http", "127.0.0.1", 0)]) as address:
        waited = await anyio.to_thread.run_sync(lambda: closed_without_answer(address, b"PRO"))
    assert 0.4 < waited < 5
