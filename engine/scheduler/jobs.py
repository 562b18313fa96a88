"""The engine's one scheduler: every periodic job, on the engine clock, in one priority queue.

Monitor checks by urgency tier, reconciliation, execution polls, store flushes, metric logs and alert
checks all run as named jobs of one :class:`Scheduler` instead of ``while True: sleep`` loops of their
own. The queue is a heap of ``(due, seq, name)`` entries with lazy invalidation: re-timing a job pushes
a new entry and bumps the job's ``seq``, so the old entry is recognised as stale when it reaches the
top; nothing ever scans all jobs, which keeps a few hundred monitor checks cheap.

Each due job runs as its own asyncio task, so a slow venue read delays nothing else; a job never
overlaps itself (a due time that finds the previous run still going is an *overrun*: counted, logged,
reported and skipped to the next interval). A job that raises is logged and reported and keeps its
schedule. The loop sleeps exactly until the earliest due time, and any change (a job added, removed,
re-timed, or asked to run soon) wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypedDict

from engine.core.clock import Clock, iso_utc
from engine.core.precedence import DecisionsFirst

log = logging.getLogger("opconsole.scheduler")

JobFn = Callable[[], Awaitable[None]]
"""A job: an argument-less coroutine function, awaited once per run."""

_DUE_SLACK_S = 1e-6
"""Due times this close to ``now`` are due now: ``k * 0.3`` and ``3k * 0.1`` differ in the last bit,
and aligned jobs must still start in the same pass (they share one batched venue read)."""

_GRID_SLACK = 1e-9
"""Tolerance, in intervals, when placing a time on an interval grid (float division is inexact)."""

_MIN_HEAP_FOR_COMPACTION = 64


class JobRow(TypedDict):
    """One job's entry in the snapshot's ``scheduler`` section (see CONTRACTS.md)."""

    interval_s: float
    runs: int
    mean_ms: float
    max_ms: float
    overruns: int
    next_due: str | None
    failures: int
    running: bool


# ---------------------------------------------------------------------------------------------------
# Pure timing decisions


def next_on_grid(moment: float, interval_s: float, origin: float) -> float:
    """The first time ``origin + k * interval_s`` (k >= 1) strictly after ``moment``.

    With ``origin`` the start of the last run this is the plain "start + interval" cadence (and,
    after an overrun, the next slot of that cadence); with ``origin = 0`` it is the aligned grid.
    """
    steps = math.floor((moment - origin) / interval_s + _GRID_SLACK) + 1
    return origin + max(1, steps) * interval_s


def grid_at_or_after(moment: float, interval_s: float) -> float:
    """The first multiple of ``interval_s`` at or after ``moment`` (the aligned grid, ``t = k * i``)."""
    return math.ceil(moment / interval_s - _GRID_SLACK) * interval_s


def first_due(now: float, interval_s: float, first_in_s: float | None, align: bool) -> float:
    """When a newly added job first comes due.

    ``first_in_s`` defaults to the interval; 0 means now, aligned or not. An aligned job otherwise
    comes due on its grid: the first multiple of the interval after ``now`` by default (so within one
    interval), or the first one at least ``first_in_s`` away.
    """
    if first_in_s == 0:
        return now
    if not align:
        return now + (interval_s if first_in_s is None else first_in_s)
    if first_in_s is None:
        return next_on_grid(now, interval_s, 0.0)
    return grid_at_or_after(now + first_in_s, interval_s)


def retimed_due(
    *,
    now: float,
    anchor: float,
    old_due: float,
    old_interval_s: float,
    new_interval_s: float,
    align: bool,
) -> float:
    """A job's next due time after its interval changed from ``old_interval_s`` to ``new_interval_s``.

    ``anchor`` is the start of its last run (or, before the first, when it was added). The change
    takes effect at once: due at ``anchor + new interval``, or now if that is past (on the grid for an
    aligned job). Shortening never makes it later than it was, lengthening never earlier (a job put
    off by an overrun stays put off).
    """
    candidate = max(now, anchor + new_interval_s)
    if align:
        candidate = grid_at_or_after(candidate, new_interval_s)
    if new_interval_s < old_interval_s:
        return min(candidate, old_due)
    return max(candidate, old_due)


def _check_interval(interval_s: float) -> None:
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"a job interval must be a positive number of seconds, not {interval_s!r}")


# ---------------------------------------------------------------------------------------------------
# The async shell


@dataclass(slots=True, eq=False)
class _Job:
    """A registered job: what to run, when, and its statistics."""

    name: str
    fn: JobFn
    interval_s: float
    align: bool
    due: float
    seq: int
    added_at: float
    explicit_first: bool
    last_start: float | None = None
    urgent: bool = False  # run_soon asked for it: due now, whatever the interval does meanwhile
    again_when_done: bool = False  # run_soon while it was running: once more right after this run
    runs: int = 0
    total_s: float = 0.0
    max_s: float = 0.0
    overruns: int = 0
    failures: int = 0
    failures_in_a_row: int = 0


def _cadence_origin(job: _Job, now: float) -> float:
    """Where the job's due times are counted from: 0 (the clock's grid) when aligned, else its last
    start (``now`` for a job re-added while its old run still goes: it has no start of its own yet)."""
    if job.align:
        return 0.0
    return now if job.last_start is None else job.last_start


class Scheduler:
    """The engine's periodic jobs, run on ``clock`` by :meth:`run`.

    ``on_failure(name, exc, failures_in_a_row)`` is called when a job raises; ``on_overrun(name,
    late_by_s)`` when a job comes due while its previous run is still going, with ``late_by_s`` how
    far that due run is put off (to the next slot of its interval). Both are called on the loop and
    must not block; an exception from them is logged, never fatal.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        on_failure: Callable[[str, BaseException, int], None] | None = None,
        on_overrun: Callable[[str, float], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_failure = on_failure
        self._on_overrun = on_overrun
        self._jobs: dict[str, _Job] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        # By name, not by job: a job removed and added again mid-run must still not overlap itself.
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._looping = False
        self.precedence = DecisionsFirst(clock)
        """The loop's precedence: a job starts once no fill is being decided (briefly held back)."""

    # -- registration ------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        fn: JobFn,
        interval_s: float,
        *,
        first_in_s: float | None = None,
        align: bool = False,
    ) -> None:
        """Register ``fn`` to run every ``interval_s`` seconds, first after ``first_in_s``.

        ``first_in_s`` defaults to the interval; 0 means now. With ``align`` the due times fall on
        multiples of the interval on the clock, so jobs whose intervals divide each other come due
        at the same instant. A job of the same name is replaced: its new function and timing apply
        from now on, its statistics carry on, and a run of it in progress finishes first.
        """
        _check_interval(interval_s)
        if first_in_s is not None and not (math.isfinite(first_in_s) and first_in_s >= 0):
            raise ValueError(f"first_in_s must be a number of seconds >= 0, not {first_in_s!r}")
        now = self._clock.now()
        due = first_due(now, interval_s, first_in_s, align)
        job = self._jobs.get(name)
        if job is None:
            job = _Job(name, fn, interval_s, align, due, -1, now, first_in_s is not None)
            self._jobs[name] = job
        else:
            job.fn, job.interval_s, job.align = fn, interval_s, align
            job.added_at, job.explicit_first, job.last_start = now, first_in_s is not None, None
            job.urgent = job.again_when_done = False
        self._schedule(job, due)

    def remove(self, name: str) -> None:
        """Stop running ``name`` (a no-op for an unknown name); a run in progress finishes."""
        if self._jobs.pop(name, None) is not None:
            self._compact_if_stale()
            self._wake.set()

    def set_interval(self, name: str, interval_s: float) -> None:
        """Change a job's interval, at once: next due = last start + the new interval, or now if past.

        Shortening never makes the next run later than it was; an aligned job stays on its (new)
        grid. A job whose interval changes while it runs is re-timed from that run's start. Before
        its first run, a job added with an explicit ``first_in_s`` keeps that first time unless the
        new interval brings it forward.
        """
        _check_interval(interval_s)
        job = self._job(name)
        if interval_s == job.interval_s:
            return
        old_interval, job.interval_s = job.interval_s, interval_s
        if job.urgent:  # a pending run_soon stays due now
            return
        pending_first = job.last_start is None
        due = retimed_due(
            now=self._clock.now(),
            anchor=job.added_at if job.last_start is None else job.last_start,
            old_due=job.due,
            old_interval_s=old_interval,
            new_interval_s=interval_s,
            align=job.align,
        )
        if pending_first and job.explicit_first and interval_s > old_interval:
            due = job.due
        self._schedule(job, due)

    def run_soon(self, name: str) -> None:
        """Make ``name`` due now (a stream gap wakes the execution poll, say).

        If it is running, it runs once more as soon as this run ends (the gap may postdate the
        run's read); asking again meanwhile does not queue more runs.
        """
        job = self._job(name)
        if name in self._running:
            job.again_when_done = True
            return
        job.urgent = True
        self._schedule(job, self._clock.now())

    # -- queries -----------------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        """Whether a job of this name is registered."""
        return name in self._jobs

    def names(self) -> list[str]:
        """The registered job names, sorted."""
        return sorted(self._jobs)

    def interval(self, name: str) -> float:
        """The job's current interval in seconds."""
        return self._job(name).interval_s

    def runs(self, name: str) -> int:
        """How many runs of the job have finished (successfully or not)."""
        return self._job(name).runs

    def stats(self) -> dict[str, JobRow]:
        """Every job's statistics, by name (sorted); durations and due times are on the engine clock."""
        rows: dict[str, JobRow] = {}
        for name in sorted(self._jobs):
            job = self._jobs[name]
            rows[name] = JobRow(
                interval_s=job.interval_s,
                runs=job.runs,
                mean_ms=round(job.total_s / job.runs * 1000, 3) if job.runs else 0.0,
                max_ms=round(job.max_s * 1000, 3),
                overruns=job.overruns,
                next_due=iso_utc(job.due),
                failures=job.failures,
                running=name in self._running,
            )
        return rows

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run due jobs until cancelled; on the way out, cancel the job runs still going.

        It may be started again after it ended (a supervisor restarting it): the jobs keep their
        schedule.
        """
        if self._looping:
            raise RuntimeError("the scheduler is already running")
        self._looping = True
        try:
            while True:
                # Cleared before launching, so a change made by a callback during the launch (or
                # by anyone while we compute the next due time) makes the wait return at once.
                self._wake.clear()
                self._launch_due(self._clock.now())
                due = self._earliest_due()
                if due is None:
                    await self._wake.wait()
                    continue
                with contextlib.suppress(TimeoutError):
                    await self._clock.wait_for(self._wake.wait(), due - self._clock.now())
        finally:
            self._looping = False
            await self._cancel_runs()

    def _launch_due(self, now: float) -> None:
        # self._heap, not a local: starting a job may compact (replace) the heap.
        while self._heap and self._heap[0][0] <= now + _DUE_SLACK_S:
            due, seq, name = heapq.heappop(self._heap)
            job = self._jobs.get(name)
            if job is None or job.seq != seq:
                continue  # removed or re-timed since this entry was pushed
            if name in self._running:
                self._overrun(job, due, now)
            else:
                self._start(job, now)

    def _start(self, job: _Job, now: float) -> None:
        job.last_start = now
        job.urgent = False
        self._schedule(job, next_on_grid(now, job.interval_s, _cadence_origin(job, now)), wake=False)
        task = asyncio.create_task(self._execute(job), name=f"scheduler:{job.name}")
        self._running[job.name] = task

    def _overrun(self, job: _Job, missed_due: float, now: float) -> None:
        """The job came due while still running: count it and skip to the next slot, never stack."""
        job.overruns += 1
        due = next_on_grid(now, job.interval_s, _cadence_origin(job, now))
        self._schedule(job, due, wake=False)
        running_for = now - job.last_start if job.last_start is not None else 0.0
        log.warning(
            "scheduler job %s still running after %.3f s (interval %.3f s): overrun %d, next run at %s",
            job.name,
            running_for,
            job.interval_s,
            job.overruns,
            iso_utc(due),
        )
        if self._on_overrun is not None:
            try:
                self._on_overrun(job.name, due - missed_due)
            except Exception:
                log.exception("scheduler on_overrun callback failed for %s", job.name)

    async def _execute(self, job: _Job) -> None:
        """One run of ``job``: timed on the engine clock, failures reported, never fatal."""
        clock = self._clock
        started = clock.monotonic()
        try:
            await self.precedence.calm()  # holding nothing a decision waits for yet: let it go first
            started = clock.monotonic()  # the job's statistics are its own run, not that wait
            await job.fn()
        except asyncio.CancelledError:
            self._finished(job)
            raise
        except Exception as exc:
            self._record(job, clock.monotonic() - started)
            job.failures += 1
            job.failures_in_a_row += 1
            log.exception("scheduler job %s failed (%d in a row)", job.name, job.failures_in_a_row)
            self._finished(job)
            if self._on_failure is not None:
                try:
                    self._on_failure(job.name, exc, job.failures_in_a_row)
                except Exception:
                    log.exception("scheduler on_failure callback failed for %s", job.name)
        else:
            self._record(job, clock.monotonic() - started)
            job.failures_in_a_row = 0
            self._finished(job)

    @staticmethod
    def _record(job: _Job, elapsed_s: float) -> None:
        job.runs += 1
        job.total_s += elapsed_s
        job.max_s = max(job.max_s, elapsed_s)

    def _finished(self, job: _Job) -> None:
        """Bookkeeping at the end of a run, done inside the run's task so the loop sees it at once."""
        if self._running.get(job.name) is asyncio.current_task():
            del self._running[job.name]
        if job.again_when_done and self._jobs.get(job.name) is job:
            job.again_when_done = False
            job.urgent = True
            self._schedule(job, self._clock.now())

    async def _cancel_runs(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # A task cancelled before it ever started never ran its own bookkeeping.
        for name, task in list(self._running.items()):
            if task.done():
                del self._running[name]

    # -- the queue ---------------------------------------------------------------------------------

    def _job(self, name: str) -> _Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise KeyError(f"no scheduler job named {name!r}") from None

    def _schedule(self, job: _Job, due: float, *, wake: bool = True) -> None:
        """Make ``due`` the job's next due time; its older heap entry becomes stale."""
        job.due = due
        job.seq = next(self._seq)
        heapq.heappush(self._heap, (due, job.seq, job.name))
        self._compact_if_stale()
        if wake:
            self._wake.set()

    def _earliest_due(self) -> float | None:
        heap = self._heap
        while heap:
            due, seq, name = heap[0]
            job = self._jobs.get(name)
            if job is not None and job.seq == seq:
                return due
            heapq.heappop(heap)
        return None

    def _compact_if_stale(self) -> None:
        """Rebuild the heap when stale entries outnumber live ones (amortised O(1) per change)."""
        if len(self._heap) > max(_MIN_HEAP_FOR_COMPACTION, 2 * len(self._jobs)):
            self._heap = [(job.due, job.seq, job.name) for job in self._jobs.values()]
            heapq.heapify(self._heap)
