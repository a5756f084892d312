"""The memory section's measurement: a server's RSS while a client holds requests.

bench/_clients.py ``hold`` (on core 1) opens the HTTP/2 connections, sends
every request and prints ``ready``; from then on the server's process tree
RSS is sampled from ``/proc`` until the last response (the peak), or once,
a second later, while the connections sit idle.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from typing import Final

from _servers import CLIENT_CORE, ROOT, Running, tree_rss
from _tools import ToolError

#: Seconds the client may take, from start to its last response.
HOLD_LIMIT: Final = 60.0


def held_rss(
    running: Running,
    *,
    path: str,
    connections: int,
    streams: int,
    cafile: str,
    idle: bool = False,
) -> float:
    """The server's RSS (bytes) while a client holds ``connections`` x ``streams`` requests.

    Idle: RSS once every response is in and the connections sit idle.
    Otherwise: the peak RSS from the moment every request is sent until
    the last response (``path`` should make the server wait).

    :raises ToolError: if the client fails or misses responses.
    """
    argv = ["taskset", "-c", CLIENT_CORE, sys.executable]
    argv += [str(ROOT / "bench" / "_clients.py"), "hold", running.url(path)]
    argv += ["--connections", str(connections), "--streams", str(streams)]
    argv += ["--hold", "3", "--cafile", cafile, "--time-limit", str(HOLD_LIMIT)]
    argv += ["--idle"] if idle else []
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], HOLD_LIMIT)
        if not ready or process.stdout.readline().strip() != "ready":
            raise ToolError(f"the client did not get ready: {_tail(process)}")
        deadline = time.monotonic() + HOLD_LIMIT
        peak = 0
        if idle:
            time.sleep(1.0)
            peak = tree_rss(running.process.pid)
        else:
            while process.poll() is None and time.monotonic() < deadline:
                peak = max(peak, tree_rss(running.process.pid))
                time.sleep(0.05)
        out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        if process.returncode != 0:
            raise ToolError(f"the client failed: {err.strip()[-200:]}")
        result = json.loads(out.strip().splitlines()[-1])
        if result["completed"] != connections * streams:
            raise ToolError(f"{result['completed']} of {connections * streams} responses")
        return float(peak)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _tail(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.kill()
    _, err = process.communicate(timeout=10)
    lines = err.strip().splitlines()
    return lines[-1] if lines else f"exit status {process.returncode}"
