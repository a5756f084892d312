"""``bench/soak.py`` runs end to end: good traffic survives every attack (issue 8).

A short soak (5 s) as a subprocess, the way ``hatch run soak`` runs it:
the real ``hface server`` CLI, good traffic on HTTP/1.1, 2 and 3, every
attack of ``bench/_attacks.py``, then a QUIC handshake flood (issue 18).
The script's own verdict is the exit status; the test also reads its
summary, so that a soak that silently skipped a version or an attack fails
here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

SOAK: Final = Path(__file__).resolve().parents[1] / "bench" / "soak.py"

#: The attack names the summary must list (bench/_attacks.py).
ATTACK_NAMES: Final = (
    "h1 slowloris",
    "h1 smuggling",
    "h1 oversized headers",
    "h2 rapid reset",
    "h2 CONTINUATION flood",
    "h2 SETTINGS flood",
    "h2 PING flood",
    "h2 PRIORITY flood",
    "h2 empty DATA flood",
    "h2 HPACK bomb",
    "h2 zero-window stall",
    "h2 too many streams",
    "h3 rapid reset",
    "h3 reserved-frame flood",
    "h3 too many streams",
    "h3 QPACK blocked streams",
)


@pytest.mark.slow
def test_five_second_soak_passes() -> None:
    """Good requests succeed on every version, each attack ran, RSS bounded, log clean."""
    result = subprocess.run(
        [sys.executable, str(SOAK), "--duration", "5"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr[-3000:]}"
    for version in ("1.1", "2", "3"):
        match = re.search(rf"^  HTTP/{re.escape(version)}\s+(\d+)\s+(\d+)\s", out, re.MULTILINE)
        assert match is not None, out
        assert int(match[1]) > 0, out
    check_tcp_phases(out)
    for name in ATTACK_NAMES:
        match = re.search(rf"^  {re.escape(name)}\s+(\d+)\s+(.*)$", out, re.MULTILINE)
        assert match is not None, f"{name} missing:\n{out}"
        assert int(match[1]) >= 1, out
    assert re.search(r"^server RSS: .*: ok$", out, re.MULTILINE), out
    # The QUIC handshake flood phase (issue 18): good handshakes under a
    # second, and the memory back within 10 MiB once the flood is over.
    assert re.search(r"^handshake flood \(.*: [1-9]\d* sent\):$", out, re.MULTILINE), out
    assert re.search(r"^  good HTTP/3 connections during it: [1-9].*: ok$", out, re.MULTILINE), out
    assert re.search(r"^  server RSS: before .*flood end logged.*: ok$", out, re.MULTILINE), out
    assert re.search(r"^server log: \d+ lines, 0 with Traceback or ERROR$", out, re.MULTILINE), out
    assert out.rstrip().endswith("soak: PASS"), out


def check_tcp_phases(out: str) -> None:
    """Issue 18: the paced PINGs lived, and the connection flood locked no one out."""
    assert re.search(r"^  [1-9]\d* PINGs, .* alive at the end: ok$", out, re.MULTILINE), out
    assert re.search(r"^connection flood \(.*: [1-9]\d* of \d+ opened\):$", out, re.MULTILINE), out
    held = r"^  good HTTP/1.1 requests while they were held: [1-9].*: ok$"
    assert re.search(held, out, re.MULTILINE), out
    assert re.search(r"^  server RSS: before .* of before\): ok$", out, re.MULTILINE), out


def test_soak_refuses_bad_arguments() -> None:
    """Out-of-range options are a usage error (exit 2), before any server starts."""
    result = subprocess.run(
        [sys.executable, str(SOAK), "--duration", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--duration must be in [1, 3600]" in result.stderr
