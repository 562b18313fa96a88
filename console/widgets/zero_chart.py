"""A column chart with a zero axis: the equity curve and the daily PnL bars of the statistics screen.

Textual's Sparkline scales from the smallest to the largest value, so a curve that only ever lost
money looks like one that only ever made some. This chart always includes zero: gains rise above
the axis in the positive tone, losses hang below it in the negative tone, and the part of the
height each side gets is in proportion to its largest value. A chart may have a smallest span
(``min_span``): values much smaller than it draw as small marks from the axis, so one losing trade of
-0.03 USDT is not drawn as a wall of blocks as large as a day's loss. :func:`chart_cells` is the pure
part.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

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


def chart_cells(values: Sequence[float], height: int, min_span: float = 0.0) -> Cells:
    """The chart of ``values`` (one column each) in ``height`` rows: rows above the axis, the axis
    row, rows below it. Each side's rows are in proportion to its largest value; a side with any
    value gets at least one row, and the axis sits at the bottom when nothing is below zero.

    The full height stands for the largest gain plus the largest loss, or ``min_span`` when that is
    more: below it, bars are drawn to that scale (a nonzero value still shows at least its smallest
    mark, so its sign is never lost)."""
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
    # below the smallest span, every bar shrinks by the same factor (1 when the values fill it)
    shrink = (top + bottom) / min_span if 0 < top + bottom < min_span else 1.0
    grid: Cells = [[(" ", None)] * len(values) for _ in range(height)]
    for column, value in enumerate(values):
        grid[above][column] = (AXIS, MUTED)
        if value > 0 and above:
            eighths = max(1, round(value / top * above * 8 * shrink))
            for row in range(above):
                filled = min(8, eighths - 8 * (above - 1 - row))
                if filled > 0:
                    grid[row][column] = (RISING[filled], POSITIVE)
        elif value < 0 and below:
            halves = max(1, round(-value / bottom * below * 2 * shrink))
            for row in range(below):
                filled = min(2, halves - 2 * row)
                if filled > 0:
                    grid[above + 1 + row][column] = (HANGING[filled], NEGATIVE)
    return grid


def captioned(cells: Cells, width: int, caption: str) -> Cells:
    """``cells`` with the axis drawn across the whole ``width`` and ``caption`` written on it, after
    one axis cell: the zero line never holds a bar, so the label costs no row of the chart."""
    if not caption or width <= 0:
        return cells
    rows = [list(row) for row in cells] or [[]]
    axis = next((n for n, row in enumerate(rows) if row and row[0][0] == AXIS), 0)
    line = rows[axis] + [(AXIS, MUTED)] * (width - len(rows[axis]))
    for n, char in enumerate(f" {caption} "[: max(0, width - 1)]):
        line[1 + n] = (char, MUTED)
    rows[axis] = line
    return rows


class ZeroChart(Widget):
    """A :func:`chart_cells` chart sized to the widget; ``sampled`` for a curve, not for daily bars;
    ``min_span``: the smallest range the full height stands for (see :func:`chart_cells`);
    ``caption``: what it shows, written on its zero line (:func:`captioned`)."""

    DEFAULT_CSS = """
    ZeroChart {
        height: 6;
        width: 1fr;
    }
    """

    def __init__(self, *, sampled: bool, min_span: float = 0.0, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sampled = sampled
        self.min_span = min_span
        self.caption = ""
        self.values: tuple[float, ...] = ()

    def plot(
        self, values: Sequence[float], min_span: float | None = None, caption: str | None = None
    ) -> None:
        """Show ``values`` (repaints only when they, the smallest span or the caption changed)."""
        span = self.min_span if min_span is None else min_span
        label = self.caption if caption is None else caption
        if tuple(values) != self.values or span != self.min_span or label != self.caption:
            self.values = tuple(values)
            self.min_span = span
            self.caption = label
            self.refresh()

    def render(self) -> Text:
        shown = fit(self.values, self.size.width, sampled=self.sampled)
        text = Text(no_wrap=True, overflow="crop")
        cells = chart_cells(shown, self.size.height, self.min_span)
        styles: dict[str | None, Style | None] = {}
        for n, row in enumerate(captioned(cells, self.size.width, self.caption)):
            if n:
                text.append("\n")
            # one span per run of cells of the same tone: a chart is mostly long runs (blank, axis)
            for tone, run in groupby(row, key=lambda cell: cell[1]):
                if tone not in styles:
                    colour = self.app.theme_variables.get(tone) if tone else None
                    styles[tone] = Style(color=colour) if colour else None
                text.append("".join(char for char, _ in run), styles[tone])
        return text
