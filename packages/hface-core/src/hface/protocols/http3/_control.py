"""Reading GOAWAY from the peer's control stream, which aioquic skips.

Theory of operation: aioquic's ``H3Connection`` parses the peer's control
stream but drops GOAWAY frames (RFC 9114 §7.2.6) without telling anyone.
This reader sees the same bytes in parallel: it learns each peer
unidirectional stream's type from its first variable-length integer
(RFC 9114 §6.2), follows frame headers on the control stream (type 0x00,
§6.2.1) and keeps the payload only of GOAWAY frames (at most one varint);
everything else is skipped as it arrives, so memory stays bounded whatever
the peer sends. Malformed input is aioquic's business: it closes the
connection with the right error code.

For the flood guard (see :mod:`._guard`) it also counts, in :attr:`spent`,
each control frame other than SETTINGS and each unidirectional stream of a
type other than control, push and the two QPACK streams (RFC 9114 §6.2,
§9: reserved and unknown types, which aioquic reads and discards).
"""

from __future__ import annotations

from contextlib import suppress

from ._aioquic import Buffer, BufferReadError

_CONTROL_STREAM_TYPE = 0x00
#: Control, push, QPACK encoder and QPACK decoder (RFC 9114 §6.2, RFC 9204 §4.2).
_KNOWN_STREAM_TYPES = frozenset({0x00, 0x01, 0x02, 0x03})
_SETTINGS_FRAME_TYPE = 0x04
_GOAWAY_FRAME_TYPE = 0x07
# A stream type or a frame header is at most two 8-byte varints.
_MAX_PREFIX = 16


class PeerControlStreamReader:
    """Finds GOAWAY frames among the peer's unidirectional streams."""

    def __init__(self) -> None:
        #: Control frames (but SETTINGS) and streams of unknown types seen;
        #: the protocol spends the flood budget by the increase.
        self.spent = 0
        self._prefixes: dict[int, bytes] = {}
        self._other_streams: set[int] = set()
        self._control_stream_id: int | None = None
        self._pending = b""
        self._skip = 0
        self._goaway_size: int | None = None

    def feed(self, stream_id: int, data: bytes, end_stream: bool = False) -> list[int]:
        """Take data received on a peer unidirectional stream; return GOAWAY IDs found.

        With ``end_stream`` the stream is forgotten after its data (closing
        the control stream is aioquic's error).
        """
        if end_stream and stream_id != self._control_stream_id:
            ids = self.feed(stream_id, data)
            self.forget(stream_id)
            return ids
        if stream_id == self._control_stream_id:
            return self._feed_control(data)
        if stream_id in self._other_streams:
            return []
        prefix = self._prefixes.pop(stream_id, b"") + data
        buf = Buffer(data=prefix)
        try:
            stream_type = buf.pull_uint_var()
        except BufferReadError:
            if len(prefix) < _MAX_PREFIX:
                self._prefixes[stream_id] = prefix
            return []
        if stream_type != _CONTROL_STREAM_TYPE or self._control_stream_id is not None:
            # Only one control stream exists (RFC 9114 §6.2.1): a second is
            # aioquic's error.
            if stream_type not in _KNOWN_STREAM_TYPES:
                self.spent += 1
            self._other_streams.add(stream_id)
            return []
        self._control_stream_id = stream_id
        return self._feed_control(prefix[buf.tell() :])

    def forget(self, stream_id: int) -> None:
        """Drop what is kept of a peer unidirectional stream that ended or was reset."""
        self._other_streams.discard(stream_id)
        self._prefixes.pop(stream_id, None)

    def _feed_control(self, data: bytes) -> list[int]:
        ids: list[int] = []
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            data = data[skipped:]
        self._pending += data
        while self._pending and not self._skip:
            if self._goaway_size is not None:
                if len(self._pending) < self._goaway_size:
                    break
                payload = self._pending[: self._goaway_size]
                self._pending = self._pending[self._goaway_size :]
                self._goaway_size = None
                # A bad payload: aioquic rejects the frame and closes the connection.
                with suppress(BufferReadError):
                    ids.append(Buffer(data=payload).pull_uint_var())
                continue
            buf = Buffer(data=self._pending)
            try:
                frame_type = buf.pull_uint_var()
                frame_size = buf.pull_uint_var()
            except BufferReadError:
                self._pending = self._pending[-_MAX_PREFIX:]
                break
            self._pending = self._pending[buf.tell() :]
            if frame_type != _SETTINGS_FRAME_TYPE:
                self.spent += 1
            if frame_type == _GOAWAY_FRAME_TYPE and frame_size <= 8:
                self._goaway_size = frame_size
            else:
                skipped = min(frame_size, len(self._pending))
                self._pending = self._pending[skipped:]
                self._skip = frame_size - skipped
        return ids
