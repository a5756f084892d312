"""hface.networking.Signal: a reusable wake-up, on asyncio and Trio."""

from __future__ import annotations

import anyio
import pytest

from hface.networking import Signal

pytestmark = pytest.mark.anyio


async def test_set_wakes_every_task_waiting() -> None:
    signal = Signal()
    woken: list[int] = []

    async def waiter(number: int) -> None:
        await signal.wait()
        woken.append(number)

    async with anyio.create_task_group() as task_group:
        for number in range(3):
            task_group.start_soon(waiter, number)
        await anyio.wait_all_tasks_blocked()
        assert signal.waiting
        assert woken == []
        signal.set()
    assert sorted(woken) == [0, 1, 2]
    assert not signal.waiting


async def test_a_set_with_nobody_waiting_is_not_kept() -> None:
    signal = Signal()
    signal.set()
    with anyio.move_on_after(0.05) as scope:
        await signal.wait()
    assert scope.cancelled_caught


async def test_each_wait_waits_for_the_next_set() -> None:
    signal = Signal()
    rounds = 0

    async def waiter() -> None:
        nonlocal rounds
        for _ in range(3):
            await signal.wait()
            rounds += 1

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(waiter)
        for expected in range(1, 4):
            await anyio.wait_all_tasks_blocked()
            signal.set()
            await anyio.wait_all_tasks_blocked()
            assert rounds == expected


async def test_a_cancelled_wait_leaves_the_others_waiting() -> None:
    signal = Signal()
    woken = False

    async def waiter() -> None:
        nonlocal woken
        await signal.wait()
        woken = True

    async with anyio.create_task_group() as task_group:
        with anyio.move_on_after(0.05) as scope:
            task_group.start_soon(waiter)
            await signal.wait()
        assert scope.cancelled_caught
        await anyio.wait_all_tasks_blocked()
        assert signal.waiting  # the other task
        signal.set()
    assert woken
    assert not signal.waiting
