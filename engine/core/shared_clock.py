"""One scaled timeline shared by several processes (``opconsole soak``).

The soak runs the fake Bybit V5 server in one process and the engine in another (killed and restarted
at will); a simulated day must take well under an hour, so both read one timeline on which simulated
time runs ``speed`` times faster than real time. The timeline is a small file mapped into memory by
every process (:class:`SharedTimeline`); :class:`SharedClock` is the :class:`~engine.core.clock.Clock`
that reads it. Nothing drives it (it is not virtual): it follows ``CLOCK_MONOTONIC``, which on Linux
is one clock for the whole system, so two processes that read the same origin agree on the time.

The orchestrator changes the speed at run time (1x while a killed engine boots, so a restart costs the
market the time it would in production, then the nominal speed again); :meth:`SharedTimeline.set_speed`
rebases the origin at that instant, so simulated time is continuous.

Consistency is a seqlock: the writer makes the version odd, takes its instant, writes the fields and
makes the version even again; a reader takes ``time.monotonic()`` *between* two reads of the same even
version, and retries otherwise. So every reading is the one piecewise-linear function of the monotonic
clock (a reading with the old speed was taken before the rebase instant), and time never goes back,
in any process.
"""

from __future__ import annotations

import asyncio
import fcntl
import mmap
import os
import struct
import threading
import time
from collections.abc import Awaitable
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self, TypeVar

from engine.core.clock import race_timer
from engine.core.files import write_atomic

T = TypeVar("T")

MAGIC = b"OPCTIME1"
"""The file's first 8 bytes: what :meth:`SharedTimeline.open` checks before trusting the rest."""

_LAYOUT = struct.Struct("<8sQdddd")
"""magic, version (odd while written), real origin, simulated origin, speed, nominal speed."""
_VERSION = struct.Struct("<Q")
_VERSION_AT = 8

SLOW_SLICE_S = 0.05
"""Longest real sleep of a :meth:`SharedClock.sleep` while the speed is below nominal, so a sleeper
follows a speed-up within this much real time."""


class TimelineError(Exception):
    """The file is not a timeline (wrong size or magic), or a speed is not a positive number."""


class Timeline(NamedTuple):
    """One consistent reading of the shared timeline."""

    real_origin: float
    """``time.monotonic()`` at the last rebase."""
    sim_origin: float
    """Simulated epoch seconds at ``real_origin``."""
    speed: float
    """Simulated seconds per real second now."""
    nominal_speed: float
    """The run's usual speed (fixed at creation)."""

    def at(self, real: float) -> float:
        """Simulated epoch seconds at the monotonic instant ``real``."""
        return self.sim_origin + (real - self.real_origin) * self.speed


def _check_speed(speed: float) -> float:
    if not speed > 0 or speed == float("inf"):
        raise TimelineError(f"speed must be a positive number, not {speed!r}")
    return float(speed)


