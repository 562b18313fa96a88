"""The garbage collector of a long-running engine: the state that survives start-up is kept out of
its full passes.

At a thousand positions the process holds millions of objects (monitors, orders, the dashboard's
rows, the simulator's book when it is embedded), and each of CPython's full collections walks all
of them: 300-400 ms in which nothing else runs, a stop-loss decision included
(``scripts/snapshot_scale.py --positions 1000``: collector pauses p99 337 ms, 53 ms frozen). Once
the engine is reconciled, what is alive is moved to the permanent generation (:func:`gc.freeze`),
and the full passes walk only what came after. Every :data:`REFREEZE_S` of the engine clock it is
thawed, collected and frozen again, so a reference cycle that died meanwhile is collected then
rather than kept for good: one full pass an hour instead of one every minute or so.

The engine also runs the collector less often than CPython's defaults (:data:`THRESHOLDS`): a
snapshot at a thousand positions allocates tens of thousands of rows, which set off a young
collection every 700 allocations and, every ten of those, a pass over the middle generation. Almost
everything the engine allocates dies by reference counting (rows replaced, events decided), which the
thresholds do not touch; only reference cycles wait longer, and the hourly pass collects what
reached the old generation. ``scripts/snapshot_scale.py --positions 1000 --gc-freeze``: build CPU p50
87 -> 71 ms, p99 203 -> 124 ms, collector pauses in builds p99 68 -> 0 ms.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable

from engine.core.clock import Clock

log = logging.getLogger("opconsole.runtime")

REFREEZE_S = 3600.0
"""Engine-clock seconds between two thaw-collect-freeze passes."""
CHECK_INTERVAL_S = 10.0
"""How often the scheduler job looks whether the engine is ready (the first freeze follows it)."""
THRESHOLDS = (50_000, 20, 100)
"""The collector's generation thresholds while an engine runs (CPython's are 700, 10, 10)."""


class CollectorFreeze:
    """Freezes the collector's view of the engine's state once ``ready()`` and every
    :data:`REFREEZE_S` after, and runs the collector at :data:`THRESHOLDS` from its creation;
    :meth:`release` thaws it and restores the thresholds when the engine stops (a process that
    starts another engine, such as the test suite, keeps nothing frozen for good)."""

    def __init__(self, clock: Clock, ready: Callable[[], bool]) -> None:
        self.clock = clock
        self.ready = ready
        self.frozen_at: float | None = None
        self._thresholds = gc.get_threshold()  # the process's own, given back at release
        gc.set_threshold(*THRESHOLDS)

    async def tick(self) -> None:
        """The scheduler job: freeze once the engine is ready, and again when the last one is old."""
        if not self.ready():
            return
        now = self.clock.now()
        if self.frozen_at is not None and now - self.frozen_at < REFREEZE_S:
            return
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.frozen_at = now
        log.debug("collector: %d unreachable objects freed, %d frozen", collected, gc.get_freeze_count())

    def release(self) -> None:
        """Thaw what :meth:`tick` froze and give the process its thresholds back (the engine stopped)."""
        gc.set_threshold(*self._thresholds)
        if self.frozen_at is not None:
            gc.unfreeze()
            self.frozen_at = None
