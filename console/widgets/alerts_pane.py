"""The alerts pane: the latest alerts first, coloured by severity through theme variables."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from console.view_model import alert_lines
from engine.alerts.model import AlertRow


class AlertsPane(VerticalScroll):
    """A scrollable list of alerts; repainted only when the list changes."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = "Alerts"
        self._shown: list[tuple[str, str | None]] | None = None

    def compose(self) -> ComposeResult:
        yield Static("no alerts", id="alerts-text")

    def show(self, alerts: Iterable[AlertRow]) -> None:
        lines = alert_lines(alerts)
        if lines == self._shown:
            return
        self._shown = lines
        text = (
            Content("\n").join(Content.styled(line, f"${tone}" if tone else "") for line, tone in lines)
            if lines
            else Content.styled("no alerts", "$muted-text")
        )
        self.query_one("#alerts-text", Static).update(text)
