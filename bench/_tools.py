"""Running the load generators on core 1 and reading their output.

wrk (HTTP/1.1), h2load (HTTP/2), bench/h3load.py (HTTP/3 on aioquic alone)
and bench/loadgen.py (hface's client, any version). Each returns a
:class:`Measure` with the measured window (``time.monotonic()``) so that
the server's CPU time can be read over that window only (see
:mod:`_cpu`): h3load and loadgen report theirs; for wrk and h2load it is
the last ``duration`` seconds before they exit (both stop the moment it
ends). Every run has a time limit; a tool that overruns it is killed and
the cell reports the failure.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from _servers import CLIENT_CORE, ROOT

#: Seconds a tool may run past its own duration before it is killed.
MARGIN: Final = 30.0
#: Load generator CPU use (fraction of its core) above which it, not the
#: server, is taken to be the bottleneck.
SATURATED: Final = 0.9

_UNITS: Final = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_SIZES: Final = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


class ToolError(Exception):
    """A load generator failed; the message says how."""


@dataclass(frozen=True, kw_only=True)
class Measure:
    """One cell's figures."""

    #: Requests per second.
    rps: float
    #: Response MB (10⁶ bytes) per second.
    mbps: float
    #: Median latency in seconds (NaN where unknown).
    p50: float = math.nan
    #: 99th percentile latency in seconds (NaN where unknown).
    p99: float = math.nan
    #: Failed requests (errors, resets, non-2xx).
    errors: int = 0
    #: A remark for the table (e.g. that the load generator saturated).
    note: str = ""
    #: The server's CPU time / the window's wall time (NaN where not measured).
    server_cpu: float = math.nan
    #: The server's CPU seconds per request, or per MB for MB/s figures (NaN: not measured).
    server_cpu_per_unit: float = math.nan
    #: The measured window, ``time.monotonic()`` at its start and end (None: unknown).
    window: tuple[float, float] | None = None


def median_of(measures: Sequence[Measure]) -> Measure:
    """Each figure's median over the runs (and the errors summed)."""
    return Measure(
        rps=statistics.median(m.rps for m in measures),
        mbps=statistics.median(m.mbps for m in measures),
        p50=statistics.median(m.p50 for m in measures),
        p99=statistics.median(m.p99 for m in measures),
        errors=sum(m.errors for m in measures),
        note=next((m.note for m in measures if m.note), ""),
        server_cpu=statistics.median(m.server_cpu for m in measures),
        server_cpu_per_unit=statistics.median(m.server_cpu_per_unit for m in measures),
    )


def repeat(runs: int, measure: Callable[[], Measure]) -> Measure:
    """Measure ``runs`` times; the median."""
    return median_of([measure() for _ in range(runs)])


def _window_ending_now(seconds: float) -> tuple[float, float]:
    """The last ``seconds`` before now, for a tool that just exited at the end of its run."""
    end = time.monotonic()
    return (end - seconds, end)


