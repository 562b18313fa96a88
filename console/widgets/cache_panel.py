"""Cache efficiency: per-category TTL, hits, misses, hit rate, load time and age; the overall hit rate
over the last minutes as a Sparkline; persistence writes and pending changes; API calls per minute.

When the ``cache_metrics`` toggle is rolled back the cache counts nothing, and the panel says so
instead of showing zeros that look like a broken cache.
"""

from __future__ import annotations

from collections import deque

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline

from console.view_model import (
    CACHE_COLUMNS,
    cache_metrics_on,
    cache_rows,
    cache_summary,
    persistence_summary,
)
from console.widgets.diff_table import DiffTable
from engine.dashboard.schema import Snapshot

HIT_RATE_POINTS = 120  # samples behind the sparkline (one per refresh: a minute at 2 Hz)


class CachePanel(Vertical):
    """The cache efficiency panel."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = "Cache efficiency"
        self._hit_rates: deque[float] = deque(maxlen=HIT_RATE_POINTS)

    def compose(self) -> ComposeResult:
        yield Label("", id="cache-summary")
        yield Sparkline([], id="cache-spark")
        yield DiffTable(CACHE_COLUMNS, cursor=False, id="cache-table")
        yield Label("", id="cache-persistence")
        yield Label("", id="cache-api")

    def show(self, snapshot: Snapshot, api_rate: str) -> None:
        summary = cache_summary(snapshot)
        label = self.query_one("#cache-summary", Label)
        label.update(summary)
        label.set_class(not cache_metrics_on(snapshot), "-off")
        cache = snapshot.get("cache", {})
        series = cache.get("sparkline")
        if series is None:  # a cache that keeps no series: sample its hit rate once per refresh
            rate = cache.get("hit_rate")
            if rate is not None and cache_metrics_on(snapshot):
                self._hit_rates.append(float(rate) * 100.0)
            series = self._hit_rates
        self.query_one("#cache-spark", Sparkline).data = [float(v) for v in series]
        self.query_one("#cache-table", DiffTable).sync(cache_rows(snapshot))
        persistence = persistence_summary(snapshot["persistence"], snapshot["time"])
        self.query_one("#cache-persistence", Label).update(persistence)
        self.query_one("#cache-api", Label).update(api_rate)