class SharedTimeline:
    """The timeline file, mapped into this process (see the module docstring).

    One writer at a time (:meth:`set_speed` takes an exclusive ``flock`` on the file); any number of
    readers, which never block.
    """

    def __init__(self, path: Path, handle: int, mapped: mmap.mmap) -> None:
        self.path = path
        self._fd = handle
        self._map = mapped

    @classmethod
    def create(cls, path: Path, start_epoch: float, speed: float) -> SharedTimeline:
        """Write a new timeline at ``path`` (replacing any) starting now at ``start_epoch``, running at
        ``speed`` (also its nominal speed), and map it."""
        speed = _check_speed(speed)
        # Written whole and renamed into place: a reader opening it never sees half a file.
        write_atomic(path, _LAYOUT.pack(MAGIC, 0, time.monotonic(), float(start_epoch), speed, speed))
        return cls.open(path)

    @classmethod
    def open(cls, path: Path) -> SharedTimeline:
        """Map the existing timeline at ``path``."""
        handle = os.open(path, os.O_RDWR)
        try:
            if os.fstat(handle).st_size != _LAYOUT.size:
                raise TimelineError(f"{path} is not a timeline file (size)")
            mapped = mmap.mmap(handle, _LAYOUT.size)
        except BaseException:
            os.close(handle)
            raise
        if mapped[: len(MAGIC)] != MAGIC:
            mapped.close()
            os.close(handle)
            raise TimelineError(f"{path} is not a timeline file (magic)")
        return cls(path, handle, mapped)

    def close(self) -> None:
        """Unmap the file (the clocks reading it must not be used afterwards)."""
        if not self._map.closed:
            self._map.close()
            os.close(self._fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read(self) -> Timeline:
        """A consistent reading (retried while a write is in progress)."""
        return self._read()[0]

    def sim_now(self) -> float:
        """Simulated epoch seconds now."""
        timeline, real = self._read()
        return timeline.at(real)

    def _read(self) -> tuple[Timeline, float]:
        """A consistent reading and the monotonic instant taken inside it (see the module docstring)."""
        mapped = self._map
        while True:
            (before,) = _VERSION.unpack_from(mapped, _VERSION_AT)
            if before % 2:
                time.sleep(0)  # a writer is between its two stores: let it finish
                continue
            real = time.monotonic()
            _, _, real_origin, sim_origin, speed, nominal = _LAYOUT.unpack_from(mapped)
            (after,) = _VERSION.unpack_from(mapped, _VERSION_AT)
            if after == before:
                return Timeline(real_origin, sim_origin, speed, nominal), real

    def set_speed(self, speed: float) -> None:
        """Run at ``speed`` from now on; the origin moves to this instant, so time does not jump."""
        speed = _check_speed(speed)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            mapped = self._map
            (version,) = _VERSION.unpack_from(mapped, _VERSION_AT)
            _VERSION.pack_into(mapped, _VERSION_AT, version + 1)
            # Taken while the version is odd: a reader that saw the old speed read the clock earlier.
            real = time.monotonic()
            _, _, real_origin, sim_origin, old_speed, nominal = _LAYOUT.unpack_from(mapped)
            sim_now = Timeline(real_origin, sim_origin, old_speed, nominal).at(real)
            _LAYOUT.pack_into(mapped, 0, MAGIC, version + 1, real, sim_now, speed, nominal)
            _VERSION.pack_into(mapped, _VERSION_AT, version + 2)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class SharedClock:
    """The :class:`~engine.core.clock.Clock` of a :class:`SharedTimeline`: simulated epoch seconds that
    run ``speed`` times faster than real time, the same in every process that maps the file."""

    is_virtual = False  # nothing drives it: it moves with real time, only faster

    def __init__(self, timeline: SharedTimeline) -> None:
        self.timeline = timeline
        self._last = float("-inf")
        # pybit's threads read the clock too (signatures, liveness); the guard keeps the max exact.
        self._guard = threading.Lock()

    @property
    def speed(self) -> float:
        """Simulated seconds per real second now."""
        return self.timeline.read().speed

    @property
    def nominal_speed(self) -> float:
        """The run's usual speed (what real-time library timeouts are scaled by)."""
        return self.timeline.read().nominal_speed

    def now(self) -> float:
        # The seqlock already makes the timeline monotonic; the max absorbs the float rounding of a
        # rebased origin (an ulp of an epoch is 0.2 µs).
        reading = self.timeline.sim_now()
        with self._guard:
            self._last = max(self._last, reading)
            return self._last

    def monotonic(self) -> float:
        return self.now()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        deadline = self.now() + seconds
        while True:
            remaining = deadline - self.now()
            if remaining <= 0:
                return
            timeline = self.timeline.read()
            real = remaining / timeline.speed
            if timeline.speed < timeline.nominal_speed:
                real = min(real, SLOW_SLICE_S)  # a speed-up is coming: look again soon
            await asyncio.sleep(real)

    async def wait_for(self, awaitable: Awaitable[T], timeout: float) -> T:
        # A timer on this clock's own sleep, so the timeout follows the shared speed.
        message = f"timed out after {timeout} simulated seconds"
        return await race_timer(awaitable, self.sleep(timeout), message)
