"""hface.networking.Pulse: a reusable wake-up, on asyncio and Trio."""

from __future__ import annotations

import anyio
import pytest

from hface.networking import Pulse, current_loop_tools

pytestmark = pytest.mark.anyio


async def test_set_wakes_every_task_waiting() -> None:
    pulse = Pulse()
    woken: list[int] = []

    async def waiter(number: int) -> None:
        await pulse.wait()
        woken.append(number)

    async with anyio.create_task_group() as task_group:
        for number in range(3):
            task_group.start_soon(waiter, number)
        await anyio.wait_all_tasks_blocked()
        assert woken == []
        pulse.set()
    assert sorted(woken) == [0, 1, 2]


async def test_a_set_with_nobody_waiting_is_not_kept() -> None:
    pulse = Pulse()
    pulse.set()
    with anyio.move_on_after(0.05) as scope:
        await pulse.wait()
    assert scope.cancelled_caught


async def test_each_wait_waits_for_the_next_set() -> None:
    pulse = Pulse()
    rounds = 0

    async def waiter() -> None:
        nonlocal rounds
        for _ in range(3):
            await pulse.wait()
            rounds += 1

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(waiter)
        for expected in range(1, 4):
            await anyio.wait_all_tasks_blocked()
            assert rounds == expected - 1
            pulse.set()
            await anyio.wait_all_tasks_blocked()
            assert rounds == expected


async def test_a_cancelled_wait_leaves_the_others_waiting() -> None:
    pulse = Pulse()
    woken = False

    async def waiter() -> None:
        nonlocal woken
        await pulse.wait()
        woken = True

    async with anyio.create_task_group() as task_group:
        with anyio.move_on_after(0.05) as scope:
            task_group.start_soon(waiter)
            await pulse.wait()
        assert scope.cancelled_caught
        await anyio.wait_all_tasks_blocked()
        assert not woken
        pulse.set()
    assert woken


async def test_the_signals_given_are_the_ones_waited_on() -> None:
    made = []
    new_signal = current_loop_tools().new_signal

    def counting_new_signal():  # type: ignore[no-untyped-def]
        made.append(new_signal())
        return made[-1]

    pulse = Pulse(counting_new_signal)
    async with anyio.create_task_group() as task_group:
        for _ in range(2):
            task_group.start_soon(pulse.wait)
            task_group.start_soon(pulse.wait)
            await anyio.wait_all_tasks_blocked()
            pulse.set()
    assert len(made) == 2  # one signal per round, shared by its waiters
    assert all(signal.is_set() for signal in made)
