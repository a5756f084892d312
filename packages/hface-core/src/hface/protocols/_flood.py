"""The flood budget HTTP/2 and HTTP/3 share (internal).

RFC 9113 §10.5 and RFC 9114 §10.5 ask an endpoint to bound the work a
peer can cause with frames that make no progress: control frames, frames
of unknown types, empty or tiny DATA frames, streams of unknown types. A
:class:`FloodBudget` counts them. Each such frame spends a unit; each sign
of progress (a request or response, a DATA frame that carries data) earns
one back, up to the limit. A peer that makes requests never runs dry; one
that floods runs dry after ``limit`` units, and the protocol then ends the
connection with its version's code (ENHANCE_YOUR_CALM, H3_EXCESSIVE_LOAD).

The budget is also refilled once per ``window`` seconds (:data:`FLOOD_WINDOW`),
so that a long-lived connection may send the odd control frame (a PING
every few seconds on a stream of server-sent events, a PRIORITY_UPDATE)
however little it sends otherwise: the cost stays bounded by ``limit``
units per window. The protocols read no clock: HTTP/3's is told the time
by QUIC's timers, HTTP/2's by the connection layer before each read (both
through ``clock``), and they pass it to :meth:`FloodBudget.refill`.
"""

from __future__ import annotations

from typing import Final

#: Seconds after which a flood budget is whole again (HTTP/2 and HTTP/3).
FLOOD_WINDOW: Final = 10.0


class FloodBudget:
    """Units of work without progress a peer may still cause (internal).

    :param limit: the budget, and the most it can earn back to (at least 1).
    :param window: if given, :meth:`refill` restores the whole budget once
        per this many seconds.
    :raises ValueError: if ``limit`` is below 1 or ``window`` is not positive.
    """

    __slots__ = ("_window_end", "left", "limit", "window")

    def __init__(self, limit: int, *, window: float | None = None) -> None:
        if limit < 1:
            raise ValueError(f"a flood budget must be at least 1, not {limit}")
        if window is not None and not window > 0:
            raise ValueError(f"a flood budget window must be positive, not {window}")
        #: Units left; below zero the peer has flooded.
        self.left = limit
        #: The budget.
        self.limit = limit
        #: Seconds after which the whole budget comes back, or None.
        self.window = window
        self._window_end: float | None = None

    def spend(self, units: int = 1) -> bool:
        """Spend ``units``; return False if the budget is overdrawn (a flood)."""
        left = self.left - units
        self.left = left
        return left >= 0

    def earn(self) -> None:
        """Give one unit back: the peer made progress."""
        if self.left < self.limit:
            self.left += 1

    def refill(self, now: float) -> None:
        """Restore the whole budget if a window has passed since the last refill.

        Does nothing without a ``window``, or once overdrawn: a flood,
        once detected, stays detected.
        """
        end = self._window_end
        if end is None:
            if self.window is not None:
                self._window_end = now + self.window
            return
        if now >= end and self.left >= 0:
            assert self.window is not None
            self.left = self.limit
            self._window_end = now + self.window
