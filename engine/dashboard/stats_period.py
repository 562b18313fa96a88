"""The statistics' period: when the operator last reset the statistics (the ledger is kept).

The period start is stored under :data:`~engine.core.state_keys.STATS_PERIOD_KEY` and written durably
(``force=True``) when it changes, so a reset survives a restart. The statistics views
(:mod:`engine.dashboard.statistics`) cover the trades closed at or after it.
"""

from __future__ import annotations

import logging
import math

from engine.core.clock import Clock
from engine.core.state_keys import STATS_PERIOD_KEY
from persistence.reasons import Reason
from persistence.store import Store

log = logging.getLogger("opconsole.dashboard")


def period_start_of(value: object) -> float | None:
    """The period start held in a stored value, or None when there is none or it cannot be read
    (the statistics then cover every trade: nothing trades on this value, so a bad one is no
    reason to stop)."""
    start = value.get("start") if isinstance(value, dict) else None
    if isinstance(start, bool) or not isinstance(start, int | float) or not math.isfinite(start):
        if value is not None:
            log.warning("%s: unreadable statistics period %r, showing every trade", STATS_PERIOD_KEY, value)
        return None
    return float(start)


class StatsPeriod:
    """The start of the statistics' period, loaded from the store and reset by the operator."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.start: float | None = None

    def load(self) -> None:
        """Take the period start from the store's recovered state."""
        self.start = period_start_of(self.store.state.get(STATS_PERIOD_KEY))

    async def reset(self) -> float:
        """Start a new period now; durable before this returns (a failing disk raises
        :class:`~persistence.errors.StoreFailed`: the store keeps the change and writes it later)."""
        now = self.clock.now()
        self.start = now
        await self.store.save(STATS_PERIOD_KEY, {"start": now}, reason=Reason.STATS_UPDATE, force=True)
        log.info("statistics reset: a new period starts now")
        return now
