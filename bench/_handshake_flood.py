"""The soak's QUIC handshake flood: good handshakes during it, and the server's memory after.

A phase of its own, after the soak's attacks: Initials that are never
followed up (``tests/helpers/quic_flood.py``: genuine ones, each from a port
of its own) at ``rate`` a second for ``seconds``, while hface's client opens
a new HTTP/3 connection every half second and times it. The server answers
a flood with Retry (RFC 9000 §8.1.2) and logs one line when it starts and
one when it ends, after which it gives the memory back; the phase waits
for that line (the half-open handshakes time out after 10 s, and the end
is judged over a quiet 10 s window) and reads the RSS again. It passes if
every good handshake took under a second, the end was logged, and the
RSS after is within 10 MiB of the RSS before.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import anyio
from _attacks import Target
from _servers import ROOT, tree_rss

sys.path.insert(0, str(ROOT))

from hface.client import Client, ClientProtocol, ClientTLSConfig, Request
from tests.helpers.quic_flood import flood, make_initials

MIB: Final = 1024 * 1024
#: What a good handshake (and its request) may take during the flood.
GOOD_HANDSHAKE: Final = 1.0
#: The most the RSS may stay above its level before the flood.
RSS_RETURN: Final = 10 * MIB
#: Seconds to wait for the server to log the flood's end.
END_TIMEOUT: Final = 45.0
_ENDED: Final = re.compile(r"QUIC handshake flood on \S+ over after")


@dataclass
class HandshakeFloodResult:
    """What the phase saw."""

    rate: int
    seconds: float
    sent: int = 0
    before: int = 0
    peak: int = 0
    after: int = 0
    ended: bool = False
    #: Seconds each good connection (handshake and GET) took during the flood.
    good: list[float] = field(default_factory=list)
    #: Why good connections failed, if they did.
    failures: list[str] = field(default_factory=list)

    def report(self) -> tuple[list[str], bool]:
        """The summary lines, and whether the phase passed."""
        slowest = max(self.good, default=float("nan"))
        good_ok = bool(self.good) and not self.failures and slowest < GOOD_HANDSHAKE
        rss_ok = self.ended and self.after - self.before < RSS_RETURN
        lines = [
            "",
            f"handshake flood (QUIC Initials never followed up, {self.rate}/s for"
            f" {self.seconds:g} s: {self.sent} sent):",
            f"  good HTTP/3 connections during it: {len(self.good)}, slowest"
            f" {slowest * 1000:.0f} ms (under {GOOD_HANDSHAKE * 1000:.0f} ms):"
            f" {'ok' if good_ok else 'FAIL'}"
            + (f"  ({', '.join(self.failures[:3])})" if self.failures else ""),
            f"  server RSS: before {self.before / MIB:.1f} MiB, peak {self.peak / MIB:.1f} MiB,"
            f" after {self.after / MIB:.1f} MiB"
            f" ({'flood end logged' if self.ended else 'flood end NOT logged'};"
            f" after within {RSS_RETURN / MIB:.0f} MiB of before): {'ok' if rss_ok else 'FAIL'}",
        ]
        return lines, good_ok and rss_ok


def run_handshake_flood(
    target: Target, pid: int, log_file: Path, *, rate: int, seconds: float
) -> HandshakeFloodResult:
    """Flood the server of ``pid`` listening on ``target``; its log goes to ``log_file``."""
    result = HandshakeFloodResult(rate=rate, seconds=seconds)
    initials = make_initials(int(rate * seconds))
    anyio.run(_good_connection, target, result)  # warm up before the baseline
    result.good.clear()
    result.before = result.peak = tree_rss(pid)
    logged = len(log_file.read_text(errors="replace").splitlines())
    stop = threading.Event()

    def send() -> None:
        result.sent = flood((target.host, target.port), initials, rate=rate, stop=stop)

    flooder = threading.Thread(target=send, daemon=True)
    flooder.start()
    try:
        anyio.run(_during, target, result, pid, flooder)
    finally:
        stop.set()
        flooder.join(timeout=seconds + 10)
    deadline = time.monotonic() + END_TIMEOUT
    while time.monotonic() < deadline and not result.ended:
        time.sleep(0.5)
        result.peak = max(result.peak, tree_rss(pid))
        lines = log_file.read_text(errors="replace").splitlines()[logged:]
        result.ended = any(_ENDED.search(line) for line in lines)
    time.sleep(0.5)  # the memory is given back just after the line
    result.after = tree_rss(pid)
    return result


async def _during(
    target: Target, result: HandshakeFloodResult, pid: int, flooder: threading.Thread
) -> None:
    """Time a good connection every half second while the flood lasts; sample the RSS."""
    while flooder.is_alive():
        result.peak = max(result.peak, tree_rss(pid))
        await _good_connection(target, result)
        await anyio.sleep(0.5)


async def _good_connection(target: Target, result: HandshakeFloodResult) -> None:
    client = Client(
        tls_config=ClientTLSConfig(cafile=target.cafile),
        protocol=ClientProtocol.HTTP3,
        connect_timeout=10.0,
        read_timeout=10.0,
    )
    started = time.monotonic()
    try:
        async with client.session() as session:
            response = await session.dispatch(Request("GET", f"https://localhost:{target.port}/"))
    except Exception as error:
        result.failures.append(type(error).__name__)
        return
    if response.status != 200:
        result.failures.append(f"status {response.status}")
        return
    result.good.append(time.monotonic() - started)
