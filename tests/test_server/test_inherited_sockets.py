"""Servers on sockets made elsewhere (``fd://``), and the QUIC connection IDs a server issues.

A socket bound by the test (as systemd or a supervisor would) is served
through an ``fd://`` or ``fd+tls://`` endpoint, in this process and by
``hface server`` in a child that inherits it. Connection IDs: every ID an
HTTP/3 server issues, its first and those it adds later, carries the slot
and server ID of its layout (what steers datagrams to a worker).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.networking._connection_ids import ConnectionIDLayout, connection_id_slot
from hface.protocols.http3 import HTTP3ClientFactory, HTTP3ServerFactory, sniff_quic_packet
from hface.server import ASGIServer, Endpoint, run_workers
from tests.helpers.certs import TLSFiles
from tests.helpers.peers import free_port
from tests.helpers.quic_pair import SERVER_ADDRESS, QUICProtocolPair, certificates
from tests.helpers.udp_relay import RebindingRelay
from tests.test_server.conftest import fetch, running

ROOT = Path(__file__).resolve().parents[2]


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def bound_socket(kind: socket.SocketKind) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    return sock


@pytest.mark.anyio
@pytest.mark.parametrize("tls", [True, False], ids=["fd+tls", "fd"])
async def test_an_fd_endpoint_serves_an_inherited_socket(
    http_version: str,
    tls: bool,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    if http_version == "3" and not tls:
        pytest.skip("HTTP/3 is over TLS only")
    kind = socket.SOCK_DGRAM if http_version == "3" else socket.SOCK_STREAM
    with bound_socket(kind) as sock:
        server = ASGIServer(hello)
        server.tls_config = server_tls_config
        endpoint = Endpoint.parse(f"{'fd+tls' if tls else 'fd'}://{sock.fileno()}")
        async with running(server, [endpoint]) as address:
            assert address == sock.getsockname()
            response = await fetch(http_version, address, client_tls_config if tls else None)
        assert (response.status, response.body) == (200, b"hello")
        assert sock.fileno() != -1  # a duplicate was served: the original stays the caller's


@pytest.mark.anyio
async def test_fd_endpoints_that_cannot_be_served_are_clear_errors(
    server_tls_config: ServerTLSConfig, tmp_path: Path
) -> None:
    server = ASGIServer(hello)
    server.tls_config = server_tls_config
    server.handle_signals = False
    with bound_socket(socket.SOCK_DGRAM) as udp, (tmp_path / "file").open("w") as file:
        cases = {
            f"fd://{udp.fileno()}": "HTTP/3 needs fd+tls://",
            f"fd://{file.fileno()}": "no socket there",
            "fd://999": "no socket there",
        }
        for value, message in cases.items():
            with pytest.raises(ValueError, match=re.escape(message)):
                await server.run([Endpoint.parse(value)])


@pytest.mark.parametrize("value", ["fd://", "fd://x", "fd://-1", "fd://3/path", "fd+tls://+3"])
def test_fd_endpoints_take_a_number(value: str) -> None:
    with pytest.raises(ValueError, match="file descriptor number"):
        Endpoint.parse(value)


def test_fd_endpoints_round_trip() -> None:
    for value in ("fd://3", "fd+tls://7"):
        endpoint = Endpoint.parse(value)
        assert str(endpoint) == value
        assert endpoint.fd == int(value.rpartition("/")[2])
    assert Endpoint.parse("fd+tls://3").tls
    assert not Endpoint.parse("fd://3").tls
    assert Endpoint.parse("https://localhost:1").fd is None


@contextmanager
def hface_on_socket(
    sock: socket.socket,
    endpoint: str,
    tls_files: TLSFiles,
    *,
    env: dict[str, str] | None = None,
    prefix: list[str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``hface server ENDPOINT`` in a child process that inherits ``sock``."""
    command = [*(prefix or [sys.executable]), "-m", "hface", "server", endpoint, "--no-access-log"]
    command += ["--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    process = subprocess.Popen(
        command,
        pass_fds=[sock.fileno()],
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ask_http1(address: tuple[str, int]) -> bytes:
    """A request on a connection of its own, retried while the server starts (bounded)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
                return data
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


#: Runs a command with socket ARGV[1] as file descriptors 3 and 4, as systemd hands
#: sockets over (LISTEN_PID: the process that execs, so the command).
_AS_SYSTEMD = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[1]), 4); "
    "os.environ['LISTEN_PID'] = str(os.getpid()); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


@pytest.mark.parametrize("systemd", [False, True], ids=["fd", "LISTEN_FDS"])
def test_hface_server_serves_a_socket_its_parent_hands_it(
    tls_files: TLSFiles, systemd: bool
) -> None:
    with bound_socket(socket.SOCK_STREAM) as sock:
        # Nobody accepts on it until the child does: a connection waits in the backlog.
        address = sock.getsockname()
        if systemd:
            env = {"LISTEN_FDS": "2", "LISTEN_FDNAMES": "other:web"}
            prefix = [sys.executable, "-c", _AS_SYSTEMD, str(sock.fileno())]
            with hface_on_socket(sock, "fd://web", tls_files, env=env, prefix=prefix):
                reply = ask_http1(address)
        else:
            with hface_on_socket(sock, f"fd://{sock.fileno()}", tls_files):
                reply = ask_http1(address)
    assert reply.startswith(b"HTTP/1.1 200 ")


def test_every_connection_id_an_http3_server_issues_carries_its_slot() -> None:
    layout = ConnectionIDLayout(length=12, server_id=b"\x0a\x0b")
    cafile, certfile, keyfile = certificates()
    client = HTTP3ClientFactory(connection_id_length=12)(
        remote_address=SERVER_ADDRESS,
        server_name="localhost",
        tls_config=ClientTLSConfig(cafile=cafile),
    )
    factory = HTTP3ServerFactory(connection_id_length=12).with_connection_id_generator(
        layout.generator(5)
    )
    server = factory(tls_config=ServerTLSConfig(certfile=certfile, keyfile=keyfile))
    pair = QUICProtocolPair(client, server)
    pair.transfer()
    pair.advance(0.1)
    assert server.handshake_completed
    # What the client sends now is addressed to the IDs the server issued.
    destinations = set()
    request = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")]
    client.submit_headers(0, [*request, (b":authority", b"localhost")], end_stream=True)
    for data, _ in client.datagrams_to_send():
        destinations.add(sniff_quic_packet(data, connection_id_length=12).destination_connection_id)
    # The IDs the server answers to: those it issued, then the client's first Initial's.
    issued = server.connection_ids[:-1]
    assert len(issued) >= 2  # the first, and those NEW_CONNECTION_ID frames carried
    assert destinations
    assert {connection_id_slot(layout, cid) for cid in [*issued, *destinations]} == {5}


def test_a_generator_sets_the_length_of_the_connection_ids() -> None:
    layout = ConnectionIDLayout.for_server_id(b"\x01\x02\x03")
    assert layout.length == 14
    factory = HTTP3ServerFactory().with_connection_id_generator(layout.generator(0))
    assert factory.quic_connection_id_length == 14
    with pytest.raises(ValueError, match="connection_id_length"):
        HTTP3ServerFactory().with_connection_id_generator(lambda: b"\x00" * 21)


def test_run_workers_refuses_a_server_object() -> None:
    server: Any = ASGIServer(hello)
    with pytest.raises(TypeError, match=r"'package\.module:function'"):
        run_workers(server, [Endpoint("http", "127.0.0.1", 0)], workers=2)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_quic_server_id_is_in_every_connection_id_hface_server_issues(
    tls_files: TLSFiles, client_tls_config: ClientTLSConfig
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "hface", "server", "tests.helpers.pid_app:app"]
    command += [f"https://127.0.0.1:{port}", "--quic-server-id", "0a0b0c", "--no-access-log"]
    command += ["--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    process = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
        command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    try:
        ask_http1(("127.0.0.1", port))  # up (TCP and UDP are bound together)
        with RebindingRelay(("127.0.0.1", port)) as relay:
            tally_body = await fetch("3", relay.address, client_tls_config)
    finally:
        process.terminate()
        process.wait(15)
    assert tally_body.status == 200
    layout = ConnectionIDLayout.for_server_id(bytes.fromhex("0a0b0c"))
    short = [data for data in relay.sent if not data[0] & 0x80]  # 1-RTT: the server's IDs
    assert short
    for data in short:
        info = sniff_quic_packet(data, connection_id_length=layout.length)
        destination = info.destination_connection_id
        # QUIC-LB's first octet: config rotation 0, then the length minus one.
        assert destination[:4] == bytes((layout.length - 1,)) + layout.server_id
        assert connection_id_slot(layout, destination) == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["fd://web"], "systemd passed no sockets to this process (LISTEN_PID)"),
        (["fd://x1"], "systemd passed no sockets"),
        (["--workers", "0"], "invalid number of workers: '0' (1 to 128)"),
        (["fd://1", "--workers", "2"], "fd://1: no socket there"),
        (["--quic-server-id", "zz"], "invalid server ID: 'zz' (hexadecimal)"),
        (["--quic-server-id", "010203040506"], "(1 to 5 bytes)"),
    ],
)
def test_worker_and_socket_mistakes_are_one_line(arguments: list[str], message: str) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    result = subprocess.run(
        [sys.executable, "-m", "hface", "server", "tests.helpers.pid_app:app", *arguments],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in (1, 2)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
