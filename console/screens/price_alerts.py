"""The price-alerts screen: every alert (armed or triggered), a line to add one, and delete.

Typing ``BTCUSDT above 100000`` (or ``crosses``, or ``BTCUSDT change 2% 15m``) and Enter adds an
alert through the engine, which checks the symbol and that the level is on the right side of the
current last price; a refusal is shown under the line. The dialog opens on the input line, so
typing never deletes anything: ``d`` (or delete) works only on the list (tab to it), and asks first,
naming the alert.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label

from console.engine_link import EngineLink, Outcome
from console.screens.confirm import ConfirmScreen
from console.view_model import fmt_num
from engine.runtime.assembly import EngineNotStarted

log = logging.getLogger("opconsole.console")

COLUMNS = (("id", "#"), ("symbol", "Symbol"), ("condition", "When"), ("price", "Price"), ("state", "State"))


def alert_cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    """One alert as table cells: id, symbol, condition, price, and armed or when it fired."""
    fired = str(row.get("triggered_at") or "")
    state = "armed" if row.get("armed") else f"fired {fired[:19].replace('T', ' ')}"
    note = f" ({row['note']})" if row.get("note") else ""
    window = float(row.get("window_s") or 0.0)
    condition = str(row["condition"])
    price = (
        f"{float(row['price']):g}% in {window / 60:g}m"
        if condition == "change" and window
        else fmt_num(float(row["price"]))
    )
    return (str(row["id"]), f"{row['symbol']}{note}", condition, price, state)


def alert_words(row: Mapping[str, Any]) -> str:
    """One alert in words for a question: ``#3: BTCUSDT above 100,000`` (``change 2% in 15m``)."""
    price = float(row["price"])
    window = float(row.get("window_s") or 0.0)
    level = f"{price:g}% in {window / 60:g}m" if row["condition"] == "change" and window else fmt_num(price)
    return f"#{row['id']}: {row['symbol']} {row['condition']} {level}"


class AlertTable(DataTable[str]):
    """The alert list: the only place where ``d`` / delete deletes (never while typing in the input)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d,delete", "screen.delete", "Delete selected (asks first)"),
    ]


class PriceAlertsScreen(ModalScreen[None]):
    """List, add and delete price alerts."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *AlertTable.BINDINGS,  # listed for the help screen; they act only while the list has focus
        Binding("escape", "close", "Close"),
    ]

    def __init__(self, link: EngineLink, report: Callable[[Outcome], None]) -> None:
        super().__init__(classes="dialog")
        self._link = link
        self._report = report
        self.rows: list[Mapping[str, Any]] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Price alerts", id="dialog-title")
            yield AlertTable(id="pa-table", cursor_type="row", zebra_stripes=False)
            yield Input(
                placeholder="SYMBOL above|below|crosses PRICE or SYMBOL change 2% 15m [note]", id="pa-input"
            )
            yield Label("", id="pa-errors")
            hint = "enter add · tab to the list, then d delete (asks) · esc close — saved at once"
            yield Label(hint, id="dialog-hint")

    def on_mount(self) -> None:
        table = self.query_one("#pa-table", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.reload()
        self.query_one("#pa-input", Input).focus()  # typing goes to the input line, never to the list

    def reload(self) -> None:
        """Refill the table from the engine (a handful of rows: no need to diff)."""
        try:
            rows: Sequence[Mapping[str, Any]] = self._link.price_alerts()
        except EngineNotStarted as exc:
            self.show_errors([str(exc)])
            rows = []
        self.rows = list(rows)
        table = self.query_one("#pa-table", DataTable)
        table.clear()
        for row in self.rows:
            table.add_row(*alert_cells(row), key=str(row["id"]))

    def show_errors(self, errors: Sequence[str]) -> None:
        """The reasons of a refusal under the input line (cleared by an empty list)."""
        label = self.query_one("#pa-errors", Label)
        label.update("\n".join(errors))
        label.set_class(bool(errors), "-visible")

    @property
    def selected_id(self) -> int | None:
        """The id of the alert under the table's cursor, None when there is none."""
        table = self.query_one("#pa-table", DataTable)
        if not self.rows or not 0 <= table.cursor_row < len(self.rows):
            return None
        return int(self.rows[table.cursor_row]["id"])

    @on(Input.Submitted, "#pa-input")
    async def _submitted(self, event: Input.Submitted) -> None:
        await self.add(event.value)

    async def add(self, text: str) -> None:
        """Add the alert ``text`` describes; a refusal stays visible under the line."""
        outcome = await self._guarded(lambda: self._link.add_price_alert(text))
        self._report(outcome)
        if not outcome.ok:
            self.show_errors([outcome.message])
            return
        self.show_errors([])
        self.query_one("#pa-input", Input).value = ""
        self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # the screen's own listing of d/delete is for the help screen: only the list may delete
        if action == "delete":
            return isinstance(self.focused, AlertTable)
        return True

    def action_delete(self) -> None:
        """Ask, naming the selected alert, then delete it."""
        alert_id = self.selected_id
        if alert_id is None:
            self.show_errors(["no alert selected"])
            return
        row = next(r for r in self.rows if int(r["id"]) == alert_id)

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_worker(self.delete(alert_id), name="delete-price-alert", exit_on_error=False)

        question = f"Delete alert {alert_words(row)}?"
        self.app.push_screen(ConfirmScreen("Delete price alert", question), confirmed)

    async def delete(self, alert_id: int) -> None:
        """Delete alert ``alert_id`` through the engine and show the list again."""
        outcome = await self._guarded(lambda: self._link.delete_price_alert(alert_id))
        self._report(outcome)
        self.show_errors([] if outcome.ok else [outcome.message])
        self.reload()

    @staticmethod
    async def _guarded(action: Callable[[], Awaitable[Outcome]]) -> Outcome:
        try:
            return await action()
        except EngineNotStarted as exc:
            return Outcome(False, str(exc))
        except Exception as exc:  # an engine error must reach the operator, not close the screen
            log.exception("price alert action failed")
            return Outcome(False, f"{type(exc).__name__}: {exc}")

    def action_close(self) -> None:
        self.dismiss(None)
