"""The virtual clock: sleeps wake in deadline order, at the right virtual time, without real waiting."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from engine.core.clock import RealClock, VirtualClock, iso_utc, parse_iso_utc


async def test_sleepers_wake_in_deadline_order_at_their_virtual_time() -> None:
    clock = VirtualClock(start=1000.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("c", 30), ("a", 10), ("b", 20), ("a2", 10))]
    await clock.drive(until=1025.0)
    assert woke == [("a", 1010.0), ("a2", 1010.0), ("b", 1020.0)]
    assert clock.now() == 1025.0
    await clock.drive(until=1100.0)
    assert woke[-1] == ("c", 1030.0)
    await asyncio.gather(*tasks)


async def test_periodic_task_runs_exact_number_of_times() -> None:
    clock = VirtualClock(start=0.0)
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await clock.sleep(1.0)
            ticks.append(clock.now())

    task = asyncio.create_task(ticker())
    await clock.drive(until=3600.0)
    task.cancel()
    assert len(ticks) == 3600
    assert ticks[0] == 1.0 and ticks[-1] == 3600.0


async def test_wait_for_times_out_in_virtual_time() -> None:
    clock = VirtualClock(start=0.0)
    never = asyncio.Event()

    async def waiter() -> str:
        try:
            await clock.wait_for(never.wait(), 5.0)
        except TimeoutError:
            return f"timeout at {clock.now()}"
        return "finished"

    task = asyncio.create_task(waiter())
    await clock.drive(until=10.0)
    assert task.result() == "timeout at 5.0"


async def test_wait_for_returns_result_before_timeout() -> None:
    clock = VirtualClock(start=0.0)

    async def quick() -> int:
        await clock.sleep(1.0)
        return 7

    task = asyncio.create_task(clock.wait_for(quick(), 5.0))
    await clock.drive(until=2.0)
    assert task.result() == 7


async def test_cancelled_sleep_does_not_stop_time() -> None:
    clock = VirtualClock(start=0.0)
    task = asyncio.create_task(clock.sleep(5.0))
    await asyncio.sleep(0)
    task.cancel()
    await clock.drive(until=60.0)
    assert clock.now() == 60.0
    assert clock.next_deadline() is None


async def test_real_clock_sleeps_for_real() -> None:
    clock = RealClock()
    before = clock.monotonic()
    await clock.sleep(0.01)
    assert clock.monotonic() >= before + 0.009
    with pytest.raises(TimeoutError):
        await clock.wait_for(asyncio.Event().wait(), 0.01)


@pytest.mark.parametrize("clock", [RealClock(), VirtualClock(start=0.0)], ids=["real", "virtual"])
async def test_a_loop_cancelled_as_its_wait_ends_stays_cancelled(clock: RealClock | VirtualClock) -> None:
    """The scheduler's shape: wait for a wake-up with a bound, again and again. Cancelled in the same
    loop step as the event fires (EngineRuntime.stop() while a job wakes it), the task must end, or
    the stop awaits it forever (asyncio.wait_for of Python 3.11 swallowed that cancellation)."""
    wake = asyncio.Event()
    waiting = asyncio.Event()

    async def loop() -> None:
        while True:
            wake.clear()
            waiting.set()
            with contextlib.suppress(TimeoutError):
                await clock.wait_for(wake.wait(), 60.0)

    task = asyncio.create_task(loop())
    await waiting.wait()
    await asyncio.sleep(0)  # the loop is parked in wait_for now
    wake.set()
    task.cancel()
    for _ in range(100):  # loop steps, not time: a cancelled task ends within a few
        if task.done():
            break
        await asyncio.sleep(0)
    still_running = not task.done()
    task.cancel()  # (cancels for good a task that swallowed the first cancellation)
    assert not still_running and task.cancelled()


def test_iso_round_trip() -> None:
    assert iso_utc(parse_iso_utc("2026-01-01T00:00:00Z")) == "2026-01-01T00:00:00.000Z"
    assert parse_iso_utc("2026-01-01T01:00:00+01:00") == parse_iso_utc("2026-01-01T00:00:00Z")


async def test_virtual_time_stands_still_while_a_thread_job_runs() -> None:
    """File I/O in the default executor must not let virtual time run ahead (determinism)."""
    import time as wall

    clock = VirtualClock(start=0.0)
    seen: list[float] = []

    async def saver() -> None:
        await clock.sleep(1.0)
        before = clock.now()
        await asyncio.to_thread(wall.sleep, 0.05)  # a slow fsync
        seen.append(clock.now() - before)

    async def ticker() -> None:
        while True:
            await clock.sleep(0.001)

    tasks = [asyncio.create_task(saver()), asyncio.create_task(ticker())]
    await clock.drive(until=5.0)
    for task in tasks:
        task.cancel()
    assert seen == [0.0]


async def test_a_thread_job_that_never_finishes_slows_the_clock_once_but_never_freezes_it() -> None:
    import threading

    clock = VirtualClock(start=0.0)
    await clock.drive(until=0.0)  # the loop's default executor is now the clock's
    release = threading.Event()
    blocked = asyncio.ensure_future(asyncio.to_thread(release.wait))
    await asyncio.sleep(0)
    try:
        await clock.drive(until=100.0)
        assert clock.now() == 100.0
    finally:
        release.set()
        await blocked


async def test_drive_while_moves_virtual_time_until_the_awaitable_is_done() -> None:
    """Work that sleeps on the clock after ``drive(until=...)`` returned (an exit snapshot's reads
    with simulated latency) finishes, with the other sleepers woken in deadline order meanwhile."""
    clock = VirtualClock(start=100.0)
    woke: list[float] = []

    async def ticker() -> None:
        while True:
            await clock.sleep(1.0)
            woke.append(clock.now())

    async def reads() -> str:
        for _ in range(3):
            await clock.sleep(0.4)  # one venue read's latency
        return "snapshot"

    background = asyncio.create_task(ticker())
    await clock.drive(until=110.0)
    assert await clock.drive_while(reads()) == "snapshot"
    assert clock.now() == pytest.approx(111.2)
    assert woke[-1] == 111.0  # the rest of the world kept its schedule meanwhile
    background.cancel()


async def test_drive_while_with_nothing_parked_waits_for_outside_work() -> None:
    clock = VirtualClock(start=0.0)
    assert await clock.drive_while(asyncio.to_thread(lambda: 42)) == 42
    assert clock.now() == 0.0
