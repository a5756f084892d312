"""Events are immutable values, compared by value, with a readable repr."""

from __future__ import annotations

import dataclasses

import pytest

from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoawayReceived,
    HeadersReceived,
    StreamEvent,
    StreamReset,
    StreamResetReceived,
    StreamResetSent,
)


def test_events_compare_by_value() -> None:
    headers = [(b":status", b"200")]
    assert HeadersReceived(stream_id=1, headers=headers) == HeadersReceived(
        stream_id=1, headers=[(b":status", b"200")], end_stream=False
    )
    assert DataReceived(stream_id=1, data=b"x") != DataReceived(stream_id=3, data=b"x")
    received: object = StreamResetReceived(stream_id=1)
    assert received != StreamResetSent(stream_id=1)


def test_events_are_immutable() -> None:
    event = DataReceived(stream_id=1, data=b"x", end_stream=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = b"y"  # type: ignore[misc]  # the point of the test


def test_events_take_keywords_only() -> None:
    with pytest.raises(TypeError):
        DataReceived(1, b"x")  # type: ignore[call-arg]  # the point of the test


def test_repr_names_the_fields() -> None:
    event = GoawayReceived(last_stream_id=7, error_code=0)
    assert repr(event) == "GoawayReceived(last_stream_id=7, error_code=0)"


def test_defaults() -> None:
    assert ConnectionTerminated() == ConnectionTerminated(error_code=0, message=None)
    assert StreamReset(stream_id=5).error_code == 0


def test_hierarchy() -> None:
    stream_events: list[type[Event]] = [
        HeadersReceived,
        DataReceived,
        StreamResetReceived,
        StreamResetSent,
    ]
    for cls in stream_events:
        assert issubclass(cls, StreamEvent)
    for other in (ConnectionTerminated, GoawayReceived, StreamEvent):
        assert issubclass(other, Event)
    assert issubclass(StreamResetSent, StreamReset)
