"""HTTP/3 conformance cases modelled on h3spec (RFC 9114, RFC 9204).

Each case drives hface's sans-IO HTTP/3 server with a raw QUIC client
(aioquic's ``QuicConnection``) that writes HTTP/3 frames straight onto QUIC
streams, sends one violation and checks what the RFC asks for: a
connection error (the code of the server's CONNECTION_CLOSE), or, where it
asks for a stream error (RFC 9114 §4.1.2: a malformed message), the code of
the RESET_STREAM / STOP_SENDING on that stream only, with the connection
still serving requests. Case ids name the RFC section.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pylsqpack
import pytest
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import FrameType, StreamType, encode_frame

from hface.events import ConnectionTerminated, DataReceived, HeadersReceived, StreamResetSent
from hface.protocols.http3 import (
    HTTP3ClientFactory,
    HTTP3ClientProtocol,
    HTTP3ServerFactory,
    HTTP3ServerProtocol,
)
from hface.protocols.http3._guard import FLOOD_WINDOW
from tests.helpers.h3_raw import (
    H3_CLOSED_CRITICAL_STREAM,
    H3_EXCESSIVE_LOAD,
    H3_FRAME_ERROR,
    H3_FRAME_UNEXPECTED,
    H3_ID_ERROR,
    H3_MESSAGE_ERROR,
    H3_MISSING_SETTINGS,
    H3_NO_ERROR,
    H3_SETTINGS_ERROR,
    H3_STREAM_CREATION_ERROR,
    QPACK_DECODER_STREAM_ERROR,
    QPACK_DECOMPRESSION_FAILED,
    QPACK_ENCODER_STREAM_ERROR,
    REQUEST,
    RawH3Client,
    connect,
    headers_frame,
    settings_frame,
)
from tests.helpers.quic_pair import CLIENT_ADDRESS, make_quic_pair


@dataclass(frozen=True)
class Case:
    """One violation and the error code RFC asks for."""

    id: str
    send: Callable[[RawH3Client], int | None]
    codes: frozenset[int]
    #: The RFC asks for a stream error (else a connection error).
    stream_error: bool = False


def _control_then(data: bytes) -> Callable[[RawH3Client], int | None]:
    def send(client: RawH3Client) -> int | None:
        client.open_control(settings_frame() + data)
        return None

    return send


def _control_only(data: bytes) -> Callable[[RawH3Client], int | None]:
    def send(client: RawH3Client) -> int | None:
        client.open_control(data)
        return None

    return send


def _request(data: bytes, *, control: bool = True) -> Callable[[RawH3Client], int | None]:
    def send(client: RawH3Client) -> int | None:
        if control:
            client.open_control()
        return client.request_stream(data)

    return send


def _request_headers(headers: list[tuple[bytes, bytes]]) -> Callable[[RawH3Client], int | None]:
    return _request(headers_frame(headers))


def _second_control(client: RawH3Client) -> int | None:
    client.open_control()
    client.open_control()
    return None


def _close_control(client: RawH3Client) -> int | None:
    client.uni_stream(StreamType.CONTROL, settings_frame(), end_stream=True)
    return None


def _second_encoder(client: RawH3Client) -> int | None:
    client.open_control()
    client.uni_stream(StreamType.QPACK_ENCODER)
    client.uni_stream(StreamType.QPACK_ENCODER)
    return None


def _second_decoder(client: RawH3Client) -> int | None:
    client.open_control()
    client.uni_stream(StreamType.QPACK_DECODER)
    client.uni_stream(StreamType.QPACK_DECODER)
    return None


def _close_encoder(client: RawH3Client) -> int | None:
    client.open_control()
    client.uni_stream(StreamType.QPACK_ENCODER, end_stream=True)
    return None


def _push_from_client(client: RawH3Client) -> int | None:
    client.open_control()
    client.uni_stream(StreamType.PUSH, encode_uint_var(0))
    return None


def _bad_encoder_instruction(client: RawH3Client) -> int | None:
    client.open_control()
    # Insert With Name Reference to static entry 127: the static table has 99.
    client.uni_stream(StreamType.QPACK_ENCODER, b"\xff\x40\x01a")
    return None


def _bad_decoder_instruction(client: RawH3Client) -> int | None:
    client.open_control()
    # Section Acknowledgment for a stream with no outstanding section.
    client.uni_stream(StreamType.QPACK_DECODER, b"\x81")
    return None


def _bad_field_section(client: RawH3Client) -> int | None:
    client.open_control()
    # An encoded Required Insert Count of 271, more than 2 * MaxEntries
    # (RFC 9204 §4.5.1.1): no encoder could have produced it.
    return client.request_stream(encode_frame(FrameType.HEADERS, b"\xff\x10\x00\x80"))


def _blocked_streams(client: RawH3Client) -> int | None:
    # hface advertises SETTINGS_QPACK_BLOCKED_STREAMS; a header block that
    # needs inserts never sent blocks. One more than allowed is an error.
    client.open_control()
    last = None
    for _ in range(0x10 + 1):
        last = client.request_stream(encode_frame(FrameType.HEADERS, b"\x02\x00\x80"), False)
    return last


def _data_after_trailers(client: RawH3Client) -> int | None:
    client.open_control()
    return client.request_stream(
        headers_frame([*REQUEST, (b"content-length", b"0")])
        + headers_frame([(b"x-trailer", b"1")])
        + encode_frame(FrameType.DATA, b"x")
    )


def _truncated_frame(client: RawH3Client) -> int | None:
    client.open_control()
    # A HEADERS frame announcing 10 bytes whose stream ends after 2.
    return client.request_stream(encode_uint_var(FrameType.HEADERS) + encode_uint_var(10) + b"ab")


def _content_length_mismatch(client: RawH3Client) -> int | None:
    client.open_control()
    return client.request_stream(
        headers_frame([*REQUEST, (b"content-length", b"5")]) + encode_frame(FrameType.DATA, b"x")
    )


_UNEXPECTED = frozenset({H3_FRAME_UNEXPECTED})
_MESSAGE = frozenset({H3_MESSAGE_ERROR})

CASES = [
    # --- RFC 9114 §6.2: unidirectional streams -------------------------------
    Case(
        "RFC9114-6.2.1-second-control-stream",
        _second_control,
        frozenset({H3_STREAM_CREATION_ERROR}),
    ),
    Case(
        "RFC9114-6.2.1-control-stream-closed",
        _close_control,
        frozenset({H3_CLOSED_CRITICAL_STREAM}),
    ),
    Case(
        "RFC9114-6.2.2-push-stream-from-client",
        _push_from_client,
        frozenset({H3_STREAM_CREATION_ERROR}),
    ),
    # --- RFC 9114 §7.2.4 / §6.2.1: control stream frames ------------------------
    Case(
        "RFC9114-6.2.1-first-frame-not-settings",
        _control_only(encode_frame(FrameType.GOAWAY, encode_uint_var(0))),
        frozenset({H3_MISSING_SETTINGS}),
    ),
    Case("RFC9114-7.2.4-second-settings", _control_then(settings_frame()), _UNEXPECTED),
    Case(
        "RFC9114-7.2.1-data-on-control-stream",
        _control_then(encode_frame(FrameType.DATA, b"x")),
        _UNEXPECTED,
    ),
    Case(
        "RFC9114-7.2.2-headers-on-control-stream",
        _control_then(headers_frame(REQUEST)),
        _UNEXPECTED,
    ),
    Case(
        "RFC9114-7.2.5-push-promise-on-control-stream",
        _control_then(encode_frame(FrameType.PUSH_PROMISE, b"\x00")),
        _UNEXPECTED,
    ),
    *[
        Case(
            f"RFC9114-7.2.8-h2-frame-{t:#x}-on-control-stream",
            _control_then(encode_frame(t, b"")),
            _UNEXPECTED,
        )
        for t in (0x2, 0x6, 0x8, 0x9)
    ],
    *[
        Case(
            f"RFC9114-7.2.4.1-h2-setting-{s:#x}",
            _control_only(settings_frame({s: 0})),
            frozenset({H3_SETTINGS_ERROR}),
        )
        for s in (0x2, 0x3, 0x4, 0x5)
    ],
    Case(
        "RFC9114-7.2.4-duplicate-setting",
        _control_only(encode_frame(FrameType.SETTINGS, b"\x06\x10\x06\x10")),
        frozenset({H3_SETTINGS_ERROR}),
    ),
    Case(
        "RFC9114-7.1-settings-length-mismatch",
        # The payload ends in the middle of a setting.
        _control_only(encode_frame(FrameType.SETTINGS, b"\x06\x10\x06")),
        frozenset({H3_FRAME_ERROR}),
    ),
    Case(
        "RFC9114-5.2-goaway-id-increased",
        _control_then(
            encode_frame(FrameType.GOAWAY, encode_uint_var(1))
            + encode_frame(FrameType.GOAWAY, encode_uint_var(2))
        ),
        frozenset({H3_ID_ERROR}),
    ),
    # --- RFC 9114 §4.1 / §7.2: request stream frames -----------------------------
    # RFC 9114 §4.1: an invalid sequence of frames is a connection error.
    Case(
        "RFC9114-4.1-data-before-headers",
        _request(encode_frame(FrameType.DATA, b"x")),
        _UNEXPECTED,
    ),
    Case("RFC9114-4.1-data-after-trailers", _data_after_trailers, _UNEXPECTED),
    *[
        Case(
            f"RFC9114-7.2-{name}-on-request-stream",
            _request(encode_frame(t, encode_uint_var(0))),
            _UNEXPECTED,
        )
        for name, t in (
            ("cancel-push", FrameType.CANCEL_PUSH),
            ("settings", FrameType.SETTINGS),
            ("goaway", FrameType.GOAWAY),
            ("max-push-id", FrameType.MAX_PUSH_ID),
            ("push-promise", FrameType.PUSH_PROMISE),
        )
    ],
    *[
        Case(
            f"RFC9114-7.2.8-h2-frame-{t:#x}-on-request-stream",
            _request(encode_frame(t, b"")),
            _UNEXPECTED,
        )
        for t in (0x2, 0x6, 0x8, 0x9)
    ],
    Case(
        "RFC9114-7.1-truncated-frame",
        _truncated_frame,
        frozenset({H3_FRAME_ERROR}),
    ),
    # --- RFC 9114 §4.1.2 / §4.2 / §4.3: malformed messages, stream errors -------
    Case("RFC9114-4.3.1-missing-method", _request_headers(REQUEST[1:]), _MESSAGE, True),
    Case(
        "RFC9114-4.3.1-missing-scheme", _request_headers([REQUEST[0], *REQUEST[2:]]), _MESSAGE, True
    ),
    Case("RFC9114-4.3.1-missing-path", _request_headers(REQUEST[:3]), _MESSAGE, True),
    Case(
        "RFC9114-4.3.1-duplicate-pseudo-header",
        _request_headers([REQUEST[0], *REQUEST]),
        _MESSAGE,
        True,
    ),
    Case(
        "RFC9114-4.3-pseudo-header-after-regular",
        _request_headers([*REQUEST[:3], (b"accept", b"*/*"), REQUEST[3]]),
        _MESSAGE,
        True,
    ),
    Case(
        "RFC9114-4.3-unknown-pseudo-header",
        _request_headers([*REQUEST, (b":bogus", b"x")]),
        _MESSAGE,
        True,
    ),
    Case(
        "RFC9114-4.3-response-pseudo-header-in-request",
        _request_headers([*REQUEST, (b":status", b"200")]),
        _MESSAGE,
        True,
    ),
    Case(
        "RFC9114-4.2-uppercase-header-name",
        _request_headers([*REQUEST, (b"Accept", b"*/*")]),
        _MESSAGE,
        True,
    ),
    Case(
        "RFC9114-4.2-connection-header",
        _request_headers([*REQUEST, (b"connection", b"close")]),
        _MESSAGE,
        True,
    ),
    Case(
        "RFC9114-4.2-transfer-encoding-header",
        _request_headers([*REQUEST, (b"transfer-encoding", b"chunked")]),
        _MESSAGE,
        True,
    ),
    Case(
        "RFC9114-4.2-te-not-trailers",
        _request_headers([*REQUEST, (b"te", b"gzip")]),
        _MESSAGE,
        True,
    ),
    Case("RFC9114-4.1.2-content-length-mismatch", _content_length_mismatch, _MESSAGE, True),
    # --- RFC 9204: QPACK ---------------------------------------------------------------
    Case(
        "RFC9204-4.2-second-encoder-stream", _second_encoder, frozenset({H3_STREAM_CREATION_ERROR})
    ),
    Case(
        "RFC9204-4.2-second-decoder-stream", _second_decoder, frozenset({H3_STREAM_CREATION_ERROR})
    ),
    Case(
        "RFC9204-4.2-encoder-stream-closed", _close_encoder, frozenset({H3_CLOSED_CRITICAL_STREAM})
    ),
    Case(
        "RFC9204-4.3-invalid-encoder-instruction",
        _bad_encoder_instruction,
        frozenset({QPACK_ENCODER_STREAM_ERROR}),
    ),
    Case(
        "RFC9204-4.4-invalid-decoder-instruction",
        _bad_decoder_instruction,
        frozenset({QPACK_DECODER_STREAM_ERROR}),
    ),
    Case(
        "RFC9204-4.5.1.1-required-insert-count-too-large",
        _bad_field_section,
        frozenset({QPACK_DECOMPRESSION_FAILED}),
    ),
    Case(
        "RFC9204-2.1.2-blocked-streams-exceeded",
        _blocked_streams,
        frozenset({QPACK_DECOMPRESSION_FAILED}),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_violation_gets_the_rfc_error(case: Case) -> None:
    """The server answers each violation with the error its RFC section names."""
    client = connect()
    stream_id = case.send(client)
    client.transfer()
    wanted = sorted(map(hex, case.codes))
    if not case.stream_error:
        code = client.closed_code
        assert code in case.codes, f"{case.id}: got {code!r}, want a close with one of {wanted}"
        assert any(isinstance(e, ConnectionTerminated) for e in client.server_events)
        return
    # RFC 9114 §4.1.2, §8: the stream is reset, and only the stream.
    assert stream_id is not None
    code = client.resets.get(stream_id)
    assert client.closed_code is None, f"{case.id}: closed with {client.closed_code:#x}"
    assert code in case.codes, f"{case.id}: stream reset with {code!r}, want one of {wanted}"
    # The application never saw the malformed request...
    assert not any(getattr(e, "stream_id", None) == stream_id for e in client.server_events)
    # ... and the next request on the same connection is answered.
    next_id = client.request_stream(headers_frame(REQUEST))
    client.transfer()
    assert HeadersReceived(stream_id=next_id, headers=REQUEST, end_stream=True) in (
        client.server_events
    )
    client.server.submit_headers(next_id, [(b":status", b"204")], end_stream=True)
    client.transfer()
    assert next_id in client.ended
    assert client.closed_code is None


def test_valid_request_is_accepted() -> None:
    """The harness itself: a well-formed request reaches the server as HeadersReceived."""
    client = connect()
    client.open_control()
    stream_id = client.request_stream(headers_frame(REQUEST))
    client.transfer()
    assert client.closed_code is None
    assert [e for e in client.server_events if isinstance(e, HeadersReceived)] == [
        HeadersReceived(stream_id=stream_id, headers=REQUEST, end_stream=True)
    ]


# --- Stream errors (RFC 9114 §4.1.2, RFC 9204 §4.4.2) ---------------------------------


def test_malformed_request_seen_by_the_application_is_reset() -> None:
    """A content-length the DATA contradicts, found after the application saw the request.

    The application gets ``StreamResetSent`` with H3_MESSAGE_ERROR; the
    stream's halves are reset and stopped; the connection goes on.
    """
    client = connect()
    client.open_control()
    headers = [*REQUEST, (b"content-length", b"5")]
    stream_id = client.request_stream(
        headers_frame(headers) + encode_frame(FrameType.DATA, b"x"), end_stream=False
    )
    client.transfer()
    assert client.server_events == [
        HeadersReceived(stream_id=stream_id, headers=headers),
        DataReceived(stream_id=stream_id, data=b"x"),
    ]
    client.server_events.clear()
    client.quic.send_stream_data(stream_id, b"", end_stream=True)  # 1 byte of 5
    client.transfer()
    reset = StreamResetSent(stream_id=stream_id, error_code=H3_MESSAGE_ERROR)
    assert client.server_events == [reset]
    assert client.resets[stream_id] == H3_MESSAGE_ERROR
    assert client.closed_code is None
    next_id = client.request_stream(headers_frame(REQUEST))
    client.transfer()
    assert client.server_events[-1] == HeadersReceived(
        stream_id=next_id, headers=REQUEST, end_stream=True
    )


@pytest.mark.parametrize("together", [True, False], ids=["same-packet", "later-packet"])
def test_what_follows_a_malformed_request_on_its_stream_is_dropped(together: bool) -> None:
    """The client goes on sending on the stream: no event, no connection error."""
    client = connect()
    client.open_control()
    bad = [*REQUEST, (b"connection", b"close")]
    # DATA after a rejected HEADERS would be a frame error if it were parsed.
    body = encode_frame(FrameType.DATA, b"y" * 100) * 3
    stream_id = client.request_stream(headers_frame(bad) + (body if together else b""), False)
    if not together:
        # The HEADERS reach the server alone, the DATA in later datagrams.
        for data, _ in client.quic.datagrams_to_send(now=client.now):
            client.server.datagram_received((data, CLIENT_ADDRESS))
        client.quic.send_stream_data(stream_id, body, end_stream=True)
    client.transfer()
    assert client.resets[stream_id] == H3_MESSAGE_ERROR
    assert client.closed_code is None
    assert client.server_events == []


def test_malformed_request_cancels_its_qpack_stream_state() -> None:
    """RFC 9204 §4.4.2: the abandoned stream gets a Stream Cancellation on the decoder stream."""
    client = connect()
    client.open_control()
    stream_id = client.request_stream(headers_frame([*REQUEST, (b"X-Upper", b"1")]))
    client.transfer()
    assert client.resets[stream_id] == H3_MESSAGE_ERROR
    # Stream Cancellation: 01 and the stream ID as a 6-bit prefix integer.
    assert client.server_uni_stream(StreamType.QPACK_DECODER) == bytes([0x40 | stream_id])


def test_malformed_request_unblocked_by_the_encoder_stream() -> None:
    """Two header sections blocked on one insert: the malformed one is reset, the other served."""
    client = connect()
    client.open_control()
    encoder = pylsqpack.Encoder()
    setup = encoder.apply_settings(max_table_capacity=4096, blocked_streams=16)
    good_id = client.quic.get_next_available_stream_id()
    bad_id = good_id + 4
    shared = [*REQUEST, (b"x-shared", b"v" * 40)]
    encoder.encode(1000, shared)  # never sent: pylsqpack inserts what it saw before
    inserts, good = encoder.encode(good_id, shared)
    more, bad = encoder.encode(bad_id, [*shared, (b"X-Bad", b"1")])
    assert inserts  # the sections refer to entries the server does not have yet
    client.request_stream(encode_frame(FrameType.HEADERS, good))
    client.request_stream(encode_frame(FrameType.HEADERS, bad))
    client.transfer()
    assert client.server_events == []  # both blocked
    client.uni_stream(StreamType.QPACK_ENCODER, setup + inserts + more)
    client.transfer()
    assert client.closed_code is None
    assert client.resets.get(bad_id) == H3_MESSAGE_ERROR
    assert [e.stream_id for e in client.server_events if isinstance(e, HeadersReceived)] == [
        good_id
    ]


def test_malformed_requests_spend_the_reset_budget() -> None:
    """A client that sends nothing but malformed requests is a flood (RFC 9114 §10.5)."""
    client = connect(max_reset_streams=20)
    client.open_control()
    for index in range(60):
        client.request_stream(headers_frame(REQUEST[1:]))  # no :method
        if index % 10 == 9:
            client.transfer()
    client.transfer()
    assert client.closed_code == H3_EXCESSIVE_LOAD


# --- Attack bounds (RFC 9114 §10.5, RFC 9000 §4.6) ------------------------------------

_RESERVED_FRAME = encode_frame(0x21, b"")  # 0x1f * N + 0x21: reserved, ignored (§7.2.8)


def _answer(client: RawH3Client) -> None:
    """Have the server answer every request it has received so far."""
    for event in client.server_events:
        if isinstance(event, HeadersReceived) and event.end_stream:
            client.server.submit_headers(event.stream_id, [(b":status", b"204")], end_stream=True)
    client.server_events.clear()


@pytest.mark.parametrize("stop_first", [False, True], ids=["reset", "stop-then-reset"])
def test_rapid_reset_gets_excessive_load(stop_first: bool) -> None:
    """RFC 9114 §10.5 (CVE-2023-44487): streams opened and reset at once exhaust a budget.

    A STOP_SENDING of the client's own first does not make its resets look
    like answers to ours (see test_resets_answering_our_stop_sending_are_free).
    """
    client = connect(max_reset_streams=50)
    client.open_control()
    for index in range(200):
        stream_id = client.request_stream(headers_frame(REQUEST), end_stream=False)
        if stop_first:
            client.quic.stop_stream(stream_id, 0x10C)
        client.quic.reset_stream(stream_id, 0x10C)  # H3_REQUEST_CANCELLED
        if index % 10 == 9:
            client.transfer()
        if client.closed_code is not None:
            break
    client.transfer()
    assert client.closed_code == H3_EXCESSIVE_LOAD
    assert index < 80  # the budget, plus what was in flight
    terminated = [e for e in client.server_events if isinstance(e, ConnectionTerminated)]
    assert terminated[0].error_code == H3_EXCESSIVE_LOAD


def test_resets_answering_our_stop_sending_are_free() -> None:
    """A client told to stop its upload (RFC 9114 §4.1) answers with RESET_STREAM (RFC 9000
    §3.5): not a reset of its own, however many uploads the server stops."""
    client = connect(max_reset_streams=5)
    client.open_control()
    for _ in range(40):
        stream_id = client.request_stream(headers_frame(REQUEST), end_stream=False)
        client.quic.send_stream_data(stream_id, encode_frame(FrameType.DATA, b"u" * 1000))
        client.transfer()
        assert [type(e) for e in client.server_events] == [HeadersReceived, DataReceived]
        client.server_events.clear()
        client.server.submit_headers(stream_id, [(b":status", b"413")], end_stream=True)
        client.server.submit_stream_reset(stream_id, 0)  # H3_NO_ERROR: STOP_SENDING only
        client.transfer()  # the client's QUIC answers with RESET_STREAM
        assert stream_id in client.ended  # the whole response came
        assert client.resets[stream_id] == H3_NO_ERROR  # with the STOP_SENDING
        assert [type(e) for e in client.server_events] == [StreamResetSent]
        client.server_events.clear()
    assert client.closed_code is None


def test_resets_among_completed_requests_are_tolerated() -> None:
    """Each completed request earns back the budget: occasional cancels never close."""
    client = connect(max_reset_streams=5)
    client.open_control()
    for _ in range(40):
        client.request_stream(headers_frame(REQUEST))
        cancelled = client.request_stream(headers_frame(REQUEST), end_stream=False)
        client.quic.reset_stream(cancelled, 0x10C)
        client.transfer()
        _answer(client)
        client.transfer()
    assert client.closed_code is None


def test_max_reset_streams_must_be_positive() -> None:
    """A budget below one is refused with a clear error."""
    with pytest.raises(ValueError, match="max_reset_streams"):
        HTTP3ServerFactory(max_reset_streams=0)


def test_too_many_streams_is_a_stream_limit_error() -> None:
    """RFC 9000 §4.6: streams beyond the advertised limit get STREAM_LIMIT_ERROR (0x4)."""
    client = connect(max_concurrent_streams=4)
    client.open_control()
    client.quic._remote_max_streams_bidi = 1000  # pretend the server allowed more
    for _ in range(6):
        client.request_stream(headers_frame(REQUEST), end_stream=False)
    client.transfer()
    assert client.closed_code == 0x4


@pytest.mark.parametrize("where", ["control-stream", "request-stream"])
def test_reserved_frames_are_ignored_in_bounded_memory(where: str) -> None:
    """RFC 9114 §7.2.8: reserved frames below the flood budget are skipped, unbuffered."""
    client = connect()
    frames = _RESERVED_FRAME * 900
    if where == "control-stream":
        client.open_control(settings_frame() + frames)
        stream_id = client.request_stream(headers_frame(REQUEST))
    else:
        client.open_control()
        stream_id = client.request_stream(frames + headers_frame(REQUEST))
    client.transfer(rounds=2000)
    assert client.closed_code is None
    assert [e for e in client.server_events if isinstance(e, HeadersReceived)] == [
        HeadersReceived(stream_id=stream_id, headers=REQUEST, end_stream=True)
    ]
    h3 = client.server._h3  # type: ignore[attr-defined]
    assert all(len(stream.buffer) < 4096 for stream in h3._stream.values())


def test_empty_data_frames_produce_no_events() -> None:
    """RFC 9114 §10.5: empty DATA frames below the budget cost no events and no bytes."""
    client = connect()
    client.open_control()
    body = encode_frame(FrameType.DATA, b"") * 900
    last = encode_frame(FrameType.DATA, b"x")
    stream_id = client.request_stream(headers_frame(REQUEST) + body + last)
    client.transfer(rounds=2000)
    assert client.closed_code is None
    data = [e for e in client.server_events if not isinstance(e, HeadersReceived)]
    assert data == [DataReceived(stream_id=stream_id, data=b"x", end_stream=True)]


#: Sends ``count`` copies of a frame (or opens ``count`` streams) the flood guard counts.
Sender = Callable[[RawH3Client, bytes, int], None]


def _flood_control(client: RawH3Client, frame: bytes, count: int) -> None:
    client.open_control(settings_frame() + frame * count)


def _flood_request(client: RawH3Client, frame: bytes, count: int) -> None:
    client.open_control()
    client.request_stream(headers_frame(REQUEST) + frame * count, end_stream=False)


def _flood_uni_streams(client: RawH3Client, _frame: bytes, count: int) -> None:
    client.open_control()
    client.quic._remote_max_streams_uni = 10_000  # as if the server allowed them
    for _ in range(count):
        client.uni_stream(0x21, b"x", end_stream=True)  # a reserved stream type (§6.2.3)


FLOODS = [
    pytest.param(_flood_control, _RESERVED_FRAME, id="RFC9114-7.2.8-reserved-frames-on-control"),
    pytest.param(
        _flood_control,
        encode_frame(FrameType.GOAWAY, encode_uint_var(0)),
        id="RFC9114-5.2-goaway-frames",
    ),
    pytest.param(
        _flood_control,
        encode_frame(FrameType.MAX_PUSH_ID, encode_uint_var(0)),
        id="RFC9114-7.2.7-max-push-id-frames",
    ),
    pytest.param(
        _flood_control,
        encode_frame(0xF0700, encode_uint_var(0) + b"u=1"),
        id="RFC9218-7.2-priority-update-frames",
    ),
    pytest.param(_flood_request, _RESERVED_FRAME, id="RFC9114-7.2.8-reserved-frames-on-request"),
    pytest.param(_flood_request, encode_frame(FrameType.DATA, b""), id="RFC9114-10.5-empty-data"),
    pytest.param(_flood_request, encode_frame(FrameType.DATA, b"x"), id="RFC9114-10.5-tiny-data"),
    pytest.param(_flood_uni_streams, b"", id="RFC9114-6.2.3-reserved-stream-types"),
]


@pytest.mark.parametrize(("send", "frame"), FLOODS)
def test_flood_past_the_budget(send: Sender, frame: bytes) -> None:
    """RFC 9114 §10.5: work without progress past the budget closes with H3_EXCESSIVE_LOAD."""
    client = connect(max_control_frames=50)
    send(client, frame, 60)
    client.transfer(rounds=2000)
    assert client.closed_code == H3_EXCESSIVE_LOAD
    terminated = [e for e in client.server_events if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in terminated] == [H3_EXCESSIVE_LOAD]
    # The server stopped at the budget: the application saw no flood of events.
    assert len(client.server_events) < 10


@pytest.mark.parametrize(("send", "frame"), FLOODS)
def test_within_the_budget(send: Sender, frame: bytes) -> None:
    """The same frames up to the budget are tolerated (RFC 9114 §7.2.8, §9: ignored)."""
    client = connect(max_control_frames=50)
    send(client, frame, 40)
    client.transfer(rounds=2000)
    assert client.closed_code is None


def test_progress_earns_the_budget_back() -> None:
    """Requests and data earn units back: a busy client may send many control frames."""
    client = connect(max_control_frames=20)
    control = client.open_control()
    for _ in range(30):
        client.quic.send_stream_data(control, _RESERVED_FRAME * 5)
        body = encode_frame(FrameType.DATA, b"x" * 100)
        client.request_stream(headers_frame(REQUEST) + body * 4)
        client.transfer()
        _answer(client)
    client.transfer()
    assert client.closed_code is None


def test_budget_comes_back_after_the_window() -> None:
    """The whole budget is back every FLOOD_WINDOW seconds: a slow trickle is tolerated."""
    client = connect(max_control_frames=20)
    control = client.open_control()
    for _ in range(5):
        client.quic.send_stream_data(control, _RESERVED_FRAME * 15)
        client.transfer()
        assert client.closed_code is None
        client.now += FLOOD_WINDOW + 1
        client.quic.send_ping(1)  # something to carry the new time
        client.transfer()
    client.quic.send_stream_data(control, _RESERVED_FRAME * 25)
    client.transfer()
    assert client.closed_code == H3_EXCESSIVE_LOAD


def test_a_response_flood_closes_the_client() -> None:
    """The guard protects clients too: a server sending tiny DATA frames is cut off."""
    pair = make_quic_pair(max_control_frames=50)
    client = cast(HTTP3ClientProtocol, pair.client)
    server = cast(HTTP3ServerProtocol, pair.server)
    stream_id = client.get_available_stream_id()
    client.submit_headers(stream_id, REQUEST, end_stream=True)
    pair.transfer()
    server.submit_headers(stream_id, [(b":status", b"200")])
    for _ in range(200):
        server.submit_data(stream_id, b"x")
    pair.transfer()
    closed = [e for e in pair.client_events() if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in closed] == [H3_EXCESSIVE_LOAD]


def test_max_control_frames_is_validated() -> None:
    """A flood budget below one is refused with a clear error."""
    for factory in (HTTP3ServerFactory, HTTP3ClientFactory):
        with pytest.raises(ValueError, match="max_control_frames"):
            factory(max_control_frames=0)


# --- QPACK limits (RFC 9204 §2.1.2, §3.2.3, §5) ------------------------------------------

SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0x1
SETTINGS_QPACK_BLOCKED_STREAMS = 0x7


def _set_capacity(capacity: int) -> bytes:
    """A Set Dynamic Table Capacity instruction (RFC 9204 §4.3.1: 001, 5-bit integer)."""
    if capacity < 31:
        return bytes([0x20 | capacity])
    rest = capacity - 31
    out = bytearray([0x3F])
    while rest >= 128:
        out.append(0x80 | (rest & 0x7F))
        rest >>= 7
    out.append(rest)
    return bytes(out)


#: A header block that needs one insert never sent: its stream blocks (RFC 9204 §2.1.2).
_BLOCKING_HEADERS = encode_frame(FrameType.HEADERS, b"\x02\x00\x80")


@pytest.mark.parametrize(
    ("capacity", "blocked"), [(4096, 16), (0, 0), (1024, 2), (65536, 100)], ids=str
)
def test_qpack_settings_are_advertised(capacity: int, blocked: int) -> None:
    """RFC 9204 §5: both sides send the factories' QPACK limits in SETTINGS."""
    options = {}
    if (capacity, blocked) != (4096, 16):  # the defaults
        options = {"qpack_max_table_capacity": capacity, "qpack_blocked_streams": blocked}
    pair = make_quic_pair(**options)
    for receiver in (pair.client, pair.server):
        received = receiver._h3._received_settings  # type: ignore[attr-defined]
        assert received is not None
        assert received[SETTINGS_QPACK_MAX_TABLE_CAPACITY] == capacity
        assert received[SETTINGS_QPACK_BLOCKED_STREAMS] == blocked


