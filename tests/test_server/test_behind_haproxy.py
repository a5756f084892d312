"""Two ``hface server`` instances behind HAProxy with ``send-proxy-v2``, in network namespaces.

Each instance runs ``hface server --proxy-protocol`` in a network namespace
of its own, made by the test (:mod:`tests.helpers.netns`), serving
:mod:`tests.helpers.scope_app`; HAProxy (Debian's) runs in the test's
namespace in TCP mode, round robin over both, with ``send-proxy-v2``. The
test client connects to HAProxy on loopback over HTTP/1.1 and HTTP/2 (prior
knowledge: HAProxy relays the bytes): every answer must come from one of
the instances, both must answer, and the application must see the test
client's own address and port, not HAProxy's. Needs root (CI is) and
haproxy; the test says so when it cannot make namespaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from hface.common import AddressType
from tests.helpers.netns import Namespace, network_namespaces
from tests.helpers.peers import free_port, needs_peer, require_peer, spawn
from tests.test_networking.test_proxy_protocol_haproxy import (
    SERVER_PORT,
    haproxy_config,
    wait_for_port,
)
from tests.test_server.conftest import client, read_response, send_request

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0


def start_instance(namespace: Namespace, name: str, log_file: Path) -> subprocess.Popen[bytes]:
    """``hface server --proxy-protocol`` in ``namespace``, once it has printed its banner."""
    with log_file.open("wb") as log:
        process = namespace.spawn(
            [
                "env",
                f"HFACE_TEST_INSTANCE={name}",
                f"PYTHONPATH={ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                sys.executable,
                "-m",
                "hface",
                "server",
                "tests.helpers.scope_app:app",
                f"http://0.0.0.0:{SERVER_PORT}",
                "--proxy-protocol",
            ],
            stdout=log.fileno(),
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while "hface serving" not in log_file.read_text(errors="replace"):  # printed once bound
        assert process.poll() is None, f"{name} exited:\n{log_file.read_text()}"
        assert time.monotonic() < deadline, f"{name} did not start:\n{log_file.read_text()}"
        time.sleep(0.05)
    return process


async def ask(http_version: str, port: int) -> tuple[dict[str, Any], AddressType]:
    """One request through HAProxy: what the application saw, and our own address."""
    with anyio.fail_after(20):
        async with client(http_version, ("127.0.0.1", port), None) as connection:
            own = connection.local_address
            stream_id = await send_request(connection, scheme=b"http")
            response = await read_response(connection, stream_id)
    assert response.status == 200, response
    scope: dict[str, Any] = json.loads(response.body)
    return scope, own


@needs_peer("haproxy")
def test_two_instances_behind_haproxy_see_the_client(tmp_path: Path) -> None:
    haproxy = require_peer("haproxy")
    with network_namespaces(2) as namespaces:
        for index, namespace in enumerate(namespaces):
            start_instance(namespace, f"server{index}", tmp_path / f"server{index}.log")
        port = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(haproxy_config(port, [namespace.address for namespace in namespaces]))
        log_file = tmp_path / "haproxy.log"
        with spawn([haproxy, "-db", "-f", str(config)], log_file=log_file) as process:
            wait_for_port(port, process, log_file)
            reached: Counter[tuple[str, str]] = Counter()
            for http_version in ("1.1", "2"):
                for _ in range(4):  # round robin: two each
                    scope, own = anyio.run(ask, http_version, port)
                    assert scope["http_version"] == http_version
                    assert scope["client"] == list(own)  # the test client, not HAProxy
                    reached[scope["instance"], http_version] += 1
    both = {(f"server{index}", version) for index in (0, 1) for version in ("1.1", "2")}
    assert set(reached) == both, reached
