"""Decisions first (engine/core/precedence.py): bulk work waits at its turns while a decision is
urgent, for a bounded time; a decision's urgency ends when its request leaves or it finishes."""

from __future__ import annotations

import asyncio

import pytest

from engine.core.clock import VirtualClock
from engine.core.precedence import DecisionsFirst, end_urgency, renew_urgency, waiting_for_the_venue
from engine.scheduler.jobs import Scheduler


async def _bulk(precedence: DecisionsFirst, clock: VirtualClock, done: list[float], turns: int = 3) -> None:
    for _ in range(turns):
        await precedence.turn()
    done.append(clock.now())


async def test_bulk_work_waits_at_its_turn_until_the_urgent_decision_ends() -> None:
    clock = VirtualClock(start=0.0)
    precedence = DecisionsFirst(clock, patience_s=10.0)
    urgency = precedence.urgent()
    done: list[float] = []
    bulk = asyncio.ensure_future(_bulk(precedence, clock, done))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not done and precedence.pressing  # held at its first turn
    urgency.end()
    urgency.end()  # twice is once
    await asyncio.wait_for(bulk, 1.0)
    assert done == [0.0] and not precedence.pressing
    assert precedence.waits == 1 and precedence.lapses == 0


async def test_a_decision_that_does_not_end_holds_bulk_work_back_by_half_at_most() -> None:
    clock = VirtualClock(start=0.0)
    precedence = DecisionsFirst(clock, patience_s=0.025)
    precedence.urgent()  # never ended: a write stuck on a slow disk, or fills one after the other
    done: list[float] = []
    await clock.drive_while(_bulk(precedence, clock, done, turns=2))
    assert done == [0.025]  # the first turn waited its 25 ms, the second went on: bulk's turn now
    assert precedence.lapses == 1
    await clock.drive_while(clock.sleep(0.025))  # its free run is over
    await clock.drive_while(_bulk(precedence, clock, done, turns=1))
    assert done == [0.025, pytest.approx(0.075)] and precedence.lapses == 2


async def test_the_urgency_ends_where_the_request_leaves_even_in_a_task_the_decision_started() -> None:
    clock = VirtualClock(start=0.0)
    precedence = DecisionsFirst(clock)

    async def request() -> None:
        end_urgency()

    async def decision() -> None:
        assert precedence.pressing
        await asyncio.ensure_future(request())  # a task of its own inherits the decision's urgency
        assert not precedence.pressing

    await precedence.start_ahead(decision())
    end_urgency()  # outside any decision: nothing to end
    assert not precedence.pressing


async def test_a_decision_cancelled_before_its_first_step_leaves_nothing_urgent() -> None:
    precedence = DecisionsFirst(VirtualClock(start=0.0))

    async def decision() -> None:
        raise AssertionError("never runs")

    task = precedence.start_ahead(decision())
    assert precedence.pressing
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and not precedence.pressing


async def test_a_job_comes_due_while_a_fill_is_decided_and_starts_once_the_decision_is_out() -> None:
    clock = VirtualClock(start=0.0)
    scheduler = Scheduler(clock)
    started: list[float] = []

    async def job() -> None:
        started.append(clock.now())

    urgency = scheduler.precedence.urgent()
    scheduler.add("check", job, 10.0, first_in_s=0)
    running = asyncio.create_task(scheduler.run())
    for _ in range(20):
        await asyncio.sleep(0)
    assert started == []  # due, launched, and waiting for the decision
    urgency.end()
    for _ in range(20):
        await asyncio.sleep(0)
    assert started == [0.0]
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_a_decision_waiting_for_the_venue_does_not_hold_bulk_work_and_is_urgent_again_after() -> None:
    clock = VirtualClock(start=0.0)
    precedence = DecisionsFirst(clock)

    async def decision() -> None:
        with waiting_for_the_venue():  # its position's previous orders are on the wire: a round trip
            assert not precedence.pressing
            await precedence.turn()
        assert precedence.pressing and precedence.waits == 0
        with waiting_for_the_venue():
            end_urgency()  # another round of the decision sent its request meanwhile
        assert not precedence.pressing
        renew_urgency()  # its next step goes first again
        assert precedence.pressing

    await precedence.start_ahead(decision())
    assert not precedence.pressing
    precedence.urgent().end()
    assert not precedence.pressing  # the count stayed right
