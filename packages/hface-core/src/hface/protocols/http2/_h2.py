"""How hface sets up and adapts h2 (internal).

These adaptations of h2 are made here:

- **GOAWAY does not close the connection at once.** h2's connection state
  machine moves to CLOSED as soon as a GOAWAY is sent or received, after
  which it refuses every frame, even on streams the GOAWAY lets finish.
  RFC 9113 §6.8 says the opposite: streams up to the last stream ID go on.
  :class:`GracefulStateMachine` keeps the open state on GOAWAY; the protocol
  itself refuses new streams once a GOAWAY went either way.
- **Connection-specific header fields** (RFC 9113 §8.2.2) that a caller
  submits are dropped by :func:`strip_connection_headers` instead of making
  h2 raise: HTTP/1.1 code often passes them through.
- **A header block that does not decode is a COMPRESSION_ERROR** (RFC 9113
  §4.3), not h2's PROTOCOL_ERROR: :class:`StrictDecoder` raises an h2
  ``ProtocolError`` that carries that code, which h2 then sends in GOAWAY.
- **A stream past SETTINGS_MAX_CONCURRENT_STREAMS is a stream error**
  (RFC 9113 §5.1.2), not h2's connection error: :class:`LocalSettings`
  hides the limit from h2, which then opens the stream (decoding its header
  block, so that the HPACK state stays in step) and the protocol refuses it
  with RST_STREAM(REFUSED_STREAM), as nginx and h2o do.
- **Stream errors stay stream errors** (RFC 9113 §5.4.2). h2 raises one
  ``ProtocolError`` for a malformed request (§8.1.1: bad fields, trailers
  without END_STREAM, a content-length the DATA disagrees with), a stream
  depending on itself (§5.3.1), a PRIORITY frame of the wrong length (§6.3)
  and a WINDOW_UPDATE of 0 on a stream (§6.9), and makes each a connection
  error, which ends every request in flight. Here they are told apart by
  where they arise, never by message: an error raised inside h2's stream
  (:class:`StrictStream`), a self-dependency checked before h2 looks, a
  frame that does not parse on a stream (:class:`StreamFrameBuffer` hands
  on a :class:`MalformedStreamFrame` in its place). :class:`CountingConnection`
  resets that stream with the code, gives its DATA back to the connection
  window, and reports h2's ``StreamReset(remote_reset=False)``; the
  connection goes on.
- **RST_STREAM frames are counted** by :class:`CountingConnection`, so the
  protocol can bound the resets a peer provokes. h2 answers a frame on a
  closed stream with RST_STREAM and no event at all: a peer could have it
  send one per 10-byte frame it sends. Not DATA on a stream we reset:
  RFC 9113 §5.1 has it ignored, as it may have left before our reset did.
- **A received DATA frame's repr costs nothing.** h2 logs every frame it
  receives at its trace level, making the line's ``repr(frame)`` first,
  with its logger off too; hyperframe's repr of a DATA frame serializes the
  payload and hex-encodes all of it (13 µs for 16 KiB, 0.9 ms per MiB
  received) to show 20 characters. :class:`StreamFrameBuffer` hands on
  each DATA frame as a :class:`QuietDataFrame`, whose repr gives the
  payload's length.
- **Huffman coding takes linear time.** hpack 4's encoder shifts one
  integer as large as the whole string for every byte, so encoding is
  quadratic: a 300 KB header value took 20 s of CPU, a 1 MB one minutes,
  with the event loop blocked (a server answering with a large header
  looked hung to its clients). :class:`LinearHuffmanEncoder` produces the
  same bytes in linear time.
- **A DATA frame's payload is copied once, not four times.** h2
  serializes a DATA frame by joining its payload with its padding, then
  with its header, appends the frame to a ``bytearray`` and copies that
  out in ``data_to_send``: four copies of every byte sent (a tunnel's
  100 MiB download: 400 MiB of memmove). :class:`CountingConnection`
  queues the serialized frames as a list of pieces, a DATA frame without
  padding as its header and its payload as given, and joins them once
  when asked.
- **Settings cost a list per value, not a deque.** h2 keeps each setting
  as a ``collections.deque`` of its current and proposed values: 14 of
  them per connection at 760 bytes each, 11 KiB of every idle connection.
  :class:`CompactSettings` keeps the same values in one-item lists (64
  bytes); a proposed value is rare, so ``list.pop(0)`` costs nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any, Final, cast

from h2.config import H2Configuration
from h2.connection import ConnectionInputs, H2Connection, H2ConnectionStateMachine
from h2.errors import ErrorCodes
from h2.events import Event, StreamReset
from h2.exceptions import ProtocolError, StreamClosedError
from h2.frame_buffer import FrameBuffer
from h2.settings import ChangedSetting, SettingCodes, Settings
from h2.stream import H2Stream, StreamClosedBy
from hpack import Decoder, HeaderTuple, HPACKError, OversizedHeaderListError
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hyperframe.frame import DataFrame, Frame, HeadersFrame, PriorityFrame, RstStreamFrame

from hface.common import HeadersType

from .._headers import CONNECTION_SPECIFIC_HEADERS
from .._settings import ProtocolLimits
from ._settings import DEFAULT_WINDOW, HTTP2Settings

#: RFC 9113 §8.2.2: fields that make an HTTP/2 message malformed.
CONNECTION_HEADERS: Final = CONNECTION_SPECIFIC_HEADERS

_GOAWAY_INPUTS: Final = (ConnectionInputs.SEND_GOAWAY, ConnectionInputs.RECV_GOAWAY)

#: A frame's header (RFC 9113 §4.1): length (24 bits, as 16 + 8), type, flags, stream ID.
_FRAME_HEADER: Final = struct.Struct(">HBBBL")
#: The DATA frame's type and its END_STREAM flag (RFC 9113 §6.1).
_DATA_TYPE: Final = 0x0
_END_STREAM: Final = 0x1


class GracefulStateMachine(H2ConnectionStateMachine):
    """h2's connection state machine, except that GOAWAY keeps the state (RFC 9113 §6.8)."""

    _transitions = {  # noqa: RUF012 - overrides h2's own class-level table
        key: (func, key[0] if key[1] in _GOAWAY_INPUTS else state)
        for key, (func, state) in H2ConnectionStateMachine._transitions.items()
    }

    def __init__(self) -> None:
        super().__init__()
        #: How many GOAWAY frames h2 has queued, to tell whether an error
        #: it raised came with one (a bad preface does not).
        self.goaways_sent = 0

    def process_input(self, input_: ConnectionInputs) -> list[Event]:
        if input_ is ConnectionInputs.SEND_GOAWAY:
            self.goaways_sent += 1
        return super().process_input(input_)


