"""The HTTP/2 server's own resets: what goes out before them, and what comes after.

- RFC 9113 §8.1: a server may send a complete response, then RST_STREAM
  with NO_ERROR to ask the client to stop sending its request. A NO_ERROR
  reset submitted while the response's end is still held by flow control
  waits for it: the response is never cut short.
- RFC 9113 §5.1: frames that arrive on a stream after we reset it were on
  their way before the peer learnt of the reset, and are ignored. h2 would
  answer each DATA frame with another RST_STREAM, which would spend the reset
  budget (§10.5) of a client that did nothing wrong: a client uploading to
  an endpoint that answers 413 early would be cut off after a few requests.
"""

from __future__ import annotations

import pytest
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, RstStreamFrame, WindowUpdateFrame

from hface.events import ConnectionTerminated, Event, StreamResetSent
from tests.test_protocols.test_http2_conformance import (
    DATA,
    END_STREAM,
    NO_ERROR,
    RESPONSE,
    Peer,
    expect_alive,
    flood,
    frame,
    settings,
    window_update,
)

CANCEL = 0x8
#: SETTINGS_INITIAL_WINDOW_SIZE
INITIAL_WINDOW_SIZE = 0x4


def resets(frames: list[Frame]) -> list[tuple[int, int]]:
    return [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)]


def resets_sent(events: list[Event]) -> list[tuple[int, int]]:
    return [(e.stream_id, e.error_code) for e in events if isinstance(e, StreamResetSent)]


@pytest.mark.parametrize("code", [NO_ERROR, CANCEL], ids=["no_error", "cancel"])
def test_data_on_a_stream_we_reset_is_ignored(code: int) -> None:
    """The rest of an upload after our reset: no RST_STREAM for it, the window credited."""
    peer = Peer(max_reset_streams=10)
    peer.open(1, end_stream=False)
    if code == NO_ERROR:
        peer.server.submit_headers(1, RESPONSE, end_stream=True)  # a complete response first
    peer.server.submit_stream_reset(1, code)
    assert resets(peer.frames()) == [(1, code)]
    assert resets_sent(peer.events()) == [(1, code)]
    # 20,000 frames of 1,000 bytes: 20 MB, far past every window.
    payload = b"u" * 1000
    sent, frames, events = flood(peer, lambda index: frame(DATA, 0, 1, payload), count=20_000)
    assert sent == 20_000
    assert resets(frames) == []
    assert not [f for f in frames if isinstance(f, GoAwayFrame)]
    assert not [e for e in events if isinstance(e, ConnectionTerminated)]
    # The connection window was given back as the data came (none to the stream).
    credit = [f for f in frames if isinstance(f, WindowUpdateFrame)]
    assert {f.stream_id for f in credit} == {0}
    assert sum(f.window_increment for f in credit) >= sent * len(payload) - 65_535
    expect_alive(peer)


def test_data_on_a_stream_the_peer_ended_still_costs_a_reset() -> None:
    """Unchanged: a frame on a stream both sides ended is the peer's error (STREAM_CLOSED)."""
    peer = Peer()
    peer.open(1, end_stream=True)
    peer.server.submit_headers(1, RESPONSE, end_stream=True)
    peer.frames()
    peer.send(frame(DATA, 0, 1, b"late"))
    assert resets(peer.frames()) == [(1, 0x5)]


def held_response(peer: Peer) -> list[Frame]:
    """Stream 1 open, and a 300-byte response whose last 200 bytes and end wait for a window."""
    peer.send(settings((INITIAL_WINDOW_SIZE, 100)))
    peer.open(1, end_stream=False)
    peer.server.submit_headers(1, RESPONSE)
    peer.server.submit_data(1, b"r" * 300, end_stream=True)
    return peer.frames()


def test_a_no_error_reset_waits_for_the_held_end_of_the_response() -> None:
    peer = Peer()
    first = held_response(peer)
    assert sum(len(f.data) for f in first if isinstance(f, DataFrame)) == 100
    peer.server.submit_stream_reset(1, NO_ERROR)
    assert resets(peer.frames()) == []  # not before the response is whole
    assert resets_sent(peer.events()) == []
    peer.send(window_update(1, 1000))
    frames = peer.frames()
    data = [f for f in frames if isinstance(f, DataFrame)]
    assert sum(len(f.data) for f in data) == 200
    assert "END_STREAM" in data[-1].flags
    # The reset comes right behind the response's end.
    assert isinstance(frames[-1], RstStreamFrame)
    assert resets(frames) == [(1, NO_ERROR)]
    assert resets_sent(peer.events()) == [(1, NO_ERROR)]
    # What the client had on its way meanwhile is ignored.
    peer.send(frame(DATA, 0, 1, b"u" * 50))
    expect_alive(peer)


def test_a_held_response_is_not_reset_once_the_request_ends() -> None:
    """The client ended its request before the response drained: nothing to stop."""
    peer = Peer()
    held_response(peer)
    peer.server.submit_stream_reset(1, NO_ERROR)
    peer.send(frame(DATA, END_STREAM, 1, b"the end"))
    peer.events()
    peer.send(window_update(1, 1000))
    frames = peer.frames()
    assert "END_STREAM" in [f for f in frames if isinstance(f, DataFrame)][-1].flags
    assert resets(frames) == []
    assert resets_sent(peer.events()) == []
    expect_alive(peer)


def test_any_other_reset_drops_the_held_data_at_once() -> None:
    peer = Peer()
    held_response(peer)
    peer.server.submit_stream_reset(1, CANCEL)
    assert resets(peer.frames()) == [(1, CANCEL)]
    assert resets_sent(peer.events()) == [(1, CANCEL)]
    peer.send(window_update(1, 1000))
    assert not [f for f in peer.frames() if isinstance(f, DataFrame)]
