"""The supervisor of worker processes, with real signals and real sockets.

The supervisor runs in a process of its own (:mod:`tests.helpers.supervised`)
with echo workers (:mod:`tests.helpers.echo_worker`) that say who answered:
their index, generation and pid. Every test ends by checking that no
process of it is left (:attr:`SupervisorProcess.leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from hface.common import AddressType
from hface.networking._connection_ids import ConnectionIDLayout
from hface.networking._quic_steering import steering_unavailable_reason
from hface.server._worker_process import InheritedSocket, WorkerLaunch, load_target
from hface.server._worker_sockets import ListenSpec, SocketSharing, Transport, WorkerSockets
from tests.helpers.network import needs_ipv6
from tests.helpers.supervised import LAYOUT, SupervisorProcess

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX processes and signals"),
]

SHARINGS = ("reuseport", "inherited")
needs_steering = pytest.mark.skipif(
    steering_unavailable_reason() is not None, reason=f"{steering_unavailable_reason()}"
)


class Reply(NamedTuple):
    position: int
    generation: int
    pid: int
    text: bytes


def parse_reply(data: bytes) -> Reply:
    index, generation, pid, text = data.split(b" ", 3)
    return Reply(int(index), int(generation), int(pid), text)


def ask(address: AddressType, line: bytes = b"hello\n", *, timeout: float = 15) -> Reply:
    """One request on a connection of its own; the worker's answer."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(line)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return parse_reply(data)


class SteadyClients:
    """Threads asking one request after another until stopped (bounded in count and time)."""

    def __init__(self, address: AddressType, *, threads: int = 2, limit: int = 20000) -> None:
        self.address = address
        self.replies: list[Reply] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._limit = limit
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            if len(self.replies) + len(self.failures) >= self._limit:
                time.sleep(0.01)  # enough asked: wait for the test to stop us
                continue
            try:
                self.replies.append(ask(self.address, timeout=10))
            except (OSError, ValueError) as exc:
                self.failures.append(repr(exc))
            time.sleep(0.002)

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.replies)
        while len(self.replies) < start + count and time.monotonic() < deadline:
            time.sleep(0.01)

    @contextmanager
    def running(self) -> Iterator[SteadyClients]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(30)


def find_worker(address: AddressType, index: int) -> Reply:
    """A reply of the worker at position ``index`` (asking up to 500 times)."""
    for _ in range(500):
        reply = ask(address)
        if reply.position == index:
            return reply
    raise AssertionError(f"worker {index} answered none of 500 requests")


@contextmanager
def supervisor(**settings: object) -> Iterator[SupervisorProcess]:
    process = SupervisorProcess(settings)
    with process:
        yield process
    assert process.leftovers == [], f"processes left behind:\n{process.stderr()}"


@pytest.mark.parametrize("sharing", SHARINGS)
def test_workers_serve_one_port(sharing: str) -> None:
    with supervisor(workers=2, sharing=sharing) as process:
        address = process.addresses()["tcp"]
        replies = [ask(address) for _ in range(60)]
        assert {reply.text for reply in replies} == {b"hello\n"}
        assert {reply.generation for reply in replies} == {0}
        if sharing == "reuseport":  # the kernel hashes 60 client ports over 2 sockets
            assert {reply.position for reply in replies} == {0, 1}
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0


