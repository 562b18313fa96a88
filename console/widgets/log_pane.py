"""The live log pane: lines from Python logging, drained once per tick, with a filter.

The pane keeps its own bounded history (``ui.log_max_lines``) so that changing the filter can show
the matching lines from before; new lines are written with one ``Log.write_lines`` call per tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input, Log

from console.logging_queue import LogBuffer, filter_lines


def log_title(needle: str) -> str:
    """The pane's title: ``Log``, and the active filter when there is one."""
    return f"Log · filter: {needle}" if needle else "Log"


class LogPane(Vertical):
    """A Log widget and its (normally hidden) filter input."""

    ALLOW_MAXIMIZE = True

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "clear_filter", "Clear filter", show=False)]

    def __init__(self, max_lines: int, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = log_title("")
        self._max_lines = max_lines
        self._buffer = LogBuffer(max_lines)
        self.needle = ""
        self.writes = 0  # write_lines calls (one per tick with news; tests read it)

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter the log (Enter applies, Esc clears)", id="log-filter")
        yield Log(max_lines=self._max_lines, id="log", auto_scroll=True)

    @property
    def log_widget(self) -> Log:
        return self.query_one("#log", Log)

    @property
    def accepting(self) -> bool:
        """Whether lines can be shown now: not while the pane is being torn down (its children go
        first, and the app's log-drain timer can still fire then)."""
        return self.is_attached and any(child.id == "log" for child in self.children)

    def append(self, lines: Sequence[str]) -> None:
        """Add new lines to the history and show those that match the filter, in one write."""
        if not lines:
            return
        self._buffer.extend(lines)
        shown = filter_lines(lines, self.needle)
        if shown:
            self.log_widget.write_lines(shown)
            self.writes += 1

    def open_filter(self) -> None:
        """Show the filter input and focus it."""
        field = self.query_one("#log-filter", Input)
        field.add_class("-open")
        field.value = self.needle
        field.focus()

    def set_filter(self, needle: str) -> None:
        """Show only the lines containing ``needle`` (all of them when it is empty)."""
        self.needle = needle.strip()
        # in the title, not the subtitle: the compact layout draws only the pane's top border
        self.border_title = log_title(self.needle)
        log = self.log_widget
        log.clear()
        log.write_lines(self._buffer.matching(self.needle))

    @on(Input.Submitted, "#log-filter")
    def _apply(self, event: Input.Submitted) -> None:
        self.set_filter(event.value)
        event.input.remove_class("-open")
        self.log_widget.focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#log-filter", Input)
        field.value = ""
        field.remove_class("-open")
        self.set_filter("")
        self.log_widget.focus()
