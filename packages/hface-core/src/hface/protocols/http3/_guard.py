"""The HTTP/3 flood guard: frame headers counted before aioquic parses them (internal).

Theory of operation
===================

aioquic ignores what RFC 9114 says to ignore (frames of unknown and
reserved types, §7.2.8 and §9; unidirectional streams of unknown types,
§6.2) and delivers a DATA frame of one byte as an event of its own, so a
peer can make an endpoint work hard for nothing: RFC 9114 §10.5 asks for a
bound. :class:`RequestFrameCounter` walks the frame headers (two
variable-length integers, §7.1) of each request stream as its bytes arrive,
in a few operations per frame (payloads are skipped, never copied), and
spends a :class:`~hface.protocols._flood.FloodBudget`, the one HTTP/2's
frame guard uses, for:

- a frame of a type other than DATA, HEADERS and PUSH_PROMISE (unknown and
  reserved types; the known control frames are aioquic's errors anyway);
- a DATA frame shorter than :data:`TINY_DATA` bytes, empty ones included.

:class:`~._control.PeerControlStreamReader` counts, on the same budget,
each frame on the peer's control stream but its SETTINGS, and each
unidirectional stream of a type hface does not know. Progress earns units
back: each HEADERS frame (a request, response or trailers) and each DATA
frame of :data:`TINY_DATA` bytes or more. The budget is refilled once per
:data:`FLOOD_WINDOW` seconds too, so that the cost stays bounded per unit
of time on a connection that sends little else. A peer out of budget gets
H3_EXCESSIVE_LOAD.

The walk stays in step with aioquic because both read the same bytes of
the same stream in order; input malformed enough to confuse it is an error
aioquic reports itself.
"""

from __future__ import annotations

from typing import Final

from .._flood import FLOOD_WINDOW, FloodBudget

__all__ = ["DEFAULT_MAX_CONTROL_FRAMES", "FLOOD_WINDOW", "TINY_DATA", "RequestFrameCounter"]

#: DATA frames shorter than this spend the flood budget; longer ones earn.
TINY_DATA: Final = 16
#: The flood budget of each connection; see ``HTTP3ServerFactory``.
DEFAULT_MAX_CONTROL_FRAMES: Final = 1000

#: The value bits of a variable-length integer of 2, 4 or 8 bytes (RFC 9000 §16).
_MASKS: Final = {2: 0x3FFF, 4: 0x3FFF_FFFF, 8: 0x3FFF_FFFF_FFFF_FFFF}

_DATA: Final = 0x0
_HEADERS: Final = 0x1
_PUSH_PROMISE: Final = 0x5


class RequestFrameCounter:
    """Walks the frame headers of request streams and keeps the flood budget (internal).

    :param budget: the connection's flood budget.
    """

    __slots__ = ("_budget", "_streams")

    def __init__(self, budget: FloodBudget) -> None:
        self._budget = budget
        # Per stream in the middle of a frame: (bytes of an incomplete frame
        # header, payload bytes still to skip); one of the two is empty.
        self._streams: dict[int, tuple[bytes, int]] = {}

    def feed(self, stream_id: int, data: bytes, end_stream: bool) -> bool:
        """Walk ``data`` received on a request stream; return False on a flood."""
        state = self._streams.pop(stream_id, None)
        pos = 0
        size = len(data)
        if state is not None:
            pending, skip = state
            if skip:
                if skip >= size:
                    if skip > size and not end_stream:
                        self._streams[stream_id] = (b"", skip - size)
                    return True
                pos = skip
            elif pending:
                data = pending + data[pos:]
                size = len(data)
        budget = self._budget
        while pos < size:
            start = pos
            first = data[pos]
            length = 1 << (first >> 6)
            if pos + length >= size:
                break
            if length == 1:
                type_ = first
            else:
                type_ = int.from_bytes(data[pos : pos + length], "big") & _MASKS[length]
            pos += length
            first = data[pos]
            length = 1 << (first >> 6)
            if pos + length > size:
                pos = start
                break
            if length == 1:
                frame_size = first
            else:
                frame_size = int.from_bytes(data[pos : pos + length], "big") & _MASKS[length]
            pos += length + frame_size
            if type_ == _DATA:
                if frame_size < TINY_DATA:
                    if not budget.spend():
                        return False
                else:
                    budget.earn()
            elif type_ == _HEADERS:
                budget.earn()
            elif type_ != _PUSH_PROMISE and not budget.spend():
                return False
        if end_stream:
            return True
        if pos > size:
            self._streams[stream_id] = (b"", pos - size)
        elif pos < size:
            self._streams[stream_id] = (data[pos:], 0)
        return True

    def forget(self, stream_id: int) -> None:
        """Drop what is kept of a stream that ended or was reset."""
        self._streams.pop(stream_id, None)
