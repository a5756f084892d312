"""Soak ``hface server``: good traffic on HTTP/1.1, 2 and 3 while every known attack repeats.

Starts the real CLI (``hface server bench.app:app``, one https endpoint on
127.0.0.1 for all three versions, a fresh development certificate, the log
at info level in a file), then for ``--duration`` seconds runs at once:

- good traffic on each version with hface's client (``--concurrency``
  requests in flight per version), counting successes, failures and the
  99th percentile latency of each second;
- every attack of :mod:`_attacks` in a loop of its own, one attempt at a
  time: HTTP/1.1 slowloris, smuggling vectors and oversized headers; HTTP/2
  rapid reset, CONTINUATION, SETTINGS, PING, PRIORITY and empty-DATA
  floods, HPACK bomb, zero-window stall and too many streams; HTTP/3 rapid
  reset, reserved-frame flood, too many streams and QPACK blocked streams;
- a sample of the server's resident memory (process tree, /proc) each second;
- a long-lived HTTP/2 connection that holds a long request and sends a
  PING every ``--ping-interval`` seconds, waiting for each ACK
  (:mod:`_tcp_floods`: it must live on past the flood budget).

Then, as a phase of its own, a connection flood (:mod:`_tcp_floods`:
``--connection-flood`` silent TCP connections to the server's cleartext
endpoint, past its ``--max-connections``): good HTTP/1.1 requests during
it, and the RSS before, at the peak and after (within 10 MiB of before).

Then, as a phase of its own, a QUIC handshake flood (:mod:`_handshake_flood`:
``--handshake-flood-rate`` Initials a second for 2 s, never followed up):
good HTTP/3 handshakes during it, and the RSS before, at the peak and after
(once the server has logged the flood's end: within 10 MiB of before).

It prints a table: good requests per version, each attack's attempts and
outcomes, the peak RSS against the bound (the RSS after warm-up plus
``--rss-margin``), and the server log's tracebacks and ERROR lines. The
exit status is 1 if good requests failed beyond ``--tolerance``, the RSS
went over the bound, the log holds a traceback or an ERROR line, or the
server died; 130 on Ctrl-C. Every loop is bounded in time and the server is
stopped at the end, also on an error or Ctrl-C.

    hatch run soak                          # 60 s (or hatch run bench:soak)
    hatch run soak --duration 10 --logs /tmp/soak
"""

from __future__ import annotations

import argparse
import collections
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Final

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _attacks import ATTACKS, ATTEMPT_LIMIT, Attack, Target
from _handshake_flood import run_handshake_flood
from _servers import (
    APP,
    BIN,
    ROOT,
    free_port,
    make_certificates,
    stop_process,
    tree_rss,
    wait_until_listening,
)
from _tcp_floods import (
    append_phase,
    raise_file_limit,
    run_connection_flood,
    start_paced_pings,
)

from hface.client import (
    Client,
    ClientProtocol,
    ClientSession,
    ClientTLSConfig,
    Request,
)

#: The good request and the body it must return (bench/app.py).
GOOD_PATH: Final = "/"
GOOD_BODY: Final = b"Hello, world!"
VERSIONS: Final = {
    "1.1": ClientProtocol.HTTP1,
    "2": ClientProtocol.HTTP2,
    "3": ClientProtocol.HTTP3,
}
MIB: Final = 1024 * 1024
#: Seconds of good traffic before the attacks start; the RSS bound is taken after it.
WARM_UP: Final = 2.0


