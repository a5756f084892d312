"""current_loop_tools(): signals, clock and call_soon of the running loop, as anyio's.

The signals replace ``anyio.Event`` on the connections' hot paths, so they
must behave as it does on both backends: a set wakes every waiter for good,
a cancelled waiter takes only itself out, and waiting on a set signal is
still a checkpoint.
"""

from __future__ import annotations

import anyio
import pytest

from hface.networking import current_call_soon, current_loop_tools

pytestmark = pytest.mark.anyio


async def test_set_wakes_every_waiter_for_good() -> None:
    tools = current_loop_tools()
    signal = tools.new_signal()
    woken: list[int] = []

    async def wait(number: int) -> None:
        await signal.wait()
        woken.append(number)

    async with anyio.create_task_group() as task_group:
        for number in range(3):
            task_group.start_soon(wait, number)
        await anyio.wait_all_tasks_blocked()
        assert not signal.is_set()
        assert woken == []
        signal.set()
        signal.set()  # a second set changes nothing
    assert signal.is_set()
    assert sorted(woken) == [0, 1, 2]
    with anyio.fail_after(1):
        await signal.wait()  # set: returns at once


async def test_a_cancelled_waiter_leaves_the_others_waiting() -> None:
    signal = current_loop_tools().new_signal()
    woken: list[str] = []

    async def wait(name: str) -> None:
        await signal.wait()
        woken.append(name)

    async with anyio.create_task_group() as task_group:
        with anyio.CancelScope() as cancelled:
            task_group.start_soon(wait, "kept")

            async def cancel_after_blocked() -> None:
                await anyio.wait_all_tasks_blocked()
                cancelled.cancel()

            task_group.start_soon(cancel_after_blocked)
            await signal.wait()
            woken.append("cancelled")  # never: the scope was cancelled
        assert cancelled.cancelled_caught
        await anyio.wait_all_tasks_blocked()
        assert woken == []
        signal.set()
    assert woken == ["kept"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # Trio's is anyio.Event itself
async def test_waits_timed_out_leave_no_waiters_behind() -> None:
    signal = current_loop_tools().new_signal()
    for _ in range(50):
        with anyio.move_on_after(0):
            await signal.wait()
    # A signal never set must not keep a future for every wait cancelled on it.
    assert not signal._waiters  # type: ignore[attr-defined]


async def test_waiting_on_a_set_signal_is_a_checkpoint() -> None:
    signal = current_loop_tools().new_signal()
    signal.set()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await signal.wait()
        pytest.fail("the cancelled wait returned")  # pragma: no cover
    assert scope.cancelled_caught


async def test_clock_and_call_soon_are_the_loops() -> None:
    tools = current_loop_tools()
    before = anyio.current_time()
    assert before <= tools.time() <= anyio.current_time()
    called: list[str] = []
    tools.call_soon(lambda: called.append("tools"))
    current_call_soon()(lambda: called.append("current_call_soon"))
    assert called == []  # not before the task yields
    await anyio.sleep(0.01)
    assert called == ["tools", "current_call_soon"]


def test_outside_an_event_loop_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        current_loop_tools()
