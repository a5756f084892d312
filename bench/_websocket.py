"""The ``websocket`` section of bench/run.py: WebSocket echo, side by side.

Issue 14 asks for WebSocket echo messages per second and MB/s, for 1 KiB
and 1 MiB messages, hface at least level with the better of hypercorn and
uvicorn. Each server runs :func:`ws_echo.app` (a raw ASGI echo) with the
settings of bench/ws_echo.py, pinned to the server core as the other
sections' servers are; the client (``websockets``, :data:`ws_echo.WINDOW`
messages in flight on one connection) runs here. Each cell is a
``req/s`` (messages per second, CPU per message) or ``MB/s`` (each way,
CPU per MB) row, hface first, so the ratios are hface / peer.

HTTP/1.1 cleartext only so far: uvicorn serves nothing else, and the
HTTP/2 and HTTP/3 rows (hface and hypercorn) need a client that speaks
RFC 8441 and RFC 9220.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

import ws_echo
from _servers import ROOT, free_port, start_process, wait_until_listening
from _table import Goal, Row
from _tools import Measure

#: The rows' cases, by message size.
CASES: Final = {
    1024: f"ws echo 1 KiB h1 ({ws_echo.WINDOW} in flight)",
    1024 * 1024: f"ws echo 1 MiB h1 ({ws_echo.WINDOW} in flight)",
}
#: The servers, hface first (the reference of the ratios).
SERVERS: Final = ("hface", "hypercorn", "uvicorn")
#: Issue 14: hface at least level with each peer, on each case.
GOALS: Final[dict[str, Goal | str]] = {"hypercorn": ">=1.0", "uvicorn": ">=1.0"}

#: What runs one cell: (case, subject, unit, the measurement, the server's process).
MeasureCell = Callable[..., Row]


class Settings(Protocol):
    """What of bench/run.py's settings the section uses."""

    #: Seconds measured per cell.
    duration: float
    #: The event loop of every server.
    loop: str


def websocket_rows(
    measure_cell: MeasureCell, settings: Settings, logs: Path
) -> dict[str, list[Row]]:
    """Each case's rows, hface's first; a server that does not start gets failed rows."""
    seconds, loop = settings.duration, settings.loop
    rows: dict[str, list[Row]] = {case: [] for case in CASES.values()}
    for name in SERVERS:
        port = free_port()
        log_file = logs / f"ws-{name}.log"
        try:
            with start_process(
                ws_echo.server_argv(name, port, loop), log_file=log_file, cwd=ROOT
            ) as process:
                wait_until_listening(process, port, udp=False, log_file=log_file)
                for size, case in CASES.items():
                    unit = "req/s" if size < 1024 * 1024 else "MB/s"

                    def run(size: int = size, port: int = port, pid: int = process.pid) -> Measure:
                        try:
                            rate, mbps, _, window = asyncio.run(
                                ws_echo.measure(port, size, seconds, pid)
                            )
                        except Exception as error:  # the client's: a failed cell
                            raise RuntimeError(f"{type(error).__name__}: {error}") from error
                        return Measure(rps=rate, mbps=mbps, window=window)

                    rows[case].append(measure_cell(case, name, unit, run, server=process))
        except RuntimeError as error:
            for size, case in CASES.items():
                if len(rows[case]) < SERVERS.index(name) + 1:
                    unit = "req/s" if size < 1024 * 1024 else "MB/s"
                    note = f"did not start: {error}"[:80]
                    row = Row(case=case, subject=name, value=None, unit=unit, note=note)
                    rows[case].append(row)
    return rows
