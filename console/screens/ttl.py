"""The TTL tuning screen: each cache category's TTL; +/- or typing changes it on the live cache and
records it in the settings override file, so it survives a restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label

from console.engine_link import EngineLink, Outcome

MAX_TTL_S = 86_400.0


def ttl_step(current: float, direction: int) -> float:
    """The next TTL up (``direction`` 1) or down (-1): finer steps for short TTLs, never below 1 s.

    Going down from a step boundary uses the finer step below it (60 -> 55, 10 -> 9), so +/- retrace
    each other.
    """
    basis = current if direction > 0 else current - 1e-9
    step = next(size for limit, size in _STEPS if basis < limit)
    return min(MAX_TTL_S, max(1.0, current + direction * step))


_STEPS = ((10.0, 1.0), (60.0, 5.0), (600.0, 30.0), (float("inf"), 300.0))


def parse_ttl(text: str) -> float:
    """Seconds from what the operator typed (``45``, ``45s``, ``5m``); raises ValueError if it is not."""
    raw = text.strip().lower()
    scale = 60.0 if raw.endswith("m") else 1.0
    value = float(raw.rstrip("sm").strip()) * scale
    if not 1.0 <= value <= MAX_TTL_S:
        raise ValueError(f"TTL must be within 1..{MAX_TTL_S:g} s, got {text.strip()!r}")
    return value


class TtlScreen(ModalScreen[None]):
    """Tune the cache TTLs of the active ``cache_ttls`` profile."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("plus,equals_sign", "bump(1)", "+ TTL"),
        Binding("minus,underscore", "bump(-1)", "- TTL"),
        Binding("enter", "edit", "Type a value", show=True),
        Binding("escape,t", "close", "Close"),
    ]

    def __init__(
        self,
        link: EngineLink,
        ttls: dict[str, float],
        profile: str,
        report: Callable[[Outcome], None],
    ) -> None:
        super().__init__(classes="dialog")
        self._link = link
        self.ttls = dict(ttls)
        self._profile = profile
        self._report = report

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Cache TTLs — {self._profile} profile", id="dialog-title")
            yield DataTable(id="ttls", cursor_type="row", zebra_stripes=False)
            yield Input(placeholder="seconds, e.g. 45 or 5m; Enter applies", id="ttl-input")
            hint = "+/- step · enter type · esc close — applied live, saved to overrides"
            yield Label(hint, id="dialog-hint")

    def on_mount(self) -> None:
        table = self.query_one("#ttls", DataTable)
        table.add_column("Category", key="category")
        table.add_column("TTL", key="ttl")
        for name, seconds in self.ttls.items():
            table.add_row(name, f"{seconds:g}s", key=name)
        table.focus()

    @property
    def selected(self) -> str:
        table = self.query_one("#ttls", DataTable)
        return list(self.ttls)[table.cursor_row]

    async def action_bump(self, direction: int) -> None:
        category = self.selected
        await self.apply(category, ttl_step(self.ttls[category], direction))

    def action_edit(self) -> None:
        field = self.query_one("#ttl-input", Input)
        field.value = f"{self.ttls[self.selected]:g}"
        field.focus()

    @on(DataTable.RowSelected, "#ttls")
    def _row_selected(self) -> None:
        self.action_edit()  # the table owns enter while it has the focus

    @on(Input.Submitted, "#ttl-input")
    async def _typed(self, event: Input.Submitted) -> None:
        try:
            seconds = parse_ttl(event.value)
        except ValueError as exc:
            message = str(exc) if "TTL" in str(exc) else f"not a number of seconds: {event.value!r}"
            self._report(Outcome(False, message))
            return
        await self.apply(self.selected, seconds)
        self.query_one("#ttls", DataTable).focus()

    async def apply(self, category: str, seconds: float) -> None:
        """Set the live TTL and record it in the override file (the link does both)."""
        outcome = await self._link.tune_ttl(self._profile, category, seconds)
        if outcome.ok:
            self.ttls[category] = seconds
            self.query_one("#ttls", DataTable).update_cell(category, "ttl", f"{seconds:g}s")
        self._report(outcome)

    def action_close(self) -> None:
        self.dismiss(None)