@pytest.mark.parametrize("capacity", [0, 300, 4096])
def test_exchange_under_small_qpack_limits(capacity: int) -> None:
    """Encoders keep to the advertised table: requests and responses still decode."""
    pair = make_quic_pair(qpack_max_table_capacity=capacity, qpack_blocked_streams=1)
    headers = [*REQUEST, (b"x-long", b"v" * 200), (b"x-other", b"w" * 50)]
    for _ in range(3):
        stream_id = pair.client.get_available_stream_id()
        pair.client.submit_headers(stream_id, headers, end_stream=True)
        pair.transfer()
        received = [e for e in pair.server_events() if isinstance(e, HeadersReceived)]
        assert received == [HeadersReceived(stream_id=stream_id, headers=headers, end_stream=True)]
        pair.server.submit_headers(stream_id, [(b":status", b"204"), *headers[4:]], True)
        pair.transfer()
        answers = [e for e in pair.client_events() if isinstance(e, HeadersReceived)]
        assert [dict(e.headers)[b"x-long"] for e in answers] == [b"v" * 200]


@pytest.mark.parametrize("blocked", [0, 2])
def test_blocked_streams_within_the_limit(blocked: int) -> None:
    """RFC 9204 §2.1.2: up to SETTINGS_QPACK_BLOCKED_STREAMS streams may block."""
    client = connect(qpack_blocked_streams=blocked)
    client.open_control()
    for _ in range(blocked):
        client.request_stream(_BLOCKING_HEADERS, end_stream=False)
    client.transfer()
    assert client.closed_code is None


