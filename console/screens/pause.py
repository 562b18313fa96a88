"""The pause dialog (``P``): pause or resume new entries on main, on the mirror, or on both.

One line per choice with the accounts' state now and what choosing it does (see
:func:`~console.view_model.pause_choices`); Enter or space on a line, or its number, does it. The dialog
stays open and shows the state the engine reports afterwards, like the rollback panel; every change
is a toast and a log line. Protection (stop-losses, take-profits) keeps running on a paused account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from console.engine_link import EngineLink, Outcome
from console.view_model import ATTENTION, MUTED, PauseChoice, pause_choices


class PauseScreen(ModalScreen[None]):
    """Enter / space switch the selected line; 1, 2, 3 switch main, mirror, both; esc closes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "switch", "Pause / resume the selected line (or enter)"),
        Binding("1", "switch_line(0)", "Pause / resume main"),
        Binding("2", "switch_line(1)", "Pause / resume mirror"),
        Binding("3", "switch_line(2)", "Pause / resume both"),
        Binding("escape,P", "close", "Close"),
    ]

    def __init__(
        self,
        link: EngineLink,
        report: Callable[[Outcome], None],
        after_change: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(classes="dialog")
        self._link = link
        self._report = report
        self._after_change = after_change
        self.choices: list[PauseChoice] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Pause new entries per account", id="dialog-title")
            yield DataTable(id="pause-table", cursor_type="row", zebra_stripes=False)
            yield Label("enter or 1-3 pause/resume · esc close · positions stay protected", id="dialog-hint")

    def on_mount(self) -> None:
        table = self.query_one("#pause-table", DataTable)
        table.add_column("#", key="n")
        table.add_column("Accounts", key="accounts")
        table.add_column("Now", key="now")
        table.add_column("Enter does", key="does")
        self.show_states()
        table.focus()

    def show_states(self) -> None:
        """Rebuild the lines from the engine's pause state (at most three: cheap, and it keeps the cursor)."""
        table = self.query_one("#pause-table", DataTable)
        self.choices = pause_choices(self._link.paused_accounts())
        cursor = table.cursor_row
        table.clear()
        for n, choice in enumerate(self.choices, start=1):
            tone = ATTENTION if choice.now != "taking entries" else MUTED
            colour = self.app.theme_variables.get(tone)
            table.add_row(
                str(n),
                choice.label,
                Text(choice.now, style=f"bold {colour}" if colour else "bold"),
                "resume" if not choice.pause else "pause",
                key=choice.label,
            )
        if self.choices:
            table.move_cursor(row=min(max(cursor, 0), len(self.choices) - 1))

    async def _switch(self, index: int) -> None:
        if not 0 <= index < len(self.choices):
            return  # e.g. "3" with a single account: there is no "both" line
        choice = self.choices[index]
        self._report(await self._link.set_paused(choice.pause, list(choice.accounts)))
        await self._after_change()
        self.show_states()

    async def action_switch(self) -> None:
        await self._switch(self.query_one("#pause-table", DataTable).cursor_row)

    @on(DataTable.RowSelected, "#pause-table")
    async def _selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a line (the table's own enter key selects the row)."""
        await self._switch(event.cursor_row)

    async def action_switch_line(self, index: int) -> None:
        await self._switch(index)

    def action_close(self) -> None:
        self.dismiss(None)
