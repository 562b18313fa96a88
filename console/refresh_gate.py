"""When a refresh is worth its cost: only when the engine's data changed, or the clock must tick.

Building a snapshot and painting it twice a second whatever happens was most of the console's idle
cost, and half of it painted nothing new: the simulator's prices move once a second, and each
refresh moved the cache's own hit counters, which the next refresh then painted. The dashboard keeps
a change mark (venue events and alerts seen so far,
:meth:`~engine.dashboard.snapshot.Dashboard.changes`); a refresh runs when the mark moved, and at
least every :data:`MAX_QUIET_S` so the header's clock and the age of the data keep ticking while the
market is quiet. Everything else that changes (the engine's state after a stream went down, the
scheduler's figures) is on screen within that second; an operator's action refreshes at once.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

MAX_QUIET_S = 1.0
"""The longest the screen goes without a refresh: the header's clock shows seconds."""
METRICS_PERIOD_S = 2.0
"""How often a routine refresh repaints the cache-efficiency panel. Its figures are rates over
minutes, and every refresh moves them (a snapshot is a cache lookup): repainting them once a second
was about half of the console's idle cost, for nothing an operator could act on sooner."""


REFRESH_SHARE = 0.2
"""The most of the time the console spends refreshing: at a thousand positions a refresh costs a few
hundred ms (the snapshot is built on the engine's loop, the rows painted on the UI's), and refreshes
back to back left the engine a fraction of the one core the two threads share (Python's GIL), so
fills waited. Past that cost the refresh rate falls instead; at small sizes it is the set rate."""


def pause_after(period_s: float, took_s: float) -> float:
    """How long the refresh loop sleeps after a refresh of ``took_s`` seconds at ``period_s``: the
    rest of the period, but long enough that refreshing takes at most :data:`REFRESH_SHARE` of the
    time (pure)."""
    return max(period_s - took_s, period_s / 4, took_s * (1 - REFRESH_SHARE) / REFRESH_SHARE)


@dataclass(slots=True)
class RefreshGate:
    """Remembers what the last refresh showed; :meth:`due` says whether the next one is needed."""

    max_quiet_s: float = MAX_QUIET_S
    metrics_period_s: float = METRICS_PERIOD_S
    _mark: Hashable | None = None
    _at: float | None = None
    _metrics_at: float | None = None

    def due(self, mark: Hashable | None, now: float) -> bool:
        """Whether to refresh at monotonic time ``now`` with the engine's change ``mark`` (None: the
        engine cannot say, so always)."""
        if mark is None or self._at is None:
            return True
        return mark != self._mark or now - self._at >= self.max_quiet_s

    def refreshed(self, mark: Hashable | None, now: float) -> None:
        """A refresh started at ``now`` when the change mark was ``mark``: it shows at least that."""
        self._mark, self._at = mark, now

    def metrics_due(self, now: float) -> bool:
        """Whether a routine refresh at ``now`` repaints the cache-efficiency panel too (and, if so,
        counts it as repainted)."""
        if self._metrics_at is not None and now - self._metrics_at < self.metrics_period_s:
            return False
        self._metrics_at = now
        return True
