"""Starting and stopping the servers under test, pinned to core 0.

Every server serves ``bench.app:app`` (the same ASGI application) on
127.0.0.1, one process (no worker pool where the server allows it), at
the settings its own documentation gives for a benchmark (see
:meth:`ServerKind.argv`): access logs off, keep-alive unlimited, and the
same event loop for all (uvloop by default, or asyncio).
Processes start in their own session so that stopping one also stops any
worker it spawned; :func:`launch` stops them when its block ends, also on
an error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: The directory holding bench/ (servers run from there to import bench.app).
ROOT: Final = Path(__file__).resolve().parent.parent
#: Where the environment's console scripts are.
BIN: Final = Path(sys.executable).parent
#: The core the servers run on; load generators run on :data:`CLIENT_CORE`.
SERVER_CORE: Final = "0"
CLIENT_CORE: Final = "1"
#: Seconds a server may take to start listening.
STARTUP_TIMEOUT: Final = 20.0
#: Seconds a server gets to stop after SIGTERM before SIGKILL.
STOP_TIMEOUT: Final = 5.0

APP: Final = "bench.app:app"
#: hypercorn's settings that have no command-line option (see the file).
HYPERCORN_CONFIG: Final = ROOT / "bench" / "hypercorn.toml"
#: The event loops every server can run on; the first is the default.
LOOPS: Final = ("uvloop", "asyncio")


@dataclass(frozen=True, kw_only=True)
class Certificates:
    """The development CA and the 127.0.0.1/localhost certificate (``hface certs``)."""

    #: The CA to trust (PEM).
    cafile: str
    #: The server certificate (PEM).
    certfile: str
    #: Its key (PKCS#8 PEM).
    keyfile: str


def make_certificates(directory: Path) -> Certificates:
    """Write a fresh CA and certificate into ``directory`` with ``hface certs``.

    :raises RuntimeError: if ``hface certs`` fails.
    """
    result = subprocess.run(
        [str(BIN / "hface"), "certs", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"hface certs failed: {result.stderr.strip()}")
    return Certificates(
        cafile=str(directory / "cacert.pem"),
        certfile=str(directory / "cert.pem"),
        keyfile=str(directory / "key.pem"),
    )


def free_port() -> int:
    """A port of 127.0.0.1 free for both TCP and UDP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


