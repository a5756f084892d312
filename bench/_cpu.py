"""The server's CPU time over the measured window only.

A load generator's figures cover a window inside its run: after its
start-up, connections and warm-up, before it tears down. The server's CPU
time per request has to cover the same window, or start-up and warm-up
(a TLS handshake per connection, imports, the first requests of a cold
server) would count against a window's requests that did not cause them.

:class:`CPUSampler` reads the CPU time (user + system) of the server's
process tree from ``/proc`` every :data:`INTERVAL` seconds in a thread,
with ``time.monotonic()`` stamps, while the load runs; the tools report
their window on the same clock (``CLOCK_MONOTONIC`` is one clock for every
process of the machine), and :meth:`CPUSampler.cpu_between` interpolates
the CPU time at its two ends; :func:`with_server_cpu` turns that into the
server's share of a core and its CPU time per request (or per MB). The
kernel counts CPU time in ticks (10 ms at ``CLK_TCK`` 100), so a
10-second window is exact to about 0.2 %.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import threading
import time
from types import TracebackType
from typing import Final

from _servers import tree_cpu
from _tools import Measure, ToolError

#: Seconds between two samples.
INTERVAL: Final = 0.05


class CPUSampler:
    """Samples the CPU time of ``pid``'s process tree while the block runs."""

    def __init__(self, pid: int, *, interval: float = INTERVAL) -> None:
        self._pid = pid
        self._interval = interval
        self._times: list[float] = []
        self._cpu: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CPUSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        # The list append is atomic; the reader only runs after the thread stopped.
        self._cpu.append(tree_cpu(self._pid))
        self._times.append(time.monotonic())

    def cpu_at(self, moment: float) -> float:
        """The tree's CPU seconds at ``moment`` (``time.monotonic()``), interpolated.

        :raises ValueError: if ``moment`` is outside the sampled span.
        """
        times, cpu = self._times, self._cpu
        if not times or not times[0] - self._interval <= moment <= times[-1] + self._interval:
            raise ValueError("the window is outside what was sampled")
        index = bisect.bisect_left(times, moment)
        if index == 0:
            return cpu[0]
        if index == len(times):
            return cpu[-1]
        before, after = times[index - 1], times[index]
        share = (moment - before) / (after - before) if after > before else 1.0
        return cpu[index - 1] + share * (cpu[index] - cpu[index - 1])

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds the tree used from ``start`` to ``end`` (``time.monotonic()``).

        :raises ValueError: if the window is outside what was sampled.
        """
        return self.cpu_at(end) - self.cpu_at(start)


def with_server_cpu(measure: Measure, sampler: CPUSampler, unit: str) -> Measure:
    """``measure`` with the server's CPU use over its window, per second and per unit.

    :param unit: ``req/s`` (CPU per request) or ``MB/s`` (CPU per MB).
    :raises ToolError: if the tool reported no window.
    :raises ValueError: if the window is outside what ``sampler`` sampled.
    """
    if measure.window is None:
        raise ToolError("the load generator reported no measured window")
    start, end = measure.window
    seconds = end - start
    cpu = sampler.cpu_between(start, end)
    amount = (measure.rps if unit == "req/s" else measure.mbps) * seconds
    return dataclasses.replace(
        measure,
        server_cpu=cpu / seconds if seconds > 0 else math.nan,
        server_cpu_per_unit=cpu / amount if amount > 0 else math.nan,
    )