def run_tool(argv: Sequence[str], *, time_limit: float) -> str:
    """Run ``argv`` on the client core; return its stdout.

    :raises ToolError: if it fails or overruns ``time_limit`` (it is killed).
    """
    name = Path(argv[1] if argv[0] == sys.executable else argv[0]).name
    try:
        result = subprocess.run(
            ["taskset", "-c", CLIENT_CORE, *argv],
            capture_output=True,
            text=True,
            timeout=time_limit,
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ToolError(f"{name} ran over {time_limit:.0f} s and was killed") from None
    if result.returncode != 0:
        lines = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
        raise ToolError(f"{name} exited {result.returncode}: {lines[-1]}")
    return result.stdout


def _duration(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ToolError(f"cannot read the duration {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def wrk(url: str, *, connections: int, duration: float) -> Measure:
    """``wrk`` with one thread and ``connections`` connections (HTTP/1.1, TLS or not)."""
    seconds = max(1, round(duration))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    out = run_tool(argv, time_limit=seconds + MARGIN)
    window = _window_ending_now(seconds)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    if rps is None or transfer is None or p50 is None or p99 is None:
        raise ToolError(f"cannot read wrk's output: {out[-300:]!r}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors += int(non_2xx[1]) if non_2xx else 0
    return Measure(
        rps=float(rps[1]),
        mbps=float(transfer[1]) * _SIZES[transfer[2]] / 1e6,
        p50=_duration(p50[1]),
        p99=_duration(p99[1]),
        errors=errors,
        window=window,
    )


def h2load(
    url: str, *, connections: int, streams: int, duration: float, warmup: float = 1.0
) -> Measure:
    """``h2load`` (HTTP/2, TLS or prior knowledge) for ``duration`` seconds after ``warmup``.

    Latency percentiles come from its per-request log.
    """
    with tempfile.TemporaryDirectory(prefix="hface-bench-") as directory:
        log = Path(directory) / "h2load.log"
        seconds = max(1, round(duration))
        argv = ["h2load", "-t1", f"-c{connections}", f"-m{streams}"]
        argv += [f"-D{seconds}", f"--warm-up-time={max(1, round(warmup))}"]
        argv += [f"--log-file={log}", url]
        out = run_tool(argv, time_limit=duration + warmup + MARGIN)
        window = _window_ending_now(seconds)
        latencies = sorted(
            int(line.split()[2]) / 1e6 for line in log.read_text().splitlines() if line.strip()
        )
    finished = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s, ([\d.]+)(B|KB|MB|GB)/s", out)
    counts = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    status = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if finished is None or counts is None or status is None:
        raise ToolError(f"cannot read h2load's output: {out[-300:]!r}")
    errors = sum(int(n) for n in counts.groups()) + sum(int(n) for n in status.groups())
    return Measure(
        rps=float(finished[1]),
        mbps=float(finished[2]) * _SIZES[finished[3]] / 1e6,
        p50=_percentile(latencies, 0.5),
        p99=_percentile(latencies, 0.99),
        errors=errors,
        window=window,
    )


def loadgen(
    url: str,
    *,
    http_version: str,
    connections: int,
    streams: int,
    duration: float,
    cafile: str,
    warmup: float = 1.0,
    processes: int = 1,
) -> Measure:
    """bench/loadgen.py (hface's own client layers), any HTTP version."""
    argv = [sys.executable, str(ROOT / "bench" / "loadgen.py"), url, "--http", http_version]
    argv += [f"-c{connections}", f"-m{streams}", f"-d{duration}", f"--warmup={warmup}"]
    argv += [f"--processes={processes}", "--cafile", cafile, "--json"]
    return _read_load(run_tool(argv, time_limit=duration + warmup + MARGIN + 10), "loadgen")


def h3load(
    url: str,
    *,
    connections: int,
    streams: int,
    duration: float,
    cafile: str,
    warmup: float = 1.0,
    processes: int = 1,
    options: Sequence[str] = (),
) -> Measure:
    """bench/h3load.py: HTTP/3 on aioquic alone, independent of hface (``options``: more)."""
    argv = [sys.executable, str(ROOT / "bench" / "h3load.py"), url, *options]
    argv += [f"-c{connections}", f"-m{streams}", f"-d{duration}", f"--warmup={warmup}"]
    argv += [f"--processes={processes}", "--cafile", cafile, "--json"]
    return _read_load(run_tool(argv, time_limit=duration + warmup + MARGIN + 10), "h3load")


def _read_load(out: str, name: str) -> Measure:
    """A :class:`Measure` from the JSON of loadgen.py or h3load.py."""
    data = json.loads(out)
    if not data["requests"]:
        raise ToolError(f"no request completed ({data['errors']} errors)")
    start, end = data["window"]
    return Measure(
        rps=float(data["requests_per_second"]),
        mbps=float(data["megabytes_per_second"]),
        p50=float(data["p50"]),
        p99=float(data["p99"]),
        errors=int(data["errors"]),
        note=_saturation(name, float(data["cpu_fraction"])),
        window=(float(start), float(end)),
    )


def _saturation(name: str, cpu_fraction: float) -> str:
    """A remark when the load generator itself used (nearly) all of its core."""
    if cpu_fraction < SATURATED:
        return ""
    return f"{name} at {cpu_fraction:.0%} CPU: a lower bound"


def _percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return math.nan
    return values[min(len(values) - 1, int(fraction * len(values)))]