@dataclass(frozen=True, kw_only=True)
class ServerKind:
    """One server under test and what it can serve."""

    #: The name shown in the table.
    name: str
    #: HTTP versions it serves over TLS (``"1.1"``, ``"2"``, ``"3"``).
    tls_versions: tuple[str, ...]
    #: Whether it serves HTTP/1.1 in cleartext.
    cleartext: bool = True
    #: Worker processes (``--workers``); None: the server's single-process mode.
    workers: int | None = None

    def argv(self, *, port: int, tls: bool, certs: Certificates, loop: str) -> list[str]:
        """The command that serves ``bench.app:app`` on 127.0.0.1:``port``.

        Each server at the settings its own documentation gives for a
        benchmark (bench/README.md, "The servers' settings", cites them):
        one process, no access log, connections kept open for as many
        requests as the client sends, and the event loop ``loop``
        (``uvloop`` or ``asyncio``) for every one of them.
        """
        host = f"127.0.0.1:{port}"
        base = self.name.split(" ")[0]  # without " --workers N"
        if base == "hface":
            scheme = "https" if tls else "http"
            argv = [str(BIN / "hface"), "server", APP, f"{scheme}://{host}"]
            argv += ["--no-access-log", "--log-level", "warning", "--backend", loop]
            # "hface" is h11; "hface (httptools)" the faster HTTP/1.1 server.
            argv += ["--http1", "httptools" if "httptools" in self.name else "h11"]
            argv += [] if self.workers is None else ["--workers", str(self.workers)]
            return argv + (["--cert", certs.certfile, "--key", certs.keyfile] if tls else [])
        if base == "hypercorn":
            # The configuration file lifts keep_alive_max_requests (1,000 by default).
            argv = [str(BIN / "hypercorn"), APP, "--config", str(HYPERCORN_CONFIG)]
            argv += ["--workers", str(self.workers or 0), "--worker-class", loop]
            argv += ["--log-level", "warning"]
            if not tls:
                return [*argv, "--bind", host]
            tls_args = ["--certfile", certs.certfile, "--keyfile", certs.keyfile]
            return [*argv, "--bind", host, "--quic-bind", host, *tls_args]
        if base.startswith("uvicorn"):
            argv = [str(BIN / "uvicorn"), APP, "--host", "127.0.0.1", "--port", str(port)]
            argv += ["--http", base.split("-")[1], "--loop", loop, "--lifespan", "on"]
            argv += ["--no-access-log", "--log-level", "warning"]
            argv += [] if self.workers is None else ["--workers", str(self.workers)]
            tls_args = ["--ssl-certfile", certs.certfile, "--ssl-keyfile", certs.keyfile]
            return argv + (tls_args if tls else [])
        if base == "granian":
            # The options of granian's own benchmarks (benchmarks/benchmarks.py there).
            argv = [str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1"]
            argv += ["--port", str(port), "--workers", "1", "--runtime-threads", "1"]
            argv += ["--runtime-mode", "auto", "--loop", loop, "--task-impl", "asyncio"]
            argv += ["--no-ws", "--backlog", "2048", "--no-access-log", "--log-level", "warning"]
            argv += ["--http", "auto" if tls else "1"]
            tls_args = ["--ssl-certificate", certs.certfile, "--ssl-keyfile", certs.keyfile]
            return [*argv, *(tls_args if tls else []), APP]
        raise ValueError(f"unknown server {self.name!r}")


HFACE: Final = ServerKind(name="hface", tls_versions=("1.1", "2", "3"))
#: hface with its HTTP/1.1 server on httptools; measured on the HTTP/1.1 cases.
HFACE_HTTPTOOLS: Final = ServerKind(name="hface (httptools)", tls_versions=("1.1",))
HYPERCORN: Final = ServerKind(name="hypercorn", tls_versions=("1.1", "2", "3"))
UVICORN_H11: Final = ServerKind(name="uvicorn-h11", tls_versions=("1.1",))
UVICORN_HTTPTOOLS: Final = ServerKind(name="uvicorn-httptools", tls_versions=("1.1",))
GRANIAN: Final = ServerKind(name="granian", tls_versions=("1.1", "2"))
#: hface first: every ratio is hface / the peer.
SERVERS: Final = (HFACE, HFACE_HTTPTOOLS, HYPERCORN, UVICORN_H11, UVICORN_HTTPTOOLS, GRANIAN)


@dataclass(frozen=True, kw_only=True)
class Running:
    """A server that is up."""

    #: Which server.
    kind: ServerKind
    #: Its process (the session leader of whatever it spawns).
    process: subprocess.Popen[bytes]
    #: The port, TCP (and UDP for HTTP/3).
    port: int
    #: Whether it speaks TLS.
    tls: bool

    def url(self, path: str = "/") -> str:
        """The URL of ``path`` on this server."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"


@contextmanager
def start_process(
    argv: Sequence[str], *, log_file: Path, core: str = SERVER_CORE, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` pinned to ``core`` in its own session; stop its whole group at the end."""
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            ["taskset", "-c", core, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group ``process`` leads; SIGKILL it if it lingers."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
    # Workers may outlive their parent: the group goes in any case.
    _signal_group(process, signal.SIGKILL)
    if process.poll() is None:
        process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def wait_until_listening(
    process: subprocess.Popen[bytes], port: int, *, udp: bool, log_file: Path
) -> None:
    """Wait until something accepts TCP on ``port`` (and holds UDP ``port`` if ``udp``).

    :raises RuntimeError: if the process exits or does not listen in time, with its log.
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if _tcp_accepts(port) and (not udp or _udp_bound(port)):
            return
        time.sleep(0.05)
    state = "exited" if process.poll() is not None else "is not listening"
    log = log_file.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{process.args!r} {state} on port {port}\n{log}")


def _tcp_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _udp_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@contextmanager
def launch(
    kind: ServerKind,
    *,
    tls: bool,
    certs: Certificates,
    logs: Path,
    loop: str = LOOPS[0],
    core: str = SERVER_CORE,
) -> Iterator[Running]:
    """Start ``kind`` serving the benchmark app on ``loop``; stop it when the block ends."""
    port = free_port()
    log_file = logs / f"{kind.name}-{'tls' if tls else 'clear'}.log"
    argv = kind.argv(port=port, tls=tls, certs=certs, loop=loop)
    with start_process(argv, log_file=log_file, core=core) as process:
        udp = tls and "3" in kind.tls_versions
        wait_until_listening(process, port, udp=udp, log_file=log_file)
        # Let a server with separate listeners finish starting; workers, bind
        # (the supervisor binds before they start), import and warm up.
        time.sleep(0.3 if kind.workers is None else 4.0)
        yield Running(kind=kind, process=process, port=port, tls=tls)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(_stat_ticks(Path(f"/proc/{current}/stat")) for current in _tree(pid)) / ticks


def _stat_ticks(path: Path) -> int:
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    # Fields 14 and 15 of proc(5), utime and stime; [0] here is field 3.
    return int(fields[11]) + int(fields[12])


def _tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        if current in found:
            continue
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pending.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of ``pid`` and all its descendants, from /proc."""
    total = 0
    for current in _tree(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


#: Where Debian puts gtlsserver, outside most users' PATH.
_SBIN: Final = "/usr/local/sbin:/usr/sbin:/sbin"


@contextmanager
def h2o_origin(work: Path, *, docroot: Path, certs: Certificates, logs: Path) -> Iterator[str]:
    """h2o serving ``docroot`` over TLS (HTTP/1.1 and HTTP/2) on core 0; yields its origin.

    :raises RuntimeError: if h2o is missing or does not start.
    """
    h2o = shutil.which("h2o")
    if h2o is None:
        raise RuntimeError("h2o is not installed (Debian package h2o)")
    port = free_port()
    # As root h2o drops privileges to "nobody" unless told otherwise, and
    # nobody cannot read a private temporary directory.
    user = f"user: {pwd.getpwuid(os.geteuid()).pw_name}\n" if os.geteuid() == 0 else ""
    config = work / f"h2o-{port}.conf"
    config.write_text(
        "listen:\n"
        "  host: 127.0.0.1\n"
        f"  port: {port}\n"
        "  ssl:\n"
        f'    certificate-file: "{certs.certfile}"\n'
        f'    key-file: "{certs.keyfile}"\n'
        f"{user}"
        f'error-log: "{logs / "h2o-error.log"}"\n'
        "num-threads: 1\n"
        "hosts:\n"
        "  default:\n"
        "    paths:\n"
        "      /:\n"
        f'        file.dir: "{docroot}"\n'
    )
    log_file = logs / "h2o.log"
    with start_process([h2o, "-c", str(config)], log_file=log_file) as process:
        wait_until_listening(process, port, udp=False, log_file=log_file)
        yield f"https://127.0.0.1:{port}"


@contextmanager
def gtlsserver_origin(*, docroot: Path, certs: Certificates, logs: Path) -> Iterator[str]:
    """ngtcp2's HTTP/3 server serving ``docroot`` on core 0; yields its origin.

    :raises RuntimeError: if gtlsserver is missing or does not start.
    """
    gtlsserver = shutil.which("gtlsserver") or shutil.which("gtlsserver", path=_SBIN)
    if gtlsserver is None:
        raise RuntimeError("gtlsserver is not installed (Debian package ngtcp2-server)")
    port = free_port()
    argv = [gtlsserver, "--quiet", f"--htdocs={docroot}", "127.0.0.1", str(port)]
    argv += [certs.keyfile, certs.certfile]
    log_file = logs / "gtlsserver.log"
    with start_process(argv, log_file=log_file) as process:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None and not _udp_bound(port):
            time.sleep(0.05)
        if process.poll() is not None or not _udp_bound(port):
            raise RuntimeError(f"gtlsserver did not start: {log_file.read_text()[-300:]}")
        yield f"https://127.0.0.1:{port}"
