"""A keyed live table drawn with Textual's Line API: the cost of a refresh follows the rows on screen.

Textual's ``DataTable`` re-renders every visible row on any change and keeps per-row render caches
that a thousand-row table invalidates on every mark change. :class:`LiveTable` keeps the rows as
the view model's :class:`~console.view_model.Cell` tuples and draws a line only when the compositor
asks for it (``render_line``); a long table makes from the view model's
:class:`~console.view_model.RowSource` only the rows on screen (see :data:`EAGER_ROWS`), so a
refresh costs a diff of those rows (cheap tuple comparisons) plus the lines that are both changed
and visible (a thousand rows cost 9 s a frame with ``DataTable``,
15 ms with this table: ``scripts/console_frame_bench.py``). Every table of the console is one: keyed
rows fed with :meth:`LiveTable.sync`, a cursor that stays on its row when rows above it come and go,
per-cell tones (theme variable names), right-justified numbers and :meth:`LiveTable.repaint` on a
theme change.

Columns have priorities (:class:`~console.view_model.Column`): when the table is narrower than its
columns need, the least important columns are dropped whole, never cut mid-text.

:class:`TableStack` is the container of the trading tables: it shares its height between them by
their rows (:func:`share_height`), so a table with empty rows gives them to a table that scrolls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import compress
from operator import ne
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.view_model import Column, Row, RowSource

CELL_PADDING = 1
"""Blank cells on each side of a column's text (as DataTable's default)."""
HEADER_LINES = 1
EAGER_ROWS = 200
"""Up to this many rows a table makes every row at each sync, so each column is as wide as its widest
cell; past it, only the rows on screen are made (and a row when it is scrolled into view), and a
column is as wide as the widest cell made so far. Made eagerly, a thousand positions at new marks
were a thousand rows formatted and compared at every refresh, for the forty on screen: most of the
console's CPU at that size, on the thread whose time a stop-loss's decision shares."""


def text_width(text: str) -> int:
    """Terminal cells of ``text``; the common ASCII case without rich's per-character lookup."""
    return len(text) if text.isascii() else cell_len(text)


def visible_columns(needs: Sequence[int], priorities: Sequence[int], room: int) -> tuple[int, ...]:
    """The indices of the columns shown in ``room`` cells when column ``i`` needs ``needs[i]`` cells.

    While the columns do not fit, the least important one (the highest ``priority`` number; the
    rightmost of equals) is dropped whole. Priority 1 columns are never dropped: when they alone do
    not fit, the table is cropped at its right edge rather than losing them.
    """
    shown = list(range(len(needs)))
    total = sum(needs)
    while total > room:
        droppable = [i for i in shown if priorities[i] > 1]
        if not droppable:
            break
        victim = max(droppable, key=lambda i: (priorities[i], i))
        shown.remove(victim)
        total -= needs[victim]
    return tuple(shown)


def share_height(available: int, wants: Sequence[int]) -> list[int]:
    """Heights for stacked tables that want ``wants`` lines each, in ``available`` lines.

    When every table fits, each gets what it wants and the last one takes what is left (its border
    reaches the bottom). Otherwise the lines are shared max-min fairly: a table that wants less than
    an equal share gets all it wants, and the others split the rest, so a table with empty rows never
    keeps them while another scrolls.
    """
    if not wants:
        return []
    if sum(wants) <= available:
        heights = list(wants)
        heights[-1] += available - sum(wants)
        return heights
    heights = [0] * len(wants)
    pending = sorted(range(len(wants)), key=lambda i: wants[i])
    left = max(0, available)
    while pending:
        share = left // len(pending)
        index = pending.pop(0)
        heights[index] = min(wants[index], share) if pending else left
        left -= heights[index]
    return heights


