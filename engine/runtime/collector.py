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


class CollectorFreeze:
    """Freezes the collector's view of the engine's state once ``ready()`` and every
    :data:`REFREEZE_S` after; :meth:`release` thaws it when the engine stops (a process that starts
    another engine, such as the test suite, keeps nothing frozen for good)."""

    def __init__(self, clock: Clock, ready: Callable[[], bool]) -> None:
        self.clock = clock
        self.ready = ready
        self.frozen_at: float | None = None

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
        """Thaw what :meth:`tick` froze (the engine stopped)."""
        if self.frozen_at is not None:
            gc.unfreeze()
            self.frozen_at = None
