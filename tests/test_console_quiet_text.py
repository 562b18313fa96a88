"""Text updates cost only what changed (issue 16, item 13): the same text repaints nothing, and a
text of the same shape repaints without a layout pass of the whole screen."""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import Label

from console.widgets.quiet_text import show_text


class OneLabel(App[None]):
    def compose(self) -> ComposeResult:
        yield Label("API 341/min (5%)", id="label")


async def test_same_shape_text_repaints_without_a_layout_pass() -> None:
    app = OneLabel()
    async with app.run_test() as pilot:
        label = app.query_one("#label", Label)
        layouts: list[bool] = []
        real = label.refresh

        def refresh(*regions: Any, **flags: Any) -> Any:
            layouts.append(bool(flags.get("layout")))
            return real(*regions, **flags)

        label.refresh = refresh  # type: ignore[method-assign]
        assert show_text(label, "API 341/min (5%)") is False  # unchanged: nothing repainted
        assert layouts == []
        assert show_text(label, "API 352/min (6%)") is True  # same length: no layout pass
        assert layouts == [False]
        assert show_text(label, "API 1,352/min (26%)") is True  # longer: the label must grow
        assert layouts == [False, True]
        await pilot.pause()
        assert str(label.content) == "API 1,352/min (26%)"
