"""A DataTable that is synchronised with keyed rows, changing only the cells that differ.

Dolphie's lesson for live dashboards: never ``clear()`` and rebuild a table on refresh (it flickers,
resets the scroll and throws the cursor back to the top). Rows are keyed (a position by its monitor
key, an order by its orderLinkId); a refresh removes the rows that went away, appends new ones, and
calls ``update_cell`` for each cell whose text or tone changed, all inside ``app.batch_update()`` so
the screen repaints once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable

from console.view_model import Cell, Row


class DiffTable(DataTable[Text]):
    """A row-keyed table fed with :meth:`sync`; cell tones are theme variable names."""

    def __init__(
        self,
        columns: Sequence[tuple[str, str]],
        *,
        cursor: bool = True,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(
            id=id,
            classes=classes,
            cursor_type="row" if cursor else "none",
            show_cursor=cursor,
            zebra_stripes=False,
        )
        self.can_focus = cursor
        self._spec = tuple(columns)
        self._rows: dict[str, Row] = {}
        self.cells_written = 0  # how many cells were painted since mount (tests read it)

    def on_mount(self) -> None:
        for key, label in self._spec:
            self.add_column(label, key=key)

    @property
    def row_keys(self) -> list[str]:
        """The keys of the rows, in display order."""
        return list(self._rows)

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor, or None when the table is empty."""
        if not self._rows or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value

    def sync(self, rows: Mapping[str, Row]) -> None:
        """Make the table show ``rows``: remove, append and update cells, never rebuild."""
        with self.app.batch_update():
            for gone in [key for key in self._rows if key not in rows]:
                self.remove_row(gone)
                del self._rows[gone]
            for key, row in rows.items():
                old = self._rows.get(key)
                if old is None:
                    self.add_row(*(self._paint(cell) for cell in row), key=key)
                    self.cells_written += len(row)
                elif old != row:
                    for (column, _), new, previous in zip(self._spec, row, old, strict=True):
                        if new != previous:
                            self.update_cell(key, column, self._paint(new), update_width=True)
                            self.cells_written += 1
                self._rows[key] = row

    def repaint(self) -> None:
        """Paint every cell again (the theme changed, so the tones resolve to new colours)."""
        with self.app.batch_update():
            for key, row in self._rows.items():
                for (column, _), cell in zip(self._spec, row, strict=True):
                    self.update_cell(key, column, self._paint(cell))

    def _paint(self, cell: Cell) -> Text:
        colour = self.app.theme_variables.get(cell.tone) if cell.tone else None
        return Text(
            cell.text,
            style=Style(color=colour) if colour else "",
            justify="right" if cell.right else "left",
            no_wrap=True,
        )