@pytest.mark.parametrize("blocked", [0, 2])
def test_blocked_streams_past_the_limit(blocked: int) -> None:
    """RFC 9204 §2.1.2: one blocked stream more than advertised is QPACK_DECOMPRESSION_FAILED."""
    client = connect(qpack_blocked_streams=blocked)
    client.open_control()
    for _ in range(blocked + 1):
        client.request_stream(_BLOCKING_HEADERS, end_stream=False)
    client.transfer()
    assert client.closed_code == QPACK_DECOMPRESSION_FAILED
    terminated = [e for e in client.server_events if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in terminated] == [QPACK_DECOMPRESSION_FAILED]


@pytest.mark.parametrize(("limit", "capacity"), [(1024, 1024), (4096, 4096), (0, 0)])
def test_table_capacity_within_the_limit(limit: int, capacity: int) -> None:
    """RFC 9204 §3.2.3: an encoder may set any capacity up to the advertised maximum."""
    client = connect(qpack_max_table_capacity=limit)
    client.open_control()
    client.uni_stream(StreamType.QPACK_ENCODER, _set_capacity(capacity))
    stream_id = client.request_stream(headers_frame(REQUEST))
    client.transfer()
    assert client.closed_code is None
    assert HeadersReceived(stream_id=stream_id, headers=REQUEST, end_stream=True) in (
        client.server_events
    )


