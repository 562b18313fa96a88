"""A confirmation dialog for destructive actions: `y` confirms, `n` / `esc` cancel (or a typed word)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

YES_LABEL = "Yes (y)"
NO_LABEL = "No (n / esc)"


class ConfirmScreen(ModalScreen[bool]):
    """Ask a yes/no question; with ``require``, Yes stays disabled until that word is typed."""

    # y confirms, n or esc cancels: the buttons name their keys so the operator never has to guess.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel", key_display="esc"),
    ]

    def __init__(self, title: str, prompt: str, *, require: str | None = None) -> None:
        super().__init__(classes="dialog")
        self._title = title
        self._prompt = prompt
        self._require = require

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-danger"):
            yield Label(self._title, id="dialog-title")
            yield Label(self._prompt, id="dialog-prompt")
            if self._require:
                yield Input(placeholder=f"type {self._require} to confirm", id="confirm-word")
            with Horizontal(id="dialog-buttons"):
                yield Button(NO_LABEL, id="no", variant="primary")
                yield Button(
                    YES_LABEL if not self._require else f"Yes (type {self._require})",
                    id="yes",
                    variant="error",
                    disabled=bool(self._require),
                )

    def on_mount(self) -> None:
        target = "#confirm-word" if self._require else "#no"
        self.query_one(target).focus()

    def action_confirm(self) -> None:
        """``y``: yes, unless a typed word is required (then only the word confirms)."""
        if not self._require:
            self.dismiss(True)

    @on(Input.Changed, "#confirm-word")
    def _word_changed(self, event: Input.Changed) -> None:
        self.query_one("#yes", Button).disabled = event.value.strip() != self._require

    @on(Input.Submitted, "#confirm-word")
    def _word_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self._require:
            self.dismiss(True)

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(False)

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
