"""The soak's TCP phases (issue 18): silent connections, and a long-lived HTTP/2 connection.

- **Paced PINGs** (:func:`run_paced_pings`, in a thread for the whole soak):
  one HTTP/2 connection holds a long request (``/sleep/60000``, renewed as
  it ends) and sends a PING every ``interval`` seconds, waiting for each
  ACK, as a stream of server-sent events with keep-alive PINGs does. The
  flood budget (1,000 control frames) comes back every 10 seconds, so at
  some 60 PINGs a second a soak of 20 s sends more PINGs than the budget
  and the connection must live on: it passes if every PING was answered
  and no GOAWAY came.
- **Connection flood** (:func:`run_connection_flood`, a phase of its own
  after the soak's attacks): ``count`` TCP connections to the server's
  cleartext endpoint that never send a byte, held for a few seconds, past
  the server's ``--max-connections`` (1,000 by default). Idle connections
  give way to new ones there, so a good HTTP/1.1 request on a new
  connection every quarter of a second must be answered within a second.
  The RSS is read before, at the peak and after (once the silent
  connections are closed and the server has let them go: within 10 MiB of
  before, waited for up to 20 s). The flood runs twice and the second is
  judged: a server's first flood leaves it larger for good (its numbers
  are printed too), the next ones do not.

Both need file descriptors: :func:`raise_file_limit` raises the soft limit
before the server starts (it inherits it).
"""

from __future__ import annotations

import contextlib
import resource
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from _attacks import _H2, Target, _frame
from _servers import tree_rss
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, PingFrame

MIB: Final = 1024 * 1024
#: What a good request may take during the connection flood.
GOOD_REQUEST: Final = 1.0
#: The most the RSS may stay above its level before the connection flood.
RSS_RETURN: Final = 10 * MIB
#: Seconds the RSS is waited for to come back after the connection flood.
RETURN_TIMEOUT: Final = 20.0
#: Seconds the silent connections are held once all are open.
HOLD: Final = 2.0
#: Seconds given to the server to accept the connections the kernel queued for it.
SETTLE: Final = 1.0
#: Seconds a PING may wait for its ACK.
ACK_TIMEOUT: Final = 5.0

_PING: Final = 0x6
_REQUEST: Final = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/sleep/60000"),
]
_END_STREAM_AND_HEADERS: Final = 0x5


def raise_file_limit(needed: int) -> None:
    """Raise the soft limit on open files to ``needed`` if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY:
        needed = min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# --- paced PINGs --------------------------------------------------------------------


@dataclass
class PacedPingResult:
    """What the long-lived HTTP/2 connection saw."""

    interval: float
    sent: int = 0
    acked: int = 0
    requests: int = 0
    #: How the connection ended early (GOAWAY code, closed, a missing ACK), or None.
    ended: str | None = None

    def report(self) -> tuple[list[str], bool]:
        """The summary lines, and whether the phase passed."""
        passed = self.sent > 0 and self.ended is None and self.acked == self.sent
        return [
            "",
            f"long-lived HTTP/2 connection (a long request, a PING every"
            f" {self.interval * 1000:.0f} ms, each ACK waited for):",
            f"  {self.sent} PINGs, {self.acked} acknowledged, {self.requests} long requests,"
            f" {self.ended or 'alive at the end'}: {'ok' if passed else 'FAIL'}",
        ], passed


def start_paced_pings(
    target: Target, interval: float
) -> tuple[PacedPingResult, Callable[[], None]]:
    """Start the paced PINGs in a thread; return their result and what stops them."""
    result = PacedPingResult(interval=interval)
    stop = threading.Event()
    thread = threading.Thread(target=run_paced_pings, args=(target, result, stop), daemon=True)
    thread.start()

    def stopper() -> None:
        stop.set()
        thread.join(timeout=ACK_TIMEOUT + 5)

    return result, stopper


def append_phase(
    report: str, passed: bool, lines: list[str], phase_passed: bool
) -> tuple[str, bool]:
    """``report`` with a phase's ``lines`` before its verdict line, the verdict made anew."""
    head, _ = report.rsplit("\n", 1)
    passed = passed and phase_passed
    return "\n".join([head, *lines, f"soak: {'PASS' if passed else 'FAIL'}"]), passed


def run_paced_pings(target: Target, result: PacedPingResult, stop: threading.Event) -> None:
    """PING every ``result.interval`` seconds on one connection until ``stop`` is set."""
    try:
        with contextlib.closing(_H2.open(target)) as h2:
            stream_id = 1
            block = h2.encoder.encode(_REQUEST)
            h2.send(_frame(0x1, _END_STREAM_AND_HEADERS, stream_id, block))
            result.requests = 1
            while not stop.is_set():
                payload = struct.pack(">Q", result.sent)
                if not h2.send(_frame(_PING, 0, 0, payload)):
                    result.ended = "closed"
                    return
                result.sent += 1
                acked, ended, done = _wait_for_ack(h2, payload, stream_id)
                result.acked += acked
                if ended is not None:
                    result.ended = ended
                    return
                if done:  # the long request ended: another one
                    stream_id += 2
                    block = h2.encoder.encode(_REQUEST)
                    h2.send(_frame(0x1, _END_STREAM_AND_HEADERS, stream_id, block))
                    result.requests += 1
                stop.wait(result.interval)
    except OSError as error:
        result.ended = f"{type(error).__name__}"


