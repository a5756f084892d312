"""What a load generator measured, shared by loadgen.py and h3load.py.

Plain Python and the standard library only: h3load.py must not import
hface, so nothing here does either. A :class:`Result` counts the requests
completed inside the measured window, their latencies (a log-scale
histogram, so that results of several processes merge exactly), the
window itself (``time.monotonic()`` seconds, which are the same clock in
every process of the machine, so that bench/run.py can read the server's
CPU time over exactly that window) and the CPU time the load generator's
own processes used.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

#: Latencies are counted in buckets 2 % wide (log scale, in microseconds).
BUCKET_BASE: Final = math.log(1.02)


def client_cores() -> int:
    """How many cores this process may run on (``taskset`` narrows it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass
class Result:
    """What a run measured; results of several processes merge."""

    #: Requests completed inside the measured window.
    requests: int = 0
    #: Requests that failed (reset, connection lost, status >= 400).
    errors: int = 0
    #: Response body bytes received inside the measured window.
    body_bytes: int = 0
    #: Seconds in the measured window.
    seconds: float = 0.0
    #: Connections opened (more than ``-c`` when servers close them).
    connections: int = 0
    #: Latency histogram: bucket number → count (see :data:`BUCKET_BASE`).
    histogram: dict[int, int] = field(default_factory=dict)
    #: CPU seconds the load generator's processes used, start to end.
    cpu_seconds: float = 0.0
    #: Wall seconds the longest process ran, start to end.
    wall_seconds: float = 0.0
    #: Cores the load generator could use (its CPU affinity).
    cores: int = 1
    #: CPU time / wall time of the busiest single process.
    busiest_process: float = 0.0
    #: The measured window, ``time.monotonic()`` at its start and its end.
    window: tuple[float, float] = (0.0, 0.0)

    def record(self, latency: float, body_bytes: int) -> None:
        """Count one completed request that took ``latency`` seconds."""
        self.requests += 1
        self.body_bytes += body_bytes
        bucket = int(math.log(max(latency * 1e6, 1.0)) / BUCKET_BASE)
        self.histogram[bucket] = self.histogram.get(bucket, 0) + 1

    def set_cpu(self, *, cpu_seconds: float, wall_seconds: float) -> None:
        """Record this process's CPU and wall time (start to end)."""
        self.cpu_seconds = cpu_seconds
        self.wall_seconds = wall_seconds
        self.cores = client_cores()
        self.busiest_process = cpu_seconds / wall_seconds if wall_seconds > 0 else 0.0

    @property
    def cpu_fraction(self) -> float:
        """CPU used over what its cores offered (1.0: they were saturated).

        Near 1.0 the load generator, not the server, was the bottleneck,
        and the figures are lower bounds. Processes sharing one core count
        together: their sum is what the core had to give.
        """
        if self.wall_seconds <= 0:
            return 0.0
        shared = self.cpu_seconds / self.wall_seconds / max(self.cores, 1)
        return max(shared, self.busiest_process)

    @property
    def requests_per_second(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def megabytes_per_second(self) -> float:
        """Response body MB (10⁶ bytes) per second."""
        return self.body_bytes / self.seconds / 1e6 if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """The latency (seconds) below which ``fraction`` of the requests completed."""
        if not self.requests:
            return math.nan
        wanted = fraction * self.requests
        seen = 0
        for bucket in sorted(self.histogram):
            seen += self.histogram[bucket]
            if seen >= wanted:
                return math.exp((bucket + 0.5) * BUCKET_BASE) / 1e6
        return math.nan  # pragma: no cover - the loop always reaches ``requests``

    def merge(self, other: Result) -> None:
        """Add ``other`` (from a process that ran alongside) to this result."""
        first = not self.wall_seconds and not self.requests
        self.requests += other.requests
        self.errors += other.errors
        self.body_bytes += other.body_bytes
        self.seconds = max(self.seconds, other.seconds)
        self.connections += other.connections
        self.cpu_seconds += other.cpu_seconds
        self.wall_seconds = max(self.wall_seconds, other.wall_seconds)
        self.cores = other.cores
        self.busiest_process = max(self.busiest_process, other.busiest_process)
        if first:
            self.window = other.window
        else:
            start, end = self.window
            self.window = (min(start, other.window[0]), max(end, other.window[1]))
        for bucket, count in other.histogram.items():
            self.histogram[bucket] = self.histogram.get(bucket, 0) + count

    def summary(self, name: str) -> str:
        """One line for a person."""
        return (
            f"{self.requests_per_second:.0f} req/s, {self.megabytes_per_second:.1f} MB/s, "
            f"p50 {self.percentile(0.5) * 1e3:.2f} ms, "
            f"p99 {self.percentile(0.99) * 1e3:.2f} ms, "
            f"{self.requests} requests, {self.errors} errors, "
            f"{self.connections} connections in {self.seconds:.1f} s, "
            f"{name} CPU {self.cpu_fraction:.0%} of {self.cores} core(s)"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with the derived figures too."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "body_bytes": self.body_bytes,
            "seconds": self.seconds,
            "connections": self.connections,
            "histogram": {str(bucket): count for bucket, count in self.histogram.items()},
            "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
            "cores": self.cores,
            "busiest_process": self.busiest_process,
            "window": list(self.window),
            "cpu_fraction": self.cpu_fraction,
            "requests_per_second": self.requests_per_second,
            "megabytes_per_second": self.megabytes_per_second,
            "p50": self.percentile(0.5),
            "p99": self.percentile(0.99),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        """The inverse of :meth:`to_json`."""
        start, end = data["window"]
        return cls(
            requests=int(data["requests"]),
            errors=int(data["errors"]),
            body_bytes=int(data["body_bytes"]),
            seconds=float(data["seconds"]),
            connections=int(data["connections"]),
            histogram={int(bucket): int(count) for bucket, count in data["histogram"].items()},
            cpu_seconds=float(data["cpu_seconds"]),
            wall_seconds=float(data["wall_seconds"]),
            cores=int(data["cores"]),
            busiest_process=float(data["busiest_process"]),
            window=(float(start), float(end)),
        )


class Clock:
    """The run's schedule: warm-up, then the measured window, then a grace period.

    :param measure_from: ``time.monotonic()`` at which the measured window
        starts (processes of one run share it, so that their windows agree);
        None: ``warmup`` seconds from now.
    """

    def __init__(self, *, duration: float, warmup: float, measure_from: float | None) -> None:
        self.started = time.monotonic()
        self.cpu_started = time.process_time()
        self.measure_from = self.started + warmup if measure_from is None else measure_from
        self.stop_at = self.measure_from + duration
        self.duration = duration

    def finish(self, result: Result) -> Result:
        """Stamp ``result`` with the window and this process's CPU use; return it."""
        result.seconds = self.duration
        result.window = (self.measure_from, self.stop_at)
        result.set_cpu(
            cpu_seconds=time.process_time() - self.cpu_started,
            wall_seconds=time.monotonic() - self.started,
        )
        return result


def run_processes(
    script: str,
    argv: Sequence[str],
    *,
    processes: int,
    connections: int,
    warmup: float,
    startup: float,
    time_limit: float,
) -> Result:
    """Split ``connections`` over ``processes`` copies of ``script``; the merged result.

    Every copy gets the same measured window (``--measure-from``): it starts
    ``startup`` seconds (time to import and connect) plus ``warmup`` from now.

    :raises RuntimeError: if a copy fails (with its last line of stderr).
    """
    base = _without(argv, ("--processes", "--measure-from"))
    shares = [connections // processes] * processes
    for index in range(connections % processes):
        shares[index] += 1
    measure_from = time.monotonic() + startup + warmup
    children = [
        subprocess.Popen(
            [
                *(sys.executable, script, *base),
                *("--processes=1", f"-c{share}", "--json", f"--measure-from={measure_from!r}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for share in shares
    ]
    result = Result()
    problems = []
    try:
        for child in children:
            out, err = child.communicate(timeout=time_limit)
            if child.returncode != 0:
                problems.append(err.strip().splitlines()[-1] if err.strip() else "failed")
                continue
            result.merge(Result.from_json(json.loads(out)))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    if problems:
        raise RuntimeError(problems[0])
    return result


def _without(argv: Sequence[str], options: tuple[str, ...]) -> list[str]:
    """``argv`` less ``options`` and their values (``--option=V`` or ``--option V``)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in options)):
            kept.append(arg)
    return kept
