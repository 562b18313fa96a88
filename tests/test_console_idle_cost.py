"""What an idle second costs the console's UI thread (issue 16, item 13): a new figure repaints its own
line without a layout pass of the screen, a line nobody can see is not repainted until it can be, a
changed table row is drawn once in its final style, and the log drain does not search the DOM."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from test_console_support import make_console, settle
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import Label

from console.view_model import position_rows
from console.widgets.cache_panel import CachePanel
from console.widgets.live_table import LiveTable
from console.widgets.log_pane import LogPane
from console.widgets.quiet_text import show_text
from engine.dashboard.snapshot import freeze


def _record_refreshes(widget: Any) -> list[bool]:
    """The ``layout`` flag of every refresh ``widget`` asks for from now on."""
    layouts: list[bool] = []
    real = widget.refresh

    def refresh(*regions: Any, **flags: Any) -> Any:
        layouts.append(bool(flags.get("layout")))
        return real(*regions, **flags)

    widget.refresh = refresh
    return layouts


class Labels(App[None]):
    CSS = """
    #wide { width: 1fr; }
    #line { width: 1fr; height: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Label("persistence: 3 writes", id="wide")
        yield Label("API calls: 12 total", id="line")


async def test_a_label_of_set_width_shows_a_longer_figure_without_a_layout_pass() -> None:
    app = Labels()
    async with app.run_test(size=(40, 6)) as pilot:
        wide, line = app.query_one("#wide", Label), app.query_one("#line", Label)
        wide_layouts, line_layouts = _record_refreshes(wide), _record_refreshes(line)
        # longer, still one line in the 40 cells the stylesheet gives it: the label keeps its size
        assert show_text(wide, "persistence: 1,234 writes, 5 pending")
        assert wide_layouts == [False]
        # too long for one line: it wraps, the label grows, the screen lays out again
        assert show_text(wide, "persistence: 1,234 writes, 5 pending, last 12:00:00 UTC")
        assert wide_layouts == [False, True]
        # a height of its own too: any text keeps the size (a long one is clipped)
        assert show_text(line, "API calls: 1,234,567 total · 341/min of 600 (56%) · more")
        assert line_layouts == [False]
        await pilot.pause()
        assert wide.size.height == 2 and line.size.height == 1


async def test_a_cache_line_below_the_panels_edge_waits_until_it_can_be_seen(tmp_path: Path) -> None:
    """At 160x50 the cache panel clips its API line; repainting it anyway made Textual arrange the
    whole screen again every other second."""
    app = make_console(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        assert app.latest is not None
        panel = app.query_one(CachePanel)
        api = app.query_one("#cache-api", Label)
        assert not app.screen.can_view_partial(api)
        before = str(api.content)
        layouts = _record_refreshes(api)
        panel.show(app.latest.data, "API calls: 4,321 total · 12/min")
        await pilot.pause()
        assert layouts == [] and str(api.content) == before  # nothing repainted off screen
        await pilot.resize_terminal(160, 70)  # a taller panel: the line comes into sight
        await pilot.pause()
        await pilot.pause()
        assert app.screen.can_view_partial(api)
        assert str(api.content) == "API calls: 4,321 total · 12/min"


async def test_a_changed_row_is_drawn_once_in_its_final_style(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restyling a drawn line (``Strip.apply_style``) cost more than drawing it: a changed row is
    drawn in the frame's style at once, its width filled."""
    app = make_console(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        assert app.latest is not None
        table = app.query_one("#positions", LiveTable)
        assert table.row_count > 0
        data = dict(app.latest.data)
        data["positions"] = [{**p, "mark_price": float(p["mark_price"]) + 1.5} for p in data["positions"]]
        restyled: list[Strip] = []
        real = Strip.apply_style

        def apply_style(strip: Strip, style: Any) -> Strip:
            restyled.append(strip)
            return real(strip, style)

        monkeypatch.setattr(Strip, "apply_style", apply_style)
        table.sync(position_rows(freeze(data).data))
        width = table.scrollable_content_region.width
        line = table.render_line(1)  # the first row, below the header
        assert restyled == []
        assert line.cell_length == width
        assert table.get_row_at(0)[0].plain in line.text
        assert line is table.render_line(1)  # drawn once: the next frame's line is the same


async def test_the_log_drain_finds_its_pane_without_searching_the_dom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_console(tmp_path)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        searches: list[object] = []
        real = app.query

        def query(*args: Any, **kwargs: Any) -> Any:
            searches.append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(app, "query", query)
        pane = app.query_one(LogPane)
        for n in range(3):
            logging.getLogger("opconsole.console").info("idle line %d", n)
            app.drain_log()
        await pilot.pause()
        assert searches == []
        assert pane.writes >= 3


async def test_a_changed_mark_repaints_the_cells_that_moved_not_the_whole_row(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        assert app.latest is not None
        table = app.query_one("#positions", LiveTable)
        width = table.scrollable_content_region.width
        data = dict(app.latest.data)
        first = data["positions"][0]
        data["positions"] = [
            {**first, "mark_price": float(first["mark_price"]) + 1.5},
            *data["positions"][1:],
        ]
        regions: list[Region] = []
        real = table.refresh

        def refresh(*dirty: Region, **flags: Any) -> Any:
            regions.extend(dirty)
            return real(*dirty, **flags)

        table.refresh = refresh  # type: ignore[method-assign]
        table.sync(position_rows(freeze(data).data))
        assert len(regions) == 1  # the one row that changed, on the first row's line
        (region,) = regions
        assert region.y == 1 and region.height == 1
        assert region.x > 0 and region.right < width  # from the mark to the last figure that moved
        # the line drawn again is the whole row, with the new mark inside the repainted cells
        line = table.render_line(1).text
        mark = table.get_cell(table.row_keys[0], "mark").plain
        assert region.x <= line.index(mark) and line.index(mark) + len(mark) <= region.right
