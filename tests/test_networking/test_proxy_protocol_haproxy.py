"""HAProxy's PROXY v2 headers, read by hface's parser, at servers in network namespaces.

Two plain TCP echo servers (:mod:`tests.helpers.tcp_echo`) run in two
namespaces made by the test (:mod:`tests.helpers.netns`), each behind a
veth pair; HAProxy (Debian's) runs in the test's namespace in TCP mode
with ``send-proxy-v2`` to both. The test client connects to HAProxy on
loopback; each server echoes what it received, the PROXY header first,
and the client reads that header with
:func:`hface.networking._proxy_protocol.parse_proxy_header`: it must name
the client's own address and port, not HAProxy's, and both servers must
have been reached. Needs root (CI is) and haproxy.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from hface.networking._proxy_protocol import (
    ProxyCommand,
    ProxyFamily,
    ProxyTransport,
    parse_proxy_header,
)
from tests.helpers.netns import network_namespaces
from tests.helpers.peers import free_port, needs_peer, require_peer, spawn

ECHO_SERVER = Path(__file__).resolve().parents[1] / "helpers" / "tcp_echo.py"
SERVER_PORT = 9000  # the namespaces are the test's own: no other server there
PAYLOAD = b"hello through haproxy\n"


def haproxy_config(port: int, backends: list[str]) -> str:
    servers = "\n".join(
        f"    server s{index} {address}:{SERVER_PORT} send-proxy-v2"
        for index, address in enumerate(backends)
    )
    return f"""\
global
    maxconn 100

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend test
    bind 127.0.0.1:{port}
    default_backend servers

backend servers
    balance roundrobin
{servers}
"""


def wait_for_port(port: int, haproxy: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert haproxy.poll() is None, f"haproxy exited:\n{log_file.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise AssertionError(f"haproxy does not listen:\n{log_file.read_text()}")


def exchange(port: int) -> tuple[bytes, bytes, tuple[str, int]]:
    """One connection through HAProxy: the server's name, what it echoed, the client's address."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(PAYLOAD)
        received = b""
        while not received.endswith(PAYLOAD):
            chunk = client.recv(4096)
            assert chunk, f"the connection closed after {received!r}"
            received += chunk
        host, client_port = client.getsockname()[:2]
    name, _, echoed = received.partition(b"\n")
    return name, echoed, (host, client_port)


@needs_peer("haproxy")
def test_haproxy_send_proxy_v2_names_the_client_to_both_servers(tmp_path: Path) -> None:
    haproxy = require_peer("haproxy")
    with network_namespaces(2) as namespaces:
        for index, namespace in enumerate(namespaces):
            server = namespace.spawn(
                [sys.executable, str(ECHO_SERVER), f"server{index}", str(SERVER_PORT)],
                stdout=subprocess.PIPE,
            )
            assert server.stdout is not None
            assert server.stdout.readline() == b"listening\n"
            server.stdout.close()
        port = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(haproxy_config(port, [namespace.address for namespace in namespaces]))
        log_file = tmp_path / "haproxy.log"
        with spawn([haproxy, "-db", "-f", str(config)], log_file=log_file) as process:
            wait_for_port(port, process, log_file)
            reached: Counter[bytes] = Counter()
            for _ in range(6):
                name, echoed, client_address = exchange(port)
                header = parse_proxy_header(echoed)
                assert header is not None, echoed
                assert header.version == 2
                assert header.command is ProxyCommand.PROXY
                assert header.family is ProxyFamily.INET
                assert header.transport is ProxyTransport.STREAM
                assert header.source == client_address
                assert header.destination == ("127.0.0.1", port)
                assert echoed[header.length :] == PAYLOAD
                reached[name] += 1
        assert set(reached) == {b"server0", b"server1"}  # round robin: 3 each, give or take
