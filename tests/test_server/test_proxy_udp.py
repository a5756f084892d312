"""CONNECT-UDP (RFC 9298) through ProxyServer: HTTP/3 datagrams, HTTP/2 and HTTP/1.1 capsules.

The independent client (:mod:`tests.helpers.masque_client`) is aioquic
alone and talks to ``hface proxy`` run as a subprocess; the other tests
run the proxy in-process and reach it with hface connections (HTTP/2 and
HTTP/3) or raw TLS bytes (HTTP/1.1). UDP targets are sockets on loopback.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from hface.common import AddressType, ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.connections import HTTPConnection
from hface.events import DatagramReceived, DataReceived, HeadersReceived
from hface.networking import DatagramStream, SystemNetworking
from hface.protocols._capsules import encode_datagram_capsule
from tests.helpers.certs import TLSFiles
from tests.helpers.masque_client import masque_connection, open_udp_tunnel, udp_request
from tests.helpers.peers import free_port
from tests.test_cli.test_server_options import hface_process
from tests.test_server.test_proxy import connect, header, running_proxy

pytestmark = pytest.mark.anyio

MULTIPLEXED = ("2", "3")


# -- UDP targets on loopback -------------------------------------------------------


@contextmanager
def udp_echo_server() -> Iterator[AddressType]:
    """A UDP echo server in a thread, on 127.0.0.1; yields its address."""
    import threading

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()
    finally:
        stop.set()
        thread.join(5)
        sock.close()


class CountingNetworking(SystemNetworking):
    """System networking that counts the UDP sockets it opens (the proxy's ``networking``)."""

    def __init__(self) -> None:
        super().__init__()
        self.udp_sockets = 0

    async def connect_udp(self, remote_address: AddressType) -> DatagramStream:
        self.udp_sockets += 1
        return await super().connect_udp(remote_address)


def connect_udp_request(target: AddressType, *extra: tuple[bytes, bytes]) -> HeadersType:
    return udp_request("localhost", target[0], target[1], list(extra))


async def open_tunnel(
    connection: HTTPConnection, target: AddressType, *extra: tuple[bytes, bytes]
) -> tuple[int, HeadersType, object]:
    stream = connection.open_stream()
    await stream.send_headers(connect_udp_request(target, *extra))
    event = await stream.receive_event()
    assert isinstance(event, HeadersReceived)
    return int(dict(event.headers)[b":status"]), event.headers, stream


# -- hface connections (HTTP/2, HTTP/3) through the in-process proxy ------------------


@pytest.mark.parametrize("http_version", MULTIPLEXED)
async def test_datagrams_reach_a_udp_echo_server_and_back(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    with udp_echo_server() as target, anyio.fail_after(20):
        async with running_proxy(server_tls_config) as proxy:
            async with await connect(http_version, proxy, client_tls_config) as connection:
                stream = connection.open_stream()
                await stream.send_headers(connect_udp_request(target))
                response = await stream.receive_event()
                assert isinstance(response, HeadersReceived)
                assert header(response.headers, b":status") == b"200"
                assert header(response.headers, b"capsule-protocol") == b"?1"
                echoed = set()
                for number in range(100):
                    payload = b"%d:" % number + b"u" * 1000
                    assert await stream.send_datagram(b"\x00" + payload)
                    event = await stream.receive_event()
                    assert isinstance(event, DatagramReceived)
                    assert event.data[:1] == b"\x00"
                    echoed.add(event.data[1:])
                assert len(echoed) == 100
                # Another context ID is dropped (RFC 9298 §4): nothing comes back.
                await stream.send_datagram(b"\x02unknown context")
                await stream.send_datagram(b"\x00after")
                event = await stream.receive_event()
                assert isinstance(event, DatagramReceived)
                assert event.data == b"\x00after"
                await stream.send_data(b"", end_stream=True)
                event = await stream.receive_event()
                assert isinstance(event, DataReceived)
                assert event.end_stream


@pytest.mark.parametrize("http_version", MULTIPLEXED)
@pytest.mark.parametrize(
    ("attributes", "extra", "path", "status", "proxy_error"),
    [
        ({"allow_private_targets": False}, (), None, 403, b"destination_ip_prohibited"),
        ({"credentials": ("user", "pw")}, (), None, 407, b"http_request_denied"),
        ({}, (), b"/.well-known/masque/udp/127.0.0.1/", 400, b"http_request_error"),
        ({}, (), b"/.well-known/masque/udp/127.0.0.1/99999/", 400, b"http_request_error"),
        ({"connect_udp": False}, (), None, 501, b"http_request_error"),
        ({}, (), b"/.well-known/masque/udp/no-such-host.invalid/53/", 502, b"dns_error"),
    ],
)
async def test_refusals_open_no_socket(
    http_version: str,
    attributes: dict[str, Any],
    extra: tuple[tuple[bytes, bytes], ...],
    path: bytes | None,
    status: int,
    proxy_error: bytes,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    networking = CountingNetworking()
    with anyio.fail_after(20):
        async with running_proxy(
            server_tls_config, networking=networking, connect_timeout=5.0, **attributes
        ) as proxy:
            async with await connect(http_version, proxy, client_tls_config) as connection:
                stream = connection.open_stream()
                headers = list(connect_udp_request(("127.0.0.1", 9), *extra))
                if path is not None:
                    headers = [(k, path if k == b":path" else v) for k, v in headers]
                await stream.send_headers(headers)
                response = await stream.receive_event()
                assert isinstance(response, HeadersReceived)
                assert header(response.headers, b":status") == str(status).encode()
                value = header(response.headers, b"proxy-status")
                assert value is not None
                assert value.startswith(b"hface; error=" + proxy_error + b"; details=")
    assert networking.udp_sockets == 0


async def test_credentials_let_the_tunnel_open(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    authorization = (b"proxy-authorization", b"Basic dXNlcjpwdw==")  # user:pw
    with udp_echo_server() as target, anyio.fail_after(20):
        async with running_proxy(server_tls_config, credentials=("user", "pw")) as proxy:
            async with await connect("2", proxy, client_tls_config) as connection:
                status, _, _ = await open_tunnel(connection, target, authorization)
                assert status == 200


async def test_an_idle_tunnel_is_closed(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    with udp_echo_server() as target, anyio.fail_after(20):
        async with running_proxy(server_tls_config, idle_timeout=0.3) as proxy:
            async with await connect("3", proxy, client_tls_config) as connection:
                stream = connection.open_stream()
                await stream.send_headers(connect_udp_request(target))
                await stream.receive_event()
                started = time.monotonic()
                event = await stream.receive_event()
                assert isinstance(event, DataReceived)
                assert event.end_stream
                assert 0.2 < time.monotonic() - started < 5


# -- HTTP/1.1: Upgrade: connect-udp and capsules over TLS --------------------------


async def test_http1_upgrade_carries_capsules(
    server_tls_config: ServerTLSConfig, tls_files: TLSFiles
) -> None:
    context = ssl.create_default_context(cafile=tls_files.ca_file)
    context.set_alpn_protocols(["http/1.1"])
    with udp_echo_server() as (host, port), anyio.fail_after(20):
        async with running_proxy(server_tls_config) as proxy:
            stream = await anyio.connect_tcp(
                *proxy, ssl_context=context, tls_standard_compatible=False
            )
            async with stream:
                request = (
                    f"GET /.well-known/masque/udp/{host}/{port}/ HTTP/1.1\r\n"
                    "Host: localhost\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n"
                    "Capsule-Protocol: ?1\r\n\r\n"
                ).encode()
                await stream.send(request)
                head = b""
                while b"\r\n\r\n" not in head:
                    head += await stream.receive()
                head, _, rest = head.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 101 ")
                assert b"upgrade: connect-udp" in head.lower()
                await stream.send(encode_datagram_capsule(b"\x00ping"))
                expected = encode_datagram_capsule(b"\x00ping")
                while len(rest) < len(expected):
                    rest += await stream.receive()
                assert rest == expected


# -- the independent client, and hface proxy as users run it -------------------------


@pytest.fixture
def proxy_process(tmp_path: Path, tls_files: TLSFiles) -> Iterator[tuple[int, int]]:
    """``hface proxy`` on https://127.0.0.1 (HTTP/3 too); yields its port and its PID."""
    port = free_port()
    args = ["proxy", "--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    args += ["--log-level", "warning", "--graceful-timeout", "1", f"https://127.0.0.1:{port}"]
    environment = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    environment.pop("HFACE_PROXY_AUTH", None)
    with hface_process(
        args, env=environment, port=port, log_file=tmp_path / "log", udp=True
    ) as process:
        yield port, process.process.pid
        assert process.stop() == 0


def rss_kib(pid: int) -> int:
    """The resident set size of a process, in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_aioquic_client_exchanges_1000_datagrams_through_hface_proxy(
    proxy_process: tuple[int, int], tls_files: TLSFiles
) -> None:
    port, _ = proxy_process
    with udp_echo_server() as target:
        async with masque_connection("127.0.0.1", port, cafile=tls_files.ca_file) as protocol:
            tunnel = await asyncio.wait_for(open_udp_tunnel(protocol, target), 10)
            assert tunnel.status == 200
            sent = {b"%04d" % number + b"." * 500 for number in range(1000)}
            waiting = sorted(sent)
            echoed: set[bytes] = set()
            deadline = time.monotonic() + 30
            while len(echoed) < len(sent) and time.monotonic() < deadline:
                batch = [payload for payload in waiting if payload not in echoed][:50]
                for payload in batch:
                    tunnel.send(payload)  # a window of 50; lost ones are sent again
                try:
                    while True:
                        echoed.add(await asyncio.wait_for(tunnel.receive(), 0.5))
                        if all(payload in echoed for payload in batch):
                            break
                except TimeoutError:
                    pass
            assert echoed == sent


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_hface_proxy_no_connect_udp_refuses_with_501(
    tmp_path: Path, tls_files: TLSFiles
) -> None:
    port = free_port()
    args = ["proxy", "--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    args += ["--no-connect-udp", f"https://127.0.0.1:{port}"]
    environment = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    log_file = tmp_path / "log"
    with hface_process(args, env=environment, port=port, log_file=log_file, udp=True):
        async with masque_connection("127.0.0.1", port, cafile=tls_files.ca_file) as protocol:
            tunnel = await asyncio.wait_for(open_udp_tunnel(protocol, ("127.0.0.1", 9)), 10)
    assert tunnel.status == 501
    assert "hface proxy (CONNECT)" in log_file.read_text()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_aioquic_client_is_refused_a_private_target_when_denied(
    tmp_path: Path, tls_files: TLSFiles
) -> None:
    port = free_port()
    args = ["proxy", "--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    args += ["--deny-private-targets", f"https://127.0.0.1:{port}"]
    environment = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    with hface_process(args, env=environment, port=port, log_file=tmp_path / "log", udp=True):
        async with masque_connection("127.0.0.1", port, cafile=tls_files.ca_file) as protocol:
            tunnel = await asyncio.wait_for(open_udp_tunnel(protocol, ("127.0.0.1", 9)), 10)
    assert tunnel.status == 403
    assert dict(tunnel.headers)[b"proxy-status"].startswith(
        b"hface; error=destination_ip_prohibited"
    )


@contextmanager
def flooding_udp_target(count: int, size: int = 1200) -> Iterator[AddressType]:
    """A UDP server that answers its first datagram with ``count`` datagrams, as fast as it can."""
    import threading

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)

    def flood() -> None:
        try:
            _, peer = sock.recvfrom(65535)
            payload = b"f" * size
            for index in range(count):
                sock.sendto(payload, peer)
                if index % 20 == 19:
                    time.sleep(0.001)  # about what the proxy reads: the kernel drops little
        except OSError:
            return

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()
    finally:
        sock.close()
        thread.join(10)


class UDPForwarder:
    """Forwards UDP between a client and ``upstream`` until :meth:`cut` (then drops all)."""

    def __init__(self, upstream: AddressType) -> None:
        import threading

        self.upstream = upstream
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect(upstream)
        self.address: AddressType = self.front.getsockname()
        self.client: AddressType | None = None
        self.cut_off = threading.Event()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._forward, args=(True,), daemon=True),
            threading.Thread(target=self._forward, args=(False,), daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _forward(self, outbound: bool) -> None:
        source = self.front if outbound else self.back
        source.settimeout(0.1)
        while not self.stop.is_set():
            try:
                data, peer = source.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if self.cut_off.is_set():
                continue
            try:
                if outbound:
                    self.client = peer
                    self.back.send(data)
                elif self.client is not None:
                    self.front.sendto(data, self.client)
            except OSError:
                continue

    def cut(self) -> None:
        """The client vanishes: nothing passes either way any more."""
        self.cut_off.set()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        self.front.close()
        self.back.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_flooding_target_and_a_vanished_client_hold_the_proxy_to_its_budget(
    proxy_process: tuple[int, int], tls_files: TLSFiles
) -> None:
    # The target floods; the client's path goes dead, so QUIC's congestion
    # window stays full and nothing toward the client is acknowledged: the
    # proxy drops datagrams rather than queue them. (Toward a silent target
    # nothing queues in the proxy: a UDP send never waits, the kernel drops;
    # the stream's queue of datagrams not relayed yet is bounded too, see
    # tests/test_connections/test_datagrams.py.)
    port, pid = proxy_process
    megabytes = 30
    forwarder = UDPForwarder(("127.0.0.1", port))
    try:
        with flooding_udp_target(megabytes * 1000, 1000) as target:
            host, forwarded_port = forwarder.address
            async with masque_connection(host, forwarded_port, cafile=tls_files.ca_file) as client:
                tunnel = await asyncio.wait_for(open_udp_tunnel(client, target), 10)
                assert tunnel.status == 200
                before = rss_kib(pid)
                tunnel.send(b"go")  # the target starts flooding
                await asyncio.sleep(0.05)
                forwarder.cut()
                peak = before
                for _ in range(40):
                    await asyncio.sleep(0.1)
                    peak = max(peak, rss_kib(pid))
    finally:
        forwarder.close()
    grown = peak - before
    print(f"proxy RSS grew {grown} KiB at most while a target sent {megabytes} MB")
    assert grown < 4 * 1024  # the datagrams queued toward the client: 512 at most


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_200_tunnels_at_once_stay_within_a_memory_bound(
    proxy_process: tuple[int, int], tls_files: TLSFiles
) -> None:
    port, pid = proxy_process
    tunnels = []
    with udp_echo_server() as target:
        async with (
            masque_connection("127.0.0.1", port, cafile=tls_files.ca_file) as first,
            masque_connection("127.0.0.1", port, cafile=tls_files.ca_file) as second,
        ):
            before = rss_kib(pid)
            for protocol in (first, second):
                for _ in range(100):
                    tunnels.append(await asyncio.wait_for(open_udp_tunnel(protocol, target), 10))
            assert [tunnel.status for tunnel in tunnels] == [200] * 200
            for index, tunnel in enumerate(tunnels):
                tunnel.send(b"%d" % index)
            for index, tunnel in enumerate(tunnels):
                assert await asyncio.wait_for(tunnel.receive(), 10) == b"%d" % index
            grown = rss_kib(pid) - before
    per_tunnel = grown / 200
    print(f"200 CONNECT-UDP tunnels: proxy RSS grew {grown} KiB ({per_tunnel:.1f} KiB each)")
    assert grown < 64 * 1024
