"""``hface client --retry``: which failures are worth another attempt, and when it comes.

curl's rules. An attempt is retried, while retries are left and
``--retry-max-time`` (from the first attempt) has not passed, if it:

- timed out, or did not resolve the name of the server or of the proxy;
- was refused a connection, with ``--retry-connrefused``;
- got one of the transient statuses 408, 429, 500, 502, 503 and 504 (with
  or without ``--fail``);
- failed in any way, with ``--retry-all-errors``.

The next attempt comes after 1 s, then twice as long each time (at most
600 s), or after ``--retry-delay`` each time; a transient status's
``Retry-After`` (seconds, or an HTTP date) says how long instead, unless
that would pass ``--retry-max-time``. Each retry is announced on stderr
(``Warning: Problem: HTTP error. Will retry in 1 seconds. 1 retries
left.``), and a file the attempt was writing starts again.
"""

from __future__ import annotations

import email.utils
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import anyio

from hface.client import Response

from ._errors import CommandError

#: The statuses ``--retry`` retries (curl's transient HTTP errors).
RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
#: The exit codes retried without more options: a timeout, a name (or the
#: proxy's) that did not resolve.
_RETRY_CODES: Final = frozenset({28, 6, 5})
#: curl's longest wait between retries.
_RETRY_SLEEP_MAX: Final = 600.0


class Problem(enum.Enum):
    """What makes an attempt worth another; the value is curl's word for it."""

    TIMEOUT = "timeout"
    CONNECTION_REFUSED = "connection refused"
    HTTP_ERROR = "HTTP error"
    ANY_ERROR = "(retrying all errors)"


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """``--retry`` and the options that tune it."""

    retries: int = 0
    #: ``--retry-delay``; None: 1 s, doubling each time.
    delay: float | None = None
    max_time: float | None = None
    connrefused: bool = False
    all_errors: bool = False


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: its last status, and the failure to report, if any."""

    status: int = 0
    #: The response's ``Retry-After``, in seconds.
    retry_after: float | None = None
    failure: CommandError | None = None
    #: The exception behind ``failure``, if it was one of the client's.
    error: BaseException | None = None


def transient(policy: RetryPolicy, outcome: Outcome, *, fail: bool) -> Problem | None:
    """What makes ``outcome`` worth another attempt, or None.

    :param fail: ``--fail`` is on (a transient status is then exit 22).
    """
    failure = outcome.failure
    code = 0 if failure is None else failure.code
    if code in _RETRY_CODES:
        return Problem.TIMEOUT
    if code == 7 and policy.connrefused and outcome.error is not None and refused(outcome.error):
        return Problem.CONNECTION_REFUSED
    if (code == 0 or (code == 22 and fail)) and outcome.status in RETRY_STATUSES:
        return Problem.HTTP_ERROR
    if code and policy.all_errors:
        return Problem.ANY_ERROR
    return None


async def retrying(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[Outcome]],
    *,
    rewind: Callable[[], int],
    warn: Callable[[str], None],
    fail: bool,
) -> Outcome:
    """Make attempts until one is not worth another, or none is left; return the last.

    :param rewind: starts the output again; returns the bytes thrown away.
    :param warn: writes a warning (or not, with ``-s``).
    :param fail: ``--fail`` is on.
    """
    left = policy.retries
    sleep = 1.0 if policy.delay is None else policy.delay
    started = time.monotonic()
    while True:
        outcome = await attempt()
        problem = transient(policy, outcome, fail=fail)
        elapsed = time.monotonic() - started
        in_time = policy.max_time is None or elapsed < policy.max_time
        if problem is None or not left or not in_time:
            return outcome
        wait = sleep
        if problem is Problem.HTTP_ERROR and outcome.retry_after:
            wait = outcome.retry_after
            if policy.max_time is not None and elapsed + wait > policy.max_time:
                warn("the Retry-After time would make this command exceed --retry-max-time")
                return outcome
        warn(f"Problem: {problem.value}. Will retry in {wait:g} seconds. {left} retries left.")
        left -= 1
        if policy.delay is None:
            sleep = min(sleep * 2, _RETRY_SLEEP_MAX)
        thrown = rewind()
        if thrown:
            warn(f"Throwing away {thrown} bytes")
        await anyio.sleep(wait)


def retry_after(response: Response) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), if given and in the future."""
    value = response.get_header("retry-after")
    if value is None:
        return None
    text = value.decode("latin-1").strip()
    if text.isdigit():
        return float(text) or None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    seconds = parsed.timestamp() - time.time()
    return seconds if seconds > 0 else None


def refused(error: BaseException) -> bool:
    """Whether a connect failed because the server refused it (ECONNREFUSED)."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, ConnectionRefusedError):
            return True
        current = current.__cause__
    return False
