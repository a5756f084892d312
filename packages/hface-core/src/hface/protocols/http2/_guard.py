"""The frame guard: checks received frame headers before h2 parses the frames (internal).

Theory of operation
===================

h2 parses a whole ``receive_data`` buffer before it returns, so a peer
that sends 100,000 cheap frames in one go gets them all processed, and
answered, before the protocol could object. The guard walks the 9-byte
frame headers (RFC 9113 §4.1) of the received bytes first, which costs a
few operations per frame, and tells the protocol where to cut the bytes
it hands to h2:

- after at most :data:`BATCH_FRAMES` frames, so that checks made on h2's
  events (the rapid-reset budget) run at least that often;
- before a frame that must end the connection, with the error: a frame
  longer than our SETTINGS_MAX_FRAME_SIZE (FRAME_SIZE_ERROR, RFC 9113
  §4.2, before h2 buffers up to 16 MiB of it), a SETTINGS ACK with a
  payload (FRAME_SIZE_ERROR, §6.5), a header block of too many
  CONTINUATION frames or too many bytes, or a peer out of flood budget
  (both ENHANCE_YOUR_CALM, §10.5).

Flood budget (RFC 9113 §10.5). Frames that carry no request and no data
cost work (and often an answer) without progress: PING, SETTINGS,
PRIORITY, RST_STREAM, GOAWAY, empty DATA that does not end its stream,
DATA short enough to be all padding, and frames of unknown types. Each
spends one unit of a :class:`~hface.protocols._flood.FloodBudget` of
``max_control_frames`` (shared with HTTP/3); each request or response h2
accepts and each DATA frame that delivers data to a stream earns one back,
up to the budget (the protocol calls :meth:`FrameGuard.earn`), and the
whole budget comes back once per :data:`~hface.protocols._flood.FLOOD_WINDOW`
seconds (:meth:`FrameGuard.refill`, with the time the protocol is told).
A client that makes requests, or holds one long request and sends a PING
every few seconds, never runs dry; one that floods runs dry after
``max_control_frames`` frames in a window. WINDOW_UPDATE is not counted: a reader of a
long download sends many, and they bring no answer.

Everything else (the frames' contents and their order) is left to h2.
The guard skips the 24-byte client preface, which h2 checks. On the client
side it looks at the server's first bytes: a server that answers in
HTTP/1 (``HTTP/1.1 400 ...``: it does not speak HTTP/2, and took the
client's preface for a bad request) is named as such (PROTOCOL_ERROR,
RFC 9113 §3.4), instead of as a frame too large, which is what those bytes
read as.
"""

from __future__ import annotations

from typing import Final

from .._flood import FLOOD_WINDOW, FloodBudget

#: The client connection preface (RFC 9113 §3.4).
PREFACE_LENGTH: Final = 24

#: How many frames h2 gets at most per ``receive_data`` call.
BATCH_FRAMES: Final = 64

#: The most CONTINUATION frames a header block may have, at least. Encoders
#: split a block into frames of SETTINGS_MAX_FRAME_SIZE (16 KiB at least), so
#: even a block at our default header list limit needs 4; h2 itself allows
#: 64. A larger ``max_header_block_size`` allows one frame per 16 KiB of it.
MAX_CONTINUATION_FRAMES: Final = 16

#: How an HTTP/1 response begins (RFC 9112 §4): a server that does not speak HTTP/2.
_HTTP1_RESPONSE: Final = b"HTTP/"

#: RFC 9113 §4.2: the smallest SETTINGS_MAX_FRAME_SIZE a peer may use.
_MIN_FRAME_SIZE: Final = 16_384

_DATA: Final = 0x0
_HEADERS: Final = 0x1
_PRIORITY: Final = 0x2
_RST_STREAM: Final = 0x3
_SETTINGS: Final = 0x4
_PUSH_PROMISE: Final = 0x5
_PING: Final = 0x6
_GOAWAY: Final = 0x7
_CONTINUATION: Final = 0x9
_END_STREAM: Final = 0x1
_ACK: Final = 0x1
_END_HEADERS: Final = 0x4
_PADDED: Final = 0x8

#: Frame types that spend the flood budget whatever their flags.
_CONTROL: Final = frozenset({_PRIORITY, _RST_STREAM, _SETTINGS, _PING, _GOAWAY})
#: Frame types h2 knows; any other type is an extension, ignored (§5.5).
_KNOWN: Final = frozenset(range(0x0, 0xA))

_FRAME_SIZE_ERROR: Final = 0x6
_ENHANCE_YOUR_CALM: Final = 0xB
_PROTOCOL_ERROR: Final = 0x1


