"""The ``websocket`` section of bench/run.py: WebSocket echo, side by side.

Issue 14 asks for WebSocket echo messages per second and MB/s, for 1 KiB
and 1 MiB messages, over each version hypercorn serves, hface at least
level with the better of hypercorn and uvicorn. Each server runs
:func:`ws_echo.app` (a raw ASGI echo) with the settings of
bench/ws_echo.py, pinned to the server core as the other sections'
servers are; the client (:data:`ws_echo.WINDOW` messages in flight on one
connection) runs here. Each cell is a ``req/s`` (messages per second, CPU
per message) or ``MB/s`` (each way, CPU per MB) row, hface first, so the
ratios are hface / peer.

HTTP/1.1 cleartext with the ``websockets`` library as the client, against
hface, hypercorn and uvicorn; HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220) on
TLS with hface's client (the only one here that speaks them), against
hface and hypercorn (uvicorn serves neither). On those rows the client is
hface's on both sides of the ratio, so the server's CPU per message is
the figure to read.
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

#: The message sizes measured.
SIZES: Final = (1024, 1024 * 1024)
#: The versions, each with its servers, hface first (the reference of the ratios).
VERSIONS: Final = {
    "1.1": ("hface", "hypercorn", "uvicorn"),
    "2": ("hface", "hypercorn"),
    "3": ("hface", "hypercorn"),
}
#: Issue 14: hface at least level with each peer, on each case.
GOALS: Final[dict[str, Goal | str]] = {"hypercorn": ">=1.0", "uvicorn": ">=1.0"}


def case_name(version: str, size: int) -> str:
    """The table's case for a version and a message size."""
    label = "1 KiB" if size == 1024 else "1 MiB"
    where = "h1" if version == "1.1" else f"h{version} TLS"
    return f"ws echo {label} {where} ({ws_echo.WINDOW} in flight)"


#: What runs one cell: (case, subject, unit, the measurement, the server's process).
MeasureCell = Callable[..., Row]


class Settings(Protocol):
    """What of bench/run.py's settings the section uses."""

    #: Seconds measured per cell.
    duration: float
    #: The event loop of every server.
    loop: str


class Certificates(Protocol):
    """The certificate the TLS servers present and the CA the client trusts."""

    cafile: str
    certfile: str
    keyfile: str


def websocket_rows(
    measure_cell: MeasureCell, settings: Settings, logs: Path, certs: Certificates
) -> dict[str, list[Row]]:
    """Each case's rows, hface's first; a server that does not start gets failed rows."""
    rows: dict[str, list[Row]] = {}
    for version, servers in VERSIONS.items():
        cases = {size: case_name(version, size) for size in SIZES}
        for case in cases.values():
            rows[case] = []
        for name in servers:
            _server_rows(measure_cell, settings, logs, certs, version, name, cases, rows)
    return rows


def _server_rows(
    measure_cell: MeasureCell,
    settings: Settings,
    logs: Path,
    certs: Certificates,
    version: str,
    name: str,
    cases: dict[int, str],
    rows: dict[str, list[Row]],
) -> None:
    """One server's cells on one version, added to ``rows``."""
    port = free_port()
    tls = None if version == "1.1" else (certs.certfile, certs.keyfile)
    log_file = logs / f"ws-{name}-h{version}.log"
    try:
        argv = ws_echo.server_argv(name, port, settings.loop, tls)
        with start_process(argv, log_file=log_file, cwd=ROOT) as process:
            wait_until_listening(process, port, udp=version == "3", log_file=log_file)
            for size, case in cases.items():
                unit = "req/s" if size < 1024 * 1024 else "MB/s"

                def run(size: int = size, pid: int = process.pid) -> Measure:
                    try:
                        if version == "1.1":
                            measured = ws_echo.measure(port, size, settings.duration, pid)
                        else:
                            measured = ws_echo.measure_tls(
                                port, size, settings.duration, pid, version=version,
                                cafile=certs.cafile,
                            )  # fmt: skip
                        rate, mbps, _, window = asyncio.run(measured)
                    except Exception as error:  # the client's: a failed cell
                        raise RuntimeError(f"{type(error).__name__}: {error}") from error
                    return Measure(rps=rate, mbps=mbps, window=window)

                rows[case].append(measure_cell(case, name, unit, run, server=process))
    except RuntimeError as error:
        for size, case in cases.items():
            if not any(row.subject == name for row in rows[case]):
                unit = "req/s" if size < 1024 * 1024 else "MB/s"
                note = f"did not start: {error}"[:80]
                rows[case].append(Row(case=case, subject=name, value=None, unit=unit, note=note))