class LiveTable(ScrollView, can_focus=True):
    """A row-keyed table fed with :meth:`sync`, drawn line by line; cell tones are theme variables."""

    DEFAULT_CSS = """
    LiveTable {
        background: $surface;
        color: $foreground;
        height: auto;
        overflow-x: hidden;
        overflow-y: auto;
    }
    LiveTable > .live-table--header {
        text-style: bold;
        background: $panel;
        color: $foreground;
    }
    LiveTable > .live-table--cursor {
        background: $block-cursor-blurred-background;
        color: $block-cursor-blurred-foreground;
        text-style: $block-cursor-blurred-text-style;
    }
    LiveTable:focus > .live-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"live-table--header", "live-table--cursor"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "cursor_home", "First row", show=False),
        Binding("end", "cursor_end", "Last row", show=False),
    ]

    class RowCountChanged(Message):
        """The number of rows changed (the :class:`TableStack` shares its height again)."""

        def __init__(self, table: LiveTable) -> None:
            super().__init__()
            self.table = table

    def __init__(
        self,
        columns: Sequence[Column | tuple[str, str]],
        *,
        cursor: bool = True,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.can_focus = cursor
        self.show_cursor = cursor
        self.columns: tuple[Column, ...] = tuple(
            spec if isinstance(spec, Column) else Column(*spec) for spec in columns
        )
        self._column_index = {column.key: i for i, column in enumerate(self.columns)}
        self._rows: dict[str, Row] = {}  # every row as last made (a long table's: only those seen)
        self._source = RowSource((), self._rows.__getitem__)
        self._fresh: set[str] = set()  # the rows made from the current source
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        # How many cells of each text width every column holds: its width follows its widest cell,
        # also when that cell goes away, at the cost of the cells that changed only.
        self._widths: list[Counter[int]] = [Counter() for _ in self.columns]
        self._widest: tuple[int, ...] | None = None  # _text_widths, until a cell's width changes
        self._frame: tuple[Style, int] | None = None  # (style, width) while a frame is drawn
        self._layout: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # (shown, text widths)
        self._layout_key: tuple[int, tuple[int, ...]] | None = None
        # each row's line as last drawn, with the (style, width) it was drawn for
        self._strips: dict[str, tuple[Style, int, Strip]] = {}
        self._header: tuple[Style, int, Strip] | None = None
        self._tones: dict[str | None, Style] = {}
        self.cursor_row = 0
        self.rows_made = 0  # rows made from a source since mount (tests read it)
        self.cells_written = 0  # cells whose content changed since mount (tests read it)
        self.cells_painted = 0  # cells drawn into lines since mount: the rendering work
        self.lines_rendered = 0  # row lines handed to the compositor since mount

    # --- reading --------------------------------------------------------------------------------

    @property
    def row_keys(self) -> list[str]:
        """The keys of the rows, in display order."""
        return list(self._order)

    @property
    def row_count(self) -> int:
        """How many rows the table holds (on screen or not)."""
        return len(self._order)

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor, or None when the table is empty."""
        if not self.show_cursor or not 0 <= self.cursor_row < len(self._order):
            return None
        return self._order[self.cursor_row]

    @property
    def shown_columns(self) -> list[str]:
        """The keys of the columns on screen (the others were dropped for lack of width)."""
        shown, _ = self._current_layout()
        return [self.columns[i].key for i in shown]

    def get_row(self, row_key: str) -> list[Text]:
        """The cells of a row as text (every column, shown or not)."""
        return [Text(cell.text) for cell in self._row(row_key)]

    def get_row_at(self, index: int) -> list[Text]:
        """The cells of the row at ``index`` in display order."""
        return self.get_row(self._order[index])

    def get_cell(self, row_key: str, column_key: str) -> Text:
        """One cell's text."""
        return Text(self._row(row_key)[self._column_index[column_key]].text)

    # --- writing --------------------------------------------------------------------------------

    def sync(self, rows: Mapping[str, Row] | RowSource) -> None:
        """Make the table show ``rows`` (in their order): only the changed visible lines are redrawn.

        A table of at most :data:`EAGER_ROWS` rows makes every row now; a longer one makes only the
        rows on screen, and the others when they are scrolled into view (each made once per sync),
        so a refresh costs the rows on screen, not the rows in the table."""
        source = rows if isinstance(rows, RowSource) else RowSource.of(rows)
        keys = list(source.keys)
        selected = self.selected_key
        self._source = source
        self._fresh = set()
        count_before = len(self._order)
        reordered = keys != self._order
        if reordered:
            kept = set(keys)
            for key in [key for key in self._rows if key not in kept]:
                self._count(self._rows.pop(key), -1)
                self._strips.pop(key, None)
            self._order = keys
            self._index = {key: i for i, key in enumerate(keys)}
            self._follow(selected)
        changed: dict[str, tuple[int, int]] = {}  # row key -> its first and last changed column
        for key in keys if len(keys) <= EAGER_ROWS else self._window():
            self._make(key, changed)
        if reordered:
            self.virtual_size = Size(self.virtual_size.width, len(self._order) + HEADER_LINES)
            if count_before != len(self._order):
                self.post_message(self.RowCountChanged(self))
            self.refresh()
        elif self._relayout():
            self.refresh()
        else:
            self._refresh_rows(changed)

    def _make(self, key: str, changed: dict[str, tuple[int, int]] | None = None) -> Row:
        """Make the row ``key`` from the current source and keep it; a cell that changed is counted
        and its line drawn again, and ``changed`` learns the row's first and last changed column."""
        row = self._source.row(key)
        self._fresh.add(key)
        self.rows_made += 1
        old = self._rows.get(key)
        self._rows[key] = row
        if old is None:
            self._count(row, 1)
            self.cells_written += len(row)
            self._strips.pop(key, None)
        elif old != row:
            # the comparisons in C (map), the bookkeeping in Python only for the changed cells
            differs = list(map(ne, row, old))
            self.cells_written += differs.count(True)
            for column in compress(range(len(row)), differs):
                new, previous = row[column].text, old[column].text
                if new != previous:
                    was, now = text_width(previous), text_width(new)
                    if was != now:
                        self._widths[column][was] -= 1
                        self._widths[column][now] += 1
                        self._widest = None
            self._strips.pop(key, None)
            if changed is not None:
                changed[key] = (differs.index(True), len(differs) - 1 - differs[::-1].index(True))
        return row

    def _row(self, key: str) -> Row:
        """The row ``key`` as the current source says it (made now if it was not yet)."""
        return self._rows[key] if key in self._fresh else self._make(key)

    def _window(self) -> list[str]:
        """The keys of the rows on screen."""
        top = self.scroll_offset.y
        return self._order[top : top + self._visible_rows()]

    def repaint(self) -> None:
        """Draw every line again (the theme changed, so the tones resolve to new colours)."""
        self._tones.clear()
        self._strips.clear()
        self._header = None
        self.refresh()

    def move_cursor(self, *, row: int) -> None:
        """Put the cursor on row ``row`` (clamped to the table) and scroll it into view."""
        if not self._order:
            self.cursor_row = 0
            return
        before = self.cursor_row
        self.cursor_row = max(0, min(row, len(self._order) - 1))
        if before != self.cursor_row:
            self._refresh_rows([self._order[i] for i in (before, self.cursor_row) if i < len(self._order)])
        self._scroll_to_cursor()

    # --- keys and mouse -------------------------------------------------------------------------

    def action_cursor_up(self) -> None:
        """Cursor one row up."""
        self.move_cursor(row=self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        """Cursor one row down."""
        self.move_cursor(row=self.cursor_row + 1)

    def action_page_up(self) -> None:
        """Cursor one screen up."""
        self.move_cursor(row=self.cursor_row - self._page())

    def action_page_down(self) -> None:
        """Cursor one screen down."""
        self.move_cursor(row=self.cursor_row + self._page())

    def action_cursor_home(self) -> None:
        """Cursor on the first row."""
        self.move_cursor(row=0)

    def action_cursor_end(self) -> None:
        """Cursor on the last row."""
        self.move_cursor(row=len(self._order) - 1)

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None and offset.y >= HEADER_LINES and self.show_cursor:
            self.move_cursor(row=self.scroll_offset.y + offset.y - HEADER_LINES)

    def on_resize(self, event: events.Resize) -> None:
        """A new width may show or drop columns."""
        if self._relayout():
            self.refresh()

    # --- drawing --------------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        """The lines of one frame: the widget's style and width are read once for all of them (each
        costs a walk up the DOM, which was most of a line's cost)."""
        written = self.cells_written
        for key in self._window():
            if key not in self._fresh:  # scrolled into view since the sync: made before it is drawn
                self._make(key)
        if self.cells_written != written:  # the lines outside this frame's crop are drawn next frame
            self.refresh()
        self._frame = (self.rich_style, self.scrollable_content_region.width)
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the viewport: the header, or the row scrolled there."""
        if self._relayout():
            self.refresh()  # the width changed under this frame: the other lines follow at once
        base, width = self._frame or (self.rich_style, self.scrollable_content_region.width)
        if y < HEADER_LINES:
            header = base + self.get_component_rich_style("live-table--header")
            if self._header is None or self._header[:2] != (header, width):
                self._header = (header, width, self._draw_header(header, width))
            return self._header[2]
        index = self.scroll_offset.y + y - HEADER_LINES
        if not 0 <= index < len(self._order):
            return Strip.blank(width, base)
        key = self._order[index]
        style = base
        if self.show_cursor and index == self.cursor_row:
            style = base + self.get_component_rich_style("live-table--cursor")
        drawn = self._strips.get(key)
        if drawn is None or drawn[:2] != (style, width):
            drawn = self._strips[key] = (style, width, self._draw_row(self._row(key), style, width))
        self.lines_rendered += 1
        return drawn[2]

    def _draw_header(self, style: Style, width: int) -> Strip:
        shown, widths = self._current_layout()
        segments = [
            Segment(
                " " * CELL_PADDING + set_cell_size(self.columns[i].label, widths[i]) + " " * CELL_PADDING,
                style,
            )
            for i in shown
        ]
        return _fitted(segments, sum(widths[i] + 2 * CELL_PADDING for i in shown), style, width)

    def _draw_row(self, row: Row, style: Style, width: int) -> Strip:
        """The row's line in its final ``style`` (the frame's, or the cursor's) and ``width``: drawn
        styled at once, as restyling a drawn line (``Strip.apply_style``) cost more than drawing it."""
        shown, widths = self._current_layout()
        pad = " " * CELL_PADDING
        segments: list[Segment] = []
        for i in shown:
            cell = row[i]
            room = widths[i]
            text = cell.text if text_width(cell.text) <= room else set_cell_size(cell.text, room)
            blank = " " * (room - text_width(text))
            tone = style + self._tone(cell.tone)
            if cell.right:
                segments += [Segment(pad + blank, style), Segment(text, tone), Segment(pad, style)]
            else:
                segments += [Segment(pad, style), Segment(text, tone), Segment(blank + pad, style)]
        self.cells_painted += len(shown)
        return _fitted(segments, sum(widths[i] + 2 * CELL_PADDING for i in shown), style, width)

    def _tone(self, tone: str | None) -> Style:
        style = self._tones.get(tone)
        if style is None:
            colour = self.app.theme_variables.get(tone) if tone else None
            style = self._tones[tone] = Style(color=colour) if colour else Style()
        return style

    # --- bookkeeping ----------------------------------------------------------------------------

    def _count(self, row: Row, step: int) -> None:
        for column, cell in enumerate(row):
            self._widths[column][text_width(cell.text)] += step
        self._widest = None

    def _text_widths(self) -> tuple[int, ...]:
        # asked for on every line drawn: computed again only after a cell's width changed
        if self._widest is None:
            self._widest = self._compute_text_widths()
        return self._widest

    def _compute_text_widths(self) -> tuple[int, ...]:
        return tuple(
            max([text_width(column.label), *(width for width, n in counts.items() if n > 0)])
            for column, counts in zip(self.columns, self._widths, strict=True)
        )

    def _current_layout(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if self._layout is None:
            self._relayout()
        return self._layout or ((), ())

    def _relayout(self) -> bool:
        """Choose the shown columns for the current width; True when that changed the drawing."""
        widths = self._text_widths()
        room = self._frame[1] if self._frame is not None else self.scrollable_content_region.width
        key = (room, widths)
        if key == self._layout_key:
            return False
        self._layout_key = key
        needs = [width + 2 * CELL_PADDING for width in widths]
        shown = visible_columns(needs, [column.priority for column in self.columns], room)
        self._layout = (shown, widths)
        self._strips.clear()
        self._header = None
        used = sum(needs[i] for i in shown)
        self.virtual_size = Size(min(used, room) if room else used, len(self._order) + HEADER_LINES)
        return True

    def _follow(self, selected: str | None) -> None:
        """Keep the cursor on the row it was on (rows above it came or went), else in the table."""
        if selected is not None and selected in self._index:
            self.cursor_row = self._index[selected]
        self.cursor_row = max(0, min(self.cursor_row, len(self._order) - 1))
        self._scroll_to_cursor()

    def _visible_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - HEADER_LINES)

    def _page(self) -> int:
        return max(1, self._visible_rows() - 1)

    def _scroll_to_cursor(self) -> None:
        top = self.scroll_offset.y
        visible = self._visible_rows()
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False, immediate=True)

    def _refresh_rows(self, keys: Sequence[str] | Mapping[str, tuple[int, int]]) -> None:
        """Ask the compositor to redraw the rows of ``keys`` that are on screen, and only those: the
        whole line, or (keys mapped to their first and last changed column) the cells from the one
        to the other, so a frame writes the figures that moved, not the rows around them."""
        top = self.scroll_offset.y
        visible = self._visible_rows()
        width = self.scrollable_content_region.width
        for key in keys:
            index = self._index.get(key)
            if index is None or not top <= index < top + visible:
                continue
            x, cells = (0, width) if not isinstance(keys, Mapping) else self._cells_span(*keys[key])
            if cells:
                self.refresh(Region(x, index - top + HEADER_LINES, cells, 1))

    def _cells_span(self, first: int, last: int) -> tuple[int, int]:
        """Where the shown columns ``first`` to ``last`` lie on a line: (x, width); width 0 when none
        of them is shown."""
        shown, widths = self._current_layout()
        x = start = end = 0
        for i in shown:
            step = widths[i] + 2 * CELL_PADDING
            if first <= i <= last:
                start, end = (start if end else x), x + step
            x += step
        return start, end - start


def _fitted(segments: list[Segment], used: int, style: Style, width: int) -> Strip:
    """A line of ``segments`` (``used`` cells) made exactly ``width`` cells: padded in ``style``, or
    cropped when the columns that are never dropped do not fit."""
    if used < width:
        segments.append(Segment(" " * (width - used), style))
    elif used > width:
        return Strip(segments, used).crop(0, width)
    return Strip(segments, width)


class TableStack(Vertical):
    """A column of :class:`LiveTable`\\ s that share its height by their rows (:func:`share_height`).

    Other children (none today) keep the height their styles give them.
    """

    def on_resize(self, event: events.Resize) -> None:
        """The stack got a new height: share it again."""
        self.share()

    def on_live_table_row_count_changed(self, message: LiveTable.RowCountChanged) -> None:
        """A table gained or lost rows: share the height again."""
        message.stop()
        self.share()

    def share(self) -> None:
        """Give each displayed table the height :func:`share_height` decides."""
        tables = [child for child in self.children if isinstance(child, LiveTable) and child.display]
        if not tables:
            return
        others = sum(
            child.outer_size.height for child in self.children if child.display and child not in tables
        )
        available = self.content_size.height - others
        if available <= 0:
            return
        wants = [table.row_count + HEADER_LINES + table.styles.gutter.height for table in tables]
        for table, height in zip(tables, share_height(available, wants), strict=True):
            if table.styles.height is None or table.styles.height.cells != height:
                table.styles.height = height
