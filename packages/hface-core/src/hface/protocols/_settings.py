"""Typed, frozen settings of the protocol layer: the limits every version shares.

Theory of operation: a protocol's options are values, not keyword lists.
:class:`ProtocolLimits` holds the limits every HTTP version has (header
size, concurrent streams, header table size, the reset and flood budgets);
each version adds its own settings beside it
(:class:`~hface.protocols.http2.HTTP2Settings`,
:class:`~hface.protocols.http3.HTTP3Settings`). Each is a frozen dataclass
that checks its fields once, when it is made (``__post_init__``): a value
that exists is valid, and every layer below passes it on as one object. A
factory holds one of each and gives them to every protocol it makes;
:meth:`HTTPOverTCPFactory.with_limits
<hface.protocols.HTTPOverTCPFactory.with_limits>` makes an equivalent
factory with other limits, without knowing its class (a server applies its
:class:`~hface.server.ServerLimits` that way).

The ranges of :class:`ProtocolLimits` are those every version accepts
(HTTP/2's 32-bit SETTINGS values, the QPACK tables hface supports), so any
limits fit any factory.

Factories also take each field as a keyword argument of the name their
version gives it (``HTTP2ServerFactory(max_header_list_size=...)``,
``HTTP3ServerFactory(qpack_max_table_capacity=...)``):
:func:`with_options` applies those to a settings object, checking each
value under the name it was given as.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeVar, cast

#: Checks one value; raises ``ValueError`` naming it by the label given.
Check = Callable[[str, object], None]


def _show(number: float) -> str:
    """``2**32-1`` rather than 4294967295, as people write the bounds of the RFCs."""
    if isinstance(number, int) and number >= 2**14:
        for exponent, offset in ((number.bit_length(), "-1"), (number.bit_length() - 1, "")):
            if number == 2**exponent - (1 if offset else 0):
                return f"2**{exponent}{offset}"
    return str(number)


def int_between(least: int, most: int) -> Check:
    """A check that a value is an integer from ``least`` to ``most`` (not a bool)."""

    def check(label: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            raise ValueError(
                f"{label} must be between {_show(least)} and {_show(most)}, not {value!r}"
            )

    return check


def positive(label: str, value: object) -> None:
    """Check that a value is a positive number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{label} must be positive, not {value!r}")


class Settings:
    """The base of the settings dataclasses: fields checked by :attr:`CHECKS` (internal)."""

    __slots__ = ()

    #: The check of each field, by name.
    CHECKS: ClassVar[Mapping[str, Check]] = {}

    def __post_init__(self) -> None:
        for name, check in self.CHECKS.items():
            check(name, getattr(self, name))
        self._check_together()

    def _check_together(self) -> None:
        """Check the fields that bound one another (after each was checked alone)."""


_S = TypeVar("_S", bound=Settings)


def with_options(settings: _S, options: Mapping[str, object], names: Mapping[str, str]) -> _S:
    """Return ``settings`` with the options that are not None replaced.

    :param options: values by the keyword they were given as.
    :param names: the field of each keyword named otherwise than its field.
    :raises ValueError: naming the keyword, if a value is out of range.
    """
    changes: dict[str, Any] = {}
    for keyword, value in options.items():
        if value is None:
            continue
        field = names.get(keyword, keyword)
        settings.CHECKS[field](keyword, value)
        changes[field] = value
    if not changes:
        return settings
    replaced: _S = dataclasses.replace(cast(Any, settings), **changes)
    return replaced


#: The ranges every version accepts: HTTP/2 SETTINGS values are 32-bit
#: (RFC 9113 §6.5.2), stream counts 31-bit; hface's QPACK tables stop at
#: 2**30-1 bytes (ls-qpack's bound), and a table of 0 bytes is none.
_LIMIT_CHECKS: Final[Mapping[str, Check]] = {
    "max_header_size": int_between(1, 2**32 - 1),
    "max_concurrent_streams": int_between(1, 2**31 - 1),
    "header_table_size": int_between(0, 2**30 - 1),
    "max_reset_streams": int_between(1, 2**31 - 1),
    "max_control_frames": int_between(1, 2**31 - 1),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolLimits(Settings):
    """The limits every HTTP version puts on the peer; each maps to its version's mechanism.

    HTTP/1.1 has only :attr:`max_header_size`. All are checked when made.

    :raises ValueError: if a limit is out of the range every version accepts.
    """

    CHECKS: ClassVar[Mapping[str, Check]] = _LIMIT_CHECKS

    max_header_size: int = 64 * 1024
    """The largest header block accepted from the peer, in bytes; default 64 KiB.

    HTTP/1.1: the start line plus the header block (h11's
    ``max_incomplete_event_size``; its factories default to 16 KiB), a
    larger request gets 431. HTTP/2: the decoded list, 32 bytes counted per
    field (SETTINGS_MAX_HEADER_LIST_SIZE, RFC 9113 §6.5.2, which also bounds
    the HPACK bomb), GOAWAY beyond it. HTTP/3: the same count
    (SETTINGS_MAX_FIELD_SECTION_SIZE, RFC 9114 §4.2.2); a server answers a
    larger request with 431, a client resets the stream. From 1 to 2**32-1.
    """

    max_concurrent_streams: int = 100
    """Streams the peer may have open at once (HTTP/2 and HTTP/3); default 100.

    SETTINGS_MAX_CONCURRENT_STREAMS on HTTP/2 (RFC 9113 §5.1.2: one more is
    refused with RST_STREAM(REFUSED_STREAM)); QUIC's
    ``initial_max_streams_bidi`` on HTTP/3 (RFC 9000 §4.6: one more is a
    STREAM_LIMIT_ERROR). From 1 to 2**31-1.
    """

    header_table_size: int = 4096
    """Bytes of the dynamic table the peer's header encoder may use; default 4,096.

    HPACK's SETTINGS_HEADER_TABLE_SIZE on HTTP/2 (RFC 7541 §4.2; a larger
    table is a COMPRESSION_ERROR), QPACK's SETTINGS_QPACK_MAX_TABLE_CAPACITY
    on HTTP/3 (RFC 9204 §3.2.3; a larger one a QPACK_ENCODER_STREAM_ERROR).
    0 turns the dynamic table off. From 0 to 2**30-1.
    """

    max_reset_streams: int = 200
    """Streams that may be reset before they complete, beyond one per completed stream.

    By the peer (the rapid reset attack, CVE-2023-44487) or, on HTTP/2, by
    this side for the peer's errors; past it the peer gets
    GOAWAY(ENHANCE_YOUR_CALM) on HTTP/2 and H3_EXCESSIVE_LOAD on HTTP/3 (an
    HTTP/3 client does not count). Default 200; from 1 to 2**31-1.
    """

    max_control_frames: int = 1000
    """The flood budget (RFC 9113 §10.5, RFC 9114 §10.5); default 1,000.

    How many frames (and, on HTTP/3, unidirectional streams) that carry no
    request and no data the peer may send beyond one per request, response
    or DATA frame it sent: control frames, frames of unknown types, empty or
    tiny DATA frames. The whole budget also comes back every 10 seconds
    (on HTTP/2 when the protocol is told the time: the connection layer does
    it), so that a long-lived connection sending the odd PING lives on.
    Past it the peer gets GOAWAY(ENHANCE_YOUR_CALM) on HTTP/2 and
    H3_EXCESSIVE_LOAD on HTTP/3. From 1 to 2**31-1.
    """
