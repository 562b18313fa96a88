"""The dashboard refresh as the console drives it: a snapshot build at ``ui.refresh_hz``, never overlapping.

Each build is timed three ways: in simulated time (the virtual clock before and after, i.e. the
realistic latency of the venue reads the cache did not serve, as the operator waits for them); in real
time (the real clock: the build's CPU, plus whatever engine work ran on the loop in the turns the build
took, so an upper bound of the build's own cost); and the build's own CPU (:mod:`.build_cpu`: only the
loop steps run for the build).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from engine.core.clock import Clock, RealClock
from engine.dashboard.snapshot import Dashboard

from .build_cpu import BuildCpu, in_build

log = logging.getLogger("opconsole.bench")


@dataclass(slots=True)
class RefreshTimes:
    """What the refresh loop measured, one entry per finished build (milliseconds)."""

    virtual_ms: list[float] = field(default_factory=list)
    real_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    failed: int = 0


async def refresh_loop(
    dashboard: Dashboard, clock: Clock, period_s: float, until: float, times: RefreshTimes
) -> None:
    """Build snapshots until ``until`` (clock time), as the console's timer does: the next build starts
    one period after the last one started, or as soon as it ends when it took longer. The loop ends
    by itself rather than being cancelled, so no build is cut off halfway through its reads."""
    wall_clock = RealClock()  # the build's real time, beside the virtual clock's
    with BuildCpu() as own:
        while clock.now() < until:
            started = clock.now()
            wall = wall_clock.monotonic()
            own_before = own.seconds
            try:
                await in_build(dashboard.snapshot)
            except Exception as exc:  # a failed build is counted, and the console would try again too
                times.failed += 1
                log.debug("bench: snapshot build failed: %s", exc)
            else:
                times.real_ms.append((wall_clock.monotonic() - wall) * 1000.0)
                times.virtual_ms.append((clock.now() - started) * 1000.0)
                times.cpu_ms.append((own.seconds - own_before) * 1000.0)
            await clock.sleep(max(0.0, started + period_s - clock.now()))
