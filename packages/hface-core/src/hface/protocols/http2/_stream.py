"""Per-stream bookkeeping of the HTTP/2 protocol: state flags and held data.

Theory of operation: h2 knows the RFC 9113 §5.1 state of every stream, but
asking it (and catching its exceptions) on every call is slow and lets h2
errors leak. The protocol keeps one :class:`StreamRecord` per stream it
considers open, from the first HEADERS until both sides have ended it or it
was reset; a stream without a record is closed or unknown. The record says
whether this side has sent its headers, whether it has *submitted* the end
of the stream (possibly still held back) and whether the peer has ended it.

Held data (RFC 9113 §5.2, §6.9): data the caller submits beyond the peer's
flow-control window is appended, chunk by chunk, to ``chunks`` (a deque of
the caller's own ``bytes`` objects plus an offset into the first one), so
holding is O(1) and sending copies each byte once. The deque is made when
data is first held: most streams never hold any, and an empty deque takes
some 700 bytes (a server may have thousands of streams open). An end of stream or
trailers submitted while data is held are remembered in ``end_pending`` and
``trailers`` and go out right after the last held byte, keeping the order
the caller gave.
"""

from __future__ import annotations

from collections import deque

from hface.common import HeadersType


class StreamRecord:
    """What the protocol knows about one open stream (internal)."""

    __slots__ = (
        "chunks",
        "end_pending",
        "headers_sent",
        "local_ended",
        "offset",
        "outbound",
        "pending",
        "remote_ended",
        "stop_after_end",
        "trailers",
    )

    def __init__(self, *, outbound: bool, headers_sent: bool) -> None:
        #: True if this side opened the stream.
        self.outbound = outbound
        #: True once this side's first header block went out.
        self.headers_sent = headers_sent
        #: True once this side submitted the end of the stream (sent or held).
        self.local_ended = False
        #: True once the peer ended the stream.
        self.remote_ended = False
        #: Held data, oldest first; ``offset`` bytes of the first are already
        #: sent (None until data is first held).
        self.chunks: deque[bytes] | None = None
        self.offset = 0
        #: How many bytes are held.
        self.pending = 0
        #: The end of stream waits for the held data.
        self.end_pending = False
        #: Trailers wait for the held data (they end the stream).
        self.trailers: HeadersType | None = None
        #: A RST_STREAM(NO_ERROR) waits for the held end: the peer is asked
        #: to stop sending once our side is whole (RFC 9113 §8.1).
        self.stop_after_end = False

    def hold(self, data: bytes) -> None:
        """Append ``data`` to the held data."""
        if data:
            if self.chunks is None:
                self.chunks = deque()
            self.chunks.append(data)
            self.pending += len(data)

    def take(self, size: int) -> bytes:
        """Remove and return the first ``size`` held bytes (``size <= pending``)."""
        chunks = self.chunks
        assert chunks is not None  # data is held
        head = chunks[0]
        offset = self.offset
        available = len(head) - offset
        self.pending -= size
        if available > size:
            self.offset = offset + size
            return head[offset : offset + size]
        chunks.popleft()
        self.offset = 0
        if available == size:
            return head[offset:] if offset else head
        # The piece spans several chunks: join them once (views: no copy before).
        parts: list[bytes | memoryview] = [memoryview(head)[offset:] if offset else head]
        needed = size - available
        while needed:
            head = chunks[0]
            if len(head) > needed:
                parts.append(memoryview(head)[:needed])
                self.offset = needed
                break
            chunks.popleft()
            parts.append(head)
            needed -= len(head)
        return b"".join(parts)

    def drop(self) -> None:
        """Forget the held data, the pending end and trailers."""
        self.chunks = None
        self.offset = 0
        self.pending = 0
        self.end_pending = False
        self.trailers = None
