"""A supervisor of echo workers in a process of its own, for tests that signal it.

Usage: ``python -m tests.helpers.supervised SETTINGS``, with ``SETTINGS`` a
JSON object: ``workers``, ``sharing`` (``inherited`` or ``reuseport``),
``udp`` (also a UDP socket), ``quic`` (steer it as QUIC), ``grace``
(seconds), ``options`` (the echo worker's, see
:mod:`tests.helpers.echo_worker`) and ``token`` (a word every process of
the test carries in its command line, to find them all afterwards). It
prints the bound addresses as JSON on a line of its own once every worker
is ready, logs to stderr, and exits with the supervisor's status.

:class:`SupervisorProcess` starts it and finds what it leaves behind.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hface.common import AddressType
from hface.networking._connection_ids import ConnectionIDLayout
from hface.server._supervisor import Supervisor, SupervisorConfig
from hface.server._worker_sockets import ListenSpec, SocketSharing, Transport

ROOT = Path(__file__).resolve().parents[2]
#: The layout of the connection IDs steered QUIC workers issue.
LAYOUT = ConnectionIDLayout()


def make_config(settings: Mapping[str, Any]) -> SupervisorConfig:
    sharing = SocketSharing(settings.get("sharing", "reuseport"))
    tcp = ListenSpec(name="tcp", transport=Transport.TCP, host="127.0.0.1", port=0, sharing=sharing)
    sockets = [tcp]
    if settings.get("udp"):
        sockets.append(
            ListenSpec(
                name="udp",
                transport=Transport.UDP,
                host="127.0.0.1",
                port=0,
                sharing=sharing,
                quic=LAYOUT if settings.get("quic") else None,
            )
        )
    options = dict(settings.get("options", {}), token=settings["token"])
    return SupervisorConfig(
        target="tests.helpers.echo_worker:serve",
        workers=int(settings.get("workers", 2)),
        sockets=tuple(sockets),
        argument=json.dumps(options),
        graceful_timeout=float(settings.get("grace", 10)),
        startup_timeout=float(settings.get("startup_timeout", 30)),
        stable_after=float(settings.get("stable_after", 10)),
    )


def _print_addresses(addresses: Mapping[str, AddressType]) -> None:
    print(json.dumps(addresses), flush=True)


class SupervisorProcess:
    """The supervisor script, started with ``settings``; a context manager.

    On exit it kills the supervisor if it still runs, then kills and
    reports every process that carries its token: the tests assert there
    are none (:attr:`leftovers`).
    """

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.token = f"hface-test-{uuid.uuid4().hex}"
        self.settings = dict(settings, token=self.token)
        self.process: subprocess.Popen[str] | None = None
        self.leftovers: list[int] = []
        #: What the supervisor and its workers logged so far, line by line.
        self.log: list[str] = []
        self._log_reader: threading.Thread | None = None

    def __enter__(self) -> SupervisorProcess:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.supervised", json.dumps(self.settings)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self._log_reader = threading.Thread(target=self._read_log, daemon=True)
        self._log_reader.start()
        return self

    def _read_log(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.rstrip("\n"))

    def wait_for_log(self, text: str, *, count: int = 1, timeout: float = 30) -> list[str]:
        """The log lines containing ``text``, once there are ``count`` of them.

        :raises AssertionError: after ``timeout`` seconds without them, with the log.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.log) if text in line]
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no {count} log lines with {text!r}:\n" + "\n".join(self.log))

    def logged(self, text: str) -> list[str]:
        """The log lines so far that contain ``text``."""
        return [line for line in list(self.log) if text in line]

    def addresses(self, timeout: float = 60) -> dict[str, AddressType]:
        """The bound addresses, once every worker is ready (blocking).

        :raises AssertionError: if the supervisor prints none within ``timeout`` seconds.
        """
        assert self.process is not None
        assert self.process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        stdout = self.process.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            line = ""
        if not line:
            raise AssertionError(f"the supervisor printed no addresses:\n{self.stderr()}")
        return {name: (host, port) for name, (host, port) in json.loads(line).items()}

    def signal(self, number: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stderr(self) -> str:
        """What it logged so far."""
        return "\n".join(self.log)

    def processes(self) -> list[int]:
        """The running processes (supervisor, workers) that carry this test's token."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command_line = (entry / "cmdline").read_bytes()
                status = (entry / "stat").read_text()
            except OSError:
                continue
            zombie = status.rpartition(")")[2].split()[0] == "Z"
            if self.token.encode() in command_line and not zombie:
                found.append(int(entry.name))
        return found

    def __exit__(self, *exc_info: object) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        # Workers whose supervisor is gone stop by themselves; give them time.
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.leftovers = self.processes()
        for pid in self.leftovers:
            os.kill(pid, signal.SIGKILL)
        if self._log_reader is not None:
            self._log_reader.join(5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def main() -> int:
    log_format = "%(asctime)s %(levelname)s %(name)s %(message)s"
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=log_format)
    settings = json.loads(sys.argv[1])
    return Supervisor(make_config(settings), on_ready=_print_addresses).run()


if __name__ == "__main__":
    sys.exit(main())
