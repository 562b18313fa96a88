"""The bench's count of a snapshot build's own CPU (engine/commands/bench/build_cpu.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.commands.bench.build_cpu import BuildCpu, in_build


def _spin(seconds: float) -> None:
    """Use ``seconds`` of this thread's CPU (exactly so much, however busy the machine is)."""
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        pass


async def test_a_builds_own_steps_and_the_tasks_it_starts_are_counted_the_engines_are_not() -> None:
    engine_ran = asyncio.Event()

    async def engine_work() -> None:  # ready to run in the turns the build takes
        for _ in range(5):
            _spin(0.02)
            await asyncio.sleep(0)
        engine_ran.set()

    async def load() -> int:  # a cache load: a task the build starts
        _spin(0.01)
        await asyncio.sleep(0)
        _spin(0.01)
        return 1

    async def build() -> int:
        _spin(0.01)
        loaded = await asyncio.ensure_future(load())
        await asyncio.sleep(0)
        _spin(0.01)
        return loaded

    with BuildCpu() as own:
        engine = asyncio.ensure_future(engine_work())
        assert await in_build(build) == 1
        await engine
    assert engine_ran.is_set()
    # the build's 10 + 10 + 10 + 10 ms, not the engine's 100 ms run in its turns
    assert 0.04 <= own.seconds < 0.09


async def test_outside_the_block_nothing_is_counted_and_the_loop_makes_tasks_as_before() -> None:
    loop = asyncio.get_running_loop()
    counter = BuildCpu()
    with counter:
        assert loop.get_task_factory() is not None
    assert loop.get_task_factory() is None
    assert await in_build(lambda: _spun()) == "done"
    assert counter.seconds == 0.0


async def test_a_build_that_fails_or_is_cancelled_is_counted_and_raises_as_it_would() -> None:
    async def failing() -> None:
        _spin(0.01)
        raise ValueError("no venue")

    async def waiting() -> None:
        _spin(0.01)
        await asyncio.sleep(3600)

    with BuildCpu() as own:
        with pytest.raises(ValueError, match="no venue"):
            await in_build(failing)
        task = asyncio.ensure_future(in_build(waiting))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert 0.02 <= own.seconds < 0.05


async def _spun() -> str:
    _spin(0.005)
    return "done"
