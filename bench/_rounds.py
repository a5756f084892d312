"""A section's cells run round by round, so that a slow spell of the machine hits every subject.

A section measures one subject after another (one server's cells, then
the next server's). If a cell's runs came one after the other, all of one
subject's runs would fall within a minute or two and all of another's in
a later one; on a shared host, whose speed drifts (the same cell measured
30 % apart a few minutes later is common), a slow spell would then land on
one subject only and make its ratio. So bench/run.py runs a section once
per round, each cell once a round, and a cell's row shows the medians of
its rounds: each subject's runs are spread over the whole section, and a
spell that slows one round is outvoted by the others.

:class:`Rounds` keeps each cell's measures across the rounds of a section.
"""

from __future__ import annotations

from collections.abc import Callable

from _table import Row
from _tools import Measure, ToolError, median_of

#: The errors a cell's run may end with: the cell fails, not the bench.
CELL_ERRORS = (ToolError, RuntimeError, OSError, ValueError, KeyError)


class Rounds:
    """Each cell's measures over the rounds of one section.

    :meth:`measure` runs a cell once and returns its row so far: the medians
    of every round's run, or the failure of the first run that failed (a
    failed cell is not run again in later rounds).
    """

    def __init__(self) -> None:
        self._cells: dict[tuple[str, str], list[Measure] | str] = {}
        #: The round under way, from 1 (for the progress lines).
        self.number = 0
        #: The rounds of the section under way.
        self.total = 0

    def start(self, total: int) -> None:
        """Begin a section of ``total`` rounds: no cell measured yet."""
        self._cells.clear()
        self.number, self.total = 0, total

    def next_round(self) -> None:
        """Begin the next round of the section."""
        self.number += 1

    def measure(self, case: str, subject: str, unit: str, run: Callable[[], Measure]) -> Row:
        """Run the cell once; its row over the rounds so far (or its failure)."""
        key = (case, subject)
        measures = self._cells.setdefault(key, [])
        if isinstance(measures, str):
            return Row(case=case, subject=subject, value=None, unit=unit, note=measures)
        try:
            measures.append(run())
        except CELL_ERRORS as error:
            note = self._cells[key] = short(error)
            return Row(case=case, subject=subject, value=None, unit=unit, note=note)
        return row_of(case, subject, unit, median_of(measures))


def row_of(case: str, subject: str, unit: str, measure: Measure) -> Row:
    """The table's row for a cell's (median) measure."""
    value = measure.rps if unit == "req/s" else measure.mbps
    notes = [f"{measure.errors} errors" if measure.errors else "", measure.note]
    return Row(
        case=case,
        subject=subject,
        value=value,
        unit=unit,
        p50=measure.p50,
        p99=measure.p99,
        server_cpu=measure.server_cpu,
        server_cpu_per_unit=measure.server_cpu_per_unit,
        note="; ".join(filter(None, notes)),
    )


def short(error: BaseException) -> str:
    """An error's first line, cut to fit the table's note column."""
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:90]
