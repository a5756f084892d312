"""hface side by side with the servers and clients it is measured against; one table.

Usage (from the repository root; ``hatch`` installs the peers into the
``bench`` environment on first use)::

    hatch run bench:run [--quick] [--loop uvloop|asyncio]
        [--only server|client|proxy|udp|memory|validate|websocket|workers]

Sections (all by default, in this order):

- **server**: the same ASGI app (bench/app.py) served by hface, hypercorn,
  uvicorn (h11 and httptools), granian, each alone and pinned to core 0,
  each at its documented best for a benchmark and all on the same event
  loop (bench/_servers.py); the load generator runs on core 1. Hello
  world on HTTP/1.1 cleartext and TLS (wrk), HTTP/2 (h2load), HTTP/3
  (bench/h3load.py, on aioquic alone; twice: requests packed into as few
  datagrams as they fit, then a datagram per request); then 1 MiB
  responses on each version (MB/s). Each row has the server's CPU time
  per request (per MB) over the measured window (bench/_cpu.py).
- **client**: hface, httpx, aiohttp and niquests fetching a 13-byte file
  from native origins (h2o for HTTP/1.1 and HTTP/2, ngtcp2's gtlsserver
  for HTTP/3): N sequential GETs on one connection, and N GETs 50 at a time.
- **proxy**: a 100 MiB download from h2o through ``hface proxy`` over each
  HTTP version, against the same download made directly.
- **udp**: a 100 MiB HTTP/3 download from gtlsserver through ``hface proxy``
  (CONNECT-UDP, the proxy reached over HTTP/3 and HTTP/2), against direct.
- **memory**: the server's RSS (process tree) at the peak of 1,000
  concurrent HTTP/2 streams, and with 100 idle HTTP/2 connections, hface
  against hypercorn.
- **validate**: bench/loadgen.py (hface's client) against h2load on
  HTTP/2 and against h3load on HTTP/3, the same server and load, with
  what each costs the server per request; then the load generators'
  ceilings against native servers.
- **websocket**: WebSocket echo, 1 KiB and 1 MiB, on each version (bench/_websocket.py).
- **workers**: hello world with ``--workers 1`` and ``2`` against uvicorn and
  hypercorn with two workers, servers on both cores (bench/_workers.py).

Each section runs ``--runs`` rounds (3), each cell ``--duration`` seconds
(10) once a round, and the table shows each cell's medians (round by round,
a slow spell of a shared machine hits every subject: bench/_rounds.py);
``--quick`` is one round of 2 s (and fewer requests) for a smoke test.
Everything binds 127.0.0.1, every tool and server has a time limit, and
every process started is stopped at the end, on an error or on Ctrl-C.
Certificates are made afresh in a temporary directory each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Final

import _websocket
import _workers
from _cpu import CPUSampler, with_server_cpu
from _memory import held_rss
from _proxy import proxy_rows, udp_proxy_rows
from _rounds import Rounds, short
from _servers import (
    GRANIAN,
    HFACE,
    HFACE_HTTPTOOLS,
    HYPERCORN,
    LOOPS,
    ROOT,
    SERVERS,
    UVICORN_H11,
    UVICORN_HTTPTOOLS,
    Certificates,
    Running,
    ServerKind,
    gtlsserver_origin,
    h2o_origin,
    launch,
    make_certificates,
)
from _table import LEGEND, Goal, Row, fill_ratios, render, set_goals
from _tools import MARGIN, Measure, ToolError, h2load, h3load, loadgen, run_tool, wrk

SECTIONS: Final = ("server", "client", "proxy", "udp", "memory", "validate", "websocket", "workers")
HELLO_FILE: Final = "hello.txt"

HELLO_H1_CLEAR: Final = "hello h1 cleartext (wrk -c50)"
HELLO_H1_TLS: Final = "hello h1 TLS (wrk -c50)"
HELLO_H2: Final = "hello h2 TLS (h2load -c10 -m10)"
HELLO_H3: Final = "hello h3 (h3load -c10 -m10)"
HELLO_H3_SPLIT: Final = "hello h3, a datagram per request (h3load -c10 -m10)"
MIB_H1: Final = "1 MiB h1 TLS (wrk -c10)"
MIB_H2: Final = "1 MiB h2 TLS (h2load -c4 -m4)"
MIB_H3: Final = "1 MiB h3 (h3load -c2 -m2)"
#: The goals of issue 19 per server case (hello on HTTP/1.1 TLS, which it
#: does not list, gets the cleartext row's; "hface (httptools)" gets >= 0.8
#: of uvicorn-httptools on the hello HTTP/1.1 cases: _against_uvicorn_httptools).
SERVER_GOALS: Final[dict[str, dict[str, Goal | str]]] = {
    HELLO_H1_CLEAR: {HYPERCORN.name: ">=1.5", UVICORN_H11.name: ">=1.2"},
    HELLO_H1_TLS: {HYPERCORN.name: ">=1.5", UVICORN_H11.name: ">=1.2"},
    HELLO_H2: {HYPERCORN.name: ">=3.0"},
    HELLO_H3: {HYPERCORN.name: Goal(">=2.0", on="cpu")},
    HELLO_H3_SPLIT: {HYPERCORN.name: Goal(">=2.0", on="cpu")},
    MIB_H1: {HYPERCORN.name: ">=1.0", UVICORN_H11.name: ">=1.0"},
    MIB_H2: {HYPERCORN.name: ">=1.0"},
    MIB_H3: {HFACE.name: Goal(">=100", on="value")},
}


@dataclass(frozen=True, kw_only=True)
class Settings:
    """How long and how often each cell runs."""

    #: Seconds measured per run of a timed cell.
    duration: float
    #: Runs per cell (the table shows medians).
    runs: int
    #: GETs per client cell.
    requests: int
    #: MiB downloaded per proxy cell.
    proxy_mib: int
    #: Seconds the 1,000-stream memory load lasts.
    memory_seconds: float
    #: The event loop of every server (``uvloop`` or ``asyncio``).
    loop: str = LOOPS[0]


def _settings(args: argparse.Namespace) -> Settings:
    if args.quick:
        return Settings(
            duration=2.0, runs=1, requests=400, proxy_mib=100, memory_seconds=3.0, loop=args.loop
        )
    return Settings(
        duration=args.duration,
        runs=args.runs,
        requests=2000,
        proxy_mib=100,
        memory_seconds=5.0,
        loop=args.loop,
    )


class Bench:
    """Runs the sections and collects the table's rows."""

    def __init__(
        self, settings: Settings, certs: Certificates, work: Path, logs: Path | None = None
    ) -> None:
        self.settings = settings
        self.certs = certs
        self.work = work
        self.logs = logs or work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.docroot = work / "docroot"
        self.docroot.mkdir()
        (self.docroot / HELLO_FILE).write_bytes(b"Hello, world!")
        self.rows: list[Row] = []
        self._rounds = Rounds()

    # -- helpers -----------------------------------------------------------------

    def _progress(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def _measure(
        self,
        case: str,
        subject: str,
        unit: str,
        run: Callable[[], Measure],
        *,
        server: subprocess.Popen[bytes] | None = None,
    ) -> Row:
        """Run a cell once in this round; its row over the rounds so far (see bench/_rounds.py).

        With ``server``, the run also measures the server's CPU time over
        the measured window the tool reports (see bench/_cpu.py).
        """
        rounds = self._rounds
        self._progress(f"{case}: {subject} (round {rounds.number} of {rounds.total})")

        def once() -> Measure:
            if server is None:
                return run()
            with CPUSampler(server.pid) as sampler:
                measure = run()
            return with_server_cpu(measure, sampler, unit)

        return rounds.measure(case, subject, unit, once)

    def run_section(self, name: str) -> None:
        """Run a section once per round (``--runs``), keeping the last round's rows.

        Each cell runs once a round, and its row has the medians of its
        rounds (bench/_rounds.py). memory measures no time: one round.
        """
        total = 1 if name == "memory" else self.settings.runs
        self._rounds.start(total)
        first = len(self.rows)
        for _ in range(total):
            self._rounds.next_round()
            before = self.rows[first:]
            del self.rows[first:]  # each round's rows hold the rounds before
            try:
                getattr(self, name)()
            except KeyboardInterrupt:
                if before:  # a round cut short: the last whole round's rows stand
                    self.rows[first:] = before
                raise

    def _add_case(
        self,
        rows: Sequence[Row],
        goals: Mapping[str, Goal | str],
        *,
        reference_over_row: bool = True,
    ) -> None:
        fill_ratios(rows, reference_over_row=reference_over_row)
        set_goals(rows, goals)
        self.rows.extend(rows)

    # -- server ------------------------------------------------------------------

    def server(self) -> None:
        """Hello world and 1 MiB responses, every server, every version it speaks."""
        d = self.settings.duration
        hello, mib = "/", "/bytes/1048576"
        cases: list[tuple[str, str, bool, str, Callable[[Running], Measure]]] = [
            # (case, unit, tls, version needed, measurement)
            (HELLO_H1_CLEAR, "req/s", False, "1.1",
             lambda s: wrk(s.url(hello), connections=50, duration=d)),
            (HELLO_H1_TLS, "req/s", True, "1.1",
             lambda s: wrk(s.url(hello), connections=50, duration=d)),
            (HELLO_H2, "req/s", True, "2",
             lambda s: h2load(s.url(hello), connections=10, streams=10, duration=d)),
            (HELLO_H3, "req/s", True, "3",
             lambda s: self._h3load(s.url(hello), 10, 10)),
            (HELLO_H3_SPLIT, "req/s", True, "3",
             lambda s: self._h3load(s.url(hello), 10, 10, ("--datagram-per-request",))),
            (MIB_H1, "MB/s", True, "1.1",
             lambda s: wrk(s.url(mib), connections=10, duration=d)),
            (MIB_H2, "MB/s", True, "2",
             lambda s: h2load(s.url(mib), connections=4, streams=4, duration=d)),
            (MIB_H3, "MB/s", True, "3",
             lambda s: self._h3load(s.url(mib), 2, 2)),
        ]  # fmt: skip
        results: dict[str, list[Row]] = {case[0]: [] for case in cases}
        measured: list[Row] = []
        try:
            for kind in SERVERS:
                for tls in (False, True):
                    mine = [
                        c for c in cases if c[2] == tls and (c[3] in kind.tls_versions or not tls)
                    ]
                    cells = [(case, unit, run) for case, unit, _, _, run in mine]
                    self._with_server(kind, tls=tls, cells=cells, into=measured)
        finally:  # what was measured goes in the table, also when interrupted
            for row in measured:
                results[row.case].append(row)
            for case, rows in results.items():
                self._add_case(rows, SERVER_GOALS.get(case, {}))
                self._against_uvicorn_httptools(rows, case in (HELLO_H1_CLEAR, HELLO_H1_TLS))

    @staticmethod
    def _against_uvicorn_httptools(rows: Sequence[Row], hello_case: bool) -> None:
        """Give the "hface (httptools)" row its ratios to uvicorn-httptools (issue 7)."""
        by_subject = {row.subject: row for row in rows}
        mine = by_subject.get(HFACE_HTTPTOOLS.name)
        peer = by_subject.get(UVICORN_HTTPTOOLS.name)
        if mine is None:
            return
        mine.ratio, mine.cpu_ratio, mine.target = None, None, ""
        if peer is None:
            return
        fill_ratios([peer, mine], reference_over_row=False)
        mine.target = ">=0.8" if hello_case else ""
        mine.note = "; ".join(filter(None, [mine.note, f"ratios: / {UVICORN_HTTPTOOLS.name}"]))

    def _h3load(
        self, url: str, connections: int, streams: int, options: Sequence[str] = ()
    ) -> Measure:
        return h3load(
            url,
            connections=connections,
            streams=streams,
            duration=self.settings.duration,
            cafile=self.certs.cafile,
            options=options,
        )

    def _loadgen(self, url: str, version: str, connections: int, streams: int) -> Measure:
        return loadgen(
            url,
            http_version=version,
            connections=connections,
            streams=streams,
            duration=self.settings.duration,
            cafile=self.certs.cafile,
        )

    def _with_server(
        self,
        kind: ServerKind,
        *,
        tls: bool,
        cells: Sequence[tuple[str, str, Callable[[Running], Measure]]],
        into: list[Row],
        subjects: Sequence[str] = (),
    ) -> None:
        """Measure ``cells`` on one launch of ``kind``; append a row per cell to ``into``.

        The rows are named ``subjects`` if given, else after the server.
        """
        names = list(subjects) or [kind.name] * len(cells)
        start = len(into)
        try:
            with launch(
                kind, tls=tls, certs=self.certs, logs=self.logs, loop=self.settings.loop
            ) as running:
                for name, (case, unit, run) in zip(names, cells, strict=True):
                    measure = partial(run, running)
                    into.append(self._measure(case, name, unit, measure, server=running.process))
        except RuntimeError as error:
            note = f"did not start: {short(error)}"
            for name, (case, unit, _) in list(zip(names, cells, strict=True))[len(into) - start :]:
                into.append(Row(case=case, subject=name, value=None, unit=unit, note=note))

    # -- client ------------------------------------------------------------------

    def client(self) -> None:
        """Each client against native origins: sequential and 50 at a time."""
        clients = {
            "1.1": ("hface", "httpx", "aiohttp", "niquests"),
            "2": ("hface", "httpx", "niquests"),
            "3": ("hface", "niquests"),
        }
        n = self.settings.requests
        with ExitStack() as stack:
            origins: dict[str, str | Exception] = {}
            try:
                origins["tcp"] = stack.enter_context(self._h2o())
            except RuntimeError as error:
                origins["tcp"] = error
            try:
                origins["3"] = stack.enter_context(self._gtlsserver())
            except RuntimeError as error:
                origins["3"] = error
            for version, names in clients.items():
                origin = origins["3" if version == "3" else "tcp"]
                for label, concurrency in (("sequential", 1), ("50 at a time", 50)):
                    case = f"client h{version[0]} {n} GETs {label}"
                    rows = []
                    for name in names:
                        if isinstance(origin, Exception):
                            note = f"no origin: {short(origin)}"
                            rows.append(
                                Row(case=case, subject=name, value=None, unit="req/s", note=note)
                            )
                            continue
                        url = f"{origin}/{HELLO_FILE}"
                        rows.append(
                            self._measure(
                                case,
                                name,
                                "req/s",
                                partial(self._client_gets, name, version, url, concurrency),
                            )
                        )
                    targets = {"niquests": ">=1.0"} if version == "3" else {"httpx": ">=1.0"}
                    self._add_case(rows, targets)

    def _client_gets(self, client: str, version: str, url: str, concurrency: int) -> Measure:
        count = self.settings.requests
        limit = 120.0
        argv = [sys.executable, str(ROOT / "bench" / "_clients.py"), "get", client, version, url]
        argv += ["--count", str(count), "--concurrency", str(concurrency)]
        argv += ["--cafile", self.certs.cafile, "--time-limit", str(limit)]
        data = json.loads(run_tool(argv, time_limit=limit + MARGIN))
        latencies = sorted(data["latencies"])
        return Measure(
            rps=count / data["seconds"],
            mbps=0.0,
            p50=latencies[len(latencies) // 2],
            p99=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            errors=int(data["errors"]),
        )

    def _h2o(self) -> AbstractContextManager[str]:
        return h2o_origin(self.work, docroot=self.docroot, certs=self.certs, logs=self.logs)

    def _gtlsserver(self) -> AbstractContextManager[str]:
        return gtlsserver_origin(docroot=self.docroot, certs=self.certs, logs=self.logs)

    # -- proxy -------------------------------------------------------------------

    def proxy(self) -> None:
        """A large download through hface's CONNECT proxy on each version, vs direct."""
        cells = (self._measure, self.settings.proxy_mib, self.docroot, self.certs, self.logs)
        rows, curl_rows = proxy_rows(*cells, self._h2o, loop=self.settings.loop)
        # Issue 19: >= 0.7 of the direct download over HTTP/1.1 and 2, >= 0.3 over 3.
        goals = {row.subject: ">=0.3" if row.subject.endswith("3") else ">=0.7" for row in rows[1:]}
        self._add_case(rows, goals, reference_over_row=False)
        self._add_case(curl_rows, {"via hface proxy h1": ">=0.7"}, reference_over_row=False)

    def udp(self) -> None:
        """A large HTTP/3 download through hface's CONNECT-UDP proxy (h3, h2 legs), vs direct."""
        cells = (self._measure, self.settings.proxy_mib, self.docroot, self.certs, self.logs)
        rows = udp_proxy_rows(*cells, self._gtlsserver, loop=self.settings.loop)
        self._add_case(rows, {}, reference_over_row=False)

    # -- memory ------------------------------------------------------------------

    def memory(self) -> None:
        """Server RSS under 1,000 concurrent HTTP/2 streams and with 100 idle connections."""
        hold_ms = int(self.settings.memory_seconds * 1000)
        streams_case = "memory: peak RSS, 1,000 h2 streams (10 conn x 100)"
        idle_case = "memory: RSS, 100 idle h2 connections"
        # hface imports its HTTP/3 stack (aioquic, cryptography) at the first
        # QUIC datagram, hypercorn at start: the same after HTTP/3 traffic.
        warm_case = "memory: RSS, 100 idle h2 connections, after an HTTP/3 request"
        streams_rows, idle_rows, warm_rows = [], [], []
        hold = partial(held_rss, cafile=self.certs.cafile)
        for kind in (HFACE, HYPERCORN):
            streams = partial(hold, path=f"/sleep/{hold_ms}", connections=10, streams=100)
            streams_rows.append(self._rss(streams_case, kind, streams))
            idle = partial(hold, path="/", connections=100, streams=1, idle=True)
            idle_rows.append(self._rss(idle_case, kind, idle))
            warm_rows.append(self._rss(warm_case, kind, partial(self._after_http3, idle)))
        self._add_case(streams_rows, {HYPERCORN.name: "<=1.0"})
        self._add_case(idle_rows, {HYPERCORN.name: "<=1.0"})
        self._add_case(warm_rows, {HYPERCORN.name: "<=1.0"})

    def _after_http3(self, hold: Callable[[Running], float], running: Running) -> float:
        """``hold(running)`` once the server has answered HTTP/3 requests (h3load, 0.5 s)."""
        h3load(
            running.url("/"),
            connections=1,
            streams=1,
            duration=0.5,
            warmup=0.0,
            cafile=self.certs.cafile,
        )
        return hold(running)

    def _rss(self, case: str, kind: ServerKind, hold: Callable[[Running], float]) -> Row:
        self._progress(f"{case}: {kind.name}")
        try:
            with launch(
                kind, tls=True, certs=self.certs, logs=self.logs, loop=self.settings.loop
            ) as running:
                rss = hold(running)
        except (ToolError, RuntimeError, OSError) as error:
            return Row(case=case, subject=kind.name, value=None, unit="MiB", note=short(error))
        return Row(case=case, subject=kind.name, value=rss / 2**20, unit="MiB")

    # -- validate ------------------------------------------------------------------

    def validate(self) -> None:
        """Each load generator against a reference, the same server, the same load.

        HTTP/2: loadgen against h2load (hface, hypercorn, granian). HTTP/3:
        loadgen against h3load (hface, hypercorn), so that the HTTP/3 rows,
        measured with h3load, have loadgen beside them; the CPU ratio shows
        what each client costs the server per request.
        """
        d = self.settings.duration
        h2_cells: list[tuple[str, Callable[[Running], Measure]]] = [
            ("h2load", lambda s: h2load(s.url("/"), connections=10, streams=10, duration=d)),
            ("loadgen", lambda s: self._loadgen(s.url("/"), "2", 10, 10)),
        ]
        h3_cells: list[tuple[str, Callable[[Running], Measure]]] = [
            ("h3load", lambda s: self._h3load(s.url("/"), 10, 10)),
            ("loadgen", lambda s: self._loadgen(s.url("/"), "3", 10, 10)),
        ]
        checks = [("h2", kind, h2_cells) for kind in (HFACE, HYPERCORN, GRANIAN)]
        checks += [("h3", kind, h3_cells) for kind in (HFACE, HYPERCORN)]
        for version, kind, named_cells in checks:
            case = f"check: {version} hello on {kind.name}, -c10 -m10"
            cells = [(case, "req/s", run) for _, run in named_cells]
            subjects = [name for name, _ in named_cells]
            rows: list[Row] = []
            try:
                self._with_server(kind, tls=True, cells=cells, into=rows, subjects=subjects)
            finally:
                self._add_case(rows, {"loadgen": "0.8..1.2"}, reference_over_row=False)
        self._ceiling()

    def _ceiling(self) -> None:
        """The load generators' own ceiling: against native servers, far faster than Python ones.

        A server figure close to these is a figure of loadgen, not of the server.
        """
        d = self.settings.duration
        case = "check: load generators' ceiling, native servers, -c10 -m10"
        rows: list[Row] = []
        try:
            with ExitStack() as stack:
                h2o = stack.enter_context(self._h2o())
                gtlsserver = stack.enter_context(self._gtlsserver())
                hello = f"/{HELLO_FILE}"
                native_h2 = partial(h2load, connections=10, streams=10, duration=d)
                runs: list[tuple[str, Callable[[], Measure]]] = [
                    ("h2load h2 on h2o", partial(native_h2, h2o + hello)),
                    ("loadgen h2 on h2o", partial(self._loadgen, h2o + hello, "2", 10, 10)),
                    (
                        "loadgen h3 on gtlsserver",
                        partial(self._loadgen, gtlsserver + hello, "3", 10, 10),
                    ),
                    ("h3load h3 on gtlsserver", partial(self._h3load, gtlsserver + hello, 10, 10)),
                ]
                for subject, run in runs:
                    rows.append(self._measure(case, subject, "req/s", run))
        except RuntimeError as error:
            rows.append(Row(case=case, subject="-", value=None, unit="req/s", note=short(error)))
        finally:
            self.rows.extend(rows)  # no ratios: HTTP/3 against h2load's HTTP/2 would mislead

    def websocket(self) -> None:
        """WebSocket echo on every version, 1 KiB and 1 MiB messages (bench/_websocket.py)."""
        for rows in _websocket.websocket_rows(
            self._measure, self.settings, self.logs, self.certs
        ).values():
            self._add_case(rows, _websocket.GOALS)

    def workers(self) -> None:
        """Hello world with worker processes (bench/_workers.py)."""
        rows = _workers.workers_rows(self._measure, self.settings, self.certs, self.logs)
        for case_rows in rows.values():
            self._add_case(case_rows, _workers.GOALS)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _check_tools() -> list[str]:
    missing = [tool for tool in ("taskset", "wrk", "h2load") if shutil.which(tool) is None]
    if (os.cpu_count() or 1) < 2:
        missing.append("a second CPU core (servers run on core 0, load on core 1)")
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sections asked for and print the table; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=(__doc__ or "").split("\n", maxsplit=1)[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="one 2-second run per cell (overrides the next two)"
    )
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this section")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (10)")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell, median shown (3)")
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default=LOOPS[0],
        help=f"the event loop of every server ({LOOPS[0]})",
    )
    parser.add_argument(
        "--logs", type=Path, metavar="DIR", help="keep the servers' logs in DIR (default: dropped)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 10 or not 1 <= args.duration <= 120:
        parser.error("--runs must be in [1, 10] and --duration in [1, 120]")
    missing = _check_tools()
    if missing:
        print(f"bench: error: missing {', '.join(missing)}", file=sys.stderr)
        return 1
    settings = _settings(args)
    sections = args.only or list(SECTIONS)
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hface-bench-") as directory:
        work = Path(directory)
        certs = make_certificates(work / "certs")
        bench = Bench(settings, certs, work, args.logs)
        interrupted = False
        try:
            for section in SECTIONS:
                if section in sections:
                    bench.run_section(section)
        except KeyboardInterrupt:
            interrupted = True
        title = (
            f"hface benchmark: {settings.runs} round(s), {settings.duration:g} s a cell, medians"
            f"; servers on core 0 ({settings.loop} event loop for all), load on core 1"
            f"{' (workers: servers on cores 0 and 1)' if 'workers' in sections else ''}"
            f"; {time.monotonic() - started:.0f} s"
            f"{' (interrupted)' if interrupted else ''}\n{LEGEND}"
        )
        print(render(bench.rows, title=title))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
