"""Where a server's time goes under a benchmark's load, by layer (issue 19).

Serves ``bench.app:app`` with one of bench/run.py's servers, pinned to
core 0, loads it from core 1 as the matching ``bench:run`` row does, and
samples the server with py-spy meanwhile. Each sample is charged to the
innermost Python frame (time spent in C, an ``ssl`` write or a socket
call, goes to the Python function that called it) and that frame to a
layer by the file it is in: the sans-IO libraries (h11, h2, hpack,
aioquic, httptools, wsproto), hface's own layers, anyio, asyncio, the
app. It prints the share of each layer and the functions that cost most,
with the server's CPU over the sampled window::

    hatch run bench:profile h1                       # hface (h11), wrk -c50, cleartext
    hatch run bench:profile h1 --server "hface (httptools)" --tls
    hatch run bench:profile h2 --server hypercorn    # any server of bench/_servers.py
    hatch run bench:profile h3 --datagram-per-request
    hatch run bench:profile h1 --path /bytes/1048576 --tls

Bounded: one load of ``--duration`` seconds (10), one sampling window
inside it. Needs py-spy (in the ``bench`` environment) and root or
``ptrace`` rights over the server.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from _servers import BIN, LOOPS, SERVERS, Certificates, launch, make_certificates, tree_cpu
from _tools import Measure, h2load, h3load, wrk

#: Seconds of load before the sampling starts, and left after it ends.
MARGIN: Final = 1.5
#: Samples per second.
RATE: Final = 250

#: A layer for a frame's file: the first pattern found in its path wins.
LAYERS: Final = (
    ("app", "bench/app.py"),
    ("hface.protocols", "hface/protocols/"),
    ("hface.networking", "hface/networking/"),
    ("hface.connections", "hface/connections/"),
    ("hface.server", "hface/server/"),
    ("hface (other)", "/hface/"),
    ("h11", "/h11/"),
    ("h2 + hpack", "/h2/"),
    ("h2 + hpack", "/hpack/"),
    ("aioquic", "/aioquic/"),
    ("httptools", "/httptools/"),
    ("wsproto", "/wsproto/"),
    ("anyio", "/anyio/"),
    ("uvloop", "/uvloop/"),
    ("asyncio", "/asyncio/"),
    ("ssl", "/ssl.py"),
    ("hypercorn", "/hypercorn/"),
    ("uvicorn", "/uvicorn/"),
)
#: Innermost frames of a thread that waits (py-spy cannot always tell): left out.
IDLE: Final = (("threading.py", ".wait"), ("selectors.py", ".select"))
#: One frame of py-spy's raw format: ``function (file:line)``.
_FRAME: Final = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::\d+)?\)$")


def layer_of(path: str) -> str:
    """The layer a frame's file belongs to."""
    for name, pattern in LAYERS:
        if pattern in path:
            return name
    return "other (stdlib, typing, ...)"


def tally(raw: Iterable[str]) -> tuple[Counter[str], Counter[str], int]:
    """Samples by layer and by function, and the total, from py-spy's raw output.

    Each line of the raw format is ``frame;frame;...;innermost count``.
    Samples of threads waiting on a lock or a selector are not counted.
    """
    layers: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in raw:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        match = _FRAME.match(stack.rsplit(";", 1)[-1])
        if match is None:
            continue
        path = match["file"]
        if any(path.endswith(file) and match["function"].endswith(f) for file, f in IDLE):
            continue
        layers[layer_of(path)] += count
        where = path.rsplit("site-packages/", 1)[-1].rsplit("src/", 1)[-1]
        functions[f"{match['function']} ({where})"] += count
        total += count
    return layers, functions, total


def _load(args: argparse.Namespace, url: str, certs: Certificates) -> Callable[[], Measure]:
    """The load of the matching bench:run row, for ``--duration`` seconds."""
    duration = args.duration
    if args.version == "h1":
        return lambda: wrk(url, connections=args.connections or 50, duration=duration)
    if args.version == "h2":
        connections = args.connections or 10
        return lambda: h2load(url, connections=connections, streams=10, duration=duration)
    options = ("--datagram-per-request",) if args.datagram_per_request else ()
    connections = args.connections or 10
    return lambda: h3load(
        url,
        connections=connections,
        streams=10,
        duration=duration,
        cafile=certs.cafile,
        warmup=0.5,
        options=options,
    )


def _sample(pid: int, seconds: float, out: Path) -> None:
    argv = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--format", "raw", "--full-filenames"]
    argv += ["--rate", str(RATE), "--duration", str(round(seconds)), "--output", str(out)]
    subprocess.run(argv, capture_output=True, timeout=seconds + 30, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version", choices=("h1", "h2", "h3"))
    names = [kind.name for kind in SERVERS]
    parser.add_argument("--server", default="hface", choices=names, help="hface (h11) by default")
    parser.add_argument("--tls", action="store_true", help="HTTP/1.1 over TLS (h2, h3 always are)")
    parser.add_argument("--path", default="/", help="what to fetch: / or /bytes/N")
    parser.add_argument("--connections", type=int, help="the row's count by default")
    parser.add_argument("--datagram-per-request", action="store_true", help="h3load's option")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load (10)")
    parser.add_argument("--loop", choices=LOOPS, default=LOOPS[0])
    parser.add_argument("--top", type=int, default=25, help="functions listed (25)")
    args = parser.parse_args()
    if args.duration < 2 * MARGIN + 2:
        parser.error(f"--duration must be at least {2 * MARGIN + 2} s")
    kind = next(kind for kind in SERVERS if kind.name == args.server)
    tls = args.tls or args.version != "h1"
    with tempfile.TemporaryDirectory(prefix="hface-profile-") as work_dir:
        work = Path(work_dir)
        certs = make_certificates(work)
        with launch(kind, tls=tls, certs=certs, logs=work, loop=args.loop) as running:
            load = _load(args, running.url(args.path), certs)
            result: list[Measure] = []
            loader = threading.Thread(target=lambda: result.append(load()), daemon=True)
            loader.start()
            loader.join(MARGIN)
            window = args.duration - 2 * MARGIN
            cpu_before = tree_cpu(running.process.pid)
            _sample(running.process.pid, window, work / "raw.txt")
            cpu = (tree_cpu(running.process.pid) - cpu_before) / window
            loader.join(args.duration + 60)
            raw = (work / "raw.txt").read_text().splitlines()
    layers, functions, total = tally(raw)
    if not total:
        print("no samples: is py-spy allowed to read the server's memory?", file=sys.stderr)
        return 1
    rate = f"{result[0].rps:,.0f} req/s, {result[0].mbps:,.1f} MB/s" if result else "load failed"
    print(f"{args.server} {args.version}{' TLS' if tls else ''} {args.path}: {rate}")
    per_request = f"; about {cpu * 1e6 / result[0].rps:,.0f} µs per request" if result else ""
    print(f"server CPU {cpu:.0%} of a core over the {window:.0f} s window{per_request}")
    print(f"{total:,} samples; time in C is charged to the Python function that called it\n")
    for name, count in layers.most_common():
        print(f"  {count / total:6.1%}  {name}")
    print(f"\nthe {args.top} functions with the most samples of their own:")
    for name, count in functions.most_common(args.top):
        print(f"  {count / total:6.1%}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