def _wait_for_ack(h2: _H2, payload: bytes, stream_id: int) -> tuple[int, str | None, bool]:
    """Read until the PING's ACK: (1 if it came, why the connection ended, request done)."""
    done = False
    deadline = time.monotonic() + ACK_TIMEOUT
    while time.monotonic() < deadline:
        for frame in h2.frames(max(0.0, deadline - time.monotonic())):
            if isinstance(frame, GoAwayFrame):
                return 0, f"GOAWAY({frame.error_code:#x})", done
            if isinstance(frame, PingFrame) and "ACK" in frame.flags:
                if frame.opaque_data == payload:
                    return 1, None, done
            elif isinstance(frame, (HeadersFrame, DataFrame)) and "END_STREAM" in frame.flags:
                done = done or frame.stream_id == stream_id
        if h2.closed:
            return 0, "closed", done
    return 0, "an ACK missing", done


# --- connection flood ----------------------------------------------------------------


@dataclass
class ConnectionFloodResult:
    """What the connection flood phase saw."""

    count: int
    opened: int = 0
    before: int = 0
    peak: int = 0
    after: int = 0
    #: Seconds each good request (a new connection) took while the connections were held.
    good: list[float] = field(default_factory=list)
    #: The same while they were being opened (reported, not judged: the
    #: server is busy accepting them, and idle ones give way, new ones too).
    opening: list[float] = field(default_factory=list)
    #: Why good requests failed while the connections were being opened.
    opening_failures: list[str] = field(default_factory=list)
    #: Why good requests failed, if they did.
    failures: list[str] = field(default_factory=list)
    #: The RSS before, at the peak and after the first (warm-up) flood.
    cold: tuple[int, int, int] = (0, 0, 0)

    def report(self) -> tuple[list[str], bool]:
        """The summary lines, and whether the phase passed."""
        slowest = max(self.good, default=float("nan"))
        good_ok = bool(self.good) and not self.failures and slowest < GOOD_REQUEST
        rss_ok = self.after - self.before < RSS_RETURN
        failures = f"  ({', '.join(self.failures[:3])})" if self.failures else ""
        opening = max(self.opening, default=float("nan"))
        early = f", failed: {', '.join(self.opening_failures[:3])}" if self.opening_failures else ""
        return [
            "",
            f"connection flood (silent TCP connections to the cleartext endpoint, twice:"
            f" {self.opened} of {self.count} opened):",
            f"  good HTTP/1.1 requests while they were opened: {len(self.opening)},"
            f" slowest {opening * 1000:.0f} ms{early}",
            f"  good HTTP/1.1 requests while they were held: {len(self.good)}, slowest"
            f" {slowest * 1000:.0f} ms (under {GOOD_REQUEST * 1000:.0f} ms):"
            f" {'ok' if good_ok else 'FAIL'}{failures}",
            "  server RSS, first flood (warm-up): before {:.1f} MiB, peak {:.1f} MiB,"
            " after {:.1f} MiB".format(*(value / MIB for value in self.cold)),
            f"  server RSS: before {self.before / MIB:.1f} MiB, peak {self.peak / MIB:.1f} MiB,"
            f" after {self.after / MIB:.1f} MiB (after within {RSS_RETURN / MIB:.0f} MiB"
            f" of before): {'ok' if rss_ok else 'FAIL'}",
        ], good_ok and rss_ok


def run_connection_flood(port: int, pid: int, *, count: int) -> ConnectionFloodResult:
    """Flood 127.0.0.1:``port`` (the server ``pid``'s) twice; the second flood is judged.

    The first warms the server up (its first flood leaves it some 10 to 15
    MiB larger for good: lazily made caches, the heap's new high-water
    mark); the report gives its numbers too.
    """
    first = _flood(port, pid, count=count)
    result = _flood(port, pid, count=count)
    result.cold = (first.before, first.peak, first.after)
    result.failures[:0] = first.failures
    result.opening_failures[:0] = first.opening_failures
    result.opening[:0] = first.opening
    result.good[:0] = first.good
    return result


def _flood(port: int, pid: int, *, count: int) -> ConnectionFloodResult:
    """Hold ``count`` silent connections to 127.0.0.1:``port``; wait for the RSS after."""
    result = ConnectionFloodResult(count=count)
    address = ("127.0.0.1", port)
    _good_request(address, [], [])  # warm up before the baseline
    result.before = result.peak = tree_rss(pid)
    silent: list[socket.socket] = []
    stop = threading.Event()

    def open_all() -> None:
        for _ in range(count):
            if stop.is_set():
                return
            try:
                silent.append(socket.create_connection(address, timeout=5.0))
            except OSError:
                return
            result.opened += 1

    opener = threading.Thread(target=open_all, daemon=True)
    opener.start()
    try:
        hold_until: float | None = None
        while hold_until is None or time.monotonic() < hold_until:
            if hold_until is None and not opener.is_alive():
                hold_until = time.monotonic() + SETTLE + HOLD
            result.peak = max(result.peak, tree_rss(pid))
            if hold_until is not None and time.monotonic() > hold_until - HOLD:
                _good_request(address, result.failures, result.good)
            else:
                _good_request(address, result.opening_failures, result.opening)
            time.sleep(0.25)
    finally:
        stop.set()
        opener.join(timeout=30)
        for sock in silent:
            sock.close()
    deadline = time.monotonic() + RETURN_TIMEOUT
    while True:
        time.sleep(0.5)
        result.after = tree_rss(pid)
        if result.after - result.before < RSS_RETURN or time.monotonic() > deadline:
            return result


def _good_request(address: tuple[str, int], failures: list[str], times: list[float]) -> None:
    started = time.monotonic()
    try:
        with socket.create_connection(address, timeout=GOOD_REQUEST * 5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError as error:
        failures.append(type(error).__name__)
        return
    if not answer.startswith(b"HTTP/1.1 200 "):
        failures.append(answer[:12].decode("latin-1") or "no answer")
        return
    times.append(time.monotonic() - started)
