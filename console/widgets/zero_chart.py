"""A column chart with a zero axis: the equity curve and the daily PnL bars of the statistics screen.

Textual's Sparkline scales from the smallest to the largest value, so a curve that only ever lost
money looks like one that only ever made some. This chart always includes zero: gains rise above
the axis in the positive tone, losses hang below it in the negative tone, and the part of the
height each side gets is in proportion to its largest value. :func:`chart_cells` is the pure part.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from console.view_model import MUTED, NEGATIVE, POSITIVE

RISING = " ▁▂▃▄▅▆▇█"
"""A column's top cell above the axis, by eighths filled from the bottom."""
HANGING = " ▀█"
"""A column's bottom cell below the axis, by halves filled from the top (no finer glyphs exist)."""
AXIS = "─"

Cells = list[list[tuple[str, str | None]]]
"""Rows of (character, tone) from the top."""


def fit(values: Sequence[float], width: int, *, sampled: bool) -> list[float]:
    """At most ``width`` values: the latest ``width`` (bars, one per day), or, when ``sampled``, the
    last value of each of ``width`` equal runs (a curve keeps its whole span)."""
    if width <= 0:
        return []
    if len(values) <= width:
        return list(values)
    if not sampled:
        return list(values[-width:])
    step = len(values) / width
    return [values[min(len(values) - 1, int((n + 1) * step) - 1)] for n in range(width)]


def chart_cells(values: Sequence[float], height: int) -> Cells:
    """The chart of ``values`` (one column each) in ``height`` rows: rows above the axis, the axis
    row, rows below it. Each side's rows are in proportion to its largest value; a side with any
    value gets at least one row, and the axis sits at the bottom when nothing is below zero."""
    if height < 2 or not values:
        return [[(AXIS, MUTED) for _ in values]] if height >= 1 else []
    top = max(0.0, max(values))
    bottom = -min(0.0, min(values))
    rows = height - 1  # one row is the axis
    if top + bottom == 0:
        above = rows
    else:
        above = round(rows * top / (top + bottom))
        if top > 0 and above == 0:
            above = 1
        if bottom > 0 and above == rows:
            above = rows - 1
    below = rows - above
    grid: Cells = [[(" ", None)] * len(values) for _ in range(height)]
    for column, value in enumerate(values):
        grid[above][column] = (AXIS, MUTED)
        if value > 0 and above:
            eighths = max(1, round(value / top * above * 8))
            for row in range(above):
                filled = min(8, eighths - 8 * (above - 1 - row))
                if filled > 0:
                    grid[row][column] = (RISING[filled], POSITIVE)
        elif value < 0 and below:
            halves = max(1, round(-value / bottom * below * 2))
            for row in range(below):
                filled = min(2, halves - 2 * row)
                if filled > 0:
                    grid[above + 1 + row][column] = (HANGING[filled], NEGATIVE)
    return grid


class ZeroChart(Widget):
    """A :func:`chart_cells` chart sized to the widget; ``sampled`` for a curve, not for daily bars."""

    DEFAULT_CSS = """
    ZeroChart {
        height: 6;
        width: 1fr;
    }
    """

    def __init__(self, *, sampled: bool, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sampled = sampled
        self.values: tuple[float, ...] = ()

    def plot(self, values: Sequence[float]) -> None:
        """Show ``values`` (repaints only when they changed)."""
        if tuple(values) != self.values:
            self.values = tuple(values)
            self.refresh()

    def render(self) -> Text:
        shown = fit(self.values, self.size.width, sampled=self.sampled)
        text = Text(no_wrap=True, overflow="crop")
        for n, row in enumerate(chart_cells(shown, self.size.height)):
            if n:
                text.append("\n")
            for char, tone in row:
                colour = self.app.theme_variables.get(tone) if tone else None
                text.append(char, Style(color=colour) if colour else None)
        return text
