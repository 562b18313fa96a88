"""The rollback panel: each optimization toggle with its state; flip one, or roll all back / restore.

Every change goes through the engine's profile (applied live, logged, saved to the override file by
the profile itself); the panel only shows what the profile reports afterwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from console.engine_link import EngineLink, Outcome
from engine.core.profile import TOGGLES

TOGGLE_HELP = {
    "cache_ttls": "long TTLs + invalidation on events  |  baseline: the original short TTLs",
    "cache_metrics": "hit/miss/load metrics per category  |  baseline: nothing counted",
    "smart_persistence": "critical fsync'd, rest batched  |  baseline: full write per save",
    "adaptive_intervals": "check interval by urgency  |  baseline: every position every 5 s",
    "api_batching": "one read per account, batch orders  |  baseline: one call each",
    "push_streams": "private WebSocket streams  |  baseline: polling",
}


class RollbackScreen(ModalScreen[None]):
    """space flips the selected toggle, ``a`` rolls every toggle back, ``o`` restores all."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "flip", "Flip toggle"),
        Binding("a", "rollback_all", "All baseline"),
        Binding("o", "restore_all", "All optimized"),
        Binding("escape,r", "close", "Close"),
    ]

    def __init__(
        self,
        link: EngineLink,
        states: Callable[[], dict[str, str]],
        report: Callable[[Outcome], None],
        after_change: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(classes="dialog")
        self._link = link
        self._states = states
        self._report = report
        self._after_change = after_change

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-wide"):
            yield Label("Rollback panel — optimized vs baseline", id="dialog-title")
            yield DataTable(id="toggles", cursor_type="row", zebra_stripes=False)
            yield Label("space flip · a all baseline · o all optimized · esc close", id="dialog-hint")

    def on_mount(self) -> None:
        table = self.query_one("#toggles", DataTable)
        table.add_column("Toggle", key="toggle")
        table.add_column("State", key="state")
        table.add_column("Optimized  |  baseline", key="help")
        for name in TOGGLES:
            table.add_row(name, "", TOGGLE_HELP[name], key=name)
        self.show_states()
        table.focus()

    def show_states(self) -> None:
        """Repaint the State column from the profile."""
        table = self.query_one("#toggles", DataTable)
        states = self._states()
        for name in TOGGLES:
            state = states.get(name, "pending")
            tone = {"optimized": "badge-optimized", "baseline": "badge-baseline"}.get(state, "muted-text")
            colour = self.app.theme_variables.get(tone)
            style = f"bold {colour}" if colour else "bold"
            table.update_cell(name, "state", Text(state.upper(), style=style))

    @property
    def selected(self) -> str:
        table = self.query_one("#toggles", DataTable)
        return TOGGLES[table.cursor_row]

    async def _run(self, action: Callable[[], Awaitable[Outcome]]) -> None:
        self._report(await action())
        await self._after_change()
        self.show_states()

    async def action_flip(self) -> None:
        toggle = self.selected
        target = "optimized" if self._states().get(toggle) == "baseline" else "baseline"
        await self._run(lambda: self._link.set_toggle(toggle, target))

    async def action_rollback_all(self) -> None:
        await self._run(self._link.rollback_all)

    async def action_restore_all(self) -> None:
        await self._run(self._link.restore_all)

    def action_close(self) -> None:
        self.dismiss(None)
