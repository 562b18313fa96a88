"""The help screen: every key of the main screen and of the panels, generated from their bindings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, Static


def binding_lines(bindings: Iterable[Binding], key_display: Callable[[Binding], str]) -> list[Content]:
    """``  f      Flush persistence now`` lines for the bindings that have a description."""
    lines = []
    for binding in bindings:
        if not binding.description:
            continue
        key = key_display(binding)
        help_text = binding.tooltip or binding.description
        # a key list as long as the column (``escape,P``) still gets a space before its text
        lines.append(Content.assemble((f"  {key:<7} ", "bold $accent"), help_text))
    return lines


class HelpScreen(ModalScreen[None]):
    """Lists the keys; any of escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss_help", "Close", show=True),
    ]

    def __init__(self, sections: list[tuple[str, list[Binding]]]) -> None:
        super().__init__(classes="dialog")
        self._sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-wide"):
            yield Label("opconsole — keys", id="dialog-title")
            with VerticalScroll(id="help-body"):
                for title, bindings in self._sections:
                    yield Label(title, classes="help-section")
                    lines = binding_lines(bindings, self.app.get_key_display)
                    yield Static(Content("\n").join(lines), classes="help-keys")
                yield Static(
                    "Every key is also in the command palette (ctrl+p). Quitting flushes the store; "
                    "open positions stay protected by their exchange-side stop-losses.",
                    classes="help-note",
                )

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
