"""The check of an application's response fields, and its cache of names already checked."""

from __future__ import annotations

import pytest

from hface.server import _asgi_heads
from hface.server._asgi_heads import check_fields as _fields


def test_names_are_lowercased_alike_from_the_cache() -> None:
    fields = [(b"X-Custom-Name", b"1"), (bytearray(b"X-Other"), bytearray(b"2"))]
    first = _fields(fields, "response header")
    again = _fields(fields, "response header")  # the bytes name from the cache now
    assert first == again == [(b"x-custom-name", b"1"), (b"x-other", b"2")]
    assert all(type(name) is bytes and type(value) is bytes for name, value in again)


@pytest.mark.parametrize(
    "fields",
    [
        [(b"bad name", b"1")],
        [(b"x-ok", b"bad\r\nvalue")],
        [("x-str-name", b"1")],
        [(b"x-ok",)],
        [(["x"], b"1")],
    ],
)
def test_invalid_fields_are_refused_every_time(fields: list[tuple[object, ...]]) -> None:
    for _ in range(2):  # not cached as valid by the first refusal
        with pytest.raises(RuntimeError):
            _fields(fields, "response header")


def test_the_cache_of_names_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_asgi_heads, "_CHECKED_NAMES", {})
    many = [(f"x-name-{i}".encode(), b"v") for i in range(_asgi_heads._MAX_CHECKED_NAMES * 2)]
    assert _fields(many, "response header") == many
    assert len(_asgi_heads._CHECKED_NAMES) == _asgi_heads._MAX_CHECKED_NAMES
