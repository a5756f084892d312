"""What an ASGI response is made of: checked fields, statuses and the default headers.

An application's header names and values are checked before they go on the
wire (:func:`check_fields`): on HTTP/1.1 a CR or LF in a value could
inject other fields. The names applications use again and again are
remembered once checked. :class:`DefaultHeaders` holds, per HTTP version,
the ``server``, ``date`` and ``alt-svc`` fields a response gets unless the
application sets them; the server makes them once, when it starts
(:class:`~hface.server._asgi_settings.ASGISettings`).
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from typing import Any

#: A field name (RFC 9110 §5.1: a token), lowercase as HTTP/2 and HTTP/3 want it.
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
#: A field value (RFC 9110 §5.5): no control characters but HTAB, so no CR or LF.
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")

#: Field names as applications spell them, mapped to their checked lowercase
#: form: applications send the same few names on every response.
_CHECKED_NAMES: dict[bytes, bytes] = {}
#: At most this many names are remembered (an application that makes names
#: up must not grow the cache without bound).
_MAX_CHECKED_NAMES = 512


def check_fields(fields: Any, what: str) -> list[tuple[bytes, bytes]]:
    """The application's ``(name, value)`` pairs as lowercase bytes, checked.

    :raises RuntimeError: for a name or value that could not go on the wire
        as it is (which on HTTP/1.1 could inject other fields).
    """
    checked: list[tuple[bytes, bytes]] = []
    names = _CHECKED_NAMES
    try:
        for raw_name, value in fields:
            is_bytes = type(raw_name) is bytes
            name = names.get(raw_name) if is_bytes else None
            if name is None:
                name = bytes(raw_name).lower()
                if not _FIELD_NAME.fullmatch(name):
                    raise RuntimeError(f"invalid {what} name {name!r}")
                if is_bytes and len(names) < _MAX_CHECKED_NAMES:
                    names[raw_name] = name
            if type(value) is not bytes:
                value = bytes(value)
            if not _FIELD_VALUE.fullmatch(value):
                raise RuntimeError(f"invalid {what} value {value!r} for {name!r}")
            checked.append((name, value))
    except (TypeError, ValueError) as error:
        raise RuntimeError(f"invalid {what}s {fields!r}: {error}") from None
    return checked


class DefaultHeaders:
    """The fields every response on one HTTP version gets unless the application sets them.

    ``server``, ``date`` (formatted once a second) and ``alt-svc``, as bytes.
    """

    __slots__ = ("alt_svc", "date", "http_version", "server")

    def __init__(
        self, http_version: str, *, server: bytes | None, date: bool, alt_svc: bytes | None
    ) -> None:
        #: The HTTP version (``"1.1"``, ``"2"``, ``"3"``).
        self.http_version = http_version
        #: The ``server`` value, or None for none.
        self.server = server
        #: Whether to add ``date``.
        self.date = date
        #: The ``alt-svc`` value, or None for none.
        self.alt_svc = alt_svc

    def add_to(self, headers: list[tuple[bytes, bytes]], names: set[bytes]) -> None:
        """Append the defaults to ``headers`` whose names are not in ``names``."""
        if self.server is not None and b"server" not in names:
            headers.append((b"server", self.server))
        if self.date and b"date" not in names:
            headers.append((b"date", _date_header()))
        if self.alt_svc is not None and b"alt-svc" not in names:
            headers.append((b"alt-svc", self.alt_svc))


def status_bytes(status: int) -> bytes:
    """``status`` as the bytes of a ``:status`` field."""
    return _STATUS_BYTES.get(status) or str(status).encode()


#: ``:status`` values, encoded once.
_STATUS_BYTES = {status: str(status).encode() for status in range(100, 1000)}

_date_cache: tuple[int, bytes] = (0, b"")


def _date_header() -> bytes:
    """The ``date`` header value for now, formatted once a second."""
    global _date_cache
    now = int(time.time())
    second, value = _date_cache
    if second != now:
        value = formatdate(now, usegmt=True).encode()
        _date_cache = (now, value)
    return value
