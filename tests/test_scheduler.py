"""The one engine scheduler, on the virtual clock: due-time order, alignment, live re-timing, run_soon,
non-overlap, failures, removal, statistics, cancellation and a few hundred jobs.

Every time asserted here is simulated time; jobs that "take" time sleep on the virtual clock (as a
venue read with simulated latency does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from engine.core.clock import VirtualClock, iso_utc
from engine.scheduler.jobs import JobFn, JobRow, Scheduler

Runs = list[tuple[str, float]]


class CountingClock(VirtualClock):
    """A virtual clock that counts sleeps: the scheduler's only sleeps are its waits for a due time."""

    def __init__(self, start: float = 0.0) -> None:
        super().__init__(start)
        self.sleeps = 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        await super().sleep(seconds)


def recorder(clock: VirtualClock, runs: Runs, name: str, *, takes: float = 0.0) -> JobFn:
    """A job that records (name, start time) and then takes ``takes`` simulated seconds."""

    async def job() -> None:
        runs.append((name, clock.now()))
        if takes:
            await clock.sleep(takes)

    return job


def times(runs: Runs, name: str) -> list[float]:
    return [at for who, at in runs if who == name]


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(scheduler.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_jobs_run_in_due_time_order_at_their_due_times() -> None:
    clock = VirtualClock(start=100.0)
    scheduler = Scheduler(clock)
    runs: Runs = []
    scheduler.add("c", recorder(clock, runs, "c"), 10.0, first_in_s=3.0)
    scheduler.add("a", recorder(clock, runs, "a"), 10.0, first_in_s=1.0)
    scheduler.add("b", recorder(clock, runs, "b"), 10.0, first_in_s=2.0)
    scheduler.add("default", recorder(clock, runs, "default"), 4.0)  # first run after one interval
    scheduler.add("now", recorder(clock, runs, "now"), 7.0, first_in_s=0)
    async with running(scheduler):
        await clock.drive(until=113.5)
    assert runs == [
        ("now", 100.0),
        ("a", 101.0),
        ("b", 102.0),
        ("c", 103.0),
        ("default", 104.0),
        ("now", 107.0),
        ("default", 108.0),
        ("a", 111.0),
        ("b", 112.0),
        ("default", 112.0),
        ("c", 113.0),
    ]


async def test_aligned_jobs_come_due_at_the_same_instant() -> None:
    clock = VirtualClock(start=1000.7)
    scheduler = Scheduler(clock)
    runs: Runs = []
    scheduler.add("fast", recorder(clock, runs, "fast"), 2.0, align=True)
    scheduler.add("now", recorder(clock, runs, "now"), 6.0, align=True, first_in_s=0)
    await clock.drive(until=1001.3)
    scheduler.add("slow", recorder(clock, runs, "slow"), 6.0, align=True)
    async with running(scheduler):
        await clock.drive(until=1013.0)
    # On the clock's grid, not on the time each was added: 1002 and 1008 are multiples of both.
    assert times(runs, "fast") == [1002.0, 1004.0, 1006.0, 1008.0, 1010.0, 1012.0]
    assert times(runs, "slow") == [1002.0, 1008.0]
    # Run at once off the grid, then back on it (not 6 s after that start).
    assert times(runs, "now") == [1001.3, 1002.0, 1008.0]


async def test_aligned_jobs_coincide_despite_float_rounding() -> None:
    """3 * 0.1 != 0.3 in floating point: the two must still start in the same pass."""
    clock = VirtualClock(start=0.0)
    scheduler = Scheduler(clock)
    runs: Runs = []
    scheduler.add("tenth", recorder(clock, runs, "tenth"), 0.1, align=True)
    scheduler.add("three_tenths", recorder(clock, runs, "three_tenths"), 0.3, align=True)
    async with running(scheduler):
        await clock.drive(until=3.05)
    tenth, slow = times(runs, "tenth"), times(runs, "three_tenths")
    assert len(tenth) == 30 and len(slow) == 10
    assert all(at in tenth for at in slow)


async def test_shortened_and_lengthened_intervals_take_effect_at_once() -> None:
    clock = VirtualClock(start=0.0)
    scheduler = Scheduler(clock)
    runs: Runs = []
    scheduler.add("job", recorder(clock, runs, "job"), 10.0)
    scheduler.add("early", recorder(clock, runs, "early"), 10.0)
    scheduler.add("boot", recorder(clock, runs, "boot"), 10.0, first_in_s=1.0)
    scheduler.set_interval("boot", 30.0)  # an explicit first run stays where it was asked for
    async with running(scheduler):
        await clock.drive(until=3.0)
        scheduler.set_interval("early", 5.0)  # before its first run: from when it was added
        await clock.drive(until=23.0)
        scheduler.set_interval("job", 2.0)  # last start 20 + 2 is past: due now
        assert scheduler.interval("job") == 2.0
        await clock.drive(until=28.0)
        scheduler.set_interval("job", 10.0)  # last start 27 + 10, not the old due 29
        await clock.drive(until=50.0)
    assert times(runs, "job") == [10.0, 20.0, 23.0, 25.0, 27.0, 37.0, 47.0]
    assert times(runs, "boot") == [1.0, 31.0]
    assert times(runs, "early") == [5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0]


async def test_interval_changed_during_a_run_counts_from_its_start() -> None:
    clock = VirtualClock(start=0.0)
    scheduler = Scheduler(clock)
    runs: Runs = []
    scheduler.add("job", recorder(clock, runs, "job", takes=3.0), 10.0)
    async with running(scheduler):
        await clock.drive(until=11.0)  # the run started at 10 is still going
        scheduler.set_interval("job", 5.0)
        await clock.drive(until=21.0)
    assert times(runs, "job") == [10.0, 15.0, 20.0]


async def test_aligned_job_stays_on_its_grid_when_re_timed() -> None:
    clock = VirtualClock(start=1000.5)
    scheduler = Scheduler(clock)
    runs: Runs = []
    scheduler.add("job", recorder(clock, runs, "job"), 10.0, align=True)
    async with running(scheduler):
        await clock.drive(until=1023.0)
        scheduler.set_interval("job", 4.0)  # 1020 + 4, on the grid of 4
        await clock.drive(until=1033.0)
        scheduler.set_interval("job", 7.0)  # 1032 + 7 = 1039 is off the grid of 7: 1043
        await clock.drive(until=1051.0)
    assert times(runs, "job") == [1010.0, 1020.0, 1024.0, 1028.0, 1032.0, 1043.0, 1050.0]


async def test_run_soon_runs_now_and_once_more_after_a_run_in_progress() -> None:
    clock = VirtualClock(start=0.0)
    overruns: list[tuple[str, float]] = []
    scheduler = Scheduler(clock, on_overrun=lambda name, late: overruns.append((name, late)))
    runs: Runs = []
    scheduler.add("poll", recorder(clock, runs, "poll", takes=2.0), 60.0)
    async with running(scheduler):
        await clock.drive(until=5.0)
        scheduler.run_soon("poll")  # wakes the sleeping loop: runs at 5, then 60 s after that start
        await clock.drive(until=66.0)  # the run started at 65 goes on until 67
        for _ in range(3):
            scheduler.run_soon("poll")  # asked three times: one more run, right after this one
        await clock.drive(until=130.0)
    assert times(runs, "poll") == [5.0, 65.0, 67.0, 127.0]
    assert overruns == []
    assert scheduler.stats()["poll"]["overruns"] == 0


async def test_a_slow_job_never_overlaps_itself_and_delays_no_other() -> None:
    clock = VirtualClock(start=0.0)
    overruns: list[tuple[str, float]] = []
    scheduler = Scheduler(clock, on_overrun=lambda name, late: overruns.append((name, late)))
    runs: Runs = []
    active = 0
    most_active = 0

    async def slow() -> None:
        nonlocal active, most_active
        runs.append(("slow", clock.now()))
        active += 1
        most_active = max(most_active, active)
        try:
            await clock.sleep(2.5)
        finally:
            active -= 1

    scheduler.add("slow", slow, 1.0)
    scheduler.add("fast", recorder(clock, runs, "fast"), 1.0)
    async with running(scheduler):
        await clock.drive(until=10.1)
        row = scheduler.stats()["slow"]
    assert most_active == 1
    # Started at 1, 4, 7, 10: the dues at 2, 3, 5, 6, 8, 9 found it running and were skipped, not queued.
    assert times(runs, "slow") == [1.0, 4.0, 7.0, 10.0]
    assert overruns == [("slow", 1.0)] * 6
    assert row["overruns"] == 6 and row["runs"] == 3 and row["running"] is True
    assert row["mean_ms"] == 2500.0 and row["max_ms"] == 2500.0
    assert times(runs, "fast") == [float(t) for t in range(1, 11)]


async def test_overrun_is_logged_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock(start=0.0)
    scheduler = Scheduler(clock)
    scheduler.add("slow", recorder(clock, [], "slow", takes=1.5), 1.0)
    with caplog.at_level(logging.WARNING, logger="opconsole.scheduler"):
        async with running(scheduler):
            await clock.drive(until=2.2)
    warnings = [r for r in caplog.records if r.name == "opconsole.scheduler" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "slow" in warnings[0].getMessage()


async def test_a_failing_job_is_reported_and_keeps_its_schedule(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock(start=0.0)
    failures: list[tuple[str, str, int]] = []

    def on_failure(name: str, exc: BaseException, in_a_row: int) -> None:
        failures.append((name, str(exc), in_a_row))
        raise RuntimeError("a broken alert sink")  # must not take the scheduler down either

    scheduler = Scheduler(clock, on_failure=on_failure)
    runs: Runs = []
    outcomes = iter([True, True, False, True, False])

    async def flaky() -> None:
        runs.append(("flaky", clock.now()))
        if next(outcomes):
            raise ValueError(f"boom at {clock.now():g}")

    scheduler.add("flaky", flaky, 5.0)
    with caplog.at_level(logging.ERROR, logger="opconsole.scheduler"):
        async with running(scheduler):
            await clock.drive(until=26.0)
    assert times(runs, "flaky") == [5.0, 10.0, 15.0, 20.0, 25.0]
    assert failures == [("flaky", "boom at 5", 1), ("flaky", "boom at 10", 2), ("flaky", "boom at 20", 1)]
    row = scheduler.stats()["flaky"]
    assert row["failures"] == 3 and row["runs"] == 5
    job_errors = [r for r in caplog.records if r.getMessage().startswith("scheduler job flaky failed")]
    assert len(job_errors) == 3
    # With its traceback (the secret redactor may have turned exc_info into exc_text already).
    assert caplog.text.count("Traceback (most recent call last)") >= 3
    assert all(f"ValueError: boom at {at}" in caplog.text for at in ("5", "10", "20"))


async def test_remove_during_a_run_lets_it_finish_and_never_runs_it_again() -> None:
    clock = VirtualClock(start=0.0)
    scheduler = Scheduler(clock)
    finished: list[float] = []

    async def job() -> None:
        await clock.sleep(3.0)
        finished.append(clock.now())

    scheduler.add("job", job, 5.0)
    scheduler.add("other", recorder(clock, [], "other"), 100.0)
    async with running(scheduler):
        await clock.drive(until=6.0)
        scheduler.remove("job")
        scheduler.remove("never-added")  # a no-op
        assert not scheduler.has("job")
        await clock.drive(until=60.0)
    assert finished == [8.0]
    assert scheduler.names() == ["other"]
    assert list(scheduler.stats()) == ["other"]


async def test_replacing_a_job_leaves_one_schedule() -> None:
    clock = VirtualClock(start=0.0)
    scheduler = Scheduler(clock)
    runs: Runs = []
    scheduler.add("job", recorder(clock, runs, "old"), 5.0)
    scheduler.add("job", recorder(clock, runs, "new"), 5.0, first_in_s=2.0)
    async with running(scheduler):
        await clock.drive(until=13.0)
    assert runs == [("new", 2.0), ("new", 7.0), ("new", 12.0)]
    assert scheduler.runs("job") == 3


async def test_changes_wake_the_loop_which_otherwise_sleeps_until_the_earliest_due_time() -> None:
    clock = CountingClock(start=0.0)
    scheduler = Scheduler(clock)
    runs: Runs = []
    scheduler.add("rare", recorder(clock, runs, "rare"), 100.0)
    async with running(scheduler):
        await clock.drive(until=1000.0)
        assert clock.sleeps <= 11  # one wait per due time, no fixed tick
        scheduler.add("new", recorder(clock, runs, "new"), 50.0, first_in_s=1.0)  # while it sleeps
        await clock.drive(until=1001.5)
    assert times(runs, "new") == [1001.0]
    assert times(runs, "rare") == [100.0 * k for k in range(1, 11)]


async def test_stats_shape() -> None:
    clock = VirtualClock(start=1_700_000_000.0)
    scheduler = Scheduler(clock)
    assert scheduler.stats() == {}
    scheduler.add("zeta", recorder(clock, [], "zeta", takes=0.25), 10.0)
    scheduler.add("alpha", recorder(clock, [], "alpha"), 30.0, first_in_s=0)
    async with running(scheduler):
        await clock.drive(until=1_700_000_021.0)
        stats = scheduler.stats()
    assert list(stats) == ["alpha", "zeta"]
    assert set(JobRow.__annotations__) <= set(stats["zeta"])
    assert stats["zeta"] == {
        "interval_s": 10.0,
        "runs": 2,
        "mean_ms": 250.0,
        "max_ms": 250.0,
        "overruns": 0,
        "next_due": iso_utc(1_700_000_030.0),
        "failures": 0,
        "running": False,
    }
    assert stats["alpha"]["runs"] == 1 and stats["alpha"]["mean_ms"] == 0.0
    assert stats["alpha"]["next_due"] == "2023-11-14T22:13:50.000Z"


async def test_cancelling_run_cancels_running_jobs_and_it_can_restart() -> None:
    clock = VirtualClock(start=0.0)
    scheduler = Scheduler(clock)
    cancelled: list[float] = []
    runs: Runs = []

    async def long() -> None:
        runs.append(("long", clock.now()))
        try:
            await clock.sleep(100.0)
        except asyncio.CancelledError:
            cancelled.append(clock.now())
            raise

    scheduler.add("long", long, 10.0)
    loop_task = asyncio.create_task(scheduler.run())
    await clock.drive(until=12.0)
    (job_task,) = [t for t in asyncio.all_tasks() if t.get_name() == "scheduler:long"]
    loop_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop_task
    assert cancelled == [12.0]
    assert job_task.cancelled()  # the job's CancelledError went through, not swallowed
    row = scheduler.stats()["long"]
    assert row["running"] is False and row["runs"] == 0 and row["failures"] == 0
    # A supervisor starts it again: the job keeps its schedule (due at 20, from its start at 10).
    async with running(scheduler):
        await clock.drive(until=21.0)
    assert times(runs, "long") == [10.0, 20.0]


async def test_a_few_hundred_jobs_keep_their_exact_cadence() -> None:
    clock = CountingClock(start=0.0)
    scheduler = Scheduler(clock)
    runs: Runs = []
    intervals = (1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
    for i in range(300):
        # Each takes 0.5 s of simulated venue latency: run one after the other, they would drift.
        scheduler.add(
            f"job{i:03}", recorder(clock, runs, f"job{i:03}", takes=0.5), intervals[i % 6], align=True
        )
    async with running(scheduler):
        await clock.drive(until=60.2)
        for i in range(0, 300, 2):  # longer and shorter
            scheduler.set_interval(f"job{i:03}", intervals[(i + 3) % 6])
        for _ in range(1000):  # re-timing back and forth leaves no pile of stale queue entries
            scheduler.set_interval("job000", 7.0)
            scheduler.set_interval("job000", 2.0)
        assert len(scheduler._heap) <= 2 * 300 + 1
        scheduler.set_interval("job000", intervals[3])
        for i in range(1, 300, 3):
            scheduler.remove(f"job{i:03}")
        await clock.drive(until=120.2)
        stats = scheduler.stats()
    for i in range(300):
        name = f"job{i:03}"
        first = intervals[i % 6]
        expected = [first * k for k in range(1, int(60.2 // first) + 1)]
        if i % 3 != 1:
            later = intervals[(i + 3) % 6] if i % 2 == 0 else first
            expected += [later * k for k in range(int(60.2 // later) + 1, int(120.2 // later) + 1)]
        assert times(runs, name) == expected, name
    assert all(row["overruns"] == 0 for row in stats.values())
    # The loop waits once per distinct due instant (a grid of 1 s here), not once per job.
    # One wait per distinct due instant (61 on the 1 s grid, then 12 on the 5 s one) and per change.
    assert clock.sleeps - len(runs) <= 80


async def test_intervals_must_be_positive() -> None:
    clock = VirtualClock(start=0.0)
    scheduler = Scheduler(clock)
    noop = recorder(clock, [], "noop")
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            scheduler.add("job", noop, bad)
    with pytest.raises(ValueError):
        scheduler.add("job", noop, 1.0, first_in_s=-1.0)
    scheduler.add("job", noop, 1.0)
    with pytest.raises(ValueError):
        scheduler.set_interval("job", 0.0)
    assert scheduler.interval("job") == 1.0
    with pytest.raises(KeyError):
        scheduler.set_interval("missing", 1.0)
