"""Which new QUIC connections a listener takes: Retry, and a cap on half-open handshakes.

Theory of operation
===================

Every Initial packet that opens a connection costs the server a TLS
signature and the state of a connection (about 100 KiB with aioquic),
kept until the handshake completes or times out, for an address that has
not yet shown it can receive. Spoofed Initials never complete: a flood of
them fills memory, the CPU and the log. Two defences, decided per Initial
by :class:`HandshakeAdmission` (pure: the listener passes the time in):

- **Retry** (RFC 9000 §8.1.2): instead of a connection, a Retry packet,
  stateless and smaller than the Initial, carrying a token
  (:class:`hface.protocols.http3.RetryTokens`). A client at its address
  sends its Initial again with the token; a spoofed one never does. A
  valid token means a *validated* address. Retry costs a legitimate client
  one round trip, so by default (:attr:`QUICRetry.AUTO`) it is used only
  while a flood lasts: from the moment :attr:`~QUICHandshakeLimits.retry_threshold`
  handshakes are half-open. :attr:`QUICRetry.ALWAYS` validates every
  address, :attr:`QUICRetry.NEVER` none.
- **A cap** (:attr:`~QUICHandshakeLimits.max_half_open`): beyond it, new
  Initials get nothing, validated or not; the memory of half-open
  handshakes is bounded even with Retry off, or against clients that do
  return their tokens.

A handshake is *half-open* from the Initial that opens its connection until
it completes (the connection layer says so) or its connection ends.

**Floods.** A flood starts when a new Initial finds the threshold of
half-open handshakes reached, or is dropped at the cap; it is logged once,
at INFO. In AUTO mode, every Initial of an unvalidated address gets a
Retry while it lasts, even once the half-open handshakes are fewer than
the threshold again, so that a steady flood does not get a new batch of
connections each time the old ones time out. It ends at the end of a
:data:`FLOOD_WINDOW` in which nothing was dropped, after which fewer than
half the threshold of handshakes are half-open, and in which the Initials
without a valid token outnumbered the valid tokens returned by less than
half the threshold: legitimate clients return their tokens, spoofed ones
do not, so that difference estimates the flood (with Retry off, it counts
every new handshake). Its end is logged with what it cost, and
:attr:`HandshakeAdmission.flood_ended` then tells the listener to give the
memory back (see :mod:`._quic`).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Final

logger = logging.getLogger("hface.networking")

#: Seconds over which a flood's end is judged (the default QUIC handshake timeout).
FLOOD_WINDOW: Final = 10.0


class QUICRetry(enum.Enum):
    """When a QUIC listener asks new clients to prove their address with Retry."""

    AUTO = "auto"
    """While a flood lasts: from :attr:`QUICHandshakeLimits.retry_threshold`
    half-open handshakes on (the default)."""

    ALWAYS = "always"
    """For every new connection (one more round trip for each)."""

    NEVER = "never"
    """Never: beyond :attr:`QUICHandshakeLimits.max_half_open`, new
    connections are dropped."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QUICHandshakeLimits:
    """What a QUIC listener allows of handshakes not yet complete (see :class:`QUICRetry`).

    :raises ValueError: if a field is out of range.
    """

    retry: QUICRetry = QUICRetry.AUTO
    """When new clients must prove their address with a Retry (RFC 9000 §8.1.2)."""

    retry_threshold: int = 100
    """Half-open handshakes from which :attr:`QUICRetry.AUTO` answers new
    Initials with Retry: a flood (a legitimate load rarely has so many)."""

    max_half_open: int = 1000
    """Half-open handshakes at most (about 100 KiB each); beyond, new
    Initials are dropped, validated or not."""

    retry_token_lifetime: float = 10.0
    """Seconds a Retry token is valid (a client returns it after one round trip)."""

    def __post_init__(self) -> None:
        if not isinstance(self.retry, QUICRetry):
            raise ValueError(f"retry must be a QUICRetry, not {self.retry!r}")
        for name in ("retry_threshold", "max_half_open"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not 0 < self.retry_token_lifetime < float("inf"):
            raise ValueError(
                f"retry_token_lifetime must be positive seconds, not {self.retry_token_lifetime!r}"
            )


class Admission(enum.Enum):
    """What a listener does with a new connection's Initial (internal)."""

    ACCEPT = "accept"
    RETRY = "retry"
    DROP = "drop"


class FloodState(enum.Enum):
    """Whether a listener is under a handshake flood (internal)."""

    CALM = "calm"
    FLOOD = "flood"


@dataclass(slots=True)
class _Counts:
    """Initials seen over a window, or what a whole flood cost."""

    unvalidated: int = 0
    validated: int = 0
    retried: int = 0
    dropped: int = 0
    refused_tokens: int = 0
    abandoned: int = 0


class HandshakeAdmission:
    """Decides what becomes of each new Initial, and keeps count (internal; see the module).

    :param limits: the limits to keep.
    :param name: the listener, in log lines (its address).
    :param now: the current time, in seconds (any monotonic clock, always the same).
    """

    def __init__(self, limits: QUICHandshakeLimits, *, name: str, now: float) -> None:
        self.limits = limits
        self.name = name
        #: Handshakes begun (:meth:`opened`) and not yet settled.
        self.half_open = 0
        self.state = FloodState.CALM
        #: True once a flood has ended, until the listener has taken note.
        self.flood_ended = False
        self._window_end = now + FLOOD_WINDOW
        self._window = _Counts()
        self._flood = _Counts()
        self._flood_start = now

    def decide(self, *, validated: bool, now: float) -> Admission:
        """What to do with a new connection's Initial (its address ``validated`` by a token)."""
        self.tick(now)
        limits = self.limits
        window = self._window
        if self.state is FloodState.CALM and self.half_open >= limits.retry_threshold:
            self._start_flood(now)
        if validated:
            window.validated += 1
        else:
            window.unvalidated += 1
            retry = limits.retry
            if retry is QUICRetry.ALWAYS or (
                retry is QUICRetry.AUTO and self.state is FloodState.FLOOD
            ):
                self._flood.retried += 1
                return Admission.RETRY
        if self.half_open >= limits.max_half_open:
            self._start_flood(now)
            window.dropped += 1
            self._flood.dropped += 1
            return Admission.DROP
        return Admission.ACCEPT

    def opened(self) -> None:
        """A handshake began: an accepted Initial opened a connection."""
        self.half_open += 1

    def settled(self, *, completed: bool) -> None:
        """A half-open handshake completed, or its connection ended (``completed=False``)."""
        self.half_open -= 1
        if not completed and self.state is FloodState.FLOOD:
            self._flood.abandoned += 1

    def token_refused(self) -> None:
        """A Retry token failed validation (forged, expired, from another address)."""
        self._window.refused_tokens += 1
        self._flood.refused_tokens += 1

    def tick(self, now: float) -> None:
        """Judge the windows that ended by ``now`` (see the module docstring)."""
        if now < self._window_end:
            return
        if self.state is FloodState.FLOOD and self._flood_over():
            self._end_flood(now)
        self._window = _Counts()
        # At least one whole window passed without an Initial: judged as such.
        quiet = now >= self._window_end + FLOOD_WINDOW
        if quiet and self.state is FloodState.FLOOD and self._flood_over():
            self._end_flood(now)
        windows = (now - self._window_end) // FLOOD_WINDOW + 1
        self._window_end += windows * FLOOD_WINDOW

    # --- internals ------------------------------------------------------------------

    def _flood_over(self) -> bool:
        window = self._window
        calm = self.limits.retry_threshold / 2
        return (
            not window.dropped
            and self.half_open < calm
            and window.unvalidated - window.validated < calm
        )

    def _start_flood(self, now: float) -> None:
        if self.state is FloodState.FLOOD:
            return
        self.state = FloodState.FLOOD
        self._flood = _Counts()
        self._flood_start = now
        limits = self.limits
        what = {
            QUICRetry.AUTO: "new clients must now prove their address with a Retry",
            QUICRetry.ALWAYS: "new clients prove their address with a Retry",
            QUICRetry.NEVER: f"Retry is off: beyond {limits.max_half_open}, they are dropped",
        }[limits.retry]
        logger.info(
            "QUIC handshake flood on %s: %d handshakes half-open; %s",
            self.name,
            self.half_open,
            what,
        )

    def _end_flood(self, now: float) -> None:
        self.state = FloodState.CALM
        self.flood_ended = True
        flood = self._flood
        logger.info(
            "QUIC handshake flood on %s over after %.0f s: %d Initials answered with Retry,"
            " %d dropped, %d tokens refused, %d half-open handshakes abandoned",
            self.name,
            now - self._flood_start,
            flood.retried,
            flood.dropped,
            flood.refused_tokens,
            flood.abandoned,
        )
