"""The ``workers`` section: hello world with worker processes, hface against uvicorn and hypercorn.

hface with ``--workers 1`` and ``--workers 2``, uvicorn (httptools) with
``--workers 2`` (HTTP/1.1 only: uvicorn speaks no HTTP/2 or HTTP/3) and
hypercorn with ``--workers 2``, serving ``bench/app.py``'s hello world on
HTTP/1.1 cleartext (wrk -c50), HTTP/2 (h2load -c10 -m10) and HTTP/3
(h3load -c10 -m10). Unlike the server section, the servers may run on
both cores (``taskset -c 0,1``): the load generator, still on core 1,
shares a core with a worker, so on a 2-core machine the ``--workers 2``
rows show what a second core brings net of the load generator's share;
the server CPU column (the whole process tree: supervisor and workers)
says how much each side took.

Ratios are hface ``--workers 2`` over the other rows of the case. On
HTTP/3, hypercorn's workers share one UDP socket, so a datagram reaches
whichever worker reads first, usually not the one holding the connection
(pgjones/hypercorn issue 114): its row shows how the load fails (the
errors h3load counts, or no figure at all).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Final, Protocol

from _servers import HFACE, HYPERCORN, UVICORN_HTTPTOOLS, Certificates, Running, ServerKind, launch
from _table import Goal, Row
from _tools import Measure, h2load, h3load, wrk

#: Both cores of the machine the section is meant for (the load generator stays on core 1).
WORKER_CORES: Final = "0,1"

HELLO_H1: Final = "workers: hello h1 cleartext (wrk -c50)"
HELLO_H2: Final = "workers: hello h2 TLS (h2load -c10 -m10)"
HELLO_H3: Final = "workers: hello h3 (h3load -c10 -m10)"

# hface's HTTP/1.1 on httptools, as uvicorn's (its HTTP/2 and HTTP/3 are the same either way).
HFACE_1: Final = replace(HFACE, name="hface (httptools) --workers 1", workers=1)
HFACE_2: Final = replace(HFACE, name="hface (httptools) --workers 2", workers=2)
UVICORN_2: Final = replace(UVICORN_HTTPTOOLS, name="uvicorn-httptools --workers 2", workers=2)
HYPERCORN_2: Final = replace(HYPERCORN, name="hypercorn --workers 2", workers=2)
#: hface --workers 2 first: every ratio is it over the peer.
SERVERS: Final = (HFACE_2, HFACE_1, UVICORN_2, HYPERCORN_2)

#: What the section expects: two workers at least 1.3 times one (on two shared cores).
GOALS: Final[dict[str, Goal | str]] = {HFACE_1.name: ">=1.3"}

#: What runs one cell: (case, subject, unit, the measurement, the server's process).
MeasureCell = Callable[..., Row]


class Settings(Protocol):
    """What of bench/run.py's settings the section uses."""

    #: Seconds measured per cell.
    duration: float
    #: The event loop of every server.
    loop: str


def workers_rows(
    measure_cell: MeasureCell, settings: Settings, certs: Certificates, logs: Path
) -> dict[str, list[Row]]:
    """Each case's rows, hface --workers 2 first; a server that does not start gets failed rows."""
    d = settings.duration
    cases: list[tuple[str, bool, str, Callable[[Running], Measure]]] = [
        (HELLO_H1, False, "1.1", lambda s: wrk(s.url("/"), connections=50, duration=d)),
        (HELLO_H2, True, "2",
         lambda s: h2load(s.url("/"), connections=10, streams=10, duration=d)),
        (HELLO_H3, True, "3",
         lambda s: h3load(s.url("/"), connections=10, streams=10, duration=d,
                          cafile=certs.cafile)),
    ]  # fmt: skip
    rows: dict[str, list[Row]] = {case: [] for case, _, _, _ in cases}
    for kind in SERVERS:
        for tls in (False, True):
            mine = [c for c in cases if c[1] == tls and c[2] in _versions(kind, tls)]
            if mine:
                _measure_on(kind, tls, mine, measure_cell, settings, certs, logs, rows)
    return rows


def _versions(kind: ServerKind, tls: bool) -> Sequence[str]:
    if not tls:
        return ("1.1",) if kind.cleartext else ()
    return kind.tls_versions


def _measure_on(
    kind: ServerKind,
    tls: bool,
    cases: Sequence[tuple[str, bool, str, Callable[[Running], Measure]]],
    measure_cell: MeasureCell,
    settings: Settings,
    certs: Certificates,
    logs: Path,
    rows: dict[str, list[Row]],
) -> None:
    done: set[str] = set()
    try:
        with launch(
            kind, tls=tls, certs=certs, logs=logs, loop=settings.loop, core=WORKER_CORES
        ) as running:
            for case, _, _, run in cases:
                rows[case].append(
                    measure_cell(
                        case, kind.name, "req/s", lambda r=run: r(running), server=running.process
                    )
                )
                done.add(case)
    except RuntimeError as error:
        note = f"did not start: {error}"[:80]
        for case, _, _, _ in cases:
            if case not in done:
                rows[case].append(
                    Row(case=case, subject=kind.name, value=None, unit="req/s", note=note)
                )
