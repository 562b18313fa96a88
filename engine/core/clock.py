"""The engine's only time source.

Everything in ``engine/`` asks a :class:`Clock` for the time and sleeps through it, so a simulation
can swap the wall clock for a :class:`VirtualClock` and replay an hour of trading in seconds with the
same result on every run (the FoundationDB / TigerBeetle idea: one clock, one seed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol, TypeVar, runtime_checkable

T = TypeVar("T")

_OUTSIDE_WAIT_S = 0.01
"""Real seconds :meth:`VirtualClock.drive_while` waits when no sleeper is parked on the clock."""


@runtime_checkable
class Clock(Protocol):
    """What the engine needs from time: read it, sleep on it, bound a wait by it."""

    def now(self) -> float:
        """Seconds since the Unix epoch (virtual or real)."""
        ...

    def monotonic(self) -> float:
        """A clock that never goes backwards, for measuring intervals."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller until ``seconds`` have passed on this clock."""
        ...

    async def wait_for(self, awaitable: Awaitable[T], timeout: float) -> T:
        """Await ``awaitable``; raise ``TimeoutError`` after ``timeout`` seconds of this clock."""
        ...

    @property
    def is_virtual(self) -> bool:
        """True when time only moves because a driver advances it."""
        ...


async def yield_to_loop() -> None:
    """Let every other ready task run once; no time passes on any clock."""
    await asyncio.sleep(0)