@pytest.mark.parametrize(("limit", "capacity"), [(1024, 1025), (4096, 65536), (0, 1)])
def test_table_capacity_past_the_limit(limit: int, capacity: int) -> None:
    """RFC 9204 §4.3.1: a capacity above the maximum is a QPACK_ENCODER_STREAM_ERROR."""
    client = connect(qpack_max_table_capacity=limit)
    client.open_control()
    client.uni_stream(StreamType.QPACK_ENCODER, _set_capacity(capacity))
    client.transfer()
    assert client.closed_code == QPACK_ENCODER_STREAM_ERROR


@pytest.mark.parametrize(
    "options",
    [
        {"qpack_max_table_capacity": -1},
        {"qpack_max_table_capacity": 2**30},
        {"qpack_blocked_streams": -1},
        {"qpack_blocked_streams": 2**16},
    ],
    ids=str,
)
def test_qpack_options_are_validated(options: dict[str, Any]) -> None:
    """Out-of-range QPACK options are refused at once, naming the option."""
    (name,) = options
    for factory in (HTTP3ServerFactory, HTTP3ClientFactory):
        with pytest.raises(ValueError, match=name):
            factory(**options)


# --- Our own failures (RFC 9000 §10.2) ------------------------------------------------

H3_INTERNAL_ERROR = 0x102


