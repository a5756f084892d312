"""Fuzzing hface's HTTP/3 server at the frame layer (RFC 9114 §7, RFC 9204).

Arbitrary bytes are written as the data of a request stream, of the
client's control stream (after a valid SETTINGS frame), or of the QPACK
encoder stream of a handshaken server. Whatever the bytes, no exception
escapes the protocol, the exchange ends (it never hangs), and the outcome
is either events or a close with an HTTP/3 or QPACK error code, also
reported as ``ConnectionTerminated``.
"""

from __future__ import annotations

import pytest
from aioquic.h3.connection import StreamType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hface.events import (
    ConnectionTerminated,
    DataReceived,
    GoawayReceived,
    HeadersReceived,
    StreamResetReceived,
)
from tests.helpers.h3_raw import REQUEST, connect, headers_frame, settings_frame

#: HTTP/3 (RFC 9114 §8.1) and QPACK (RFC 9204 §6) error codes.
_H3_CODES = frozenset(range(0x100, 0x111)) | {0x200, 0x201, 0x202}

_FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Frame-shaped inputs reach deeper than uniform bytes: a type, a length and a payload.
_frame = st.tuples(
    st.sampled_from([0x0, 0x1, 0x3, 0x4, 0x5, 0x7, 0xD, 0x2, 0x6, 0x21, 0x40]),
    st.integers(min_value=0, max_value=70),
    st.binary(max_size=64),
).map(lambda f: bytes([f[0], f[1]]) + f[2])
_stream_data = st.one_of(
    st.binary(max_size=2048),
    st.lists(_frame, max_size=8).map(b"".join),
)


def _check_outcome(client_closed: int | None, events: list[object]) -> None:
    terminated = [e for e in events if isinstance(e, ConnectionTerminated)]
    if client_closed is not None:
        assert client_closed in _H3_CODES, hex(client_closed)
        assert [e.error_code for e in terminated] == [client_closed]
    else:
        assert not terminated
    for event in events:
        # A client may send GOAWAY on its control stream (RFC 9114 §5.2).
        assert isinstance(
            event,
            HeadersReceived
            | DataReceived
            | StreamResetReceived
            | GoawayReceived
            | ConnectionTerminated,
        )


@pytest.mark.parametrize("end_stream", [False, True])
@_FUZZ
@given(data=_stream_data)
def test_request_stream_data(data: bytes, end_stream: bool) -> None:
    """Any bytes on a request stream give events, a stream error or a close."""
    client = connect()
    client.open_control()
    client.request_stream(data, end_stream=end_stream)
    client.transfer()
    _check_outcome(client.closed_code, list(client.server_events))


@_FUZZ
@given(data=_stream_data)
def test_control_stream_data(data: bytes) -> None:
    """Any bytes after SETTINGS on the control stream are ignored or close the connection."""
    client = connect()
    client.open_control(settings_frame() + data)
    stream_id = client.request_stream(headers_frame(REQUEST))
    client.transfer()
    _check_outcome(client.closed_code, list(client.server_events))
    if client.closed_code is None:
        # Still usable: the request that followed was received.
        assert any(
            isinstance(e, HeadersReceived) and e.stream_id == stream_id
            for e in client.server_events
        )


@_FUZZ
@given(data=st.binary(max_size=512))
def test_qpack_encoder_stream_data(data: bytes) -> None:
    """Any bytes on the QPACK encoder stream are applied or close the connection."""
    client = connect()
    client.open_control()
    client.uni_stream(StreamType.QPACK_ENCODER, data)
    client.transfer()
    _check_outcome(client.closed_code, list(client.server_events))
