"""Which new QUIC connections a listener takes (Retry, the cap, floods), on a clock of the test's.

:class:`HandshakeAdmission` is pure: the tests drive it with Initials and
time, as the listener does, and read its decisions and its two log lines.
The listener's use of it over real sockets is in ``test_quic_retry.py``.
"""

from __future__ import annotations

import logging

import pytest

from hface.networking import QUICHandshakeLimits, QUICRetry
from hface.networking._quic_admission import (
    FLOOD_WINDOW,
    Admission,
    FloodState,
    HandshakeAdmission,
)

ACCEPT, RETRY, DROP = Admission.ACCEPT, Admission.RETRY, Admission.DROP


def admission(**limits: object) -> HandshakeAdmission:
    return HandshakeAdmission(QUICHandshakeLimits(**limits), name="127.0.0.1:443", now=0.0)  # type: ignore[arg-type]


def open_handshakes(admission: HandshakeAdmission, count: int, *, now: float = 0.0) -> None:
    """``count`` Initials of unvalidated addresses, each accepted and left half-open."""
    for _ in range(count):
        assert admission.decide(validated=False, now=now) is ACCEPT
        admission.opened()


def state_of(admission: HandshakeAdmission) -> FloodState:
    """Its state, read afresh (mypy would keep what an earlier assert narrowed it to)."""
    return admission.state


def flood_ended(admission: HandshakeAdmission) -> bool:
    return admission.flood_ended


def flood_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "QUIC handshake flood" in r.getMessage()]


def test_auto_answers_with_retry_from_the_threshold(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hface.networking")
    gate = admission(retry_threshold=3)
    open_handshakes(gate, 3)
    assert gate.half_open == 3
    assert flood_lines(caplog) == []
    assert gate.decide(validated=False, now=0.1) is RETRY
    assert gate.decide(validated=False, now=0.2) is RETRY
    assert state_of(gate) is FloodState.FLOOD
    # A client that returned its token is served.
    assert gate.decide(validated=True, now=0.3) is ACCEPT
    [line] = flood_lines(caplog)  # one line for the flood, not one per Initial
    assert line == (
        "QUIC handshake flood on 127.0.0.1:443: 3 handshakes half-open;"
        " new clients must now prove their address with a Retry"
    )
    assert all(record.levelno == logging.INFO for record in caplog.records)


def test_below_the_threshold_no_client_waits_for_a_retry() -> None:
    gate = admission(retry_threshold=3)
    for _ in range(20):
        assert gate.decide(validated=False, now=0.0) is ACCEPT
        gate.opened()
        gate.settled(completed=True)
    assert state_of(gate) is FloodState.CALM


def test_always_answers_every_unvalidated_client_with_retry() -> None:
    gate = admission(retry=QUICRetry.ALWAYS)
    assert gate.decide(validated=False, now=0.0) is RETRY
    assert gate.decide(validated=True, now=0.0) is ACCEPT
    assert state_of(gate) is FloodState.CALM  # routine, not a flood


@pytest.mark.parametrize("retry", list(QUICRetry), ids=lambda retry: retry.value)
def test_the_cap_drops_even_validated_clients(retry: QUICRetry) -> None:
    gate = admission(retry=retry, retry_threshold=2, max_half_open=4)
    for _ in range(4):
        assert gate.decide(validated=True, now=0.0) is ACCEPT
        gate.opened()
    assert gate.decide(validated=True, now=0.0) is DROP
    expected = DROP if retry is QUICRetry.NEVER else RETRY
    assert gate.decide(validated=False, now=0.0) is expected
    gate.settled(completed=True)
    assert gate.decide(validated=True, now=0.0) is ACCEPT


def test_never_accepts_up_to_the_cap_then_drops(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hface.networking")
    gate = admission(retry=QUICRetry.NEVER, retry_threshold=2, max_half_open=5)
    open_handshakes(gate, 5)
    assert gate.decide(validated=False, now=0.0) is DROP
    assert gate.half_open == 5
    assert flood_lines(caplog) == [
        "QUIC handshake flood on 127.0.0.1:443: 2 handshakes half-open;"
        " Retry is off: beyond 5, they are dropped"
    ]


def test_a_flood_ends_once_a_quiet_window_has_passed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hface.networking")
    gate = admission(retry_threshold=4)
    open_handshakes(gate, 4)
    for _ in range(100):
        assert gate.decide(validated=False, now=1.0) is RETRY
    for _ in range(4):
        gate.settled(completed=False)  # the spoofed handshakes time out
    gate.tick(FLOOD_WINDOW + 0.1)  # the window of the flood: not quiet
    assert state_of(gate) is FloodState.FLOOD
    assert gate.decide(validated=False, now=FLOOD_WINDOW + 1) is RETRY  # still on
    assert not flood_ended(gate)
    gate.tick(2 * FLOOD_WINDOW + 0.1)  # a window with one Initial: quiet
    assert state_of(gate) is FloodState.CALM
    assert flood_ended(gate)
    assert flood_lines(caplog)[-1] == (
        "QUIC handshake flood on 127.0.0.1:443 over after 19 s: 101 Initials answered"
        " with Retry, 0 dropped, 0 tokens refused, 4 half-open handshakes abandoned"
    )
    assert gate.decide(validated=False, now=2 * FLOOD_WINDOW + 1) is ACCEPT


def test_legitimate_clients_returning_tokens_do_not_prolong_a_flood() -> None:
    """Retried clients that come back are no flood: their tokens balance their Initials."""
    gate = admission(retry_threshold=4)
    open_handshakes(gate, 4)
    gate.decide(validated=False, now=1.0)
    for _ in range(4):
        gate.settled(completed=False)
    gate.tick(FLOOD_WINDOW + 0.1)
    now = FLOOD_WINDOW + 1
    for _ in range(50):  # a busy server: each client gets a Retry and returns
        assert gate.decide(validated=False, now=now) is RETRY
        assert gate.decide(validated=True, now=now) is ACCEPT
        gate.opened()
        gate.settled(completed=True)
    gate.tick(2 * FLOOD_WINDOW + 0.1)
    assert state_of(gate) is FloodState.CALM


def test_a_flood_that_goes_on_keeps_retry_on() -> None:
    gate = admission(retry_threshold=4)
    open_handshakes(gate, 4)
    for window in range(1, 6):
        for _ in range(10):  # spoofed: never validated
            assert gate.decide(validated=False, now=window * FLOOD_WINDOW - 1) is RETRY
        gate.tick(window * FLOOD_WINDOW + 0.1)
        assert state_of(gate) is FloodState.FLOOD


def test_refused_tokens_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hface.networking")
    gate = admission(retry_threshold=1)
    open_handshakes(gate, 1)
    gate.decide(validated=False, now=0.0)
    gate.token_refused()
    gate.token_refused()
    gate.settled(completed=True)
    gate.tick(2 * FLOOD_WINDOW + 0.1)
    assert ", 2 tokens refused," in flood_lines(caplog)[-1]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"retry_threshold": 0}, "retry_threshold must be a positive integer"),
        ({"max_half_open": -1}, "max_half_open must be a positive integer"),
        ({"max_half_open": True}, "max_half_open must be a positive integer"),
        ({"retry_token_lifetime": 0}, "retry_token_lifetime must be positive"),
        ({"retry_token_lifetime": float("nan")}, "retry_token_lifetime must be positive"),
        ({"retry": "auto"}, "retry must be a QUICRetry"),
    ],
    ids=str,
)
def test_out_of_range_limits_are_refused(limits: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QUICHandshakeLimits(**limits)  # type: ignore[arg-type]  # each field, once wrong
