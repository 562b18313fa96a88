"""The help screen: every key of the main screen and of the panels, generated from their bindings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, Static


def keys_text(binding: Binding, key_display: Callable[[Binding], str]) -> str:
    """A binding's keys as a person types them, ``esc / r`` for ``escape,r``.

    ``key_display`` is :meth:`App.get_key_display` (``escape`` -> ``esc``, ``plus`` -> ``+``,
    ``ctrl+t`` -> ``^t``, the binding's own ``key_display`` when it has one); Textual only splits a
    ``"escape,r"`` key list when it builds its bindings, so each key is shown on its own here.
    """
    if binding.key_display:
        return binding.key_display
    keys = [key.strip() for key in binding.key.split(",") if key.strip()]
    return " / ".join(key_display(replace(binding, key=key)) for key in keys)


def binding_lines(bindings: Iterable[Binding], key_display: Callable[[Binding], str]) -> list[Content]:
    """``  f      Flush persistence now`` lines for the bindings that have a description."""
    shown = [(keys_text(binding, key_display), binding) for binding in bindings if binding.description]
    # one key column per section, as wide as its longest key list, so a text never runs into a key
    column = max((len(keys) for keys, _ in shown), default=0)
    return [
        Content.assemble((f"  {keys:<{column}}  ", "bold $accent"), binding.tooltip or binding.description)
        for keys, binding in shown
    ]


class HelpScreen(ModalScreen[None]):
    """Lists the keys; any of esc, q or ? closes it. The list scrolls (arrows, PgUp/PgDn, Home/End):
    at 80x24 it is three screens long."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss_help", "Close", show=True),
    ]

    def __init__(self, sections: list[tuple[str, list[Binding]]]) -> None:
        super().__init__(classes="dialog")
        self._sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-wide -help"):
            yield Label("opconsole — keys", id="dialog-title")
            with VerticalScroll(id="help-body"):
                for title, bindings in self._sections:
                    yield Label(title, classes="help-section")
                    lines = binding_lines(bindings, self.app.get_key_display)
                    yield Static(Content("\n").join(lines), classes="help-keys")
                palette = self.app.get_key_display(Binding("ctrl+p", "command_palette"))
                yield Static(
                    f"Every key is also in the command palette ({palette}). Quitting flushes the store; "
                    "open positions stay protected by their exchange-side stop-losses.",
                    classes="help-note",
                )

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
