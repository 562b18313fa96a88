"""Statistics: trades, win rate, PnL, fees, profit factor, drawdown, streak, and the PnL curve.

Main, mirror and all together side by side (one column when main is the only account and its
figures are the combined ones), so the panel fits the compact layout at 80 columns as well as the
metrics column at 160.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from console.view_model import StatsView, fmt_money, stats_table
from console.widgets.zero_chart import ZeroChart

GAPS = (2, 1)
"""Spaces between value columns: two when the panel is wide enough, else one (the metrics column at
120 columns is 44 cells wide inside)."""


class StatsPanel(Vertical):
    """The figures as a label column and one value column per account, then the curve of the
    cumulative realised PnL of every account: a :class:`ZeroChart` from zero (gains above the axis,
    losses below it, at least :func:`~console.view_model.pnl_chart_span` high), its caption on the
    zero line saying what it is and where it ends. Lines never wrap: they are laid out for the
    panel's width, again when it is resized."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = "Statistics"
        self._shown: StatsView | None = None
        self._width = 0

    def compose(self) -> ComposeResult:
        yield Static(id="stats-lines")
        yield ZeroChart(sampled=True, id="stats-chart")

    def show(self, view: StatsView) -> None:
        if view == self._shown:
            return
        self._shown = view
        self._paint()
        # the curve starts at 0 (before the first trade): a first trade that lost is a fall
        chart = self.query_one("#stats-chart", ZeroChart)
        chart.plot([0.0, *view.cumulative], view.chart_span, pnl_caption(view))

    def on_resize(self) -> None:
        if self.content_size.width != self._width:
            self._paint()

    def _paint(self) -> None:
        if self._shown is None:
            return
        self._width = self.content_size.width
        parts: list[Content] = []
        # every digit when the columns fit side by side, else large sums abbreviated (+1.23M); the
        # lines never wrap, so a panel narrower still clips the last column rather than scramble it
        for short in (False, True):
            headings, lines = stats_table(self._shown, short)
            label_width = max((len(label) for label, _ in lines), default=0) + 1
            if not headings:
                parts = _block(label_width, lines)
                break
            widths = [
                max(len(h), *(len(values[i][0]) for _, values in lines)) for i, h in enumerate(headings)
            ]
            fits = [gap for gap in GAPS if label_width + sum(widths) + gap * (len(widths) - 1) <= self._width]
            parts = _table(label_width, headings, lines, widths, fits[0] if fits else GAPS[-1])
            if fits:
                break
        self.query_one("#stats-lines", Static).update(Content("\n").join(parts))


def pnl_caption(view: StatsView) -> str:
    """``PnL curve -0.03 · scale 100 USDT``: what the chart shows, where it ends (with its sign), and
    the smallest span its height stands for."""
    last = view.cumulative[-1] if view.cumulative else 0.0
    return f"PnL curve {fmt_money(last, signed=True)} · scale {view.chart_span:,.0f} USDT"


Lines = Sequence[tuple[str, tuple[tuple[str, str | None], ...]]]


def _figure(text: str, tone: str | None) -> tuple[str, str]:
    return text, f"${tone}" if tone else ""


def _block(label_width: int, lines: Lines) -> list[Content]:
    """One column of figures after the labels, as the panel always showed a single account."""
    return [
        Content.assemble((f"{label:<{label_width}}", "$muted-text"), *(_figure(*v) for v in values))
        for label, values in lines
    ]


def _table(
    label_width: int, headings: Sequence[str], lines: Lines, widths: Sequence[int], gap: int
) -> list[Content]:
    """The columns side by side under their headings, right-aligned, ``gap`` spaces apart."""

    def aligned(text: str, column: int) -> str:
        return f"{text:>{widths[column] + (gap if column else 0)}}"

    parts = [
        Content.assemble(
            " " * label_width, *((aligned(h, i), "bold $muted-text") for i, h in enumerate(headings))
        )
    ]
    for label, values in lines:
        figures = (_figure(aligned(text, i), tone) for i, (text, tone) in enumerate(values))
        parts.append(Content.assemble((f"{label:<{label_width}}", "$muted-text"), *figures))
    return parts
