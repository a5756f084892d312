"""How hface sets up and adapts h2 (internal).

Four adaptations of h2 are made here:

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
- **RST_STREAM frames are counted** by :class:`CountingConnection`, so the
  protocol can bound the resets a peer provokes. h2 answers a frame on a
  closed stream with RST_STREAM and no event at all: a peer could have it
  send one per 10-byte frame it sends.
- **Huffman coding takes linear time.** hpack 4's encoder shifts one
  integer as large as the whole string for every byte, so encoding is
  quadratic: a 300 KB header value took 20 s of CPU, a 1 MB one minutes,
  with the event loop blocked (a server answering with a large header
  looked hung to its clients). :class:`LinearHuffmanEncoder` produces the
  same bytes in linear time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from h2.config import H2Configuration
from h2.connection import ConnectionInputs, H2Connection, H2ConnectionStateMachine
from h2.errors import ErrorCodes
from h2.events import Event
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hpack import Decoder, HeaderTuple, HPACKError, OversizedHeaderListError
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hyperframe.frame import Frame, RstStreamFrame

from hface.common import HeadersType

from .._headers import CONNECTION_SPECIFIC_HEADERS
from .._settings import ProtocolLimits
from ._settings import DEFAULT_WINDOW, HTTP2Settings

#: RFC 9113 §8.2.2: fields that make an HTTP/2 message malformed.
CONNECTION_HEADERS: Final = CONNECTION_SPECIFIC_HEADERS

_GOAWAY_INPUTS: Final = (ConnectionInputs.SEND_GOAWAY, ConnectionInputs.RECV_GOAWAY)


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


class LocalSettings(Settings):
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


class CountingConnection(H2Connection):
    """h2's connection, counting the RST_STREAM frames it sends.

    (It hooks h2's ``_prepare_for_sending``, through which every frame goes;
    a test floods DATA on a closed stream to catch a change of that internal.)
    """

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config=config)
        #: How many RST_STREAM frames were queued so far.
        self.resets_sent = 0

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        for frame in frames:
            if type(frame) is RstStreamFrame:
                self.resets_sent += 1
        super()._prepare_for_sending(frames)


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
