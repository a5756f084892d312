"""The one table bench/run.py prints.

Rows come in cases (one measurement made of each subject in turn); the
first row of a case is the reference and each later row carries a ratio
against it. For servers and clients the ratio is hface / peer; for the
proxy, tunnelled / direct; for memory, hface's RSS / the peer's; for the
load-generator check, loadgen (or h3load) / the reference tool.

Where the server's CPU time was measured, a row also shows it per request
(per MB for MB/s figures) over the measured window, and a CPU ratio in
the same direction as the ratio, in work done per CPU second: for servers
the peer's CPU per request / hface's (above 1, hface spends less), for
the checks the reference tool's / the row's (below 1, the server spends
more per request under this load generator than under the reference).
That figure holds whichever side is the bottleneck. A target applies to
the ratio, the CPU ratio or the value itself (:attr:`Row.target_on`) and
is marked ``ok`` or ``MISS``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final


@dataclass(kw_only=True)
class Row:
    """One line of the table."""

    #: What is measured, e.g. ``hello h1 TLS (wrk -c50)``; shared by a case's rows.
    case: str
    #: Who: ``hface``, ``hypercorn``, ``httpx`` ...
    subject: str
    #: The figure in :attr:`unit`, or None if the cell failed.
    value: float | None
    #: ``req/s``, ``MB/s`` or ``MiB``.
    unit: str
    #: Median latency (seconds), NaN where not measured.
    p50: float = math.nan
    #: 99th percentile latency (seconds), NaN where not measured.
    p99: float = math.nan
    #: The server's CPU use during the window (1.0: its whole core), NaN if not measured.
    server_cpu: float = math.nan
    #: The server's CPU seconds per request (per MB for MB/s), NaN if not measured.
    server_cpu_per_unit: float = math.nan
    #: The ratio against the case's reference row (None on that row).
    ratio: float | None = None
    #: The ratio of work per server CPU second (see the module docstring), or None.
    cpu_ratio: float | None = None
    #: The target: ``>=1.5``, ``<=1.0`` or ``0.8..1.2``.
    target: str = ""
    #: What :attr:`target` applies to: ``ratio``, ``cpu`` (:attr:`cpu_ratio`) or ``value``.
    target_on: str = "ratio"
    #: Why the cell failed, or a remark (errors seen).
    note: str = ""


@dataclass(frozen=True)
class Goal:
    """A target the issue sets for one row of a case."""

    #: ``>=1.5``, ``<=1.0`` or ``0.8..1.2``.
    target: str
    #: What it applies to: ``ratio``, ``cpu`` (the CPU ratio) or ``value``.
    on: str = "ratio"


def set_goals(rows: Sequence[Row], goals: Mapping[str, Goal | str]) -> None:
    """Give each row whose subject ``goals`` names its target (a str: on the ratio)."""
    for row in rows:
        goal = goals.get(row.subject)
        if goal is None:
            continue
        goal = Goal(goal) if isinstance(goal, str) else goal
        row.target, row.target_on = goal.target, goal.on


def fill_ratios(rows: Sequence[Row], *, reference_over_row: bool) -> None:
    """Set each row's ratio and CPU ratio against the first row.

    :param reference_over_row: ratio = reference / row (hface / peer) if
        True, else row / reference (tunnelled / direct, loadgen / h2load);
        the CPU ratio goes the same way in work per CPU second.
    """
    if not rows:
        return
    reference = rows[0].value
    reference_cpu = rows[0].server_cpu_per_unit
    for row in rows[1:]:
        if reference and row.value:
            row.ratio = reference / row.value if reference_over_row else row.value / reference
        cpu = row.server_cpu_per_unit
        if reference_cpu > 0 and cpu > 0:  # False for NaN
            row.cpu_ratio = cpu / reference_cpu if reference_over_row else reference_cpu / cpu


def verdict(row: Row) -> str:
    """``ok`` or ``MISS`` for a row with a target and the figure it applies to; else empty."""
    figure = {"ratio": row.ratio, "cpu": row.cpu_ratio, "value": row.value}[row.target_on]
    if figure is None or not row.target:
        return ""
    if ".." in row.target:
        low, high = (float(bound) for bound in row.target.split(".."))
        good = low <= figure <= high
    elif row.target.startswith(">="):
        good = figure >= float(row.target[2:])
    else:
        good = figure <= float(row.target[2:])
    return "ok" if good else "MISS"


def _target(row: Row) -> str:
    if not row.target:
        return ""
    return {"ratio": row.target, "cpu": f"CPU {row.target}", "value": row.target}[row.target_on]


def _cpu_per_unit(row: Row) -> str:
    if math.isnan(row.server_cpu_per_unit):
        return ""
    per = "MB" if row.unit == "MB/s" else "req"
    return f"{row.server_cpu_per_unit * 1e6:,.0f} µs/{per}"


def _ratio(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}"


def _milliseconds(seconds: float) -> str:
    return "" if math.isnan(seconds) else f"{seconds * 1e3:.2f}"


#: What the table's ratio and CPU columns mean, under its title.
LEGEND: Final = (
    "ratio: hface / peer (memory: hface RSS / peer RSS; proxy: tunnelled / direct;"
    " check: loadgen / h2load or h3load)\n"
    "srv CPU, srv CPU per: the server's (proxy's) CPU time over the measured window,"
    " per second and per request (MB); CPU ratio: the same direction as ratio, in"
    " requests (MB) per server CPU second"
)


def render(rows: Sequence[Row], *, title: str) -> str:
    """The table as text, with ``title`` above it."""
    header = (
        "case",
        "subject",
        "value",
        "unit",
        "p50 ms",
        "p99 ms",
        "srv CPU",
        "srv CPU per",
        "ratio",
        "CPU ratio",
        "target",
        "",
    )
    lines: list[tuple[str, ...]] = [header]
    previous_case = None
    for row in rows:
        lines.append(
            (
                row.case if row.case != previous_case else "",
                row.subject,
                "failed" if row.value is None else f"{row.value:,.1f}",
                row.unit,
                _milliseconds(row.p50),
                _milliseconds(row.p99),
                "" if math.isnan(row.server_cpu) else f"{row.server_cpu:.0%}",
                _cpu_per_unit(row),
                _ratio(row.ratio),
                _ratio(row.cpu_ratio),
                _target(row),
                " ".join(filter(None, [verdict(row), row.note])),
            )
        )
        previous_case = row.case
    widths = [max(len(line[index]) for line in lines) for index in range(len(header) - 1)]
    numeric = {2, 4, 5, 6, 7, 8, 9}
    out = [title, ""]
    for line in lines:
        cells = [
            cell.rjust(width) if index in numeric else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(line[:-1], widths, strict=True))
        ]
        out.append("  ".join(cells) + "  " + line[-1])
    return "\n".join(text.rstrip() for text in out)
