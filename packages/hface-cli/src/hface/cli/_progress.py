"""The progress bar of ``hface client -o FILE`` on a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TextIO

#: Seconds between two redraws.
REDRAW_INTERVAL: Final = 0.1
#: Characters of the bar itself.
BAR_WIDTH: Final = 30


def format_size(size: float) -> str:
    """``size`` bytes for people: ``512 B``, ``1.5 KiB``, ``50.0 MiB``."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} TiB"


class ProgressBar:
    """Draws ``[#####     ]  50%  25.0 MiB / 50.0 MiB  12.5 MiB/s`` on one line.

    Redrawn with a carriage return at most every :data:`REDRAW_INTERVAL`
    seconds; :meth:`finish` draws the final state and ends the line.

    :param stream: the terminal (stderr).
    :param total: the expected size (``content-length``), or None if unknown.
    :param clock: seconds on a monotonic clock.
    """

    def __init__(
        self,
        stream: TextIO,
        total: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._total = total
        self._clock = clock
        self._start = clock()
        self._last_draw = -float("inf")
        self._done = 0
        self._finished = False

    def update(self, amount: int) -> None:
        """Count ``amount`` more bytes; redraw if it is time to."""
        self._done += amount
        now = self._clock()
        if now - self._last_draw >= REDRAW_INTERVAL:
            self._draw(now)

    def finish(self) -> None:
        """Draw the final state and end the line (once)."""
        if self._finished:
            return
        self._finished = True
        self._draw(self._clock())
        self._stream.write("\n")
        self._stream.flush()

    def render(self, now: float) -> str:
        """The line (without the carriage return) at time ``now``."""
        elapsed = now - self._start
        rate = f"{format_size(self._done / elapsed)}/s" if elapsed > 0 else ""
        if self._total:
            fraction = min(self._done / self._total, 1.0)
            filled = int(fraction * BAR_WIDTH)
            bar = "#" * filled + " " * (BAR_WIDTH - filled)
            return (
                f"[{bar}] {fraction:4.0%}  {format_size(self._done)} / "
                f"{format_size(self._total)}  {rate}"
            )
        return f"{format_size(self._done)}  {rate}"

    def _draw(self, now: float) -> None:
        self._last_draw = now
        # Trailing spaces wipe what a longer previous line left behind.
        self._stream.write("\r" + self.render(now).ljust(72))
        self._stream.flush()
