"""``hface server --workers N``: real processes, real signals, HTTP/1.1, HTTP/2 and HTTP/3.

The application (:mod:`tests.helpers.pid_app`) answers with the pid of
the worker that served the request, so a test sees which worker did.
HTTP/3 is what the workers' design is for: each worker issues connection
IDs naming its socket, and the kernel steers every datagram by them, so a
connection stays with its worker whatever the client's port does. These
tests are slow (processes, hundreds of handshakes) and bounded in count
and time; each stops every process it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio
import pytest

from hface.common import AddressType, ClientTLSConfig
from hface.connections import HTTPConnection
from hface.errors import TransportError
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    GoawayReceived,
    HeadersReceived,
    StreamReset,
)
from hface.networking._quic_steering import steering_unavailable_reason
from tests.helpers.certs import TLSFiles
from tests.helpers.peers import free_port
from tests.helpers.udp_relay import RebindingRelay
from tests.test_server.conftest import Response, client, read_response, send_request

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 60.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT groups"),
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
]
needs_steering = pytest.mark.skipif(
    steering_unavailable_reason() is not None, reason=f"{steering_unavailable_reason()}"
)


@dataclass
class Workers:
    """A running ``hface server --workers N``."""

    process: subprocess.Popen[bytes]
    port: int
    log_file: Path
    lifespan_file: Path

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_for(self, text: str, *, after: int = 0, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until the output shows ``text`` (past its first ``after`` characters)."""
        deadline = time.monotonic() + timeout
        while text not in self.log()[after:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {text!r} from hface server:\n{self.log()}")
            time.sleep(0.05)


@contextmanager
def hface_workers(
    count: int, tls_files: TLSFiles, tmp_path: Path, *extra: str
) -> Iterator[Workers]:
    port = free_port()
    log_file = tmp_path / "server.log"
    lifespan_file = tmp_path / "lifespan.log"
    command = [sys.executable, "-m", "hface", "server", "tests.helpers.pid_app:app"]
    command += [f"https://127.0.0.1:{port}", "--workers", str(count), "--no-access-log"]
    command += ["--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    command += ["--graceful-timeout", "10", *extra]
    env = {**os.environ, "HFACE_TEST_LIFESPAN_LOG": str(lifespan_file), "PYTHONUNBUFFERED": "1"}
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    workers = Workers(process=process, port=port, log_file=log_file, lifespan_file=lifespan_file)
    try:
        workers.wait_for("worker(s) serving")
        yield workers
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Tally:
    """What a load of requests got: the pids that answered, the failures, the retries."""

    pids: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: Requests the server did not process (refused), sent again on a new connection.
    retried: int = 0


#: The reset that says a request was not processed, so that a client may send
#: it again (RFC 9113 §8.7: REFUSED_STREAM; RFC 9114 §4.1.1: H3_REQUEST_REJECTED):
#: a worker that begins to drain refuses what comes after its GOAWAY.
NOT_PROCESSED = {"2": 0x7, "3": 0x10B}


async def requests_on_one_connection(
    version: str,
    address: AddressType,
    tls_config: ClientTLSConfig,
    tally: Tally,
    *,
    count: int = 1,
    path: bytes = b"/",
) -> None:
    """``count`` requests, one after another, on one new connection.

    As HTTP clients do, a first request the server did not process (a
    GOAWAY before it was sent, or refused) goes again on a new connection,
    twice at most; any other outcome but a 200 is a failure.
    """
    for _ in range(3):
        if await _requests(version, address, tls_config, tally, count=count, path=path):
            return
        tally.retried += 1
    tally.failures.append(f"HTTP/{version}: refused three times")


async def _requests(
    version: str,
    address: AddressType,
    tls_config: ClientTLSConfig,
    tally: Tally,
    *,
    count: int,
    path: bytes,
) -> bool:
    """:func:`requests_on_one_connection`'s attempt; False if its first request was not processed.

    Not processed: the connection ended (or said GOAWAY) before the request
    went out; it was refused (:data:`NOT_PROCESSED`); or the connection ended
    unanswered after a GOAWAY whose last stream ID is below the request's,
    which says the server never took it (RFC 9113 §6.8, RFC 9114 §5.2).
    """
    try:
        with anyio.fail_after(30):
            async with client(version, address, tls_config) as connection:
                for index in range(count):
                    if index == 0 and connection.has_expired():
                        return False  # a GOAWAY came before the request went out
                    try:
                        stream_id = await send_request(connection, path=path)
                    except TransportError:
                        if index == 0:
                            return False  # closed before the request went out
                        raise
                    response, goaway = await _read_response(connection, stream_id)
                    reset = response.reset
                    refused = reset is not None and reset.error_code == NOT_PROCESSED.get(version)
                    unseen = response.terminated and goaway is not None and goaway < stream_id
                    if index == 0 and response.status == 0 and (refused or unseen):
                        return False
                    if response.status != 200:
                        tally.failures.append(f"HTTP/{version}: {response}")
                        return True
                    tally.pids.append(int(response.body))
    except Exception as exc:  # the test reports every failure, whatever it is
        tally.failures.append(f"HTTP/{version}: {exc!r}")
    return True


async def _read_response(connection: HTTPConnection, stream_id: int) -> tuple[Response, int | None]:
    """The response on ``stream_id``, and the last stream ID of a GOAWAY received meanwhile."""
    response = Response()
    goaway: int | None = None
    while True:
        event = await connection.receive_event()
        if isinstance(event, GoawayReceived):
            goaway = event.last_stream_id
        elif isinstance(event, ConnectionTerminated):
            response.terminated = True
            return response, goaway
        elif isinstance(event, StreamReset) and event.stream_id == stream_id:
            response.reset = event
            return response, goaway
        elif isinstance(event, HeadersReceived) and event.stream_id == stream_id:
            status = dict(event.headers).get(b":status")
            if status is not None and int(status) >= 200:
                response.status = int(status)
            if event.end_stream:
                return response, goaway
        elif isinstance(event, DataReceived) and event.stream_id == stream_id:
            response.body += event.data
            if event.end_stream:
                return response, goaway


async def many_connections(
    address: AddressType, tls_config: ClientTLSConfig, *, connections: int, requests: int
) -> Tally:
    """``connections`` HTTP/3 connections (a UDP port each), ``requests`` each, 25 at a time."""
    tally = Tally()
    limiter = anyio.CapacityLimiter(25)

    async def one() -> None:
        async with limiter:
            await requests_on_one_connection("3", address, tls_config, tally, count=requests)

    async with anyio.create_task_group() as task_group:
        for _ in range(connections):
            task_group.start_soon(one)
    return tally


@pytest.mark.anyio
@needs_steering
@pytest.mark.parametrize("count", [2, 4])
async def test_http3_connections_are_spread_and_each_stays_with_its_worker(
    count: int, tls_files: TLSFiles, client_tls_config: ClientTLSConfig, tmp_path: Path
) -> None:
    with hface_workers(count, tls_files, tmp_path) as workers:
        address = ("127.0.0.1", workers.port)
        tally = await many_connections(address, client_tls_config, connections=500, requests=5)
    assert tally.failures == []
    assert len(tally.pids) == 2500
    assert len(set(tally.pids)) == count  # every worker served some
    startups = workers.lifespan_file.read_text().split()
    assert startups.count("startup") == count  # lifespan in each worker
    assert startups.count("shutdown") == count


@pytest.mark.anyio
@needs_steering
async def test_an_http3_connection_survives_its_client_port_changing(
    tls_files: TLSFiles, client_tls_config: ClientTLSConfig, tmp_path: Path
) -> None:
    with hface_workers(2, tls_files, tmp_path) as workers:
        for _ in range(4):  # the connection goes through the relay: any worker may get it
            with RebindingRelay(("127.0.0.1", workers.port)) as relay:
                with anyio.fail_after(30):
                    async with client("3", relay.address, client_tls_config) as connection:
                        pids = []
                        for turn in range(6):
                            if turn in (2, 4):
                                relay.rebind()
                            stream_id = await send_request(connection)
                            response = await read_response(connection, stream_id)
                            assert response.status == 200, response
                            pids.append(int(response.body))
            assert len(set(relay.outward_ports)) == 3
            assert len(set(pids)) == 1, f"the connection moved between workers: {pids}"


def worker_pids(address: AddressType, tls_config: ClientTLSConfig, count: int) -> set[int]:
    """The pids of the workers (asking until ``count`` answered, at most 200 times)."""
    pids: set[int] = set()

    async def ask() -> None:
        for _ in range(200):
            tally = Tally()
            await requests_on_one_connection("1.1", address, tls_config, tally)
            pids.update(tally.pids)
            if len(pids) >= count:
                return

    anyio.run(ask)
    return pids


@pytest.mark.anyio
async def test_a_killed_worker_is_replaced_while_the_others_serve(
    tls_files: TLSFiles, client_tls_config: ClientTLSConfig, tmp_path: Path
) -> None:
    with hface_workers(2, tls_files, tmp_path) as workers:
        address = ("127.0.0.1", workers.port)
        before = await anyio.to_thread.run_sync(worker_pids, address, client_tls_config, 2)
        victim = min(before)
        log_size = len(workers.log())
        os.kill(victim, signal.SIGKILL)
        # Meanwhile the other worker serves every version.
        tally = Tally()
        for version in ("1.1", "2", "3"):
            for _ in range(5):
                await requests_on_one_connection(version, address, client_tls_config, tally)
        workers.wait_for("is ready", after=log_size)
        after = await anyio.to_thread.run_sync(worker_pids, address, client_tls_config, 2)
    assert tally.failures == []
    assert victim not in after
    assert len(after) == 2
    assert max(before) in after


async def steady_load(
    address: AddressType, tls_config: ClientTLSConfig, tally: Tally, stop: anyio.Event
) -> None:
    """A request per new connection, on each version at once, until ``stop`` (at most 60 s)."""

    async def loop(version: str) -> None:
        with anyio.move_on_after(60):
            while not stop.is_set():
                await requests_on_one_connection(version, address, tls_config, tally)

    async with anyio.create_task_group() as task_group:
        for version in ("1.1", "2", "3"):
            task_group.start_soon(loop, version)


@pytest.mark.anyio
@needs_steering
async def test_sighup_replaces_every_worker_without_a_failed_request(
    tls_files: TLSFiles, client_tls_config: ClientTLSConfig, tmp_path: Path
) -> None:
    with hface_workers(2, tls_files, tmp_path) as workers:
        address = ("127.0.0.1", workers.port)
        before = await anyio.to_thread.run_sync(worker_pids, address, client_tls_config, 2)
        tally = Tally()
        stop = anyio.Event()
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(steady_load, address, client_tls_config, tally, stop)
            await anyio.sleep(1)
            log_size = len(workers.log())
            workers.process.send_signal(signal.SIGHUP)
            await anyio.to_thread.run_sync(
                lambda: workers.wait_for("reload done", after=log_size, timeout=60)
            )
            await anyio.sleep(1)
            stop.set()
        after = await anyio.to_thread.run_sync(worker_pids, address, client_tls_config, 2)
    assert tally.failures == []
    assert len(tally.pids) > 30
    assert not before & after  # every worker was replaced
    assert set(tally.pids) & before
    assert set(tally.pids) & after


@pytest.mark.anyio
async def test_sigterm_lets_requests_in_flight_finish(
    tls_files: TLSFiles, client_tls_config: ClientTLSConfig, tmp_path: Path
) -> None:
    with hface_workers(2, tls_files, tmp_path) as workers:
        address = ("127.0.0.1", workers.port)
        tally = Tally()
        async with anyio.create_task_group() as task_group:
            for version in ("1.1", "2", "3") * 2:
                task_group.start_soon(
                    partial(requests_on_one_connection, path=b"/slow"),
                    version,
                    address,
                    client_tls_config,
                    tally,
                )
            # Every request in flight (each takes 2 s): on a slow machine an
            # HTTP/3 handshake may take longer than a fixed wait.
            with anyio.fail_after(20):
                while workers.lifespan_file.read_text().split().count("slow") < 6:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            workers.process.send_signal(signal.SIGTERM)
        status = await anyio.to_thread.run_sync(workers.process.wait, 30)
    assert tally.failures == []
    assert len(tally.pids) == 6
    assert status == 0


@pytest.mark.anyio
async def test_run_workers_serves_what_an_importable_function_makes(
    tls_files: TLSFiles, client_tls_config: ClientTLSConfig, tmp_path: Path
) -> None:
    port = free_port()
    script = (
        "import sys; from hface.server import Endpoint, run_workers; "
        "sys.exit(run_workers('tests.helpers.pid_app:make_server', "
        f"[Endpoint('https', '127.0.0.1', {port})], workers=2, "
        "on_ready=lambda bound: print('ready', *bound, flush=True)))"
    )
    env = {
        **os.environ,
        "HFACE_TEST_CERT": tls_files.server_cert_file,
        "HFACE_TEST_KEY": tls_files.server_key_file,
    }
    log_file = tmp_path / "server.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
            [sys.executable, "-c", script], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    workers = Workers(process=process, port=port, log_file=log_file, lifespan_file=tmp_path / "x")
    try:
        workers.wait_for(f"ready https://127.0.0.1:{port}")
        tally = Tally()
        for version in ("1.1", "2", "3"):
            await requests_on_one_connection(version, ("127.0.0.1", port), client_tls_config, tally)
    finally:
        process.send_signal(signal.SIGTERM)
        status = await anyio.to_thread.run_sync(process.wait, 30)
    assert tally.failures == []
    assert len(tally.pids) == 3
    assert status == 0


def test_hface_proxy_runs_with_workers(tmp_path: Path, anyio_backend: str) -> None:
    """(``anyio_backend``: the module's parametrization; the test itself is synchronous.)"""
    port = free_port()
    log_file = tmp_path / "proxy.log"
    command = [sys.executable, "-m", "hface", "proxy", f"http://127.0.0.1:{port}"]
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--workers", "2"], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    workers = Workers(process=process, port=port, log_file=log_file, lifespan_file=log_file)
    target = socket.create_server(("127.0.0.1", 0))
    try:
        workers.wait_for("worker(s) serving")
        answers = []
        for _ in range(4):  # a tunnel to a loopback target, whichever worker takes it
            with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
                authority = f"127.0.0.1:{target.getsockname()[1]}"
                request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
                client.sendall(request.encode())
                answers.append(client.recv(4096).split(b"\r\n")[0])
    finally:
        target.close()
        process.send_signal(signal.SIGTERM)
        status = process.wait(30)
    assert answers == [b"HTTP/1.1 200 OK"] * 4
    assert status == 0


#: Runs a command with socket ARGV[1] as file descriptor 3, as systemd hands sockets over.
_AS_SYSTEMD = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


@pytest.mark.parametrize("systemd", [False, True], ids=["fd", "LISTEN_FDS"])
def test_workers_share_a_socket_their_parent_hands_down(
    tmp_path: Path, systemd: bool, anyio_backend: str
) -> None:
    """(``anyio_backend``: the module's parametrization; the test itself is synchronous.)"""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        endpoint, prefix = f"fd://{sock.fileno()}", [sys.executable]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
        env["HFACE_TEST_BLOCK_DIR"] = str(tmp_path)
        if systemd:
            endpoint, prefix = "fd://web", [sys.executable, "-c", _AS_SYSTEMD, str(sock.fileno())]
            env |= {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}
        log_file = tmp_path / "server.log"
        command = [*prefix, "-m", "hface", "server", "tests.helpers.pid_app:app", endpoint]
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                [*command, "--workers", "2", "--no-access-log"],
                cwd=ROOT,
                env=env,
                pass_fds=[sock.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        workers = Workers(process=process, port=0, log_file=log_file, lifespan_file=log_file)
        pids = set()
        try:
            workers.wait_for("worker(s) serving")
            # Sequential connections may all go to one worker (the kernel's
            # choice). So one worker is kept busy, its event loop blocked
            # (GET /block): what comes meanwhile, only the other can take.
            with socket.create_connection(sock.getsockname(), timeout=15) as blocked:
                blocked.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                deadline = time.monotonic() + STARTUP_TIMEOUT
                while not (tmp_path / "blocking").exists():
                    assert time.monotonic() < deadline, workers.log()
                    time.sleep(0.01)
                pids.add(_pid_of(_request(sock.getsockname(), b"/")))
                (tmp_path / "release").touch()
                pids.add(_pid_of(_read_all(blocked)))
        finally:
            process.send_signal(signal.SIGTERM)
            status = process.wait(30)
    assert len(pids) == 2, workers.log()
    assert status == 0


def _read_all(client: socket.socket) -> bytes:
    reply = b""
    while chunk := client.recv(4096):
        reply += chunk
    return reply


def _request(address: tuple[str, int], path: bytes) -> bytes:
    with socket.create_connection(address, timeout=15) as client:
        client.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return _read_all(client)


def _pid_of(reply: bytes) -> int:
    """The pid a reply of tests.helpers.pid_app names."""
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    return int(reply.rpartition(b"\r\n\r\n")[2])