def cpu_seconds(pid: int) -> float:
    """The CPU time a process used so far (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_an_idle_supervisor_sleeps() -> None:
    with supervisor(workers=2, udp=True, quic=True) as process:
        process.addresses()
        assert process.process is not None
        before = cpu_seconds(process.process.pid)
        time.sleep(2)
        assert cpu_seconds(process.process.pid) - before < 0.2
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0


@pytest.mark.parametrize("sharing", SHARINGS)
def test_a_killed_worker_is_replaced_while_the_others_serve(sharing: str) -> None:
    with supervisor(workers=2, sharing=sharing) as process:
        address = process.addresses()["tcp"]
        victim = find_worker(address, 1)
        # Killed between requests (a request it had accepted would die with it);
        # requests go on while its replacement starts.
        os.kill(victim.pid, signal.SIGKILL)
        process.wait_for_log(f"worker 1 (pid {victim.pid}) died (signal SIGKILL)")
        with SteadyClients(address).running() as clients:
            process.wait_for_log(" is ready", count=3)  # workers 0 and 1, then 1 again
            clients.wait_for(20)
        assert clients.failures == []
        replacement = find_worker(address, 1)
        assert replacement.generation == 1
        assert replacement.pid != victim.pid
        # The other worker served all along, the same process.
        assert len({reply.pid for reply in clients.replies if reply.position == 0}) == 1
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0


@pytest.mark.slow
@pytest.mark.parametrize("sharing", SHARINGS)
def test_sighup_replaces_every_worker_without_refusing_a_connection(sharing: str) -> None:
    with supervisor(workers=2, sharing=sharing) as process:
        address = process.addresses()["tcp"]
        with SteadyClients(address).running() as clients:
            clients.wait_for(20)
            process.signal(signal.SIGHUP)
            process.wait_for_log("reload done")
            process.wait_for_log("exited (status 0)", count=2)  # both old workers drained
            clients.wait_for(20)
        assert clients.failures == []
        assert {reply.generation for reply in clients.replies} == {0, 1}
        assert {reply.generation for reply in clients.replies[-10:]} == {1}
        # Each old worker was stopped only once its replacement was ready.
        log = process.log
        for index in (0, 1):
            started = [line for line in log if f"started worker {index} (pid" in line]
            new_pid = started[1].rpartition("(pid ")[2].rstrip(")")
            old_pid = started[0].rpartition("(pid ")[2].rstrip(")")
            ready = process.logged(f"(pid {new_pid}) is ready")[0]
            stopping = process.logged(f"stopping worker {index} (pid {old_pid})")[0]
            assert log.index(ready) < log.index(stopping)
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_lets_work_in_flight_finish(signum: signal.Signals) -> None:
    with supervisor(workers=2, grace=20) as process:
        address = process.addresses()["tcp"]
        connections = []
        for _ in range(4):
            sock = socket.create_connection(address, timeout=15)
            sock.sendall(b"sleep 1.5\n")
            assert sock.recv(100) == b"started\n"
            connections.append(sock)
        started = time.monotonic()
        process.signal(signum)
        for sock in connections:
            with sock:
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
                assert parse_reply(data).text == b"sleep 1.5\n"
        assert process.wait(30) == 0
        assert time.monotonic() - started >= 1.4
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=5)


def test_work_that_outlasts_the_grace_period_is_killed() -> None:
    with supervisor(workers=1, grace=1) as process:
        address = process.addresses()["tcp"]
        with socket.create_connection(address, timeout=15) as sock:
            sock.sendall(b"sleep 60\n")
            assert sock.recv(100) == b"started\n"
            started = time.monotonic()
            process.signal(signal.SIGTERM)
            assert process.wait(30) == 0
            assert time.monotonic() - started < 10
            # The worker was killed: its connections closed, one way or the other.
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(100) == b""
        process.wait_for_log("did not stop within 1 s: killing it")


def test_a_second_stop_signal_kills_at_once() -> None:
    with supervisor(workers=1, grace=60) as process:
        address = process.addresses()["tcp"]
        with socket.create_connection(address, timeout=15) as sock:
            sock.sendall(b"sleep 60\n")
            assert sock.recv(100) == b"started\n"
            process.signal(signal.SIGINT)
            process.wait_for_log("received SIGINT: stopping")
            process.signal(signal.SIGINT)
            assert process.wait(15) == 0
        process.wait_for_log("killing the workers")


def test_a_killed_supervisor_leaves_no_worker_behind() -> None:
    process = SupervisorProcess({"workers": 2})
    with process:
        address = process.addresses()["tcp"]
        pids = {ask(address).pid for _ in range(20)}
        process.signal(signal.SIGKILL)
        process.wait(10)
    # SupervisorProcess waited (up to 10 s) for the workers to stop by themselves.
    assert process.leftovers == []
    assert pids


def test_a_worker_that_cannot_start_stops_the_supervisor() -> None:
    with supervisor(workers=2, options={"fail_at_start": True}) as process:
        assert process.wait(60) == 1
        process.wait_for_log("exited during start-up (status 1): stopping")
        assert "this worker fails at start, as asked" in process.stderr()
        assert len(process.logged("started worker")) == 2  # not restarted


@pytest.mark.slow
def test_a_worker_that_keeps_dying_is_restarted_later_and_later() -> None:
    options = {"crash_after": 0.2, "crash_from_generation": 1}
    with supervisor(workers=2, options=options) as process:
        address = process.addresses()["tcp"]
        victim = find_worker(address, 1)
        os.kill(victim.pid, signal.SIGKILL)
        delays = [
            line.rpartition("restarting it in ")[2]
            for line in process.wait_for_log("restarting it in", count=4, timeout=60)
        ]
        assert delays[:4] == ["0 s", "0.5 s", "1 s", "2 s"]
        assert ask(address).text == b"hello\n"  # worker 0 serves on
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0


def udp_ask(udp: socket.socket, address: AddressType, datagram: bytes) -> tuple[Reply, int]:
    """Send a datagram to the UDP echo; who answered, and from which slot."""
    udp.sendto(datagram, address)
    data, _ = udp.recvfrom(65536)
    reply = parse_reply(data)
    slot, _, echoed = reply.text.partition(b" ")
    assert echoed == datagram
    return reply, int(slot)


def short_packet(connection_id: bytes) -> bytes:
    return b"\x43" + connection_id + b"p" * 30


def initial_packet(destination: bytes) -> bytes:
    header = b"\xc3\x00\x00\x00\x01" + bytes((len(destination),)) + destination + b"\x00"
    return header.ljust(1200, b"\x00")


@pytest.mark.slow
@needs_steering
def test_quic_datagrams_follow_their_connection_id_across_a_reload() -> None:
    with supervisor(workers=2, udp=True, quic=True, options={"drain": 4}) as process:
        address = process.addresses()["udp"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(10)
            udp.bind(("127.0.0.1", 0))
            # Two slots per worker: worker 0 starts in slot 0, worker 1 in slot 2.
            for slot, index in ((0, 0), (2, 1)):
                reply, answered = udp_ask(udp, address, short_packet(LAYOUT.generator(slot)()))
                assert (reply.position, reply.generation, answered) == (index, 0, slot)
            new = {udp_ask(udp, address, initial_packet(os.urandom(8)))[1] for _ in range(40)}
            assert new == {0, 2}

            process.signal(signal.SIGHUP)
            process.wait_for_log("reload done")
            # The old workers drain (4 s): their connections still reach them,
            # new connections go to the new workers, in the other slots.
            expected = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)}
            for slot, (index, generation) in expected.items():
                reply, answered = udp_ask(udp, address, short_packet(LAYOUT.generator(slot)()))
                assert (reply.position, reply.generation, answered) == (index, generation, slot)
            new = {udp_ask(udp, address, initial_packet(os.urandom(8)))[1] for _ in range(40)}
            assert new == {1, 3}

            process.wait_for_log("exited (status 0)", count=2)
            # The old slots are gone: their IDs go where new connections go.
            # (A datagram sent as the old worker exits is lost, as UDP may.)
            udp.settimeout(1)
            answers: list[int] = []
            deadline = time.monotonic() + 20
            while len(answers) < 10 and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    answers.append(udp_ask(udp, address, short_packet(LAYOUT.generator(0)()))[1])
            assert len(answers) == 10
            assert set(answers) <= {1, 3}
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0


def test_without_steering_one_worker_serves_quic() -> None:
    specs = [
        ListenSpec(name="tcp", transport=Transport.TCP, host="127.0.0.1", port=0),
        ListenSpec(name="udp", transport=Transport.UDP, host="127.0.0.1", port=0, quic=LAYOUT),
    ]
    sockets = WorkerSockets(specs, workers=3, steering_unavailable="no BPF on this test's system")
    sockets.open()
    try:
        first = [described for _, described in sockets.for_worker(0, 0)]
        second = [described for _, described in sockets.for_worker(1, 1)]
        assert [item.name for item in first] == ["tcp", "udp"]
        assert [item.name for item in second] == ["tcp"]
        assert first[1].slot is None
        assert first[1].connection_ids is None
        # A replacement of worker 0 gets the same UDP socket.
        assert sockets.for_worker(0, 1)[1][1].fd == first[1].fd
    finally:
        sockets.close()


def test_a_port_in_use_is_a_clear_error_and_nothing_stays_bound() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        specs = [
            ListenSpec(name="free", transport=Transport.UDP, host="127.0.0.1", port=0),
            ListenSpec(name="web", transport=Transport.TCP, host="127.0.0.1", port=port),
        ]
        sockets = WorkerSockets(specs, workers=2, steering_unavailable=None)
        with pytest.raises(OSError, match=f"cannot listen on web \\(tcp 127.0.0.1 port {port}\\)"):
            sockets.open()
        assert sockets.addresses == {}


@pytest.mark.parametrize("sharing", list(SocketSharing))
def test_sockets_are_handed_down_by_position_and_lane(sharing: SocketSharing) -> None:
    specs = [
        ListenSpec(name="tcp", transport=Transport.TCP, host="127.0.0.1", port=0, sharing=sharing)
    ]
    sockets = WorkerSockets(specs, workers=2, steering_unavailable=None)
    sockets.open()
    try:
        fds = {(p, lane): sockets.for_worker(p, lane)[0][1].fd for p in (0, 1) for lane in (0, 1)}
        # A worker and its replacement share the socket; positions differ in a group.
        assert fds[0, 0] == fds[0, 1]
        assert (fds[0, 0] != fds[1, 0]) == (sharing is SocketSharing.REUSEPORT)
    finally:
        sockets.close()


@needs_ipv6
@needs_steering
def test_ipv6_sockets_are_ipv6_only_and_steered() -> None:
    specs = [
        ListenSpec(name="tcp", transport=Transport.TCP, host="::1", port=0),
        ListenSpec(name="udp", transport=Transport.UDP, host="::1", port=0, quic=LAYOUT),
    ]
    sockets = WorkerSockets(specs, workers=2, steering_unavailable=None)
    sockets.open()
    try:
        sockets.steer(live={0, 1, 2}, accepting=[1, 2])
        handed = [sock for sock, _ in sockets.for_worker(1, 0)]
        assert [sock.family for sock in handed] == [socket.AF_INET6, socket.AF_INET6]
        assert all(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) for sock in handed)
        assert sockets.addresses["udp"][0] == "::1"
    finally:
        sockets.close()


def test_worker_launch_survives_the_command_line() -> None:
    launch = WorkerLaunch(
        target="tests.helpers.echo_worker:serve",
        index=3,
        generation=7,
        control_fd=9,
        sockets=(
            InheritedSocket(name="tcp", fd=5),
            InheritedSocket(
                name="udp",
                fd=6,
                slot=7,
                connection_ids=ConnectionIDLayout(
                    length=12, server_id=b"\x01\x02", config_rotation=3
                ),
            ),
        ),
        argument='{"drain": 1}',
    )
    assert WorkerLaunch.from_json(launch.to_json()) == launch
    with pytest.raises(ValueError, match="not a worker launch"):
        WorkerLaunch.from_json('{"target": "x"}')


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("tests.helpers.echo_worker", ValueError),
        ("tests.helpers.echo_worker:nothing", ValueError),
        ("tests.helpers.no_such_module:serve", ImportError),
        (":serve", ValueError),
    ],
)
def test_worker_targets_are_checked(target: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        load_target(target)