@dataclass
class GoodStats:
    """Good requests on one HTTP version."""

    ok: int = 0
    failed: int = 0
    #: Failures by exception type or status.
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Latencies (seconds) of the successes, by second of the run.
    latencies: dict[int, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    #: Failures by second of the run.
    failed_at: collections.Counter[int] = field(default_factory=collections.Counter)

    def p99(self, second: int | None = None) -> float:
        """The 99th percentile latency of ``second``, or of the whole run."""
        if second is None:
            values = [v for bucket in self.latencies.values() for v in bucket]
        else:
            values = self.latencies.get(second, [])
        if not values:
            return math.nan
        values.sort()
        return values[min(len(values) - 1, math.ceil(0.99 * len(values)) - 1)]


@dataclass
class AttackStats:
    """One attack's attempts."""

    attack: Attack
    runs: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def unexpected(self) -> int:
        """Attempts whose outcome is not one that means the server held."""
        return sum(n for o, n in self.outcomes.items() if o not in self.attack.expected)


class Soak:
    """One soak run against a server listening on ``target``."""

    def __init__(self, target: Target, pid: int, *, concurrency: int) -> None:
        self.target = target
        self.pid = pid
        self.concurrency = concurrency
        self.good = {version: GoodStats() for version in VERSIONS}
        self.attacks = [AttackStats(attack) for attack in ATTACKS]
        self.rss: list[int] = []
        self.start_rss = 0
        self.started = time.monotonic()
        self._stop = threading.Event()

    # --- good traffic (the event loop, main thread) ---

    async def good_traffic(self, duration: float, *, progress: bool = True) -> None:
        """Run the good requests of every version for ``duration`` seconds."""
        async with anyio.create_task_group() as task_group:
            for version in VERSIONS:
                task_group.start_soon(self._version, version, time.monotonic() + duration)
            if progress:
                task_group.start_soon(self._report, time.monotonic() + duration)

    async def _version(self, version: str, deadline: float) -> None:
        client = Client(
            tls_config=ClientTLSConfig(cafile=self.target.cafile),
            protocol=VERSIONS[version],
            connect_timeout=10.0,
            read_timeout=10.0,
        )
        client.max_idle_connections = self.concurrency
        url = f"https://localhost:{self.target.port}{GOOD_PATH}"
        stats = self.good[version]
        with anyio.move_on_after(deadline - time.monotonic() + 15):
            async with client.session() as session, anyio.create_task_group() as task_group:
                for _ in range(self.concurrency):
                    task_group.start_soon(self._worker, session, url, stats, deadline)

    async def _worker(
        self, session: ClientSession, url: str, stats: GoodStats, deadline: float
    ) -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            second = int(started - self.started)
            try:
                response = await session.dispatch(Request("GET", url))
            except Exception as error:
                stats.failed += 1
                stats.failed_at[second] += 1
                stats.failures[type(error).__name__] += 1
                await anyio.sleep(0.1)
                continue
            if response.status == 200 and response.content == GOOD_BODY:
                stats.ok += 1
                stats.latencies[second].append(time.monotonic() - started)
            else:
                stats.failed += 1
                stats.failed_at[second] += 1
                stats.failures[f"status {response.status}"] += 1
            await anyio.sleep(0.01)

    async def _report(self, deadline: float) -> None:
        """A progress line per second on stderr."""
        while time.monotonic() < deadline:
            await anyio.sleep(1.0)
            second = int(time.monotonic() - self.started) - 1
            parts = []
            for version, stats in self.good.items():
                ok = len(stats.latencies.get(second, []))
                p99 = stats.p99(second) * 1000
                parts.append(
                    f"h{version} {ok} ok {stats.failed_at[second]} failed p99 {p99:.0f} ms"
                )
            rss = self.rss[-1] / MIB if self.rss else math.nan
            print(f"{second:4d} s  {' | '.join(parts)} | RSS {rss:.0f} MiB", file=sys.stderr)

    # --- attacks and RSS (threads) ---

    def start_threads(self) -> list[threading.Thread]:
        """Start a thread per attack and the RSS sampler; :meth:`stop` ends them."""
        threads = [
            threading.Thread(target=self._attack_loop, args=(stats,), daemon=True)
            for stats in self.attacks
        ]
        threads.append(threading.Thread(target=self._sample_rss, daemon=True))
        for thread in threads:
            thread.start()
        return threads

    def stop(self, threads: Sequence[threading.Thread]) -> None:
        """Ask the threads to stop; wait for the attempts in flight (bounded)."""
        self._stop.set()
        deadline = time.monotonic() + ATTEMPT_LIMIT + 5
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _attack_loop(self, stats: AttackStats) -> None:
        while not self._stop.is_set():
            try:
                outcome = stats.attack.run(self.target)
            except Exception as error:
                outcome = f"{type(error).__name__}"
            stats.runs += 1
            stats.outcomes[outcome] += 1
            self._stop.wait(stats.attack.pause)

    def _sample_rss(self) -> None:
        while not self._stop.is_set():
            self.rss.append(tree_rss(self.pid))
            self._stop.wait(1.0)

    # --- the verdict ---

    def report(self, *, rss_margin: int, tolerance: float, log: str) -> tuple[str, bool]:
        """The summary table, and whether the soak passed."""
        passed = True
        lines = ["", "good traffic (hface client, GET /):"]
        lines.append(
            f"  {'version':<10}{'ok':>8}{'failed':>8}{'p99':>10}{'worst 1 s p99':>15}  failures"
        )
        for version, stats in self.good.items():
            total = stats.ok + stats.failed
            bad = stats.ok == 0 or stats.failed > tolerance * total
            passed &= not bad
            worst = max((stats.p99(s) for s in stats.latencies), default=math.nan)
            failures = ", ".join(f"{k} x{n}" for k, n in stats.failures.most_common(3)) or "-"
            lines.append(
                f"  HTTP/{version:<5}{stats.ok:>8}{stats.failed:>8}"
                f"{stats.p99() * 1000:>8.0f}ms{worst * 1000:>13.0f}ms  {failures}"
                f"{'  FAIL' if bad else ''}"
            )
        lines += ["", "attacks (attempts, outcomes seen; * = not the expected outcome):"]
        for stats in self.attacks:
            seen = ", ".join(
                f"{'' if o in stats.attack.expected else '*'}{o} x{n}"
                for o, n in stats.outcomes.most_common()
            )
            lines.append(f"  {stats.attack.name:<26}{stats.runs:>5}  {seen or '-'}")
        peak = max(self.rss, default=0)
        bound = self.start_rss + rss_margin
        rss_ok = 0 < peak <= bound
        passed &= rss_ok
        lines += [
            "",
            f"server RSS: start {self.start_rss / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB,"
            f" bound {bound / MIB:.1f} MiB (start + {rss_margin / MIB:.0f} MiB):"
            f" {'ok' if rss_ok else 'OVER'}",
        ]
        bad_lines = [line for line in log.splitlines() if "Traceback" in line or " ERROR " in line]
        passed &= not bad_lines
        lines.append(
            f"server log: {len(log.splitlines())} lines, {len(bad_lines)} with Traceback or ERROR"
        )
        lines += [f"  {line[:150]}" for line in bad_lines[:5]]
        unexpected = sum(stats.unexpected for stats in self.attacks)
        if unexpected:
            lines.append(f"note: {unexpected} attack attempts saw an unexpected outcome")
        lines.append(f"soak: {'PASS' if passed else 'FAIL'}")
        return "\n".join(lines), passed


def _server_argv(
    port: int, certs_dir: Path, header_timeout: float, cleartext_port: int
) -> list[str]:
    return [
        str(BIN / "hface"),
        "server",
        APP,
        f"https://127.0.0.1:{port}",
        f"http://127.0.0.1:{cleartext_port}",  # the connection flood's (_tcp_floods)
        "--cert",
        str(certs_dir / "cert.pem"),
        "--key",
        str(certs_dir / "key.pem"),
        "--log-level",
        "info",
        "--no-access-log",
        "--graceful-timeout",
        "2",
        "--header-timeout",
        f"{header_timeout:g}",
    ]


async def _warm_up(soak: Soak) -> None:
    await soak.good_traffic(WARM_UP, progress=False)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak and print the summary; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="bench/soak.py", description=(__doc__ or "").split("\n", maxsplit=1)[0]
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of attack (60)")
    parser.add_argument(
        "--rss-margin",
        type=int,
        default=128,
        metavar="MIB",
        help="RSS allowed over the start (128)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="fraction of good requests allowed to fail per version (0.01)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="good requests in flight per version (4)"
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=5.0,
        help="the server's --header-timeout, which ends slowloris (5)",
    )
    parser.add_argument(
        "--handshake-flood-rate",
        type=int,
        default=1000,
        metavar="N",
        help="QUIC Initials a second in the handshake flood phase, 0 for none (1000)",
    )
    parser.add_argument(
        "--connection-flood",
        type=int,
        default=2000,
        metavar="N",
        help="silent TCP connections in the connection flood phase, 0 for none (2000)",
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=0.005,
        metavar="SECONDS",
        help="PING pace on the long-lived HTTP/2 connection, 0 for none (0.005)",
    )
    parser.add_argument("--logs", type=Path, metavar="DIR", help="keep the server log in DIR")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 3600 or not 1 <= args.concurrency <= 50:
        parser.error("--duration must be in [1, 3600] and --concurrency in [1, 50]")
    if not 0 <= args.tolerance < 1 or not 1 <= args.header_timeout <= 60:
        parser.error("--tolerance must be in [0, 1) and --header-timeout in [1, 60]")
    if not 0 <= args.handshake_flood_rate <= 10_000:
        parser.error("--handshake-flood-rate must be in [0, 10000]")
    if not 0 <= args.connection_flood <= 20_000 or not 0 <= args.ping_interval <= 10:
        parser.error("--connection-flood must be in [0, 20000] and --ping-interval in [0, 10]")
    raise_file_limit(args.connection_flood + 1024)  # the server inherits it
    signal.signal(signal.SIGTERM, _on_sigterm)
    with tempfile.TemporaryDirectory(prefix="hface-soak-") as directory:
        work = Path(directory)
        certs = make_certificates(work / "certs")
        log_file = work / "server.log"
        port = free_port()
        cleartext_port = free_port()
        argv = _server_argv(port, work / "certs", args.header_timeout, cleartext_port)
        interrupted = False
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        try:
            wait_until_listening(process, port, udp=True, log_file=log_file)
            target = Target(port=port, cafile=certs.cafile, header_timeout=args.header_timeout)
            soak = Soak(target, process.pid, concurrency=args.concurrency)
            print(f"soak: hface server on 127.0.0.1:{port} (pid {process.pid})", file=sys.stderr)
            anyio.run(_warm_up, soak)
            soak.start_rss = tree_rss(process.pid)
            soak.good = {version: GoodStats() for version in VERSIONS}  # warm-up not counted
            soak.started = time.monotonic()
            threads = soak.start_threads()
            pings = start_paced_pings(target, args.ping_interval) if args.ping_interval else None
            try:
                anyio.run(soak.good_traffic, args.duration)
            finally:
                soak.stop(threads)
                if pings is not None:
                    pings[1]()  # stop them
            connections = None
            if args.connection_flood and process.poll() is None:
                connections = run_connection_flood(
                    cleartext_port, process.pid, count=args.connection_flood
                )
            flood = None
            if args.handshake_flood_rate and process.poll() is None:
                flood = run_handshake_flood(
                    target, process.pid, log_file, rate=args.handshake_flood_rate, seconds=2.0
                )
            alive = process.poll() is None
        except KeyboardInterrupt:
            interrupted = True
        finally:
            stop_process(process)
        text = log_file.read_text(errors="replace")
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(log_file, args.logs / "hface-soak.log")
        if interrupted:
            print("soak: interrupted", file=sys.stderr)
            return 130
        report, passed = soak.report(
            rss_margin=args.rss_margin * MIB, tolerance=args.tolerance, log=text
        )
        for phase in (pings[0] if pings else None, connections, flood):
            if phase is not None:
                report, passed = append_phase(report, passed, *phase.report())
        print(
            f"hface soak: {args.duration:g} s, {len(ATTACKS)} attacks against"
            f" hface server (HTTP/1.1, HTTP/2, HTTP/3 on 127.0.0.1:{port})"
        )
        print(report)
        if not alive:
            print(f"server died during the soak (exit status {process.returncode})")
            passed = False
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