class CompactSettings(Settings):
    """h2's settings, each setting's values in a list instead of a deque.

    Values as h2's: the current one first, then the proposed ones until
    acknowledged; ``None`` first for a setting only proposed so far.
    """

    def __init__(
        self, client: bool = True, initial_values: dict[SettingCodes, int] | None = None
    ) -> None:
        super().__init__(client=client, initial_values=initial_values)
        compact = {key: list(values) for key, values in self._settings.items()}
        self._settings = cast(Any, compact)

    def acknowledge(self) -> dict[SettingCodes | int, ChangedSetting]:
        """Apply each setting's first proposed value; return those that changed."""
        changed: dict[SettingCodes | int, ChangedSetting] = {}
        settings: dict[SettingCodes | int, list[int]] = cast(Any, self._settings)
        for key, values in settings.items():
            if len(values) > 1:
                old = values.pop(0)
                changed[key] = ChangedSetting(key, old, values[0])
        return changed

    def __setitem__(self, key: SettingCodes | int, value: int) -> None:
        """Propose ``value`` (h2's checks first): it applies once acknowledged."""
        settings: dict[SettingCodes | int, list[int | None]] = cast(Any, self._settings)
        if key not in settings:
            settings[key] = [None]  # unset until acknowledged, as h2 has it
        try:
            super().__setitem__(key, value)
        except BaseException:
            if settings[key] == [None]:
                del settings[key]
            raise


class LocalSettings(CompactSettings):
    """Our settings, whose MAX_CONCURRENT_STREAMS h2 does not enforce.

    The value is sent to the peer as it is; only h2's own check of inbound
    streams against it (a connection error) reads the property, which says
    "unlimited". The protocol counts open streams and refuses the excess.
    """

    @property
    def max_concurrent_streams(self) -> int:
        """h2's "unlimited" (2**32 + 1): the protocol enforces the real limit."""
        return 2**32 + 1

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[SettingCodes.MAX_CONCURRENT_STREAMS] = value


class CompressionError(ProtocolError):
    """A header block that HPACK cannot decode (RFC 9113 §4.3)."""

    error_code = ErrorCodes.COMPRESSION_ERROR