class FrameGuard:
    """Walks received frame headers and keeps the limits (internal).

    :param server: True on the server side, which first receives the
        client preface.
    :param max_frame_size: our SETTINGS_MAX_FRAME_SIZE.
    :param max_header_block_size: the most bytes a header block (HEADERS
        or PUSH_PROMISE plus CONTINUATION frames) may have, compressed;
        it may have one CONTINUATION frame per 16 KiB of it, and 16 at least.
    :param max_control_frames: the flood budget (see the module docstring).
    """

    __slots__ = (
        "_block_frames",
        "_block_size",
        "_first",
        "_flood",
        "_frame_left",
        "_header",
        "_in_block",
        "_max_block",
        "_max_block_frames",
        "_max_frame_size",
        "_skip",
    )

    def __init__(
        self,
        *,
        server: bool,
        max_frame_size: int,
        max_header_block_size: int,
        max_control_frames: int,
    ) -> None:
        self._skip = PREFACE_LENGTH if server else 0
        # The server's first bytes, until they tell HTTP/2 from HTTP/1 (clients).
        self._first: bytes | None = None if server else b""
        self._header = b""
        self._frame_left = 0
        self._max_frame_size = max_frame_size
        self._max_block = max_header_block_size
        self._max_block_frames = max(
            MAX_CONTINUATION_FRAMES, max_header_block_size // _MIN_FRAME_SIZE + 1
        )
        self._in_block = False
        self._block_size = 0
        self._block_frames = 0
        self._flood = FloodBudget(max_control_frames, window=FLOOD_WINDOW)

    def scan(self, data: bytes, start: int) -> tuple[int, tuple[int, str] | None]:
        """Walk the frame headers in ``data[start:]``.

        :return: ``(cut, error)``: the bytes up to ``cut`` may go to h2; if
            ``error`` is not None it is the ``(error_code, message)`` with
            which to end the connection instead of passing on the rest.
            Otherwise, if ``cut < len(data)``, call again from ``cut``.
        """
        if self._first is not None:
            error = self._check_first_bytes(data, start)
            if error is not None:
                return start, error
        end = len(data)
        pos = start
        if self._skip:
            taken = min(self._skip, end - pos)
            self._skip -= taken
            pos += taken
        left = self._frame_left
        max_frame_size = self._max_frame_size
        frames = 0
        while True:
            if left:
                # Skip the payload of the current frame.
                if left >= end - pos:
                    self._frame_left = left - (end - pos)
                    return end, None
                pos += left
                left = 0
            self._frame_left = 0
            if pos >= end:
                return end, None
            if frames == BATCH_FRAMES:
                return pos, None
            frames += 1
            frame_start = pos
            if self._header or end - pos < 9:
                # A header split between calls: gather its 9 bytes.
                header = self._header + data[pos : pos + 9 - len(self._header)]
                pos += len(header) - len(self._header)
                if len(header) < 9:
                    self._header = header
                    return end, None
                self._header = b""
                length = int.from_bytes(header[:3], "big")
                type_ = header[3]
                flags = header[4]
            else:
                length = (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]
                type_ = data[pos + 3]
                flags = data[pos + 4]
                pos += 9
            left = length
            if type_ == _DATA and length > 256 and length <= max_frame_size and not self._in_block:
                continue  # the common case: DATA that carries data
            error = self._check(length, type_, flags)
            if error is not None:
                return frame_start, error

    def _check_first_bytes(self, data: bytes, start: int) -> tuple[int, str] | None:
        """On the client: the error if the server answered in HTTP/1 (once decided, None)."""
        assert self._first is not None
        first = self._first + data[start : start + len(_HTTP1_RESPONSE) - len(self._first)]
        if len(first) < len(_HTTP1_RESPONSE) and _HTTP1_RESPONSE.startswith(first):
            self._first = first  # undecided: more bytes will tell
            return None
        self._first = None
        if first == _HTTP1_RESPONSE:
            return _PROTOCOL_ERROR, "the server does not speak HTTP/2: it answered in HTTP/1"
        return None

    def _check(self, length: int, type_: int, flags: int) -> tuple[int, str] | None:
        """Check one frame header; return the connection error it causes, if any."""
        if length > self._max_frame_size:
            return _FRAME_SIZE_ERROR, "a frame is larger than SETTINGS_MAX_FRAME_SIZE"
        flood = self._flood
        budget = flood.left
        if type_ == _DATA:
            self._in_block = False
            if flags & _PADDED:
                if length <= 256:  # RFC 9113 §6.1: perhaps all padding
                    budget -= 1
            elif not length and not flags & _END_STREAM:
                budget -= 1
        elif type_ in (_HEADERS, _PUSH_PROMISE):
            self._in_block = not flags & _END_HEADERS
            self._block_size = length
            self._block_frames = 0
        elif type_ == _CONTINUATION:
            if self._in_block:
                self._block_frames += 1
                self._block_size += length
                if self._block_frames > self._max_block_frames:
                    return _ENHANCE_YOUR_CALM, "a header block has too many CONTINUATION frames"
                if self._block_size > self._max_block:
                    return _ENHANCE_YOUR_CALM, "a header block is too large"
                self._in_block = not flags & _END_HEADERS
        else:
            # Anything but CONTINUATION inside a header block is h2's
            # PROTOCOL_ERROR (RFC 9113 §6.10).
            self._in_block = False
            if type_ in _CONTROL:
                if type_ == _SETTINGS and flags & _ACK and length:
                    return _FRAME_SIZE_ERROR, "a SETTINGS acknowledgement has a payload"
                budget -= 1
            elif type_ not in _KNOWN:
                budget -= 1
        if budget < 0:
            return _ENHANCE_YOUR_CALM, "too many frames without requests or data (a flood)"
        flood.left = budget
        return None

    def refill(self, now: float) -> None:
        """Restore the whole flood budget if a window has passed (see the module docstring)."""
        self._flood.refill(now)

    def earn(self) -> None:
        """Give one unit back to the flood budget: the peer made progress."""
        flood = self._flood
        if flood.left < flood.limit:
            flood.left += 1