async def race_timer(awaitable: Awaitable[T], timer: Awaitable[None], timeout_message: str) -> T:
    """Await ``awaitable``, or raise ``TimeoutError(timeout_message)`` if ``timer`` (a sleep on a
    clock that is not the loop's) ends first; the loser is cancelled. Not ``asyncio.wait_for``,
    whose timeout counts the loop's own time (see :meth:`RealClock.wait_for`)."""
    task = asyncio.ensure_future(awaitable)
    timing = asyncio.ensure_future(timer)
    try:
        done, _ = await asyncio.wait({task, timing}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        raise TimeoutError(timeout_message)
    finally:
        timing.cancel()
        if not task.done():
            task.cancel()


def now_ms(clock: Clock) -> int:
    """The clock's time in integer milliseconds, as Bybit timestamps are."""
    return round(clock.now() * 1000)


def real_seconds(clock: Clock, seconds: float) -> float:
    """The real (wall) duration of ``seconds`` of ``clock``'s time, for a library that counts real
    seconds (an HTTP timeout, a WebSocket ping interval).

    A clock that runs faster than real time tells its ``nominal_speed`` (the shared clock of a soak
    run): its seconds are that many times shorter. :class:`RealClock` and :class:`VirtualClock` have
    none, and their seconds are returned unchanged.
    """
    speed = getattr(clock, "nominal_speed", None)
    if isinstance(speed, int | float) and speed > 0:
        return seconds / speed
    return seconds


def iso_utc(epoch_seconds: float) -> str:
    """ISO 8601 UTC with millisecond precision (the snapshot JSON's time format)."""
    return (
        datetime.fromtimestamp(epoch_seconds, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_iso_utc(text: str) -> float:
    """Parse an ISO 8601 time (``Z`` or offset; naive means UTC) into epoch seconds."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class RealClock:
    """Wall-clock time; sleeps are real ``asyncio`` sleeps."""

    is_virtual = False

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait_for(self, awaitable: Awaitable[T], timeout: float) -> T:
        # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives in the same
        # loop step as the awaited result (CPython gh-86296), so a loop like the scheduler's, cancelled
        # by EngineRuntime.stop() just as its wake-up event fires, runs on and the stop never ends.
        # asyncio.timeout only turns its own cancellation into TimeoutError.
        async with asyncio.timeout(timeout):
            return await awaitable


class _TrackingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor under a virtual clock: it knows which thread jobs are in flight.

    File I/O (aiofiles, ``asyncio.to_thread``) runs in the default executor. Virtual time must not
    jump while such a job is running, or a save that takes 2 ms of real time would appear to take
    minutes of simulated time, and two runs with the same seed would differ.
    """

    def __init__(self) -> None:
        super().__init__(thread_name_prefix="virtual-clock-io")
        self._inflight: set[concurrent.futures.Future[object]] = set()
        self._given_up: set[concurrent.futures.Future[object]] = set()
        self._guard = threading.Lock()

    def submit(  # type: ignore[override]
        self, fn: Callable[..., object], /, *args: object, **kwargs: object
    ) -> concurrent.futures.Future[object]:
        future = super().submit(fn, *args, **kwargs)
        with self._guard:
            self._inflight.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: concurrent.futures.Future[object]) -> None:
        with self._guard:
            self._inflight.discard(future)
            self._given_up.discard(future)

    def wait_idle(self, patience_s: float = 2.0) -> bool:
        """Block until no job is in flight; True if there was one to wait for.

        A job still running after ``patience_s`` is given up on (and never waited for again), so a
        thread that blocks for long — waiting for the loop, say — slows the simulation down once
        instead of freezing it.
        """
        with self._guard:
            pending = self._inflight - self._given_up
        if not pending:
            return False
        _, not_done = concurrent.futures.wait(pending, timeout=patience_s)
        if not_done:
            with self._guard:
                self._given_up |= not_done
        return True


class VirtualClock:
    """Simulated time that advances only when :meth:`drive` moves it.

    Sleepers park on a heap of deadlines. :meth:`drive` lets every runnable task run until the event
    loop has nothing ready and no thread job (file I/O) is in flight, then jumps time to the earliest
    deadline and wakes its sleepers, so idle stretches cost nothing and one simulated hour takes a
    fraction of a real second per task. Ties wake in the order the sleeps were made, which keeps runs
    with the same seed identical.
    """

    is_virtual = True

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._executor: _TrackingExecutor | None = None

    def _attach(self, loop: asyncio.AbstractEventLoop) -> _TrackingExecutor:
        """Make the loop's default executor one whose in-flight jobs :meth:`drive` can wait for."""
        if self._executor is None:
            self._executor = _TrackingExecutor()
        executor: _TrackingExecutor = self._executor
        if getattr(loop, "_default_executor", None) is not executor:
            loop.set_default_executor(executor)
        return executor

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        self._attach(loop)
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    async def wait_for(self, awaitable: Awaitable[T], timeout: float) -> T:
        return await race_timer(awaitable, self.sleep(timeout), f"timed out after {timeout} virtual seconds")

    def pending_sleepers(self) -> int:
        """How many sleeps are parked (cancelled ones included until they are reached)."""
        return len(self._sleepers)

    def next_deadline(self) -> float | None:
        """The earliest parked deadline, or None."""
        self._drop_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper whose deadline has passed.

        For tests that step time by hand; :meth:`drive` is the usual driver.
        """
        self._advance_to(self._now + seconds)

    async def drive(self, until: float) -> None:
        """Run the loop in virtual time up to ``until`` (epoch seconds), as fast as possible."""
        executor = self._attach(asyncio.get_running_loop())
        while True:
            await _settle(executor)
            deadline = self.next_deadline()
            if deadline is None or deadline > until:
                break
            self._advance_to(deadline)
        self._now = max(self._now, until)
        await _settle(executor)

    async def drive_while(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` while driving virtual time, however long in virtual time it takes.

        Whenever the loop is idle and the awaitable has not finished, time jumps to the earliest
        parked deadline, as in :meth:`drive`: work that sleeps on this clock after a run's
        ``drive(until=...)`` has returned (a venue read with simulated latency while the exit
        snapshot is built, say) would otherwise wait for a driver that is gone. When nothing sleeps
        on the clock, the awaitable waits on something outside it (a socket, a thread), so it gets
        a short real wait before the next look instead of a busy loop.
        """
        executor = self._attach(asyncio.get_running_loop())
        task = asyncio.ensure_future(awaitable)
        try:
            while True:
                await _settle(executor)
                if task.done():
                    return task.result()
                deadline = self.next_deadline()
                if deadline is None:
                    await asyncio.wait({task}, timeout=_OUTSIDE_WAIT_S)
                    continue
                self._advance_to(deadline)
        finally:
            if not task.done():
                task.cancel()

    def _advance_to(self, moment: float) -> None:
        self._now = max(self._now, moment)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)


async def _settle(executor: _TrackingExecutor, max_rounds: int = 10_000) -> None:
    """Yield to the event loop until no callback is ready and no thread job is in flight.

    CPython's loop keeps runnable callbacks in ``_ready``; where that is not available we fall back
    to a fixed number of yields, which is enough for the engine's short await chains. Waiting for a
    thread job blocks the loop for that job's real duration, which is what a simulation wants: the
    simulated world stands still while the disk catches up.
    """
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)
    while True:
        for _ in range(max_rounds if ready is not None else 64):
            await asyncio.sleep(0)
            if ready is not None and not ready:
                break
        if not executor.wait_idle():
            return
