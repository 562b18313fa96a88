"""Statistics: trades, win rate, PnL, fees, profit factor, drawdown, streak, and the PnL curve."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Sparkline, Static

from console.view_model import TradeStats, stats_lines


class StatsPanel(Vertical):
    """The figures as label/value lines, then a Sparkline of cumulative realised PnL."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = "Statistics"
        self._shown: TradeStats | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="stats-lines")
        yield Sparkline([], id="stats-spark")

    def show(self, stats: TradeStats) -> None:
        if stats == self._shown:
            return
        self._shown = stats
        parts: list[Content] = []
        for label, value, tone in stats_lines(stats):
            parts.append(
                Content.assemble(
                    (f"{label:<14}", "$muted-text"),
                    (value, f"${tone}" if tone else ""),
                )
            )
        self.query_one("#stats-lines", Static).update(Content("\n").join(parts))
        self.query_one("#stats-spark", Sparkline).data = list(stats.cumulative)