class StrictDecoder(Decoder):
    """hpack's decoder, whose decoding errors are COMPRESSION_ERROR (RFC 9113 §4.3).

    h2 turns every other exception of the decoder into a PROTOCOL_ERROR; an
    h2 ``ProtocolError`` passes through it with its own code. An oversized
    header list stays hpack's error, which h2 answers with ENHANCE_YOUR_CALM.
    """

    def decode(self, data: bytes, raw: bool = False) -> Iterable[HeaderTuple]:
        """Decode a header block; raise :class:`CompressionError` if it is invalid."""
        try:
            return super().decode(data, raw)
        except OversizedHeaderListError:
            raise
        except (HPACKError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise CompressionError(f"invalid header block: {exc}") from exc


#: Bits gathered before whole bytes are cut off (bounds the integer's size).
_HUFFMAN_CHUNK_BITS: Final = 4096


#: Each byte's Huffman code and its length in bits (read only).
_HUFFMAN_CODES: Final = tuple(zip(REQUEST_CODES, REQUEST_CODES_LENGTH, strict=True))


class LinearHuffmanEncoder(HuffmanEncoder):
    """hpack's Huffman encoder (RFC 7541 §5.2, Appendix B), in linear time.

    hpack's own appends each code to one integer holding everything coded
    so far, which costs time proportional to its length for every byte.
    This one cuts the whole bytes off the integer every few hundred bytes,
    so it never grows past :data:`_HUFFMAN_CHUNK_BITS` plus one code.
    """

    def __init__(self) -> None:
        super().__init__(REQUEST_CODES, REQUEST_CODES_LENGTH)
        self._codes = _HUFFMAN_CODES  # shared: some 16 KB a connection otherwise

    def encode(self, bytes_to_encode: bytes | None) -> bytes:
        """Return the Huffman code of ``bytes_to_encode``, padded with ones (§5.2)."""
        if not bytes_to_encode:
            return b""
        codes = self._codes
        out = bytearray()
        acc = 0
        bits = 0
        for byte in bytes_to_encode:
            code, length = codes[byte]
            acc = (acc << length) | code
            bits += length
            if bits >= _HUFFMAN_CHUNK_BITS:
                keep = bits & 7
                out += (acc >> keep).to_bytes((bits - keep) >> 3, "big")
                acc &= (1 << keep) - 1
                bits = keep
        pad = -bits & 7
        acc = (acc << pad) | ((1 << pad) - 1)
        out += acc.to_bytes((bits + pad) >> 3, "big")
        return bytes(out)


class StreamError(ProtocolError):
    """A stream error (RFC 9113 §5.4.2): reset this stream, keep the connection."""

    def __init__(
        self, stream_id: int, error_code: ErrorCodes, flow_controlled_length: int = 0
    ) -> None:
        super().__init__(f"stream error {error_code} on stream {stream_id}")
        self.stream_id = stream_id
        self.error_code = error_code
        #: DATA bytes the connection window counted and nobody will read.
        self.flow_controlled_length = flow_controlled_length


class StrictStream(H2Stream):
    """h2's stream, whose errors in received headers and data are stream errors.

    A ``StreamClosedError`` is left to h2, which answers it itself.
    """

    def receive_headers(
        self, headers: Iterable[Any], end_stream: bool, header_encoding: bool | str | None
    ) -> tuple[list[Frame], list[Event]]:
        """Receive headers or trailers; a malformed block is a stream error."""
        try:
            return super().receive_headers(headers, end_stream, header_encoding)
        except StreamClosedError:
            raise
        except ProtocolError as exc:
            raise StreamError(self.stream_id, exc.error_code) from exc

    def receive_data(
        self, data: bytes, end_stream: bool, flow_control_len: int
    ) -> tuple[list[Frame], list[Event]]:
        """Receive data; a content-length it breaks is a stream error."""
        try:
            return super().receive_data(data, end_stream, flow_control_len)
        except StreamClosedError:
            raise
        except ProtocolError as exc:
            raise StreamError(self.stream_id, exc.error_code, flow_control_len) from exc


class MalformedStreamFrame(Frame):
    """Stands for a frame on a stream whose payload did not parse (a stream error)."""

    def __init__(self, stream_id: int, error_code: ErrorCodes) -> None:
        super().__init__(stream_id)
        self.error_code = error_code

    def _body_repr(self) -> str:
        return f"error_code={self.error_code}"


#: RFC 9113 frame types whose malformed payload on a stream is a stream error.
_PRIORITY: Final = 0x2
_WINDOW_UPDATE: Final = 0x8


class StreamFrameBuffer(FrameBuffer):
    """h2's frame buffer, handing on a malformed PRIORITY or WINDOW_UPDATE on a stream.

    A PRIORITY frame of a length other than 5 (RFC 9113 §6.3) and a stream
    WINDOW_UPDATE of 0 (§6.9) are stream errors; h2 makes them connection
    errors as the frame fails to parse. Only that failure is looked at, so
    frames that parse cost nothing more.
    """

    def __next__(self) -> Frame:
        try:
            frame = super().__next__()
        except ProtocolError:
            data = self._data
            if len(data) < 9 or self._headers_buffer:
                raise
            length = int.from_bytes(data[:3], "big")
            type_ = data[3]
            stream_id = int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
            if not stream_id or length > self.max_frame_size or len(data) < 9 + length:
                raise
            if type_ == _PRIORITY:
                code = ErrorCodes.FRAME_SIZE_ERROR
            elif type_ == _WINDOW_UPDATE and length == 4:
                code = ErrorCodes.PROTOCOL_ERROR
            else:
                raise
            del data[: 9 + length]
            return MalformedStreamFrame(stream_id, code)
        if type(frame) is DataFrame:
            frame.__class__ = QuietDataFrame  # the same object, with a cheap repr
        return frame


class QuietDataFrame(DataFrame):
    """A received DATA frame whose repr gives the payload's length, not its hex (see above)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"DataFrame(stream_id={self.stream_id}): {len(self.data)} bytes"


class CountingConnection(H2Connection):
    """h2's connection, counting the RST_STREAM frames it sends, with stream errors kept.

    (It hooks h2's ``_prepare_for_sending``, through which every frame goes,
    ``_receive_frame``, ``_begin_new_stream`` and the frame dispatch table;
    a test floods DATA on a closed stream to catch a change of the first.)
    """

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config=config)
        # The peer's settings, h2's defaults until its SETTINGS frame comes.
        self.remote_settings = CompactSettings(client=not config.client_side)
        #: How many RST_STREAM frames were queued so far.
        self.resets_sent = 0
        self.incoming_buffer = StreamFrameBuffer(server=not config.client_side)
        self._frame_dispatch_table[MalformedStreamFrame] = self._receive_malformed_frame
        self._frame_dispatch_table[QuietDataFrame] = self._receive_data_frame
        # What to send, in order, after h2's own buffer (in which h2 writes
        # only its preamble, itself): serialized frames, and DATA frames'
        # headers and payloads (see the module docstring).
        self._pieces: list[bytes | memoryview] = []

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        if not frames:
            return
        pieces = self._pieces
        if self._data_to_send:
            pieces.append(bytes(self._data_to_send))  # h2 wrote it first
            self._data_to_send = bytearray()
        max_size = self.max_outbound_frame_size
        for frame in frames:
            if type(frame) is DataFrame and not frame.pad_length and "PADDED" not in frame.flags:
                data = frame.data
                size = frame.body_len = len(data)
                assert size <= max_size
                flags = _END_STREAM if "END_STREAM" in frame.flags else 0
                stream_id = frame.stream_id & 0x7FFFFFFF
                header = _FRAME_HEADER.pack(size >> 8, size & 0xFF, _DATA_TYPE, flags, stream_id)
                pieces.append(header)
                if size:
                    pieces.append(data)
                continue
            if type(frame) is RstStreamFrame:
                self.resets_sent += 1
            pieces.append(frame.serialize())
            assert frame.body_len <= max_size

    def data_to_send(self, amount: int | None = None) -> bytes:
        """What there is to send, at most ``amount`` bytes (all by default), joined once."""
        pieces = self._pieces
        if self._data_to_send:
            pieces.append(bytes(self._data_to_send))
            self._data_to_send = bytearray()
        if not pieces:
            return b""
        first = pieces[0]
        data = first if len(pieces) == 1 and type(first) is bytes else b"".join(pieces)
        pieces.clear()
        if amount is not None and len(data) > amount:
            pieces.append(data[amount:])
            data = data[:amount]
        return data

    def clear_outbound_data_buffer(self) -> None:
        """Drop what there is to send."""
        super().clear_outbound_data_buffer()
        self._pieces.clear()

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream.__class__ = StrictStream  # the same object, with stream errors kept
        return stream

    def _receive_frame(self, frame: Frame) -> list[Event]:
        try:
            return super()._receive_frame(frame)
        except StreamError as exc:
            return self._stream_error(exc)

    def _receive_priority_frame(
        self, frame: HeadersFrame | PriorityFrame
    ) -> tuple[list[Frame], list[Event]]:
        if frame.depends_on == frame.stream_id:
            # RFC 9113 §5.3.1: a stream error, which h2 makes a connection error.
            raise StreamError(frame.stream_id, ErrorCodes.PROTOCOL_ERROR)
        return super()._receive_priority_frame(frame)

    def _receive_data_frame(self, frame: DataFrame) -> tuple[list[Frame], list[Event]]:
        """DATA on a stream we reset is ignored, not answered with another RST_STREAM.

        RFC 9113 §5.1: the peer may have sent it before our RST_STREAM
        reached it (the rest of an upload after a 413, or after a complete
        response and RST_STREAM(NO_ERROR), §8.1). h2 credits the connection
        window for it, and would answer each frame with a reset, which would
        spend the reset budget of a client that did nothing wrong.
        """
        ours = self._stream_closed_by(frame.stream_id) is StreamClosedBy.SEND_RST_STREAM
        frames, events = super()._receive_data_frame(frame)
        if ours:
            frames = [f for f in frames if type(f) is not RstStreamFrame]
        return frames, events

    def _receive_malformed_frame(
        self, frame: MalformedStreamFrame
    ) -> tuple[list[Frame], list[Event]]:
        raise StreamError(frame.stream_id, frame.error_code)

    def _stream_error(self, exc: StreamError) -> list[Event]:
        """Reset the stream of a stream error; return h2's event for a local reset."""
        stream_id = exc.stream_id
        if exc.flow_controlled_length:
            # The connection window counted it; nobody will read it.
            self.acknowledge_received_data(exc.flow_controlled_length, stream_id)
        stream = self.streams.get(stream_id)
        if stream is not None and not stream.closed:
            self.reset_stream(stream_id, exc.error_code)
        else:
            # An idle or closed stream: h2 has no state to move (h2spec
            # expects the RST_STREAM even so).
            frame = RstStreamFrame(stream_id)
            frame.error_code = exc.error_code
            self._prepare_for_sending([frame])
        return [StreamReset(stream_id=stream_id, error_code=exc.error_code, remote_reset=False)]


def make_connection(
    *, client_side: bool, limits: ProtocolLimits, settings: HTTP2Settings
) -> tuple[CountingConnection, GracefulStateMachine]:
    """Return an initiated ``h2.connection.H2Connection`` with these local settings."""
    config = H2Configuration(
        client_side=client_side,
        header_encoding=None,
        validate_outbound_headers=True,
        normalize_outbound_headers=True,
        validate_inbound_headers=True,
        normalize_inbound_headers=True,
    )
    conn = CountingConnection(config)
    conn.encoder.huffman_coder = LinearHuffmanEncoder()
    state_machine = conn.state_machine = GracefulStateMachine()
    max_frame_size = settings.max_frame_size
    initial = {
        SettingCodes.HEADER_TABLE_SIZE: limits.header_table_size,
        SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
        SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
        SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_size,
        SettingCodes.MAX_FRAME_SIZE: max_frame_size,
    }
    if client_side:
        # We do not support server push (RFC 9113 §8.4): a PUSH_PROMISE is
        # then a connection error.
        initial[SettingCodes.ENABLE_PUSH] = 0
    else:
        # RFC 8441 §3: a server takes extended CONNECT (``:protocol``, e.g.
        # WebSockets); the layer above answers the protocols it does not serve.
        initial[SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
    # Our SETTINGS is the first frame the peer reads, so it never sends us
    # stream frames under the old values: h2 may apply ours at once.
    conn.local_settings = LocalSettings(client=client_side, initial_values=initial)
    conn.max_inbound_frame_size = max_frame_size
    decoder = StrictDecoder(max_header_list_size=limits.max_header_size)
    # RFC 7541 §4.2, §6.3: the peer's encoder must shrink its table to our
    # SETTINGS_HEADER_TABLE_SIZE with a size update; an update above it is
    # a decoding error, which StrictDecoder makes a COMPRESSION_ERROR.
    decoder.max_allowed_table_size = limits.header_table_size
    conn.decoder = decoder
    conn.initiate_connection()
    if settings.connection_window_size > DEFAULT_WINDOW:
        # RFC 9113 §6.9.2: SETTINGS do not change the connection window; a
        # WINDOW_UPDATE on stream 0 does.
        conn.increment_flow_control_window(settings.connection_window_size - DEFAULT_WINDOW)
    return conn, state_machine


def strip_connection_headers(headers: HeadersType) -> list[tuple[bytes, bytes]]:
    """Return ``headers`` without the fields RFC 9113 §8.2.2 forbids.

    ``te`` stays when its value is ``trailers``, the only value allowed.
    """
    result = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in CONNECTION_HEADERS:
            continue
        if lowered == b"te" and value.strip().lower() != b"trailers":
            continue
        result.append((name, value))
    return result
