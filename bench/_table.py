"""The one table bench/run.py prints.

Rows come in cases (one measurement made of each subject in turn); the
first row of a case is the reference and each later row carries a ratio
against it, with the issue's target for that ratio marked ``ok`` or
``MISS``. For servers and clients the ratio is hface / peer; for the
proxy, tunnelled / direct; for memory, hface's RSS / the peer's; for the
load-generator check, loadgen / h2load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


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
    #: The server's CPU use during the cell (1.0: its whole core), NaN if not measured.
    server_cpu: float = math.nan
    #: The ratio against the case's reference row (None on that row).
    ratio: float | None = None
    #: The target for :attr:`ratio`: ``>=1.5``, ``<=1.0`` or ``0.8..1.2``.
    target: str = ""
    #: Why the cell failed, or a remark (errors seen).
    note: str = ""


def fill_ratios(rows: Sequence[Row], *, reference_over_row: bool) -> None:
    """Set each row's ratio against the first row.

    :param reference_over_row: ratio = reference / row (hface / peer) if
        True, else row / reference (tunnelled / direct, loadgen / h2load).
    """
    if not rows:
        return
    reference = rows[0].value
    for row in rows[1:]:
        if reference and row.value:
            row.ratio = reference / row.value if reference_over_row else row.value / reference


def verdict(row: Row) -> str:
    """``ok`` or ``MISS`` for a row with a ratio and a target; else empty."""
    if row.ratio is None or not row.target:
        return ""
    if ".." in row.target:
        low, high = (float(bound) for bound in row.target.split(".."))
        good = low <= row.ratio <= high
    elif row.target.startswith(">="):
        good = row.ratio >= float(row.target[2:])
    else:
        good = row.ratio <= float(row.target[2:])
    return "ok" if good else "MISS"


def _milliseconds(seconds: float) -> str:
    return "" if math.isnan(seconds) else f"{seconds * 1e3:.2f}"


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
        "ratio",
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
                "" if row.ratio is None else f"{row.ratio:.2f}",
                row.target,
                " ".join(filter(None, [verdict(row), row.note])),
            )
        )
        previous_case = row.case
    widths = [max(len(line[index]) for line in lines) for index in range(len(header) - 1)]
    numeric = {2, 4, 5, 6, 7}
    out = [title, ""]
    for line in lines:
        cells = [
            cell.rjust(width) if index in numeric else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(line[:-1], widths, strict=True))
        ]
        out.append("  ".join(cells) + "  " + line[-1])
    return "\n".join(text.rstrip() for text in out)
