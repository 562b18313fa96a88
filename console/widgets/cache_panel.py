"""Cache efficiency: the overall hit rate with every category's own beside it; the overall hit rate
over the last minutes as a labelled chart from 0 to 100%; per-category TTL, hits, misses, hit rate,
load time and age; persistence writes and pending changes; API calls per minute.

When the ``cache_metrics`` toggle is rolled back the cache counts nothing, and the panel says so
instead of showing zeros that look like a broken cache.
"""

from __future__ import annotations

from collections import deque

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Label

from console.view_model import (
    CACHE_CHART_CAPTION,
    CACHE_COLUMNS,
    cache_metrics_on,
    cache_rows,
    cache_summary,
    persistence_summary,
)
from console.widgets.live_table import LiveTable
from console.widgets.quiet_text import show_text
from console.widgets.zero_chart import ZeroChart
from engine.dashboard.schema import Snapshot

HIT_RATE_POINTS = 120  # samples behind the chart when the cache keeps none (one per refresh)
FULL_SCALE = 100.0  # the chart's height is 0-100%, whatever the rates


class CachePanel(Vertical):
    """The cache efficiency panel."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = "Cache efficiency"
        self._hit_rates: deque[float] = deque(maxlen=HIT_RATE_POINTS)
        self._pending: dict[str, str] = {}  # label id -> text, for the lines below the panel's edge

    def compose(self) -> ComposeResult:
        yield Label("", id="cache-summary")
        yield ZeroChart(sampled=False, min_span=FULL_SCALE, id="cache-chart")
        yield LiveTable(CACHE_COLUMNS, cursor=False, id="cache-table")
        yield Label("", id="cache-persistence")
        yield Label("", id="cache-api")

    def show(self, snapshot: Snapshot, api_rate: str) -> None:
        self._show_line("cache-summary", cache_summary(snapshot))
        self.query_one("#cache-summary", Label).set_class(not cache_metrics_on(snapshot), "-off")
        cache = snapshot.get("cache", {})
        series = cache.get("sparkline")
        if series is None:  # a cache that keeps no series: sample its hit rate once per refresh
            rate = cache.get("hit_rate")
            if rate is not None and cache_metrics_on(snapshot):
                self._hit_rates.append(float(rate))
            series = self._hit_rates
        # rates are 0..1 ratios; the chart draws percent from a 0 axis to a fixed 100
        chart = self.query_one("#cache-chart", ZeroChart)
        chart.plot([float(v) * 100.0 for v in series], caption=CACHE_CHART_CAPTION)
        self.query_one("#cache-table", LiveTable).sync(cache_rows(snapshot))
        self._show_line("cache-persistence", persistence_summary(snapshot["persistence"], snapshot["time"]))
        self._show_line("cache-api", api_rate)
        if self._pending:  # the table above may shrink in the coming layout: look again after it
            self.call_after_refresh(self._show_pending)

    def on_resize(self, event: events.Resize) -> None:
        """A taller panel may bring a line below its edge into sight: it shows the latest text."""
        self._show_pending()

    def _show_pending(self) -> None:
        for name, text in list(self._pending.items()):
            self._show_line(name, text)

    def _show_line(self, name: str, text: str) -> None:
        """Show ``text`` in the label ``name``, or keep it for later while the label lies below the
        panel's edge. The panel clips its last lines when the screen is short (the API line at
        50 rows), and Textual answers a repaint of a widget off screen with an arrangement of the
        whole screen: that was a tenth of the console's idle cost."""
        label = self.query_one(f"#{name}", Label)
        if self._below_edge(label):
            self._pending[name] = text
        else:
            self._pending.pop(name, None)
            show_text(label, text)

    def _below_edge(self, child: Widget) -> bool:
        """Whether ``child`` starts below the panel's last content line (the children stack from the
        top: their sizes from the last layout, no lookup in the screen's map)."""
        top = 0
        for sibling in self.children:
            if sibling is child:
                break
            if sibling.display:
                top += sibling.outer_size.height + sibling.styles.margin.height
        inner = self.outer_size.height - self.styles.gutter.height
        return inner > 0 and top >= inner
