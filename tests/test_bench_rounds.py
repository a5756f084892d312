"""``bench/run.py`` measures a section round by round, so a slow spell hits every subject.

The cells are stand-ins (no server, no load tool): what is checked is the
order in which the cells run and what the table's rows then hold.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def run_module() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("run")  # bench/run.py, and the modules it imports
    finally:
        sys.path.remove(str(BENCH))


def make_bench(run_module: ModuleType, tmp_path: Path, runs: int) -> Any:
    settings = run_module.Settings(
        duration=1.0, runs=runs, requests=1, proxy_mib=1, memory_seconds=1.0
    )
    certs = run_module.Certificates(cafile="ca", certfile="cert", keyfile="key")
    return run_module.Bench(settings, certs, tmp_path)


def test_each_round_runs_every_subject_once_and_rows_show_the_medians(
    run_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Measure = sys.modules["_tools"].Measure
    bench = make_bench(run_module, tmp_path, runs=3)
    order: list[str] = []
    # hface is slow in the second round only (a slow spell), the peer steady.
    rates = {"hface": iter([100.0, 10.0, 120.0]), "peer": iter([50.0, 50.0, 50.0])}

    def cell(subject: str) -> object:
        order.append(subject)
        return Measure(rps=next(rates[subject]), mbps=0.0)

    def section() -> None:
        rows = [bench._measure("case", name, "req/s", lambda n=name: cell(n)) for name in rates]
        bench._add_case(rows, {"peer": ">=1.5"})

    monkeypatch.setattr(bench, "server", section, raising=False)
    bench.run_section("server")
    assert order == ["hface", "peer"] * 3  # interleaved, not hface's three runs in a row
    assert [(row.subject, row.value) for row in bench.rows] == [("hface", 100.0), ("peer", 50.0)]
    assert bench.rows[1].ratio == pytest.approx(2.0)
    assert bench.rows[1].target == ">=1.5"


def test_a_cell_that_fails_is_not_run_again_and_its_row_says_why(
    run_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Measure = sys.modules["_tools"].Measure
    bench = make_bench(run_module, tmp_path, runs=3)
    calls = {"broken": 0, "fine": 0}

    def broken() -> object:
        calls["broken"] += 1
        raise sys.modules["_tools"].ToolError("wrk: connection refused\nmore")

    def fine() -> object:
        calls["fine"] += 1
        return Measure(rps=7.0, mbps=0.0)

    def section() -> None:
        rows = [
            bench._measure("case", "broken", "req/s", broken),
            bench._measure("case", "fine", "req/s", fine),
        ]
        bench._add_case(rows, {})

    monkeypatch.setattr(bench, "client", section, raising=False)
    bench.run_section("client")
    assert calls == {"broken": 1, "fine": 3}
    broken_row, fine_row = bench.rows
    assert broken_row.value is None
    assert broken_row.note == "wrk: connection refused"
    assert fine_row.value == 7.0


def test_memory_is_one_round(
    run_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = make_bench(run_module, tmp_path, runs=3)
    rounds: list[int] = []
    monkeypatch.setattr(bench, "memory", lambda: rounds.append(1), raising=False)
    bench.run_section("memory")
    assert rounds == [1]


def test_a_round_cut_short_leaves_the_last_whole_rounds_rows(
    run_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Measure = sys.modules["_tools"].Measure
    bench = make_bench(run_module, tmp_path, runs=3)
    rates = iter([10.0, 30.0])

    def section() -> None:
        row = bench._measure("case", "hface", "req/s", lambda: Measure(rps=next(rates), mbps=0.0))
        bench._add_case([row], {})
        if bench._rounds.number == 2:
            raise KeyboardInterrupt  # Ctrl-C after the round's first cell

    monkeypatch.setattr(bench, "server", section, raising=False)
    with pytest.raises(KeyboardInterrupt):
        bench.run_section("server")
    assert [(row.subject, row.value) for row in bench.rows] == [("hface", 10.0)]