def _break_once(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``method`` so that its first call raises, as a bug in hface or aioquic would."""
    calls: list[None] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls.append(None)
        if len(calls) == 1:
            raise RuntimeError("injected failure")
        return method(*args, **kwargs)

    return broken


@pytest.mark.parametrize("where", ["receiving", "sending", "timer"])
def test_internal_error_is_sent_to_the_peer(where: str) -> None:
    """RFC 9000 §10.2: a connection we end on an internal error is closed with the peer.

    The peer gets CONNECTION_CLOSE with H3_INTERNAL_ERROR at once, not at
    its idle timeout, and the server reports the same code after sending it.
    """
    pair = make_quic_pair()
    server = cast(HTTP3ServerProtocol, pair.server)
    quic = server._quic
    assert quic is not None
    if where == "receiving":
        quic.receive_datagram = _break_once(quic.receive_datagram)  # type: ignore[method-assign]
    elif where == "sending":
        quic.datagrams_to_send = _break_once(quic.datagrams_to_send)  # type: ignore[method-assign]
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, REQUEST, end_stream=True)
    if where == "timer":
        # The request arrives; the server's next timer (its ACK delay) fails.
        for data, _ in pair.client.datagrams_to_send():
            server.datagram_received((data, CLIENT_ADDRESS))
        timer = server.get_timer()
        assert timer is not None
        assert timer < pair.now + 1
        quic.handle_timer = _break_once(quic.handle_timer)  # type: ignore[method-assign]
        pair.now = timer
        server.clock(timer)
    start = pair.now
    pair.transfer()
    assert pair.now - start < 1  # promptly, not at an idle timeout
    client_closed = [e for e in pair.client_events() if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in client_closed] == [H3_INTERNAL_ERROR]
    server_closed = [e for e in pair.server_events() if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in server_closed] == [H3_INTERNAL_ERROR]
    assert "injected failure" in str(server_closed[0].message)
    assert server.has_expired()
